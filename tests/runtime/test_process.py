"""The worker process (``worker_process=True``, ``process.py`` and ``child.py``) against a real
PocketBase: the same records as in-process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from skopos import SkoposSDK
from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from tests._support.collect_client import batch, encode_message
from tests._support.collect_client import page_view as collect_page_view
from tests._support.collect_scenario import trace as collect_trace
from tests._support.paths import ROOT
from tests._support.pocketbase_server import PocketBaseServer, start_sdk
from tests._support.spool_trace import expected_errors, expected_events, send_trace
from tests._support.tracking_helpers import (
    environ,
    page_view,
    records,
    scope,
    site_events,
    site_sessions,
)

pytestmark = pytest.mark.pocketbase


def process_sdk(server: PocketBaseServer, website: Website, **extra: Any) -> SkoposSDK:
    return start_sdk(server, website, worker_process=True, **extra)


def test_a_trace_lands_exactly_as_in_process(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website
) -> None:
    sdk = process_sdk(pocketbase, website)
    send_trace(sdk, website.domain, 500)
    request = environ("198.51.100.1")
    sdk.track_server_event(request, "paid", {"amount": 42})
    sdk.track_server_event(request, "odd", {"when": object()})  # not JSON: dropped
    sdk.track_server_event(None, "nightly")
    sdk.identify(request, "user-1", {"name": "Ada", "plan": "pro"})
    assert sdk.flush(timeout=60)
    stats = sdk.stats()
    sdk.shutdown(timeout=10)
    assert stats.accepted == 504
    assert stats.written == 503
    assert stats.dropped == {"invalid:custom_data_bad_value": 1}
    assert stats.records["events"] == 452
    paths = Counter(e["path"] for e in site_events(pb, website.id) if e["eventName"] != "paid")
    assert paths.total() == 451
    assert Counter(
        {p: c for p, c in paths.items() if p in expected_events(500)}
    ) == expected_events(500)
    errors = {e["errorMessage"]: e["count"] for e in records(pb, "js_errors", website=website.id)}
    assert errors == expected_errors(500)
    assert len(site_sessions(pb, website.id)) == 13  # 12 visitors + the server visitor
    (user,) = records(pb, "visitors", website=website.id, userId="user-1")
    assert user["name"] == "Ada"


def test_asgi_requests_cross_the_pipe_undecoded_and_land_decoded(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website
) -> None:
    # The host ships the scope's headers as bytes (trimmed to what the worker reads); the
    # worker process decodes them: the visitor's browser and sessions come out as in-process.
    sdk = process_sdk(pocketbase, website)
    for visitor in range(3):
        request = scope(f"198.51.100.{10 + visitor}")
        request["headers"].append((b"cookie", b"session=not-for-analytics"))
        for path in ("/a", "/b"):
            sdk.track_api_event(request, page_view(website.domain, path))
    assert sdk.flush(timeout=60)
    sdk.shutdown(timeout=10)
    events = site_events(pb, website.id)
    assert sorted(e["path"] for e in events) == ["/a", "/a", "/a", "/b", "/b", "/b"]
    sessions = site_sessions(pb, website.id)
    assert len(sessions) == 3
    assert {s["browser"] for s in sessions} == {"Chrome"}


def test_the_worker_process_runs_below_the_host_s_priority(
    pocketbase: PocketBaseServer, website: Website
) -> None:
    sdk = process_sdk(pocketbase, website)
    try:
        child = sdk._runtime.worker._child  # type: ignore[attr-defined]
        assert child is not None
        host = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, child.process.pid) == min(host + 10, 19)
    finally:
        sdk.shutdown(timeout=10)


def test_a_wrong_password_fails_init_as_in_process(
    pocketbase: PocketBaseServer, website: Website
) -> None:
    from skopos import PocketBaseAuthError

    with pytest.raises(PocketBaseAuthError):
        SkoposSDK.init(
            pocketbase_url=pocketbase.url,
            site_id=website.tracking_id,
            admin_email=pocketbase.email,
            admin_password="wrong-password",
            worker_process=True,
            wait=True,
        )


def test_the_worker_process_writes_what_it_got_when_the_host_is_killed(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website
) -> None:
    code = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from skopos import SkoposSDK
from tests._support.tracking_helpers import environ, page_view
sdk = SkoposSDK.init(pocketbase_url={pocketbase.url!r}, site_id={website.tracking_id!r},
    admin_email={pocketbase.email!r}, admin_password={pocketbase.password!r},
    realtime=False, worker_process=True, batch=True, batch_interval=3600)
while not sdk.stats().connected:
    time.sleep(0.02)  # the worker process started and connected (in the background)
for n in range(300):
    sdk.track_api_event(environ("203.0.113.9"), page_view({website.domain!r}, f"/h/{{n}}"))
while sdk.stats().queue_depth or sdk.stats().pending < 300:
    time.sleep(0.02)  # everything shipped to the worker process, nothing written yet
print("shipped", flush=True)
time.sleep(60)
"""
    host = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout is not None
        assert host.stdout.readline().strip() == "shipped"
        assert site_events(pb, website.id) == []
        host.send_signal(signal.SIGKILL)
        host.wait(10)
        deadline = time.monotonic() + 30
        while len(site_events(pb, website.id)) < 300 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        if host.poll() is None:
            host.kill()
        host.wait(10)
        assert host.stdout is not None
        host.stdout.close()
    paths = Counter(e["path"] for e in site_events(pb, website.id))
    assert paths == Counter({f"/h/{n}": 1 for n in range(300)})


