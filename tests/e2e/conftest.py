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

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from skopos._admin.embedded import free_port
from skopos._admin.setup import Website, new_tracking_id
from skopos._pocketbase.client import PocketBaseClient
from tests._support.chromium import CHROMIUM, CHROMIUM_ARGS, playwright_driver
from tests._support.example_apps import (
    EXAMPLES,
    SPECS,
    DesktopChrome,
    RecordingBrowser,
    RunningExample,
)
from tests._support.paths import ROOT
from tests._support.pocketbase_server import PocketBaseServer

if TYPE_CHECKING:
    from playwright.sync_api import Playwright

START_TIMEOUT = 45.0  # Django's first start on a loaded 2-core machine takes a few seconds
STOP_TIMEOUT = 10.0


def _new_website(pb: PocketBaseClient, name: str, domain: str) -> Website:
    """Always a new website: ``ensure_website`` would return the earlier one of this domain."""
    record = pb.create_record(
        "websites",
        {
            "name": name,
            "domain": domain,
            "trackingId": new_tracking_id(),
            "isArchived": False,
            "disableLocalhostTracking": False,
            "storeRawIp": False,
            "ipBlacklist": [],
        },
    )
    return Website(record["id"], name, domain, record["trackingId"], created=True)


def _environment(pocketbase: PocketBaseServer, website: Website, port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SKOPOS_")}
    env.update(
        SKOPOS_POCKETBASE_URL=pocketbase.url,
        SKOPOS_SITE_ID=website.tracking_id,
        SKOPOS_ADMIN_EMAIL=pocketbase.email,
        SKOPOS_ADMIN_PASSWORD=pocketbase.password,
        SKOPOS_JS_ERROR_BATCH_INTERVAL="1",
        SKOPOS_REALTIME="false",
        PORT=str(port),
        PYTHONUNBUFFERED="1",
    )
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL, to the process group the example was started in (its own)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT)
    except ProcessLookupError:
        process.wait(timeout=STOP_TIMEOUT)


def _wait_until_serving(process: subprocess.Popen[bytes], origin: str, log: Path) -> None:
    """Until the page answers 200 and the event endpoint 204.

    The Flask and Django integrations start the SDK on the first event request (about a second
    here). Beacons arriving meanwhile wait for it and are then queued in whatever order their
    threads wake up, so a later page view could overtake an earlier one; the example counts as
    ready once that start is done. ``{}`` is no valid event: the SDK drops it, writing nothing.
    """
    deadline = time.monotonic() + START_TIMEOUT
    probes = [
        ("GET", "/", None, 200),
        ("POST", "/api/event", b"{}", 204),
    ]
    while probes:
        if process.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
            pytest.fail(f"the example exited with {process.returncode} while starting:\n{tail}")
        method, path, body, status = probes[0]
        try:
            answer = httpx.request(
                method,
                origin + path,
                content=body,
                headers={"Content-Type": "text/plain"} if body is not None else None,
                timeout=5.0,
            )
            if answer.status_code == status:
                probes.pop(0)
                continue
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
            pytest.fail(f"the example did not answer {method} {path} with {status}:\n{tail}")
        time.sleep(0.1)


@pytest.fixture
def example(
    request: pytest.FixtureRequest,
    pocketbase: PocketBaseServer,
    pb: PocketBaseClient,
    tmp_path: Path,
) -> Iterator[RunningExample]:
    """The example named by the test's ``example`` parameter, serving; stopped afterwards."""
    name: str = request.param
    spec = SPECS[name]
    entry = EXAMPLES / spec.entry
    website = _new_website(pb, f"e2e {name} {uuid.uuid4().hex[:8]}", "127.0.0.1")
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    log = tmp_path / f"{name}.log"
    argv = [sys.executable, str(entry), *(arg.format(port=port) for arg in spec.args)]
    with log.open("wb") as output:
        # A session of its own, so stopping it also stops anything it spawned (reloaders).
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=_environment(pocketbase, website, port),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_serving(process, origin, log)
        yield RunningExample(name, origin, port, website, log)
    finally:
        _stop(process)


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
