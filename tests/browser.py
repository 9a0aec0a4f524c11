"""A headless Chromium for dashboard tests (our own fixture, not pytest-playwright).

Debian's ``chromium-headless-shell`` (or ``chromium``), driven by playwright with
``executable_path`` (playwright cannot download browsers here). Where neither exists the
tests skip, loudly: a warning in the summary says what to install (CI has it: the
Makefile installs it when it can).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from .loud import loud_skip

CHROMIUM = shutil.which("chromium-headless-shell") or shutil.which("chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(name="browser")
def browser_fixture() -> Iterator[object]:
    """A fresh browser per test (function scope: no event loop outlives the test)."""
    if CHROMIUM is None:
        message = (
            "no chromium-headless-shell or chromium on PATH: the dashboard tests did not run"
            " (apt-get install chromium-headless-shell)"
        )
        loud_skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()
