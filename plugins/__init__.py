"""florence's plugin system (installed as ``florence.plugins``).

Tasks come from pluggy plugins found through the entry-point group ``florence.tasks``; the
built-in tasks (``florence.tasks.*``) are registered there by florence's own ``setup.py`` and
load exactly like third-party ones. A plugin is any importable module or object with a
``florence_register_tasks`` hook implementation:

.. code-block:: python

    # my_package/count.py
    import florence
    from florence.task import TextTask

    class Count(TextTask):
        token, template, metrics = "<COUNT>", "How many {input} are in the image?", ("accuracy",)
        input_kind = "text"

    @florence.hookimpl
    def florence_register_tasks():
        return [Count()]

    # my_package's setup.py / pyproject.toml
    entry_points={"florence.tasks": ["count = my_package.count"]}

A plugin that fails to import, fails hook validation, raises, or returns something that is not a
list of tasks is reported (by name, with the reason) and skipped; the other plugins still load.
"""
from __future__ import annotations

import importlib.metadata

import pluggy

PROJECT = "florence"
ENTRY_POINT_GROUP = "florence.tasks"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["hookimpl", "hookspec", "TaskSpec", "ENTRY_POINT_GROUP", "plugin_manager", "collect_tasks"]


class TaskSpec:
    """The hooks a florence plugin may implement."""

    @hookspec
    def florence_register_tasks(self):
        """Return the tasks this plugin provides: a list of :class:`florence.task.Task` objects.

        Each task carries everything about itself, so per-sample work is a method call on the task,
        never another hook:

        - ``token`` (``"<OD>"``), ``name`` (``"od"``), ``template`` (the prompt, ``{input}`` where
          the input goes) and ``input_kind`` (``None``, ``"text"`` or ``"region"``);
        - ``prompt(text_input=None, image_size=None) -> str``: the prompt the model reads; rejects a
          missing input or an unexpected one; region inputs accept pixel boxes;
        - ``encode_target(annotation, image_size) -> str``: the training target text, using the
          shared quantizer (``florence.Quantizer``) for coordinates;
        - ``decode_output(text, image_size, scores=None)``: generated text (special tokens kept)
          -> the published output format, pixel coordinates at bin centres; ``scores`` holds one
          log-probability per location token. It never raises on malformed text;
        - ``example(rng, image_size) -> (text_input, annotation)``: a random valid sample;
        - ``special_tokens``: vocabulary tokens the task needs and Florence-2 lacks (added to the
          tokenizer, embeddings grown, when a model is loaded for the task);
        - ``metrics``: names of the metrics that evaluate the task.

        Tokens and names must be unique across all plugins; the first registration wins and a
        clash is reported naming both plugins.
        """


def plugin_manager() -> tuple[pluggy.PluginManager, list[str]]:
    """A manager with every loadable ``florence.tasks`` plugin registered and validated, and the
    messages of the plugins that could not be loaded (each names its entry point)."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(TaskSpec)
    errors = []
    eps = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
                 key=lambda ep: (not ep.value.startswith("florence."), ep.name))  # built-ins first
    for ep in eps:
        if pm.get_plugin(ep.name) is not None:
            continue
        where = f"task plugin {ep.name!r} ({ep.value}{_dist(ep)})"
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as e:  # a broken third-party plugin must not take the others down
            errors.append(f"{where} failed to load: {type(e).__name__}: {e}")
            continue
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as e:
            pm.unregister(name=ep.name)
            errors.append(f"{where} is invalid: {e}")
    return pm, errors


def _dist(ep) -> str:
    dist = getattr(ep, "dist", None)
    return f", from {dist.name} {dist.version}" if dist is not None else ""


def collect_tasks() -> tuple[list, list[str]]:
    """All tasks of all plugins, and the error messages of plugins that were skipped."""
    from florence.task import Task

    pm, errors = plugin_manager()
    tasks, owner = [], {}
    for impl in pm.hook.florence_register_tasks.get_hookimpls():  # registration order: built-ins first
        where = f"task plugin {impl.plugin_name!r}"
        try:
            provided = list(impl.function())
        except Exception as e:
            errors.append(f"{where} raised in florence_register_tasks: {type(e).__name__}: {e}")
            continue
        bad = [t for t in provided if not isinstance(t, Task)]
        if bad:
            errors.append(f"{where} returned objects that are not florence.task.Task: {bad[:3]}")
            continue
        for task in provided:
            clash = owner.get(task.token) or owner.get(task.name.lower())
            if clash:
                errors.append(f"{where}: task {task.token} ({task.name}) is already registered by "
                              f"plugin {clash!r}; kept that one")
                continue
            owner[task.token] = owner[task.name.lower()] = impl.plugin_name
            tasks.append(task)
    return tasks, errors
