"""Debian's Chromium driven by Playwright, shared by the browser and end-to-end tests.

Nothing downloads a browser: ``/usr/bin/chromium`` (or ``$SKOPOS_CHROMIUM``) is launched
with the flags this workplace requires. Without Chromium or Playwright the tests skip,
except under ``CI=true``, where they fail: CI must not go green without running them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Playwright

CHROMIUM = os.environ.get("SKOPOS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_missing() -> str | None:
    """Why the browser cannot run here, or None when it can."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(
        CHROMIUM
    ):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set SKOPOS_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; never `playwright install`)"
    return None


def playwright_driver(purpose: str) -> Iterator[Playwright]:
    """Body of a module-scoped ``playwright`` fixture (not session-scoped: while the sync
    API runs, its event loop occupies this thread and later ``asyncio.run`` calls fail)."""
    missing = browser_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{purpose} cannot run under CI: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


def launch_options() -> dict[str, Any]:
    """Keyword arguments for ``chromium.launch`` / ``launch_persistent_context``."""
    return {"executable_path": CHROMIUM, "headless": True, "args": CHROMIUM_ARGS}
