"""Harness for the browser tests: a real headless Chromium and a tiny recording web server
(``tests/_support/recording_server.py``).

Chromium is Debian's ``/usr/bin/chromium`` (or ``$SKOPOS_CHROMIUM``), driven by Playwright;
nothing downloads a browser. Without Chromium or Playwright the tests skip, except under
``CI=true``, where they fail: CI must not go green without running them.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests._support.chromium import launch_options, playwright_driver
from tests._support.recording_server import RecordingServer, Site, served_script

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """The Playwright driver, or a skip (a failure under CI=true) when it cannot run."""
    yield from playwright_driver("browser tests")


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(**launch_options())
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def server() -> Iterator[RecordingServer]:
    server = RecordingServer()
    thread = threading.Thread(target=server.serve_forever, name="skopos-test-http", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


_prefixes = itertools.count(1)


@pytest.fixture
def site(server: RecordingServer) -> Site:
    return Site(server, f"/t{next(_prefixes)}/", served_script())


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(locale="de-CH")
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()
