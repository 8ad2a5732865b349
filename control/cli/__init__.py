"""``dialgate``, the command line: one module per command group, assembled in :mod:`.main`."""

from control.cli.main import main

__all__ = ["main"]
