"""The host half of ``worker_process=True``: the queue here, the work in a child process.

In-process, the worker's CPU (~20-100 µs an event) competes with the host's
request threads for the GIL. With a worker process the host keeps only the
request path (a capture and a put) and a feeder thread that ships calls as
marshal frames over a pipe (captures cross undecoded, trimmed to the headers the
worker reads: ~1.4 µs an event in a loop, 4-9 µs of the host's CPU in a busy
uvicorn, bench/host_overhead.py); decoding, validation, filtering, hashing,
sessionizing and PocketBase run in ``skopos._runtime.child``, on another core,
at a lower priority than the host (nice +10).
The child reports what its ledger counted, and this side's ``Ledger`` adds it
up, so ``flush`` and ``stats`` work as in-process.

A full pipe blocks the feeder, the queue then fills and new calls are dropped as
``queue_full``: memory stays bounded on both sides. If the child dies, what it
had been given and not acknowledged is counted as ``worker_exited`` (with a
``spool_dir`` it is replayed by the next one) and a new child is started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from skopos._config import SkoposOptions
from skopos._exceptions import ConfigurationError, PocketBaseError
from skopos._queue import POLL_AFTER_CALLS, TAKE_AT_ONCE, WorkQueue
from skopos._runtime import wire
from skopos._runtime.base import keep_inherited
from skopos._stats import DropReason, InternalErrors, Ledger
from skopos._tracking.activity import TrackCall

__all__ = ["ProcessRuntime"]

logger = logging.getLogger("skopos")

_LINGER = 0.02  # the feeder waits this long for company before shipping a frame
_READY_TIMEOUT = 60.0


class _Child:
    """One worker process and the two pipe ends we hold."""

    def __init__(self, options: SkoposOptions) -> None:
        # The child imports this very copy of skopos, wherever the host found it.
        package_root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "skopos._runtime.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            close_fds=True,
            env={**os.environ, "PYTHONPATH": path},
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.inbox = self.process.stdin.fileno()  # we write, it reads
        self.outbox = self.process.stdout.fileno()  # it writes, we read
        self.given = 0  # calls shipped to it
        self.acknowledged = 0  # of those, acknowledged by it
        self.depth = 0
        self.feeder: threading.Thread | None = None
        wire.send(self.inbox, wire.Options(dataclasses.asdict(options)))

    def abandon(self) -> None:
        """In a forked host: close the inherited pipe ends without touching the child (the
        parent's), or waiting for a feeder (the parent's thread, absent here)."""
        for fd in (self.inbox, self.outbox):
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        """Close our pipe ends, once the child is gone and the feeder is done with them."""
        if self.feeder is not None and self.feeder is not threading.current_thread():
            self.feeder.join(5.0)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class ProcessWorker:
    """The feeder and reader threads, with the in-process ``Worker``'s control surface."""

    def __init__(
        self,
        options: SkoposOptions,
        queue: WorkQueue[TrackCall],
        ledger: Ledger,
        errors: InternalErrors,
    ) -> None:
        self._options = options
        self._queue = queue
        self._ledger = ledger
        self._errors = errors
        self._child: _Child | None = None
        self._feeder: threading.Thread | None = None
        self._flush = threading.Event()
        self._stop = threading.Event()
        self._stop_timeout = 10.0
        self._lock = threading.Lock()
        self.spoof_attempts = 0
        self.anonymous_calls = 0
        self.realtime_connected = False
        # Read on every tracking call: a flag, where ``alive`` would poll the process.
        self.running = False

    @property
    def alive(self) -> bool:
        """Whether the feeder and the child are running."""
        child = self._child
        feeder = self._feeder
        return (
            child is not None
            and child.process.poll() is None
            and feeder is not None
            and feeder.is_alive()
        )

    @property
    def child_depth(self) -> int:
        """Calls queued in the child, not yet taken by its worker."""
        child = self._child
        return child.depth if child is not None else 0

    def start(self) -> None:
        """Start the child (waiting until it is ready) and the threads; idempotent.

        Raises ``ConfigurationError`` or ``PocketBaseError`` with the child's reason.
        """
        with self._lock:
            if self.alive or self._stop.is_set():
                return
            self._retire()
            child = _Child(self._options)
            answer = self._await_ready(child)
            if isinstance(answer, wire.Failed):
                child.process.wait(5)
                child.close()
                if answer.kind == "ConfigurationError":
                    raise ConfigurationError(answer.message)
                raise PocketBaseError(f"the worker process could not start: {answer.message}")
            self._child = child
            threading.Thread(target=self._read, args=(child,), daemon=True).start()
            self._feeder = threading.Thread(target=self._feed, name="skopos-feeder", daemon=True)
            child.feeder = self._feeder
            self._feeder.start()
            self.running = True

    def _await_ready(self, child: _Child) -> wire.Ready | wire.Failed:
        result: list[object] = []
        reader = threading.Thread(target=lambda: result.append(wire.receive(child.outbox)))
        reader.start()
        reader.join(_READY_TIMEOUT)
        answer = result[0] if result else None
        if isinstance(answer, (wire.Ready, wire.Failed)):
            return answer
        child.process.kill()
        child.process.wait(5)
        child.close()
        return wire.Failed("PocketBaseError", "no answer from the worker process")

    def _retire(self) -> None:
        """Account for a child that died: what it held and had not acknowledged is lost."""
        child, self._child = self._child, None
        if child is None:
            return
        lost = child.given - child.acknowledged
        if lost > 0:
            logger.error("skopos: the worker process exited; %d tracking calls lost", lost)
            self._ledger.ack_dropped(DropReason.WORKER_EXITED, lost)
            child.acknowledged = child.given

    def abandon(self) -> None:
        """In a forked host: let go of the parent's worker process without touching it."""
        child = self._child
        if child is not None:
            child.abandon()

    def request_flush(self) -> None:
        """Ship everything and have the child write it now."""
        self._flush.set()
        self._queue.wake()

    def stop(self, timeout: float) -> None:
        """Ship what is queued, let the child write for ``timeout`` s, then end it."""
        self._stop_timeout = timeout
        self._stop.set()
        self._queue.wake()
        feeder, child = self._feeder, self._child
        if feeder is not None:
            feeder.join(timeout + 1.0)
        if child is not None:
            try:
                child.process.wait(timeout + 3.0)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait(5)

    def _feed(self) -> None:
        child = self._child
        assert child is not None
        try:
            self._ship(child)
        finally:
            self.running = False

    def _ship(self, child: _Child) -> None:
        last_calls = time.monotonic() - POLL_AFTER_CALLS
        try:
            while True:
                stopping = self._stop.is_set()
                if stopping:
                    calls = self._queue.take(TAKE_AT_ONCE, 0.0)
                elif time.monotonic() - last_calls < POLL_AFTER_CALLS:
                    # Polling: a burst gathers into one frame, no call pays for waking us.
                    calls = self._queue.take(TAKE_AT_ONCE, _LINGER, wake_at=TAKE_AT_ONCE)
                else:
                    calls = self._queue.take(TAKE_AT_ONCE, 1.0)
                    if calls and not self._flush.is_set():
                        time.sleep(_LINGER)  # let a burst gather into one frame
                        calls += self._queue.take(TAKE_AT_ONCE - len(calls), 0.0)
                if calls:
                    last_calls = time.monotonic()
                    wire.send_encoded(child.inbox, wire.calls_frame(calls))
                    child.given += len(calls)
                if self._flush.is_set() and not len(self._queue):
                    self._flush.clear()
                    wire.send(child.inbox, wire.Flush(self._ledger.flush_requested))
                if stopping and not len(self._queue):
                    wire.send(child.inbox, wire.Stop(self._stop_timeout))
                    return
        except OSError:
            logger.error("skopos: the worker process went away")
        except Exception as exc:  # never let the feeder die silently
            logger.exception("skopos: internal error in the feeder")
            self._errors.note(exc)

    def _read(self, child: _Child) -> None:
        while True:
            try:
                frame = wire.receive(child.outbox)
            except OSError:
                frame = None
            if frame is None or isinstance(frame, wire.Stopped):
                break
            if isinstance(frame, wire.Stats):
                self._apply(child, frame.delta)
        self.running = False
        child.process.wait()
        child.close()
        with self._lock:
            if self._child is child and not self._stop.is_set():
                self._retire()
            elif child.given > child.acknowledged and self._stop.is_set():
                self._ledger.ack_dropped(
                    DropReason.UNDELIVERED_AT_SHUTDOWN, child.given - child.acknowledged
                )
                child.acknowledged = child.given

    def _apply(self, child: _Child, delta: dict[str, Any]) -> None:
        child.acknowledged += delta.get("acknowledged", 0)
        child.depth = delta.get("depth", 0)
        self.spoof_attempts += delta.get("spoofed", 0)
        self.anonymous_calls += delta.get("anonymous", 0)
        self.realtime_connected = bool(delta.get("realtime"))
        if delta.get("internal_error"):  # the child noted it in its ledger already
            self._errors.keep(RuntimeError(f"in the worker process: {delta['internal_error']}"))
        self._ledger.merge(delta)


