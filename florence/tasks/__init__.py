"""Built-in Florence-2 task plugins (one file per task family).

Each module registers its tasks through the ``florence.tasks`` entry-point group, exactly as a
third-party plugin would (see ``florence.plugins``)."""
