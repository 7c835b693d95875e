"""The ``labelfree`` command line: a thin layer over the Python API.

One module per group of commands (``fit``, ``evaluate``, ``search``, ``info``); ``common`` holds
the app, the shared option types and data loading. :func:`main` turns every bad input into a
one-line error with exit code 2 and Ctrl-C into a clean stop with a resume hint.
"""

from __future__ import annotations

from labelfree.cli import evaluate, fit, info, search  # noqa: F401  (registers the commands)
from labelfree.cli.common import app
from labelfree.cli.errors import main

__all__ = ["app", "main"]
