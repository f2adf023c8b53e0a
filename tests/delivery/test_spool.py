"""The spool: its journal format and bookkeeping on real files (no PocketBase), then against a
real PocketBase: killed hosts, deadlines, outages, lost answers.

Host processes are really killed with SIGKILL; what they journaled must land in
PocketBase exactly once when another process starts with the same ``spool_dir``.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from skopos import ConfigurationError, SkoposSDK
from skopos._admin.setup import Website
from skopos._delivery.spool import (
    MAX_LINE_BYTES,
    MAX_ORPHAN_BYTES,
    REJECTED_SUFFIX,
    SUFFIX,
    Spool,
    check_spool_dir,
    decode_line,
    encode_activity,
    encode_line,
    from_ranges,
    to_ranges,
)
from skopos._pocketbase.client import PocketBaseClient
from skopos._tracking.activity import Activity
from skopos._tracking.identity import derive_record_id
from skopos._tracking.ip_rules import IpBlacklist
from skopos._tracking.site_rules import SiteRules
from skopos._tracking.user_agent import ClientInfo
from tests._support.collect_scenario import assert_trace_landed as assert_collect_trace_landed
from tests._support.collect_scenario import trace as collect_trace
from tests._support.fault_proxy import FaultProxy
from tests._support.paths import ROOT, subprocess_env
from tests._support.pocketbase_server import PocketBaseServer, start_sdk
from tests._support.spool_trace import expected_errors, expected_events, send_trace
from tests._support.tracking_helpers import environ as request_from
from tests._support.tracking_helpers import page_view, records, site_events, site_sessions

SITE = SiteRules("site0000000000a", "track", "example.test", False, False, False, IpBlacklist(None))


def visitor(number: int) -> tuple[str, str]:
    """A visitor id as the hasher makes them, and its record id."""
    visitor_id = f"{number % 3:032x}"
    return visitor_id, derive_record_id("visitor", SITE.record_id, visitor_id)


def activity(number: int, kind: str = "pageView") -> Activity:
    return Activity(
        kind,  # type: ignore[arg-type]
        SITE,
        *visitor(number),
        1_700_000_000.0 + number,
        path=f"/p/{number}",
        url=f"https://example.test/p/{number}" if kind == "jsError" else "",
        referrer="https://other.test/x" if number % 2 else None,
        name="signup" if kind == "custom" else None,
        data={"n": number, "nested": {"ü": [1, 2.5, None]}} if kind == "custom" else None,
        client=ClientInfo("Chrome", "Linux", "desktop"),
        screen_width=1280,
        language="de-DE",
        error_message="boom ü" if kind == "jsError" else None,
        stack_trace="at f (a.js:1:2)" if kind == "jsError" else None,
    )


def never_committed(marker: str, token: str) -> bool:
    return False


def known(record_id: str, tracking_id: str) -> bool:
    return (record_id, tracking_id) == (SITE.record_id, SITE.tracking_id)


def kill(spool: Spool) -> None:
    """What SIGKILL does to a spool: its descriptors close, its locks go, nothing else."""
    spool.abandon()


def spool_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SUFFIX}"))


def test_line_round_trip_and_corruption() -> None:
    line = encode_line({"a": 1, "x": "é\ud800"})
    assert line.endswith(b"\n")
    assert decode_line(line[:-1]) == {"a": 1, "x": "é\ud800"}
    flipped = line[:-3] + (b"X" if line[-3:-2] != b"X" else b"Y") + line[-2:-1]
    assert decode_line(flipped) is None
    assert decode_line(line[:20]) is None
    assert decode_line(b"") is None
    assert decode_line(b"zzzzzzzz {}") is None


def test_ranges_round_trip() -> None:
    seqs = [5, 1, 2, 3, 9, 10, 2]
    flat = to_ranges(seqs)
    assert flat == [1, 4, 5, 6, 9, 11]
    assert list(from_ranges(flat)) == [1, 2, 3, 5, 9, 10]
    assert list(from_ranges("junk")) == []
    assert list(from_ranges([1])) == []


def test_journaled_activities_read_back_equal_and_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    originals = [activity(n, kind) for n, kind in enumerate(["pageView", "custom", "jsError"] * 3)]
    assert spool.journal(originals) == ([], [])
    assert spool.backlog == 9
    back = spool.read_back(4) + spool.read_back(100)
    assert spool.backlog == 0
    for original, copy in zip(originals, back, strict=True):
        assert copy.spool_ref is not None
        assert not copy.recovered
        assert (copy.site.record_id, copy.site.domain) == (SITE.record_id, SITE.domain)
        original.spool_ref, original.site = copy.spool_ref, copy.site
        assert copy == original
    spool.acknowledge([a.spool_ref for a in back if a.spool_ref])
    assert spool.own_outstanding == 0
    spool.close()
    assert spool_files(tmp_path) == []


def test_what_the_official_client_script_reports_survives_the_journal(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    crumbs = [
        {"type": "click", "message": "button#buy", "timestamp": 1_767_225_600_000, "data": None}
    ]
    failure = activity(1, "jsError")
    failure.occurrences, failure.breadcrumbs = 7, crumbs
    page = activity(2)
    page.device_pixel_ratio, page.connection_type, page.script_version = "2.625", "4g", "1.3.0"
    assert spool.journal([failure, page]) == ([], [])
    back = spool.read_back(10)
    assert [(a.occurrences, a.breadcrumbs) for a in back] == [(7, crumbs), (1, None)]
    assert (back[1].device_pixel_ratio, back[1].connection_type, back[1].script_version) == (
        "2.625",
        "4g",
        "1.3.0",
    )
    spool.close()


def test_a_dead_processs_unacknowledged_activities_are_replayed_once(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20)
    first.journal([activity(n) for n in range(6)])
    taken = first.read_back(10)
    first.acknowledge([a.spool_ref for a in taken[:2] if a.spool_ref])
    kill(first)

    second = Spool(tmp_path, max_bytes=1 << 20)
    assert second.claim_orphans(never_committed, known) == 4
    replayed = second.read_back(100)
    assert [a.path for a in replayed] == [f"/p/{n}" for n in range(2, 6)]
    assert all(a.recovered for a in replayed)
    assert [a.record_id for a in replayed] == [a.record_id for a in taken[2:]]
    second.acknowledge([a.spool_ref for a in replayed[:1] if a.spool_ref])
    kill(second)

    third = Spool(tmp_path, max_bytes=1 << 20)
    assert third.claim_orphans(never_committed, known) == 3  # acks written by a replayer count
    again = third.read_back(100)
    third.acknowledge([a.spool_ref for a in again if a.spool_ref])
    assert spool_files(tmp_path) == []  # finished: deleted at once
    third.close()


def test_a_live_processs_segments_are_left_alone(tmp_path: Path) -> None:
    alive = Spool(tmp_path, max_bytes=1 << 20)
    alive.journal([activity(1)])
    other = Spool(tmp_path, max_bytes=1 << 20)
    assert other.claim_orphans(never_committed, known) == 0
    assert alive.read_back(10)[0].path == "/p/1"
    alive.close()
    other.close()


def test_a_transaction_in_doubt_is_settled_by_its_commit_marker(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20)
    first.journal([activity(n, "jsError") for n in range(4)])
    taken = first.read_back(10)
    refs = [a.spool_ref for a in taken if a.spool_ref]
    first.prepared("marker000000001", "token-committed", refs[:3])
    first.acknowledge(refs[:1])
    kill(first)

    asked: list[tuple[str, str]] = []

    def committed(marker: str, token: str) -> bool:
        asked.append((marker, token))
        return token == "token-committed"

    second = Spool(tmp_path, max_bytes=1 << 20)
    assert second.claim_orphans(committed, known) == 1  # seqs 1 and 2 committed, 3 never sent
    assert asked == [("marker000000001", "token-committed")]
    assert [a.path for a in second.read_back(10)] == ["/p/3"]
    kill(second)

    third = Spool(tmp_path, max_bytes=1 << 20)
    assert third.claim_orphans(lambda m, t: pytest.fail("settled already"), known) == 1
    third.close()


def test_a_failing_commit_check_postpones_the_claim(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20)
    first.journal([activity(1)])
    first.prepared("m", "t", [a.spool_ref for a in first.read_back(1) if a.spool_ref])
    kill(first)

    def unreachable(marker: str, token: str) -> bool:
        raise ConnectionError("PocketBase is down")

    second = Spool(tmp_path, max_bytes=1 << 20)
    with pytest.raises(ConnectionError):
        second.claim_orphans(unreachable, known)
    assert second.claim_orphans(never_committed, known) == 1  # released, claimed again later
    second.close()


def test_a_torn_tail_and_a_corrupt_line_are_skipped(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20)
    first.journal([activity(n) for n in range(3)])
    kill(first)
    (path,) = spool_files(tmp_path)
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1][:40] + b"#" + lines[1][41:]  # corrupt the second activity
    path.write_bytes(b"\n".join(lines[:3]) + b"\n" + b'0000abcd {"a":99,"y":"pageV')

    second = Spool(tmp_path, max_bytes=1 << 20)
    assert second.claim_orphans(never_committed, known) == 2
    assert not path.read_bytes().endswith(b"pageV")  # truncated to whole lines
    back = second.read_back(10)
    assert [a.path for a in back] == ["/p/0", "/p/2"]
    second.acknowledge([a.spool_ref for a in back if a.spool_ref])
    assert spool_files(tmp_path) == []
    second.close()


def test_segments_rotate_and_a_full_spool_refuses(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=8_000, segment_bytes=1_000)
    refused = spool.journal([activity(n) for n in range(5)]).full
    refused += spool.journal([activity(n) for n in range(5, 40)]).full
    assert refused  # past max_bytes
    assert spool.total_bytes <= 8_000
    kept = 40 - len(refused)
    assert len(spool_files(tmp_path)) >= 2
    back: list[Activity] = []
    while spool.backlog:
        back += spool.read_back(3)
    assert len(back) == kept
    spool.acknowledge([a.spool_ref for a in back if a.spool_ref])
    spool.journal([activity(99)])  # rotation removes finished segments
    spool.acknowledge([a.spool_ref for a in spool.read_back(1) if a.spool_ref])
    spool.close()
    assert spool_files(tmp_path) == []


def test_what_json_cannot_encode_is_given_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    odd = activity(1, "custom")
    odd.data = {"x": object()}
    full, unencodable = spool.journal([activity(0), odd, activity(2)])
    assert (full, unencodable) == ([], [odd])
    assert [a.path for a in spool.read_back(10)] == ["/p/0", "/p/2"]
    spool.close()


def test_close_keeps_what_is_unacknowledged(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.journal([activity(n) for n in range(3)])
    assert spool.own_outstanding == 3
    spool.close()
    assert len(spool_files(tmp_path)) == 1
    later = Spool(tmp_path, max_bytes=1 << 20)
    assert later.claim_orphans(never_committed, known) == 3
    later.close()


def test_stale_temporary_files_of_dead_creators_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / ".deadbeef-000001.new"
    stale.write_bytes(b"")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / ".cafe-000001.new"
    fresh.write_bytes(b"")
    Spool(tmp_path, max_bytes=1 << 20).claim_orphans(never_committed, known)
    assert not stale.exists()
    assert fresh.exists()


# -- what is found in spool_dir is not trusted ----------------------------------------------


def test_spool_dir_is_made_private_and_must_be_ours(tmp_path: Path) -> None:
    fresh = tmp_path / "new" / "spool"
    check_spool_dir(fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone could plant segments there
    with pytest.raises(ConfigurationError, match="writable by its group or others"):
        check_spool_dir(shared)
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, os.geteuid() + 1, -1)
    with pytest.raises(ConfigurationError, match="belongs to another user"):
        check_spool_dir(foreign)
    a_file = tmp_path / "file"
    a_file.write_bytes(b"")
    with pytest.raises(ConfigurationError, match="not a directory"):
        check_spool_dir(a_file)


def test_a_planted_symlink_is_never_followed(tmp_path: Path) -> None:
    # Replaying an orphan truncates a torn last line: through a symlink, the target was
    # truncated (a file without a final newline: to 0 bytes).
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious data without a final newline")
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    planted = spool_dir / f"deadbeef-000001{SUFFIX}"
    planted.symlink_to(victim)
    spool = Spool(spool_dir, max_bytes=1 << 20)
    assert spool.claim_orphans(never_committed, known) == 0
    spool.close()
    assert victim.read_bytes() == b"precious data without a final newline"
    assert not planted.is_symlink()  # set aside, never looked at again
    assert (spool_dir / f"deadbeef-000001{SUFFIX}{REJECTED_SUFFIX}").is_symlink()


def test_a_planted_fifo_never_blocks(tmp_path: Path) -> None:
    # A FIFO named like a dead creator's temporary file made init block for good.
    stale = tmp_path / ".deadbeef-000001.new"
    os.mkfifo(stale)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.mkfifo(tmp_path / f"cafe-000001{SUFFIX}")
    (tmp_path / f"dir{SUFFIX}").mkdir()
    done = threading.Event()

    def replay() -> None:
        Spool(tmp_path, max_bytes=1 << 20).claim_orphans(never_committed, known)
        done.set()

    threading.Thread(target=replay, daemon=True).start()
    assert done.wait(10), "claim_orphans blocked on a FIFO"


def plant(directory: Path, records: list[dict[str, object]]) -> Path:
    """A segment file of ``records``, valid CRCs, as a dead process would have left it."""
    path = directory / f"0123456789ab-000001{SUFFIX}"
    path.write_bytes(b"".join(encode_line(record) for record in records))
    return path


def journal_record(number: int, **fields: object) -> dict[str, object]:
    record = encode_activity(number, activity(number))
    record.update(fields)
    return record


@pytest.mark.parametrize(
    "bad",
    [
        {"at": float("nan")},
        {"at": float("inf")},
        {"at": 32503680000.0},  # the year 3000
        {"y": "identify", "d": {"userId": "x", "website": "other0000000000"}},
        {"vr": "attackerchosen1"},  # not derived from the visitor id
        {"v": "../../etc"},
        {"id": "x" * 300},
        {"s": ["other0000000000", "track", None]},  # a website PocketBase does not know
        {"d": {"n": "x" * 100_000}, "y": "custom", "n": "big"},
        {"ip": "not an address"},
        {"w": -5},
        {"c": ["Chrome", "Linux", "x" * 5000]},
        {"y": "teleport"},
        {"cc": "Freedonia"},
        {"an": "yes"},
        {"pv": "0" * 32, "pvr": "attackerchosen1"},  # yesterday's id, record not derived
        {"oc": 10**9, "y": "jsError", "em": "boom"},  # one line counting a billion errors
        {"bc": [{"type": "x" * 5000, "message": None, "timestamp": None, "data": None}]},
        {"bc": [{"type": "click"}] * 11},
        {"dpr": "1e308"},
        {"cn": "<script>"},
    ],
)
def test_a_bad_record_in_a_segment_is_skipped_and_the_rest_replayed(
    tmp_path: Path, bad: dict[str, object]
) -> None:
    plant(tmp_path, [journal_record(0), journal_record(1, **bad), journal_record(2)])
    spool = Spool(tmp_path, max_bytes=1 << 20)
    found = spool.claim_orphans(never_committed, known)
    back = spool.read_back(10)
    assert [a.path for a in back] == ["/p/0", "/p/2"]
    refused = spool.take_refused()
    _, unreadable = spool.take_unreadable()
    assert found + refused == 3
    assert refused + unreadable == 1
    spool.acknowledge([a.spool_ref for a in back if a.spool_ref])
    spool.close()
    assert spool_files(tmp_path) == []


def test_what_a_segment_can_make_us_allocate_is_bounded(tmp_path: Path) -> None:
    # 43 bytes acknowledging a million seqs took 134 MiB: acknowledgements are clipped to
    # the activities the segment holds.
    plant(tmp_path, [{"k": [0, 1 << 20] * 2}, {"p": [0, 1 << 20], "m": "m", "t": "t"}])
    tracemalloc.start()
    try:
        spool = Spool(tmp_path, max_bytes=1 << 20)
        assert spool.claim_orphans(never_committed, known) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    spool.close()
    assert peak < 2 << 20, f"{peak / 2**20:.1f} MiB to read a {43}-byte segment"
    # Lines longer than any we write, or a segment bigger than any we write: set aside.
    (tmp_path / f"aa-000001{SUFFIX}").write_bytes(b"x" * (MAX_LINE_BYTES + 10) + b"\n")
    big = tmp_path / f"bb-000001{SUFFIX}"
    with big.open("wb") as handle:
        handle.truncate(MAX_ORPHAN_BYTES + 1)
    spool = Spool(tmp_path, max_bytes=1 << 20)
    assert spool.claim_orphans(never_committed, known) == 0
    spool.close()
    assert sorted(p.name for p in tmp_path.glob(f"*{REJECTED_SUFFIX}")) == [
        f"aa-000001{SUFFIX}{REJECTED_SUFFIX}",
        f"bb-000001{SUFFIX}{REJECTED_SUFFIX}",
    ]


def test_the_journal_keeps_only_what_pocketbase_stores(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    page = activity(1)
    page.url = "https://example.test/reset?token=secret-token"
    page.referrer = "https://other.test/x"  # as the pipeline keeps it: no query
    error = activity(2, "jsError")
    spool.journal([page, error])
    journal = b"".join(path.read_bytes() for path in spool_files(tmp_path))
    assert b"secret-token" not in journal
    assert b"https://example.test/p/2" in journal  # JS error records keep their page URL
    spool.close()


# -- against a real PocketBase ----------------------------------------------------------------


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


@pytest.mark.pocketbase
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


@pytest.mark.pocketbase
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


@pytest.mark.pocketbase
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


@pytest.mark.pocketbase
def test_collect_calls_spooled_at_the_deadline_count_once_and_land_at_the_next_start(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website, tmp_path: Path
) -> None:
    # A /collect call is one call however many events it became: spooled once, written once.
    sent = collect_trace(website.tracking_id, website.domain, 90)
    with FaultProxy(pocketbase.url, batches_fail) as proxy:
        sdk = start_sdk(pocketbase, website, url=proxy.url, spool_dir=tmp_path)
        for request, body in sent.calls:
            sdk.track_collect(request, body)
        sdk.shutdown(timeout=1.5)
        stats = sdk.stats()
    assert (stats.accepted, stats.written, stats.dropped) == (90, 0, {})
    assert stats.spooled == 90
    assert journaled(tmp_path) == sent.activities

    sdk = restarted_sdk(pocketbase, website, tmp_path)
    assert sdk.flush(timeout=60)
    assert sdk.stats().recovered == {"written": sent.activities}  # replayed as activities
    sdk.shutdown(timeout=10)
    assert_collect_trace_landed(pb, website.id, sent)


@pytest.mark.pocketbase
def test_collect_calls_read_back_from_the_spool_are_acknowledged_once_each(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website, tmp_path: Path
) -> None:
    # Through an outage the journal is the queue: the events of one call are read back and
    # written in different batches, and the call is written when its last one is.
    down = threading.Event()
    down.set()

    def plan(method: str, path: str, number: int) -> str:
        return "error" if down.is_set() and path == "/api/batch" else "pass"

    sent = collect_trace(website.tracking_id, website.domain, 300)
    with FaultProxy(pocketbase.url, plan) as proxy:
        sdk = start_sdk(pocketbase, website, url=proxy.url, spool_dir=tmp_path, max_batch_size=7)
        for request, body in sent.calls:
            sdk.track_collect(request, body)
        wait_for(lambda: proxy.actions["error"] >= 2, 30, "a refused write")
        assert not sdk.flush(timeout=0.5)
        pending = sdk.stats()
        assert pending.written + sum(pending.dropped.values()) == 0
        down.clear()
        assert sdk.flush(timeout=60)
        stats = sdk.stats()
        sdk.shutdown(timeout=10)
    assert (stats.accepted, stats.written, stats.dropped, stats.spooled) == (300, 300, {}, 0)
    assert_collect_trace_landed(pb, website.id, sent)
    assert list(tmp_path.glob(f"*{SUFFIX}")) == []


@pytest.mark.pocketbase
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


@pytest.mark.pocketbase
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


@pytest.mark.pocketbase
def test_a_hostile_segment_never_stops_real_writes(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website, tmp_path: Path
) -> None:
    # One valid-CRC line with "at": NaN stopped every write (flush False, 0 of 5 written);
    # a planted identify line upserted a visitor of the attacker's choosing.
    site = [website.id, website.tracking_id, website.domain]
    visitor_id = "f" * 32
    visitor_record = derive_record_id("visitor", website.id, visitor_id)
    planted = {"y": "pageView", "s": site, "v": visitor_id, "vr": visitor_record, "p": "/nan"}
    plant(
        tmp_path,
        [
            {"a": 0, **planted, "at": float("nan"), "id": "nan000000000000"},
            {
                "a": 1,
                "y": "identify",
                "s": site,
                "v": "attacker",
                "vr": "attackerchosen1",
                "at": time.time(),
                "id": "ident0000000000",
                "d": {"userId": "owned", "name": "Mallory"},
            },
            {"a": 2, **planted, "at": time.time(), "id": "fine00000000000", "p": "/replayed"},
        ],
    )
    sdk = start_sdk(pocketbase, website, spool_dir=tmp_path)
    try:
        for n in range(5):
            sdk.track_api_event(request_from(f"198.51.100.{n}"), page_view(website.domain, f"/{n}"))
        assert sdk.flush(timeout=30)
        stats = sdk.stats()
    finally:
        sdk.shutdown(timeout=10)
    assert stats.written == 5
    assert stats.recovered == {"written": 1, "spool_corrupt": 2}
    paths = sorted(e["path"] for e in site_events(pb, website.id))
    assert paths == ["/0", "/1", "/2", "/3", "/4", "/replayed"]
    assert records(pb, "visitors", userId="owned") == []
