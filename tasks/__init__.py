"""Built-in Florence-2 task plugins (installed as ``florence.tasks``; one file per task family).

Empty until the task-plugin issue lands; they will register through the ``florence.tasks``
entry-point group like any third-party task."""
