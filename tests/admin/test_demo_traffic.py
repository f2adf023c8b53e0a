"""Simulated visitors (``traffic.py``) and ``skopos demo --traffic``, run as a user runs it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from skopos._admin.cli import DEMO_EMAIL, DEMO_PASSWORD
from skopos._admin.embedded import EmbeddedPocketBase, free_port
from skopos._admin.traffic import plan_traffic
from skopos._tracking.bots import BotDetector, RequestSignals

ROOT = Path(__file__).resolve().parents[2]
SKOPOS = [sys.executable, "-m", "skopos"]


def test_the_plan_is_seeded_and_adds_up() -> None:
    first = plan_traffic(300, page_url="http://127.0.0.1:8000", seed=5)
    again = plan_traffic(300, page_url="http://127.0.0.1:8000", seed=5)
    assert first == again
    expected = first.expected
    humans = [v for v in first.visitors if v.human]
    assert expected.bots == 300 - len(humans)
    assert 10 <= expected.bots <= 60  # about 10%
    assert expected.sessions == sum(len(v.sessions) for v in humans)
    assert expected.returning_visitors == sum(len(v.sessions) - 1 for v in humans) > 0
    assert sum(expected.entry_pages.values()) == sum(expected.exit_pages.values())
    assert sum(expected.entry_pages.values()) == expected.sessions
    assert sum(expected.top_pages.values()) == expected.page_views
    payloads = [r.payload for v in humans for s in v.sessions for r in s]
    kinds = Counter(p["type"] for p in payloads)
    assert kinds["pageView"] == expected.page_views
    assert kinds["jsError"] == expected.js_errors > 0
    exits = [p for p in payloads if p.get("name") == "exit"]
    assert exits
    assert all(p["type"] == "custom" for p in exits)
    assert all(isinstance(p["customData"]["duration"], int) for p in exits)
    assert 0 < expected.bounced_sessions < expected.sessions


def test_humans_pass_the_sdks_bot_filter_and_bots_do_not() -> None:
    plan = plan_traffic(200, page_url="http://127.0.0.1:8000", seed=2)
    detector = BotDetector()
    for visitor in plan.visitors:
        headers = visitor.headers
        verdict = detector.verdict(
            RequestSignals(
                headers["User-Agent"],
                accept_language=headers.get("Accept-Language"),
                sec_fetch_mode=headers.get("Sec-Fetch-Mode"),
                sec_ch_ua=headers.get("Sec-CH-UA"),
            )
        )
        assert verdict.is_bot is not visitor.human, headers["User-Agent"]
        if visitor.human and "Chrome/" in headers["User-Agent"]:
            assert "Sec-CH-UA" in headers
    addresses = [v.headers["X-Forwarded-For"] for v in plan.visitors]
    assert len(set(addresses)) == len(addresses)
    assert all(a.startswith("198.18.") for a in addresses)  # RFC 2544: never routed


def comparison(out: str) -> dict[str, tuple[int, int]]:
    """The demo's "sent vs report" lines: name -> (sent, report)."""
    rows = re.findall(r"^  ([a-z ]+?)\s+(\d+)\s+(\d+)  (ok|DIFFERENT)$", out, re.MULTILINE)
    return {name: (int(sent), int(read)) for name, sent, read, _ in rows}


@pytest.mark.pocketbase
def test_demo_traffic_prints_numbers_that_equal_the_report(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [
            *SKOPOS,
            "demo",
            "--traffic",
            "200",
            "--once",
            "--dir",
            str(tmp_path),
            "--port",
            str(free_port()),
            "--app",
            str(ROOT / "examples" / "fastapi_app" / "app.py"),
            "--app-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    rows = comparison(out)
    assert set(rows) >= {"sessions", "page views", "bounced sessions", "js errors"}
    for name, (sent, read) in rows.items():
        assert sent == read, (name, sent, read)
    assert "DIFFERENT" not in out
    assert "filtered out by the SDK" in out
    assert "Top pages" in out
    assert "skopos report --site" in out
    assert elapsed < 120, f"the 200-visitor demo took {elapsed:.0f} s"

    # The same numbers from `skopos report --json` on the data the demo left behind.
    tracking_id = re.search(r"tracking id: (\w+)", out)
    assert tracking_id is not None
    with EmbeddedPocketBase(
        tmp_path / "pb_data", email=DEMO_EMAIL, password=DEMO_PASSWORD, port=free_port()
    ) as server:
        report = subprocess.run(
            [
                *SKOPOS,
                "report",
                "--url",
                server.url,
                "--site",
                tracking_id.group(1),
                "--last",
                "24h",
                "--json",
                "--limit",
                "0",
            ],
            env={
                "PATH": "/usr/bin:/bin",
                "SKOPOS_ADMIN_EMAIL": DEMO_EMAIL,
                "SKOPOS_ADMIN_PASSWORD": DEMO_PASSWORD,
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    data = json.loads(report.stdout)
    assert rows["sessions"][1] == data["sessions"]
    assert rows["distinct visitors"][1] == data["distinct_visitors"]
    assert rows["new visitors"][1] == data["new_visitors"]
    assert rows["returning visitors"][1] == data["returning_visitors"]
    assert rows["page views"][1] == data["page_views"]
    assert rows["bounced sessions"][1] == data["bounced_sessions"]
    assert rows["engaged sessions"][1] == data["engaged_sessions"]
    assert rows["js errors"][1] == data["js_errors"]
    assert not any("bot" in row["key"].lower() for row in data["browsers"])


@pytest.mark.pocketbase
def test_demo_without_traffic_prints_the_report_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [*SKOPOS, "demo", "--once", "--dir", str(tmp_path), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    command = re.search(
        r"^  (SKOPOS_POCKETBASE_URL=\S+ .*skopos report --site \w+ .*)$",
        result.stdout,
        re.MULTILINE,
    )
    assert command is not None, result.stdout
    assert f"SKOPOS_ADMIN_EMAIL={DEMO_EMAIL}" in command.group(1)
