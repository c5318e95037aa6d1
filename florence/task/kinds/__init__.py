"""The output kinds the built-in tasks are instances of, one file each; a plugin may subclass one or
:class:`florence.task.Task` itself."""
