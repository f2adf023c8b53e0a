"""Every example app through the moments the host cannot choose: started while PocketBase is
down, and stopped by a signal. What was accepted must be in PocketBase, exactly once.

No browser here: the beacons ``skopos.js`` would send are posted as it sends them
(``text/plain`` bodies, a desktop Chrome's headers).
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from skopos._admin.embedded import free_port
from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from tests._support.example_apps import (
    RunningExample,
    example_params,
    new_website,
    start_example,
    stop_example,
    wait_until_serving,
)
from tests._support.pocketbase_server import PocketBaseServer
from tests._support.tracking_helpers import CHROME, records, site_events

pytestmark = pytest.mark.pocketbase

BEACON = {
    "User-Agent": CHROME,
    "Accept-Language": "en-US,en;q=0.9",
    "Sec-Fetch-Mode": "no-cors",
    "Content-Type": "text/plain;charset=UTF-8",
}
ERROR = "Example error while the host was busy"


@contextmanager
def running_example(
    name: str, server: PocketBaseServer, website: Website, tmp_path: Path
) -> Iterator[tuple[RunningExample, Any]]:
    port = free_port()
    log = tmp_path / f"{name}.log"
    process = start_example(name, server, website, port, log)
    origin = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, origin, log)
        yield RunningExample(name, origin, port, website, log), process
    finally:
        stop_example(process)


def beacon(origin: str, payload: dict[str, Any]) -> None:
    answer = httpx.post(
        origin + "/api/event", content=json.dumps(payload).encode(), headers=BEACON, timeout=10
    )
    assert answer.status_code == 204


def page_view(origin: str, path: str) -> dict[str, Any]:
    return {"type": "pageView", "url": f"{origin}{path}", "language": "en-US"}


def js_error(origin: str) -> dict[str, Any]:
    return {
        "type": "jsError",
        "url": f"{origin}/spa/step-2",
        "errorMessage": ERROR,
        "stackTrace": f"Error: {ERROR}\n    at onClick ({origin}/app.js:10:5)",
    }


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


@pytest.mark.parametrize("name", example_params())
def test_an_example_started_while_pocketbase_is_down_serves_and_writes_later(
    name: str,
    pocketbase_factory: Callable[..., PocketBaseServer],
    tmp_path: Path,
) -> None:
    # The FastAPI example did not start at all ("Application startup failed"); the Flask
    # one answered 503 to every beacon for 30 s at a time and dropped them.
    server = pocketbase_factory()
    with server.client() as pb:
        website = new_website(pb, f"down {name} {uuid.uuid4().hex[:8]}", "127.0.0.1")
        server.process.stop()
        down_at = time.monotonic()
        with running_example(name, server, website, tmp_path) as (example, _):
            origin = example.origin
            assert httpx.get(origin + "/about", timeout=10).status_code == 200
            for path in ("/", "/spa/step-2", "/about"):
                beacon(origin, page_view(origin, path))
            beacon(origin, js_error(origin))
            time.sleep(max(0.0, 20.0 - (time.monotonic() - down_at)))
            server.process.start()  # 20 s later, on the same address

            def landed() -> bool:
                return len(site_events(pb, example.website.id)) >= 3 and bool(
                    records(pb, "js_errors", website=example.website.id)
                )

            assert wait_for(landed, 90), example.log_tail()
            time.sleep(1.0)  # anything written twice would show by now
            paths = Counter(e["path"] for e in site_events(pb, example.website.id))
            assert paths == Counter({"/": 1, "/spa/step-2": 1, "/about": 1}), example.log_tail()
            [error] = records(pb, "js_errors", website=example.website.id)
            assert (error["errorMessage"], error["count"]) == (ERROR, 1)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("name", example_params())
def test_a_stop_signal_loses_neither_the_page_view_nor_the_js_error(
    name: str,
    stop: signal.Signals,
    pocketbase: PocketBaseServer,
    pb: PocketBaseClient,
    tmp_path: Path,
) -> None:
    # The Flask example stopped by SIGTERM (systemd, Docker, Kubernetes) kept the page view
    # and lost the JS error, which waited 300 s in memory; its development server runs no
    # atexit hook on SIGTERM at all.
    website = new_website(pb, f"stop {name} {uuid.uuid4().hex[:8]}", "127.0.0.1")
    with running_example(name, pocketbase, website, tmp_path) as (example, process):
        origin = example.origin
        beacon(origin, page_view(origin, "/stopped"))
        beacon(origin, js_error(origin))
        os.kill(process.pid, stop)  # at once: nothing has had time to be written
        process.wait(timeout=15)
        site = example.website.id
        assert [e["path"] for e in site_events(pb, site)] == ["/stopped"], example.log_tail()
        [error] = records(pb, "js_errors", website=site)
        assert (error["errorMessage"], error["count"]) == (ERROR, 1), example.log_tail()
