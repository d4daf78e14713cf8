"""The command line: `purejaxppo COMMAND ...` (also `python -m purejaxppo`)."""

from purejaxppo.cli.main import main

__all__ = ["main"]
