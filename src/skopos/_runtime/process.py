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

The feeder thread owns the child: it starts it (in the background, so ``init`` and a
forked host's first call never wait for a Python process to start), ships calls to it,
and starts another when one dies, with backoff. The child connects to PocketBase in the
background too, unless ``init(wait=True)`` asks it to connect before it answers.

The child runs in an isolated interpreter (``-I``: neither the working directory nor
``PYTHONPATH`` nor user site-packages come first) and is handed the host's own import path,
this copy of skopos first: nothing planted in the host's working directory can run in it.

A full pipe blocks the feeder, the queue then fills and new calls are dropped as
``queue_full``: memory stays bounded on both sides. If the child dies, what it
had been given and not acknowledged is counted as ``worker_exited`` (with a
``spool_dir`` it is replayed by the next one) and a new child is started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import skopos._exceptions as _exceptions
from skopos._config import SkoposOptions
from skopos._exceptions import PocketBaseError
from skopos._queue import POLL_AFTER_CALLS, TAKE_AT_ONCE, WorkQueue
from skopos._runtime import wire
from skopos._runtime.base import keep_inherited
from skopos._stats import DropReason, InternalErrors, Ledger
from skopos._tracking.activity import TrackCall

__all__ = ["ProcessRuntime", "child_command"]

logger = logging.getLogger("skopos")

_LINGER = 0.02  # the feeder waits this long for company before shipping a frame
_READY_TIMEOUT = 60.0
_RESTART_BACKOFF = (1.0, 30.0)  # seconds before starting a child again: first, ceiling

# The child's entry point: the host's import path (argv[1]) and nothing from the working
# directory, then ``main``.
_BOOTSTRAP = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from skopos._runtime.child import main; sys.exit(main())"
)


def child_command() -> list[str]:
    """The command line of a worker process: this interpreter, isolated, with this process's
    import path (absolute entries only), the directory this copy of skopos came from first."""
    package_root = str(Path(__file__).resolve().parents[2])
    paths = [package_root]
    for entry in sys.path:
        if entry and os.path.isabs(entry) and entry not in paths:
            paths.append(entry)
    return [sys.executable, "-I", "-c", _BOOTSTRAP, json.dumps(paths)]


def _failure(answer: wire.Failed) -> Exception:
    """The exception a child reported, as its own class when it is one of ours."""
    kind = getattr(_exceptions, answer.kind, None)
    if isinstance(kind, type) and issubclass(kind, _exceptions.SkoposError):
        return kind(answer.message)
    return PocketBaseError(f"the worker process could not start: {answer.message}")


