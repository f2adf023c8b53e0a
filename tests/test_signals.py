"""SIGTERM as a normal exit (``_signals.py``), in fresh interpreters: the handler is installed
only over the default, only from the main thread, and behaves as the default when no SDK
is live."""

from __future__ import annotations

import signal
import subprocess
import sys

from skopos._signals import EXIT_CODE

_RUN = """
import atexit, os, signal, sys, threading, time
from skopos import _signals
live = {live}
{before}
print(_signals.install(lambda: live), flush=True)
atexit.register(lambda: print("atexit ran", flush=True))
{after}
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(5)
print("not stopped", flush=True)
"""


def run(live: bool, before: str = "", after: str = "") -> subprocess.CompletedProcess[str]:
    code = _RUN.format(live=live, before=before, after=after)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )


def test_sigterm_exits_normally_while_an_sdk_is_live() -> None:
    result = run(live=True)
    assert result.stdout.splitlines() == ["True", "atexit ran"]
    assert result.returncode == EXIT_CODE


def test_without_a_live_sdk_sigterm_is_the_default() -> None:
    result = run(live=False)
    assert result.stdout.splitlines() == ["True"]
    assert result.returncode == -signal.SIGTERM


def test_a_handler_of_the_host_is_never_replaced() -> None:
    result = run(
        live=True,
        before="signal.signal(signal.SIGTERM, lambda *a: (print('host handler'), sys.exit(3)))",
    )
    assert result.stdout.splitlines() == ["False", "host handler", "atexit ran"]
    assert result.returncode == 3


def test_only_the_main_thread_installs_it() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import threading; from skopos import _signals; out = [];"
            " t = threading.Thread(target=lambda: out.append(_signals.install(lambda: True)));"
            " t.start(); t.join(); print(out[0])",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.strip() == "False"
