"""The spool against a real PocketBase: killed hosts, deadlines, outages, lost answers.

Host processes are really killed with SIGKILL; what they journaled must land in
PocketBase exactly once when another process starts with the same ``spool_dir``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from skopos import SkoposSDK
from skopos._admin.setup import Website
from skopos._delivery.spool import SUFFIX, decode_line
from skopos._pocketbase.client import PocketBaseClient
from tests._support.fault_proxy import FaultProxy
from tests._support.paths import ROOT, subprocess_env
from tests._support.pocketbase_server import PocketBaseServer, start_sdk
from tests._support.spool_trace import expected_errors, expected_events, send_trace
from tests._support.tracking_helpers import environ as request_from
from tests._support.tracking_helpers import page_view, records, site_events, site_sessions

pytestmark = pytest.mark.pocketbase


def journaled(spool_dir: Path) -> int:
    """Activities on disk in ``spool_dir`` (what a SIGKILL cannot take away)."""
    count = 0
    for path in spool_dir.glob(f"*{SUFFIX}"):
        for line in path.read_bytes().split(b"\n"):
            record = decode_line(line)
            if record is not None and "a" in record:
                count += 1
    return count


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextmanager
def host_process(
    url: str,
    server: PocketBaseServer,
    website: Website,
    spool_dir: Path,
    calls: int,
    **extra: object,
) -> Iterator[subprocess.Popen[str]]:
    """A child host that tracks the trace with a spool; SIGKILLed at the end at the latest."""
    config = {
        "url": url,
        "site_id": website.tracking_id,
        "email": server.email,
        "password": server.password,
        "spool_dir": str(spool_dir),
        "domain": website.domain,
        "calls": calls,
        **extra,
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "tests._support.spool_child", json.dumps(config)],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert child.stdout is not None
        child.stdout.close()


def restarted_sdk(server: PocketBaseServer, website: Website, spool_dir: Path) -> SkoposSDK:
    return start_sdk(server, website, spool_dir=spool_dir)


def assert_trace_landed_once(pb: PocketBaseClient, website: Website, calls: int) -> None:
    paths = Counter(event["path"] for event in site_events(pb, website.id))
    assert paths == expected_events(calls)
    errors = {e["errorMessage"]: e["count"] for e in records(pb, "js_errors", website=website.id)}
    assert errors == expected_errors(calls)
    assert len(records(pb, "visitors", website=website.id)) == 12
    assert len(site_sessions(pb, website.id)) == 12


def batches_fail(method: str, path: str, number: int) -> str:
    return "error" if path == "/api/batch" else "pass"


def test_sigkill_while_pocketbase_refuses_writes_then_restart_delivers_once(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website, tmp_path: Path
) -> None:
    calls = 400
    with (
        FaultProxy(pocketbase.url, batches_fail) as proxy,
        host_process(proxy.url, pocketbase, website, tmp_path, calls) as child,
    ):
        wait_for(lambda: journaled(tmp_path) == calls, 60, "the trace to be journaled")
        wait_for(lambda: proxy.actions["error"] >= 2, 30, "writes to be attempted")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert site_events(pb, website.id) == []

    sdk = restarted_sdk(pocketbase, website, tmp_path)
    assert sdk.flush(timeout=60)
    stats = sdk.stats()
    sdk.shutdown(timeout=10)
    assert stats.recovered == {"written": calls}
    assert (stats.accepted, stats.written, stats.dropped) == (0, 0, {})
    assert_trace_landed_once(pb, website, calls)
    assert list(tmp_path.glob(f"*{SUFFIX}")) == []


def test_sigkill_after_a_lost_answer_neither_loses_nor_double_counts(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website, tmp_path: Path
) -> None:
    """The worst moment: a transaction committed, its answer was lost, and the host
    dies while asking whether it committed. The replay must not repeat it (JS
    error counts would double) nor skip anything after it."""
    release = threading.Event()
    batches = 0

    def plan(method: str, path: str, number: int) -> str:
        nonlocal batches
        if path == "/api/batch":
            if not release.is_set():
                return "error"
            batches += 1
            return "drop" if batches == 1 else "stall"
        if release.is_set() and batches >= 1 and "skopos_config" in path:
            return "stall"  # the commit check after the lost answer never returns
        return "pass"

    calls = 400
    with (
        FaultProxy(pocketbase.url, plan) as proxy,
        host_process(
            proxy.url, pocketbase, website, tmp_path, calls, js_error_batch_interval=0.05
        ) as child,
    ):
        wait_for(lambda: journaled(tmp_path) == calls, 60, "the trace to be journaled")
        release.set()
        wait_for(lambda: proxy.actions["stall"] >= 1, 60, "the commit check to hang")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert proxy.actions["drop"] == 1
    written_before = len(site_events(pb, website.id))
    assert written_before > 0

    sdk = restarted_sdk(pocketbase, website, tmp_path)
    assert sdk.flush(timeout=60)
    stats = sdk.stats()
    sdk.shutdown(timeout=10)
    assert stats.dropped == {}
    assert_trace_landed_once(pb, website, calls)
    assert list(tmp_path.glob(f"*{SUFFIX}")) == []


def test_shutdown_deadline_with_pocketbase_away_spools_and_the_next_start_writes(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website, tmp_path: Path
) -> None:
    calls = 300
    with FaultProxy(pocketbase.url, batches_fail) as proxy:
        sdk = start_sdk(pocketbase, website, url=proxy.url, spool_dir=tmp_path)
        send_trace(sdk, website.domain, calls)
        started = time.monotonic()
        sdk.shutdown(timeout=1.5)
        took = time.monotonic() - started
        stats = sdk.stats()
    assert took < 5
    assert stats.written == 0
    assert stats.spooled == calls
    assert stats.accepted == calls
    assert stats.dropped == {}
    assert journaled(tmp_path) == calls

    sdk = restarted_sdk(pocketbase, website, tmp_path)
    assert sdk.flush(timeout=60)
    assert sdk.stats().recovered == {"written": calls}
    sdk.shutdown(timeout=10)
    assert_trace_landed_once(pb, website, calls)


def test_a_small_queue_drains_to_the_spool_during_an_outage(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website, tmp_path: Path
) -> None:
    down = threading.Event()
    down.set()

    def plan(method: str, path: str, number: int) -> str:
        return "error" if down.is_set() and path == "/api/batch" else "pass"

    with FaultProxy(pocketbase.url, plan) as proxy:
        sdk = start_sdk(pocketbase, website, url=proxy.url, spool_dir=tmp_path, max_queue_size=100)
        sent = 0
        for _ in range(30):  # 1,500 calls, 15x the queue, while PocketBase refuses writes
            for _ in range(50):
                request = request_from(f"192.0.2.{sent % 12 + 1}")
                sdk.track_api_event(request, page_view(website.domain, f"/q/{sent}"))
                sent += 1
            time.sleep(0.25)
        assert proxy.actions["error"] >= 3
        assert journaled(tmp_path) >= sent - 100
        down.clear()
        assert sdk.flush(timeout=60)
        stats = sdk.stats()
        sdk.shutdown(timeout=10)
    assert stats.dropped == {}
    assert stats.written == stats.accepted == sent
    paths = Counter(event["path"] for event in site_events(pb, website.id))
    assert paths == Counter({f"/q/{n}": 1 for n in range(sent)})
    assert list(tmp_path.glob(f"*{SUFFIX}")) == []


def test_a_forked_child_spools_its_own_calls_and_leaves_the_parents_alone(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website, tmp_path: Path
) -> None:
    sdk = start_sdk(
        pocketbase,
        website,
        strict=False,
        spool_dir=tmp_path,
        batch=True,
        batch_interval=3600,
        max_batch_size=1000,
    )
    for n in range(3):  # journaled and held by the parent when the fork happens
        sdk.track_api_event(request_from("203.0.113.1"), page_view(website.domain, f"/parent/{n}"))
    wait_for(lambda: journaled(tmp_path) == 3, 10, "the parent's calls to be journaled")
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            for n in range(2):
                request = request_from("203.0.113.2")
                sdk.track_api_event(request, page_view(website.domain, f"/child/{n}"))
            ok = sdk.flush(timeout=15)
            stats = sdk.stats()
            sdk.shutdown(timeout=5)
            counts = (stats.accepted, stats.written, stats.recovered)
            code = 0 if ok and counts == (2, 2, {}) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sdk.flush(timeout=15)
    sdk.shutdown(timeout=5)
    paths = sorted(e["path"] for e in site_events(pb, website.id))
    assert paths == ["/child/0", "/child/1", "/parent/0", "/parent/1", "/parent/2"]
    assert list(tmp_path.glob(f"*{SUFFIX}")) == []
