"""Harness for the end-to-end tests: each example app as a real server, a real headless Chromium.

``example`` starts one of ``examples/*`` as a subprocess, the way its README says to run it, on a
free port of 127.0.0.1 and against a fresh website of the session's PocketBase; it is stopped
(SIGTERM, then SIGKILL) when the test ends, whatever happened. ``example_params``
(``tests/_support/example_apps.py``) skips an example whose entry file does not exist, naming
the file; one that exists but does not start fails the test, with its output.

Chromium is Debian's ``/usr/bin/chromium`` (or ``$SKOPOS_CHROMIUM``) driven by Playwright, as in
``tests/browser``; nothing downloads a browser. Without them the tests skip, except under
``CI=true``, where they fail.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from skopos._admin.embedded import free_port
from skopos._pocketbase.client import PocketBaseClient
from tests._support.chromium import CHROMIUM, CHROMIUM_ARGS, playwright_driver
from tests._support.example_apps import (
    DesktopChrome,
    RecordingBrowser,
    RunningExample,
    new_website,
    start_example,
    stop_example,
    wait_until_serving,
)
from tests._support.pocketbase_server import PocketBaseServer

if TYPE_CHECKING:
    from playwright.sync_api import Playwright


@pytest.fixture
def example(
    request: pytest.FixtureRequest,
    pocketbase: PocketBaseServer,
    pb: PocketBaseClient,
    tmp_path: Path,
) -> Iterator[RunningExample]:
    """The example named by the test's ``example`` parameter, serving; stopped afterwards."""
    name: str = request.param
    website = new_website(pb, f"e2e {name} {uuid.uuid4().hex[:8]}", "127.0.0.1")
    port = free_port()
    log = tmp_path / f"{name}.log"
    process = start_example(name, pocketbase, website, port, log)
    try:
        wait_until_serving(process, f"http://127.0.0.1:{port}", log)
        yield RunningExample(name, f"http://127.0.0.1:{port}", port, website, log)
    finally:
        stop_example(process)


# Module scope, not session: while Playwright's sync API runs, its event loop occupies this
# thread, and later tests calling asyncio.run() would fail.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """The Playwright driver, or a skip (a failure under CI=true) when it cannot run."""
    yield from playwright_driver("end-to-end tests")


@pytest.fixture(scope="module")
def desktop_chrome(playwright: Playwright) -> DesktopChrome:
    """Who headless Chromium pretends to be: its own user agent says "HeadlessChrome", which
    the bot filter drops. The version is the real one, so that the user agent agrees with the
    ``Sec-CH-UA`` Chromium sends where the context's override does not reach (see below)."""
    probe = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    try:
        major = probe.version.split(".", 1)[0]
    finally:
        probe.close()
    return DesktopChrome(
        user_agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
        f" Chrome/{major}.0.0.0 Safari/537.36",
        sec_ch_ua=f'"Chromium";v="{major}", "Not:A-Brand";v="8"',
    )


@pytest.fixture
def chromium(
    playwright: Playwright, desktop_chrome: DesktopChrome, tmp_path: Path
) -> Iterator[RecordingBrowser]:
    """A browser of its own for the test, recording its network log.

    The context's ``user_agent`` is not enough: a beacon sent from ``pagehide`` outlives its
    page and leaves with the browser's defaults (measured: the HeadlessChrome user agent and
    Chromium's own ``Sec-CH-UA``), so ``--user-agent`` sets it for the whole browser too.
    """
    netlog = tmp_path / "netlog.json"
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            *CHROMIUM_ARGS,
            f"--user-agent={desktop_chrome.user_agent}",
            f"--log-net-log={netlog}",
        ],
    )
    try:
        yield RecordingBrowser(browser, desktop_chrome, netlog)
    finally:
        browser.close()
