"""florence's plugin system (installed as ``florence.plugins``).

Tasks are pluggy plugins found through the entry-point group ``florence.tasks``; built-in tasks
load the same way as third-party ones. The hook specifications are the documentation of the
contract; the task issue fills in the task values.
"""
import pluggy

PROJECT = "florence"
ENTRY_POINT_GROUP = "florence.tasks"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class TaskSpec:
    @hookspec
    def florence_register_tasks(self):
        """Return a list of task objects (each with ``token``, ``name``, ``prompt``,
        ``encode_target``, ``decode_output`` and ``metrics``) this plugin provides."""


def plugin_manager() -> pluggy.PluginManager:
    """A manager with the hookspecs added and every installed ``florence.tasks`` plugin loaded."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(TaskSpec)
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    pm.check_pending()
    return pm