def test_a_forked_host_starts_its_own_worker_process(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website
) -> None:
    sdk = process_sdk(pocketbase, website)
    sdk.track_api_event(environ("203.0.113.1"), page_view(website.domain, "/parent"))
    assert sdk.flush(timeout=30)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            sdk.track_api_event(environ("203.0.113.2"), page_view(website.domain, "/child"))
            ok = sdk.flush(timeout=30)
            stats = sdk.stats()
            sdk.shutdown(timeout=5)
            code = 0 if ok and (stats.accepted, stats.written) == (1, 1) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    sdk.track_api_event(environ("203.0.113.1"), page_view(website.domain, "/parent-again"))
    assert sdk.flush(timeout=30)
    sdk.shutdown(timeout=5)
    paths = sorted(e["path"] for e in site_events(pb, website.id))
    assert paths == ["/child", "/parent", "/parent-again"]
    assert json.dumps(paths)


def test_only_the_installed_skopos_runs_in_the_worker_process(
    pocketbase: PocketBaseServer,
    pb: PocketBaseClient,
    website: Website,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The child ran `python -m ...` in the host's working directory, first on sys.path: a
    # `./skopos/` there was imported instead of the installed package, and ran.
    marker = tmp_path / "planted-code-ran"
    planted = tmp_path / "skopos"
    (planted / "_runtime").mkdir(parents=True)
    run = f"open({str(marker)!r}, 'w').close()\n"
    for module in ("__init__.py", "_runtime/__init__.py", "_runtime/child.py"):
        (planted / module).write_text(run)
    monkeypatch.chdir(tmp_path)
    sdk = process_sdk(pocketbase, website)
    try:
        sdk.track_api_event(environ("198.51.100.3"), page_view(website.domain, "/safe"))
        assert sdk.flush(timeout=30)
    finally:
        sdk.shutdown(timeout=10)
    assert not marker.exists()
    assert [e["path"] for e in site_events(pb, website.id)] == ["/safe"]


def test_collect_calls_land_exactly_as_in_process(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website
) -> None:
    # A /collect body crosses the pipe as it came; the worker process decodes it, and the
    # split calls' acknowledgements and the left-out items reach the host's stats.
    sent = collect_trace(website.tracking_id, website.domain, 60)
    sdk = process_sdk(pocketbase, website)
    for request, body in sent.calls:
        sdk.track_collect(request, body)
    bad_item = batch(
        collect_page_view(), {"t": "ev"}, sid=website.tracking_id, url=f"https://{website.domain}/x"
    )
    sdk.track_collect(environ("198.51.100.99"), encode_message(bad_item))
    sdk.track_collect(environ("198.51.100.99"), {"_d": object(), "_v": 1})  # not marshal-able
    assert sdk.flush(timeout=60)
    stats = sdk.stats()
    sdk.shutdown(timeout=10)
    assert (stats.accepted, stats.written) == (62, 61)
    assert stats.dropped == {"invalid:bad_encoding": 1}
    assert stats.dropped_items == {"invalid:missing_name": 1}
    events = Counter((e["type"], e["path"], e["eventName"]) for e in site_events(pb, website.id))
    assert events == sent.events + Counter({("pageView", "/x", ""): 1})
    errors = {e["errorMessage"]: e["count"] for e in records(pb, "js_errors", website=website.id)}
    assert errors == dict(sent.errors)
