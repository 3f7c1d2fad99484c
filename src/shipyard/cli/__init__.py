"""The ``shipyard`` command."""

from shipyard.cli._main import app, main

__all__ = ["app", "main"]
