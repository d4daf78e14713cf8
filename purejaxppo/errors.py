"""The library's error for bad input: a leaf module that imports nothing, so that every
layer (the process bootstrap included) can raise it."""


class ConfigError(ValueError):
    """Invalid configuration, raised before anything is compiled. Its message is one line
    that names the field (library) or flag (command line) at fault."""
