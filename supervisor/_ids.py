"""Ids: checked once, before anything can use one as part of a path.

Child ids are agent ids, and agent ids name files (logs, definitions, request files), so
an id may not contain a separator, start with a dot, or be long. Plain ``re``: the kernel
does not depend on pydantic.
"""

from __future__ import annotations

import re
from typing import Final

#: ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``: letters, digits, '.', '_', '-'.
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def validate_id(value: str, what: str = "id") -> str:
    """Return *value* if it is a safe id, else raise ``ValueError`` saying why."""
    if not isinstance(value, str) or ID_PATTERN.fullmatch(value) is None:
        # The refusal never echoes more than a prefix: a megabyte "id" stays out of logs.
        shown = value if not isinstance(value, str) or len(value) <= 64 else value[:64] + "…"
        raise ValueError(
            f"invalid {what} {shown!r}: must match [A-Za-z0-9][A-Za-z0-9._-]{{0,127}} "
            "(letters, digits, '.', '_', '-'; no path separators)"
        )
    return value


def is_valid_id(value: object) -> bool:
    """True if *value* is a safe id (see :func:`validate_id`)."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None
