"""florence's plugin system: the hooks a plugin implements and the manager that finds them.

Tasks and their metrics come from pluggy plugins found through two entry-point groups:
``florence.tasks`` for plugins that bring tasks (and the metrics those tasks name) and
``florence.metrics`` for plugins that bring metrics only. The built-in tasks (``florence.tasks.*``)
and metrics (``florence.evaluation.functions``) are registered there by florence's own ``setup.py``
and load exactly like third-party ones. A plugin is any importable module or object with a
``florence_register_tasks`` and/or ``florence_register_metrics`` hook implementation:

.. code-block:: python

    # my_package/count.py
    import florence
    from florence.task import TextTask

    class Count(TextTask):
        token, template, metrics = "<COUNT>", "How many {input} are in the image?", ("count_error",)
        input_kind = "text"

    def count_error(samples):  # samples: dicts with "pred", "gt", "image_size", "text_input"
        return {"count_error": sum(abs(int(s["pred"] or 0) - s["gt"]) for s in samples) / max(len(samples), 1)}

    @florence.hookimpl
    def florence_register_tasks():
        return [Count()]

    @florence.hookimpl
    def florence_register_metrics():
        return {"count_error": count_error}

    # my_package's setup.py / pyproject.toml
    entry_points={"florence.tasks": ["count = my_package.count"]}

A plugin that fails to import, fails hook validation, raises, or returns something that is not a
list of tasks (a ``{name: function}`` dict of metrics) is reported (by name, with the reason) and
skipped; the other plugins still load. A task that names a metric no plugin registers is
reported the same way, with the registered metric names, and left out.
"""
from __future__ import annotations

import importlib.metadata

import pluggy

PROJECT = "florence"
ENTRY_POINT_GROUP = "florence.tasks"  # plugins that bring tasks (and any metrics those tasks need)
METRICS_ENTRY_POINT_GROUP = "florence.metrics"  # plugins that bring metrics only
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["hookimpl", "hookspec", "TaskSpec", "ENTRY_POINT_GROUP", "METRICS_ENTRY_POINT_GROUP", "plugin_manager"]


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

    @hookspec
    def florence_register_metrics(self):
        """Return the metrics this plugin provides: ``{name: function}``, the names tasks list in
        ``metrics``. ``function(samples) -> {key: value}`` scores one task's results; each sample is
        a dict with ``pred`` (the task's decoded output), ``gt`` (the annotation, same format),
        ``image_size`` (w, h), ``text_input`` and ``text`` (the generated text). Malformed
        predictions must count as wrong, never raise. Names are unique across plugins (first wins).
        """


def plugin_manager() -> tuple[pluggy.PluginManager, list[str]]:
    """A manager with every loadable ``florence.tasks`` and ``florence.metrics`` plugin registered
    and validated, and the messages of the plugins that could not be loaded (each names its entry
    point)."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(TaskSpec)
    errors = []
    eps = sorted((ep for group in (ENTRY_POINT_GROUP, METRICS_ENTRY_POINT_GROUP)
                  for ep in importlib.metadata.entry_points(group=group)),
                 key=lambda ep: (not ep.value.startswith("florence."), ep.name))  # built-ins first
    for ep in eps:
        if pm.get_plugin(ep.name) is not None:
            continue
        where = f"{'task' if ep.group == ENTRY_POINT_GROUP else 'metrics'} plugin {ep.name!r} ({ep.value}{_dist(ep)})"
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
