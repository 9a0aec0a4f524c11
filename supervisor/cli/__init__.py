"""``ziggie``, the command line: argument parsing and printing, nothing more.

Serving lives in :mod:`supervisor.coordinator`; every other command is a client call.
"""

from ._app import main
from ._common import app

__all__ = ["app", "main"]
