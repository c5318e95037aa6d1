"""The error a model configuration raises, where both the config and the tower can reach it."""


class ConfigError(ValueError):
    """A configuration value that florence cannot build a model from."""
