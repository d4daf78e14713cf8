"""Environments: gymnax names and instances, other suites (brax, XLand-MiniGrid) through the
functional adapter, and probe tasks with known answers."""
