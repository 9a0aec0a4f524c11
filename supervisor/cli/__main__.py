"""``python -m supervisor.cli``: the same as the ``ziggie`` command."""

from ._app import main

main()
