"""The example apps of ``examples/`` as the end-to-end tests start them, and a Chromium that
records what it sent (used by ``tests/e2e``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from skopos._admin.setup import Website
from tests._support.paths import ROOT

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

EXAMPLES = ROOT / "examples"


@dataclass(frozen=True)
class ExampleSpec:
    """How an example is started: its entry file and the arguments after the interpreter."""

    entry: str
    args: tuple[str, ...] = ()


SPECS = {
    "fastapi_app": ExampleSpec("fastapi_app/app.py"),
    "flask_app": ExampleSpec("flask_app/app.py"),
    "django_site": ExampleSpec(
        "django_site/manage.py", ("runserver", "127.0.0.1:{port}", "--noreload")
    ),
}


@dataclass(frozen=True)
class RunningExample:
    """An example server and the website it tracks into."""

    name: str
    origin: str
    port: int
    website: Website
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def example_params() -> list[Any]:
    """One parameter per example; skipped, naming the file, while its entry file is missing."""
    return [
        pytest.param(
            name,
            id=name,
            marks=pytest.mark.skipif(
                not (EXAMPLES / spec.entry).is_file(),
                reason=f"examples/{spec.entry} does not exist (yet)",
            ),
        )
        for name, spec in SPECS.items()
    ]


@dataclass(frozen=True)
class DesktopChrome:
    """The identity the browser presents: a desktop Chrome of the real Chromium's version."""

    user_agent: str
    sec_ch_ua: str


class RecordingBrowser:
    """Chromium with a network log: afterwards, the headers it actually sent, beacons included.

    The NetLog (``--log-net-log``) is written by the network service itself, so it has the
    requests Playwright never reports: beacons sent from ``pagehide``, whose page is gone.
    """

    def __init__(self, browser: Browser, identity: DesktopChrome, netlog: Path) -> None:
        self.browser = browser
        self.identity = identity
        self.netlog = netlog

    def new_context(self) -> BrowserContext:
        return self.browser.new_context(
            user_agent=self.identity.user_agent,
            locale="en-US",
            extra_http_headers={"Sec-CH-UA": self.identity.sec_ch_ua},
        )

    def close(self) -> None:
        """Close the browser, which completes the network log."""
        self.browser.close()

    def sent(self, origin: str, request_line: str) -> list[dict[str, str]]:
        """Headers (lower-case names) of each request ``request_line`` sent to ``origin``.

        Read after ``close``. Each request's headers as they went on the wire are one event
        with the request line and a ``Host`` header.
        """
        host = "host: " + origin.removeprefix("http://")
        found: list[dict[str, str]] = []
        for line in self.netlog.read_text(encoding="utf-8", errors="replace").splitlines():
            if request_line not in line:
                continue
            try:
                params = json.loads(line.rstrip().rstrip(","))["params"]
            except (ValueError, KeyError, TypeError):
                continue
            headers = params.get("headers") if isinstance(params, dict) else None
            if not isinstance(headers, list) or not str(params.get("line", "")).startswith(
                request_line
            ):
                continue
            if any(header.lower() == host for header in headers):
                pairs = (str(header).split(": ", 1) for header in headers)
                found.append({name.lower(): value for name, value in pairs})
        return found
