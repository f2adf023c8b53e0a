"""The in-process runtime (a worker thread) across fork(), against a real PocketBase: a child
rebuilds its own (``Runtime.for_child``) under os.fork() and gunicorn --preload. The worker
process runtime's fork is tested in ``test_process.py``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from skopos._admin.embedded import free_port
from skopos._admin.setup import Website
from skopos._pocketbase.client import PocketBaseClient
from tests._support.paths import subprocess_env
from tests._support.pocketbase_server import PocketBaseServer, start_sdk
from tests._support.tracking_helpers import CHROME, environ, page_view, site_events

pytestmark = pytest.mark.pocketbase


def test_a_forked_child_sends_its_own_calls_and_not_the_parents(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website
) -> None:
    sdk = start_sdk(
        pocketbase, website, strict=False, batch=True, batch_interval=3600, max_batch_size=1000
    )
    for n in range(3):  # held by the parent's worker when the fork happens
        sdk.track_api_event(environ("203.0.113.1"), page_view(website.domain, f"/parent/{n}"))
    time.sleep(0.3)
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            for n in range(2):
                sdk.track_api_event(
                    environ("203.0.113.2"), page_view(website.domain, f"/child/{n}")
                )
            ok = sdk.flush(timeout=15)
            stats = sdk.stats()
            sdk.shutdown(timeout=5)
            code = 0 if ok and (stats.accepted, stats.written) == (2, 2) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sdk.flush(timeout=15)
    sdk.shutdown(timeout=5)
    paths = sorted(e["path"] for e in site_events(pb, website.id))
    assert paths == ["/child/0", "/child/1", "/parent/0", "/parent/1", "/parent/2"]


def test_gunicorn_preload_with_four_workers_delivers_every_event(
    pocketbase: PocketBaseServer, pb: PocketBaseClient, website: Website, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "gunicorn.conf.py"
    config.write_text("from tests._support.gunicorn_app import worker_exit  # noqa: F401\n")
    env = subprocess_env(
        SKOPOS_POCKETBASE_URL=pocketbase.url,
        SKOPOS_SITE_ID=website.tracking_id,
        SKOPOS_ADMIN_EMAIL=pocketbase.email,
        SKOPOS_ADMIN_PASSWORD=pocketbase.password,
        SKOPOS_TRUSTED_PROXIES="127.0.0.1",  # the test client names its visitors
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--preload",
            "-w",
            "4",
            "-c",
            str(config),
            "-b",
            f"127.0.0.1:{port}",
            "tests._support.gunicorn_app:app",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/skopos.js", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        total = 200
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for n in range(total):
                body = json.dumps(page_view(website.domain, f"/g/{n}"))
                headers = {
                    "User-Agent": CHROME,
                    "Accept-Language": "en",
                    "Content-Type": "text/plain",
                    "X-Forwarded-For": f"198.51.100.{n % 50 + 1}",
                    "Connection": "close",  # spread requests over the workers
                }
                assert client.post("/api/event", content=body, headers=headers).status_code == 204
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr.decode()[-2000:]
    workers = {line for line in stderr.decode().splitlines() if "Booting worker with pid" in line}
    assert len(workers) == 4
    paths = [e["path"] for e in site_events(pb, website.id)]
    assert sorted(paths) == sorted(f"/g/{n}" for n in range(total)), stderr.decode()[-4000:]
