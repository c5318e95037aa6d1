"""The registry of tasks and metrics: what the installed plugins register (entry-point groups
``florence.tasks`` and ``florence.metrics``), loaded on first use, held by a :class:`TaskRegistry` object (``REGISTRY``, the
one ``get_task`` and ``list_tasks`` read; a test or a program may make its own)."""
from __future__ import annotations

import warnings

from .base import Task, TaskError

__all__ = ["TaskRegistry", "REGISTRY", "get_task", "list_tasks", "get_metric", "list_metrics", "plugin_errors",
           "reload_tasks"]


class TaskRegistry:
    """The tasks and metrics of the installed plugins, loaded on first use.

    ``REGISTRY`` is the one florence reads (:func:`get_task`, :func:`list_tasks`, ...);
    ``TaskRegistry()`` is a fresh one, and :meth:`reload` reads the plugins again (e.g. after
    installing one). A plugin that fails is left out and reported (:meth:`errors`, and a
    ``RuntimeWarning`` when the registry loads)."""

    def __init__(self):
        self._tasks: dict[str, Task] | None = None
        self._metrics: dict = {}
        self._errors: list[str] = []

    def _loaded(self) -> dict[str, Task]:
        if self._tasks is None:
            from ..plugins import plugin_manager

            pm, errors = plugin_manager()
            metrics = _collect_metrics(pm, errors)
            tasks = _collect_tasks(pm, metrics, errors)
            for message in errors:
                warnings.warn(message, RuntimeWarning, stacklevel=4)
            self._metrics, self._errors = metrics, errors
            self._tasks = {t.token: t for t in tasks}
        return self._tasks

    def reload(self) -> list[Task]:
        """Forget what was loaded and load the installed plugins again; the tasks."""
        self._tasks = None
        return self.tasks()

    def tasks(self) -> list[Task]:
        """Every registered task, built-in ones first."""
        return list(self._loaded().values())

    def get(self, token_or_name) -> Task:
        """A task by token (``"<OD>"``) or name (``"od"``, any case); a :class:`Task` passes through."""
        if isinstance(token_or_name, Task):
            return token_or_name
        tasks = self._loaded()
        key = str(token_or_name).strip()
        for task in tasks.values():
            if key == task.token or key.lower() == task.name.lower() or key.upper() == task.token:
                return task
        valid = ", ".join(f"{t.token} ({t.name})" for t in tasks.values()) or "none (is florence installed?)"
        broken = f"; plugins that failed to load: {' | '.join(self._errors)}" if self._errors else ""
        raise TaskError(f"unknown task {token_or_name!r}; registered tasks: {valid}{broken}")

    def metrics(self) -> list[str]:
        """The names of every registered metric (built-in and plugins')."""
        self._loaded()
        return sorted(self._metrics)

    def metric(self, name: str):
        """The metric function registered under ``name``: ``function(samples) -> {key: value}``."""
        self._loaded()
        if name not in self._metrics:
            raise TaskError(f"unknown metric {name!r}; registered metrics: {sorted(self._metrics)}")
        return self._metrics[name]

    def errors(self) -> list[str]:
        """Messages of plugins that failed to load (their tasks or metrics are missing)."""
        self._loaded()
        return list(self._errors)


REGISTRY = TaskRegistry()


def get_task(token_or_name) -> Task:
    """A task by token (``"<OD>"``) or name (``"od"``, any case) from :data:`REGISTRY`; a
    :class:`Task` passes through."""
    return REGISTRY.get(token_or_name)


def list_tasks() -> list[Task]:
    """Every registered task, built-in ones first."""
    return REGISTRY.tasks()


def get_metric(name: str):
    """The metric function registered under ``name``: ``function(samples) -> {key: value}``."""
    return REGISTRY.metric(name)


def list_metrics() -> list[str]:
    """The names of every registered metric (built-in and plugins')."""
    return REGISTRY.metrics()


def plugin_errors() -> list[str]:
    """Messages of task plugins that failed to load (their tasks are missing)."""
    return REGISTRY.errors()


def reload_tasks() -> list[Task]:
    """Load the installed plugins again (e.g. after installing one); the tasks."""
    return REGISTRY.reload()


def _collect_metrics(pm, errors: list) -> dict:
    metrics, owner = {}, {}
    for impl in pm.hook.florence_register_metrics.get_hookimpls():
        where = f"plugin {impl.plugin_name!r}"
        try:
            provided = impl.function()
            bad = [k for k, f in provided.items() if not isinstance(k, str) or not callable(f)]
        except Exception as e:
            errors.append(f"{where} raised in florence_register_metrics (it returns {{name: function}}): "
                          f"{type(e).__name__}: {e}")
            continue
        if bad:
            errors.append(f"{where} returned metrics that are not name -> function: {bad[:3]}")
            continue
        for name, fn in provided.items():
            if name in owner:
                errors.append(f"{where}: metric {name!r} is already registered by plugin {owner[name]!r}; kept that one")
                continue
            owner[name], metrics[name] = impl.plugin_name, fn
    return metrics


def _collect_tasks(pm, metrics: dict, errors: list) -> list:
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
            unknown = [m for m in task.metrics if m not in metrics]
            if unknown:
                stale = "" if metrics else (" (none at all: the install's entry points predate the built-in metrics "
                                            "plugin; reinstall florence, e.g. bash tools/install.sh)")
                errors.append(f"{where}: task {task.token} names metrics {unknown} that no plugin registers "
                              f"(florence_register_metrics); registered metrics: {sorted(metrics)}{stale}")
                continue
            owner[task.token] = owner[task.name.lower()] = impl.plugin_name
            tasks.append(task)
    return tasks