class _Child:
    """One worker process and the two pipe ends we hold."""

    def __init__(self, options: SkoposOptions, *, wait: bool) -> None:
        self.process = subprocess.Popen(
            child_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            close_fds=True,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.inbox = self.process.stdin.fileno()  # we write, it reads
        self.outbox = self.process.stdout.fileno()  # it writes, we read
        self.given = 0  # calls shipped to it
        self.acknowledged = 0  # of those, acknowledged by it
        self.depth = 0
        self.gone = False  # its output ended: it exited or is exiting
        wire.send(self.inbox, wire.Options(dataclasses.asdict(options), wait))

    def abandon(self) -> None:
        """In a forked host: close the inherited pipe ends without touching the child (the
        parent's), or waiting for a feeder (the parent's thread, absent here)."""
        for fd in (self.inbox, self.outbox):
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        """Close our pipe ends, once the child is gone."""
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
        self._unsent: list[TrackCall] = []  # taken from the queue, not shipped (child died)
        self.spoof_attempts = 0
        self.anonymous_calls = 0
        self.realtime_connected = False
        self.collect_origin_hosts: frozenset[str] | None = None
        # Read on every tracking call: a flag, where ``alive`` would look at the thread.
        self.running = False

    @property
    def alive(self) -> bool:
        """Whether the feeder runs (it keeps a child running)."""
        feeder = self._feeder
        return feeder is not None and feeder.is_alive()

    @property
    def child_depth(self) -> int:
        """Calls queued in the child, not yet taken by its worker."""
        child = self._child
        return child.depth if child is not None else 0

    def connect(self) -> None:
        """Start a child that connects to PocketBase before it answers, and wait for it
        (``init(wait=True)``); raises what the child reported."""
        with self._lock:
            if self._child is None:
                self._child = self._spawn(wait=True, raise_failure=True)

    def start(self) -> None:
        """Start the feeder thread, which starts the child; idempotent, never waits."""
        with self._lock:
            if self.alive or self._stop.is_set():
                return
            self._feeder = threading.Thread(target=self._feed, name="skopos-feeder", daemon=True)
            self.running = True
            self._feeder.start()

    def _spawn(self, *, wait: bool, raise_failure: bool = False) -> _Child | None:
        """A new child, ready (its reader thread started); None if it failed (logged)."""
        child = _Child(self._options, wait=wait)
        answer = self._await_ready(child)
        if isinstance(answer, wire.Failed):
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(5)
            child.close()
            error = _failure(answer)
            if raise_failure:
                raise error
            logger.error("skopos: the worker process could not start: %s", answer.message)
            self._ledger.note_error(f"worker process: {answer.message}", retried=False)
            return None
        threading.Thread(
            target=self._read, args=(child,), name="skopos-reader", daemon=True
        ).start()
        return child

    def _await_ready(self, child: _Child) -> wire.Ready | wire.Failed:
        result: list[object] = []

        def receive() -> None:
            with contextlib.suppress(OSError):
                result.append(wire.receive(child.outbox))

        reader = threading.Thread(target=receive, daemon=True)
        reader.start()
        reader.join(_READY_TIMEOUT)
        answer = result[0] if result else None
        if isinstance(answer, (wire.Ready, wire.Failed)):
            return answer
        child.process.kill()
        child.process.wait(5)
        child.close()
        return wire.Failed("PocketBaseError", "no answer from the worker process")

    def _retire(self, child: _Child) -> None:
        """Account for a child that died: what it held and had not acknowledged is lost."""
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
        feeder = self._feeder
        if feeder is not None:
            feeder.join(timeout + 1.0)
        child = self._child
        if child is not None:
            try:
                child.process.wait(timeout + 3.0)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait(5)
        if feeder is None or not feeder.is_alive():
            self._give_up()

    def _give_up(self) -> None:
        """No child took them: calls left here are undelivered."""
        left = len(self._unsent) + len(self._queue.drain())
        self._unsent = []
        if left:
            logger.warning("skopos: shutdown deadline passed; %d tracking calls undelivered", left)
            self._ledger.ack_dropped(DropReason.UNDELIVERED_AT_SHUTDOWN, left)

    # -- the feeder ---------------------------------------------------------------------

    def _feed(self) -> None:
        delays = _RESTART_BACKOFF[0]
        try:
            while True:
                child = self._child
                if child is None or child.gone:
                    if child is not None:
                        self._child = None
                    if self._stop.is_set() and not self._unsent and not len(self._queue):
                        return
                    child = self._spawn(wait=False)
                    if child is None:
                        # Calls wait in the queue; try again later (sooner when stopping).
                        deadline = time.monotonic() + delays
                        delays = min(delays * 2, _RESTART_BACKOFF[1])
                        while time.monotonic() < deadline:
                            if self._stop.wait(0.1):
                                return  # stop: what is queued is given up by stop()
                        continue
                    self._child = child
                    delays = _RESTART_BACKOFF[0]
                if self._ship(child):
                    return
        except Exception as exc:  # never let the feeder die silently
            logger.exception("skopos: internal error in the feeder")
            self._errors.note(exc)
        finally:
            self.running = False

    def _ship(self, child: _Child) -> bool:
        """Ship calls to ``child`` until a stop is done (True) or it is gone (False)."""
        last_calls = time.monotonic() - POLL_AFTER_CALLS
        try:
            while not child.gone:
                stopping = self._stop.is_set()
                calls, self._unsent = self._unsent, []
                if stopping:
                    calls += self._queue.take(TAKE_AT_ONCE, 0.0)
                elif calls:
                    pass  # a dead child's calls go first, at once
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
                    try:
                        wire.send_encoded(child.inbox, wire.calls_frame(calls))
                    except OSError:
                        self._unsent = calls  # for the next child
                        raise
                    child.given += len(calls)
                if self._flush.is_set() and not len(self._queue):
                    self._flush.clear()
                    wire.send(child.inbox, wire.Flush(self._ledger.flush_requested))
                if stopping and not len(self._queue):
                    wire.send(child.inbox, wire.Stop(self._stop_timeout))
                    return True
        except OSError:
            logger.error("skopos: the worker process went away")
        child.gone = True
        return False

    # -- the reader ---------------------------------------------------------------------

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
        child.gone = True
        self._queue.wake()  # the feeder notices at once and starts another
        child.process.wait()
        child.close()
        if not self._stop.is_set():
            self._retire(child)
        elif child.given > child.acknowledged:
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
        if delta.get("origin_hosts") is not None:
            self.collect_origin_hosts = frozenset(delta["origin_hosts"])
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
        self.queue: WorkQueue[TrackCall] = WorkQueue(
            options.max_queue_size, max_bytes=options.max_queue_bytes
        )
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
    def collect_origin_hosts(self) -> frozenset[str] | None:
        """The domains of the sites ``/collect`` serves, as the child read them."""
        return self.worker.collect_origin_hosts

    @property
    def queue_depth(self) -> int:
        """Calls waiting here or in the child for its worker."""
        return len(self.queue) + self.worker.child_depth

    def connect(self) -> None:
        """Start the child and have it connect before it answers; raises what failed."""
        self.worker.connect()

    def start(self) -> None:
        """Start (or restart) the feeder, which starts the child; never waits."""
        self.worker.start()

    def stop(self, timeout: float) -> None:
        """Write what can be written within ``timeout``, then end the child."""
        self.worker.stop(timeout)

    def for_child(self) -> ProcessRuntime:
        """A fresh runtime for a forked host process: its own worker process, started on
        first use. The parent's pipes are closed here without touching the parent's child."""
        keep_inherited(self)
        self.worker.abandon()
        child = ProcessRuntime(self.options)
        child.worker.collect_origin_hosts = self.worker.collect_origin_hosts
        return child
