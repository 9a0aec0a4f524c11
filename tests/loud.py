"""Skips that must not go unnoticed: each is repeated in red at the end of the run."""

from __future__ import annotations

from typing import NoReturn

import pytest

#: Reasons of loud skips so far, printed by ``pytest_terminal_summary`` in conftest.
LOUD_SKIPS: list[str] = []


def loud_skip(reason: str) -> NoReturn:
    if reason not in LOUD_SKIPS:
        LOUD_SKIPS.append(reason)
    pytest.skip(reason)