class ProcessRuntime:
    """The runtime of ``worker_process=True``: the queue here, the worker in a child process."""

    def __init__(self, options: SkoposOptions) -> None:
        self.pid = os.getpid()
        self.options = options
        self.ledger = Ledger()
        self.internal_errors = InternalErrors(self.ledger, strict=options.strict)
        self.queue: WorkQueue[TrackCall] = WorkQueue(options.max_queue_size)
        self.worker = ProcessWorker(options, self.queue, self.ledger, self.internal_errors)

    @property
    def spoof_attempts(self) -> int:
        """Forged forwarding headers seen (counted in the child)."""
        return self.worker.spoof_attempts

    @property
    def anonymous_calls(self) -> int:
        """Calls counted without identification (counted in the child)."""
        return self.worker.anonymous_calls

    @property
    def realtime_connected(self) -> bool:
        """Whether the child follows site rules live."""
        return self.worker.realtime_connected

    @property
    def queue_depth(self) -> int:
        """Calls waiting here or in the child for its worker."""
        return len(self.queue) + self.worker.child_depth

    def start(self) -> None:
        """Start (or restart) the child and the threads."""
        self.worker.start()

    def stop(self, timeout: float) -> None:
        """Write what can be written within ``timeout``, then end the child."""
        self.worker.stop(timeout)

    def for_child(self) -> ProcessRuntime:
        """A fresh runtime for a forked host process: its own worker process, started on
        first use. The parent's pipes are closed here without touching the parent's child."""
        keep_inherited(self)
        self.worker.abandon()
        return ProcessRuntime(self.options)
