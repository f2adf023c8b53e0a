"""The worker process (``worker_process=True``): the pipeline, sessionizer and writer,
off the host's GIL. Started by ``process.ProcessRuntime`` in an isolated interpreter
(``process.child_command``) that runs ``main``; not a public entry point.

Protocol (the frames of ``wire``): the host sends ``Options`` first, then ``Calls``,
``Flush`` and ``Stop``. This process answers ``Ready`` or ``Failed`` once, then ``Stats``
frames with what its ledger counted since the previous one, and ``Stopped``. It connects to
PocketBase in the background, like the in-process worker (``Options.wait``: before
answering). End of input (the host died) means: write what is queued, then exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections import Counter
from typing import Any

from skopos._config import SkoposOptions
from skopos._exceptions import ConfigurationError, PocketBaseError
from skopos._runtime import wire
from skopos._runtime.thread import ThreadRuntime
from skopos._tracking.activity import call_size

logger = logging.getLogger("skopos")

_REPORT_INTERVAL = 0.02
# Our priority below the host's: under CPU contention its requests come first, and the queue
# (or the spool) holds what we could not write meanwhile. bench/host_overhead.py --pin, uvicorn,
# the app alone on one core and this process beside the load generator on the other: tracked
# vs untracked requests/s 0.75 at the same priority, 0.87 at +10 (0.89 with SCHED_IDLE).
_NICENESS = 10
_ABSOLUTE = frozenset({"depth", "flush_completed"})  # reported as is, not as a change
_STOP_ON_HANGUP = 10.0  # seconds to finish writing when the host went away


class _Reporter:
    """Sends the ledger's changes to the host, ``_REPORT_INTERVAL`` apart."""

    def __init__(self, runtime: ThreadRuntime, fd: int) -> None:
        self._runtime = runtime
        self._fd = fd
        self._sent: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="skopos-reporter", daemon=True)

    def _current(self) -> dict[str, Any]:
        runtime = self._runtime
        ledger, hosts = runtime.ledger, runtime.collect_origin_hosts
        return {
            "acknowledged": ledger.acknowledged,
            "written": ledger.written,
            "dropped": dict(ledger.dropped),
            "dropped_items": dict(ledger.dropped_items),
            "records": dict(ledger.records),
            "retries": ledger.retries,
            "spooled": ledger.spooled,
            "recovered": dict(ledger.recovered),
            "recovered_expected": ledger.recovered_expected,
            "flush_completed": ledger.flush_completed,
            "spoofed": runtime.spoof_attempts,
            "anonymous": runtime.anonymous_calls,
            "connected": ledger.connected,
            "origin_hosts": None if hosts is None else sorted(hosts),
            "last_error": ledger.last_error,
            "last_error_at": ledger.last_error_at,
            "realtime": runtime.sites.realtime_connected,
            "depth": len(runtime.queue),
        }

    def report(self) -> None:
        with self._lock:
            now = self._current()
            error = self._runtime.internal_errors.take()  # strict mode only
            if now == self._sent and error is None:
                return
            delta: dict[str, Any] = {}
            for key, value in now.items():
                before = self._sent.get(key)
                if isinstance(value, dict):
                    changes = Counter(value)
                    changes.subtract(before or {})
                    delta[key] = {k: v for k, v in changes.items() if v}
                elif (
                    isinstance(value, int) and key not in _ABSOLUTE and not isinstance(value, bool)
                ):
                    delta[key] = value - (before or 0)
                else:
                    delta[key] = value
            delta["internal_error"] = repr(error) if error is not None else None
            self._sent = now
            wire.send(self._fd, wire.Stats(delta))

    def _run(self) -> None:
        while not self._stop.wait(_REPORT_INTERVAL):
            try:
                self.report()
            except OSError:
                return  # the host is gone

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(1.0)


def _start(options: SkoposOptions, *, wait: bool) -> ThreadRuntime:
    runtime = ThreadRuntime.open(options)
    if wait:
        runtime.connect()
    runtime.start()
    return runtime


def _serve(runtime: ThreadRuntime, inbox: int) -> float:
    """Take frames until ``Stop`` (its timeout) or end of input."""
    while True:
        frame = wire.receive(inbox)
        if frame is None:
            return _STOP_ON_HANGUP
        if isinstance(frame, wire.Calls):
            for item in frame.items:
                call = wire.call_from_wire(item)
                if isinstance(call, str):  # validated on the host, and dropped
                    runtime.ledger.ack_dropped(call)
                    continue
                while not runtime.queue.put(call, call_size(call)):  # full: hold the host back
                    runtime.worker.request_flush()
                    threading.Event().wait(0.005)
        elif isinstance(frame, wire.Flush):
            runtime.ledger.request_flush(frame.generation)  # the host's number, reported back
            runtime.worker.request_flush()
        elif isinstance(frame, wire.Stop):
            return frame.timeout


def main() -> int:
    """Run until the host says stop or goes away."""
    with contextlib.suppress(AttributeError, OSError):  # os.nice: Unix only
        os.nice(_NICENESS)
    # The host decides when we stop (end of input): a Ctrl-C or a SIGTERM sent to the
    # whole process group must not kill calls in flight.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inbox = sys.stdin.fileno()
    outbox = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt frames
    config = wire.receive(inbox)
    if not isinstance(config, wire.Options):
        return 1
    try:
        options = SkoposOptions(**{**config.values, "worker_process": False})
        runtime = _start(options, wait=config.wait)
    except (ConfigurationError, PocketBaseError) as exc:
        wire.send(outbox, wire.Failed(type(exc).__name__, str(exc)))
        return 1
    reporter = _Reporter(runtime, outbox)
    reporter.thread.start()
    wire.send(outbox, wire.Ready())
    timeout = _serve(runtime, inbox)
    runtime.stop(timeout)
    reporter.stop()
    try:
        reporter.report()
        wire.send(outbox, wire.Stopped())
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
