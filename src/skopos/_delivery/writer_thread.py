"""Writing on a thread of its own: the worker prepares the next batch while PocketBase
commits this one.

Waiting for PocketBase's answer releases the GIL, so preparing (validation,
hashing, sessionizing, JSON) and PocketBase's transaction overlap instead of
taking turns. One batch is in flight; what the worker submits meanwhile is
merged into the next one, so batches grow with the load instead of queueing up.
Acknowledgements stay with ``BatchWriter``, on this thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from skopos._delivery.writer import BatchWriter
from skopos._delivery.writes import PendingWrite
from skopos._stats import InternalErrors

__all__ = ["WriterThread"]

logger = logging.getLogger("skopos")


class WriterThread:
    """Runs ``BatchWriter.write`` for submitted writes, one batch at a time, in order."""

    def __init__(
        self,
        writer: BatchWriter,
        *,
        on_done: Callable[[], None],
        errors: InternalErrors,
    ) -> None:
        self._writer = writer
        self._on_done = on_done
        self._errors = errors
        self._condition = threading.Condition(threading.Lock())
        self._next: list[PendingWrite] = []
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start (or restart) the thread; idempotent."""
        with self._condition:
            self._stopping = False
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._run, name="skopos-writer", daemon=True)
            self._thread.start()

    def submit(self, writes: list[PendingWrite]) -> None:
        """Queue ``writes`` behind the batch in flight (merged with anything waiting)."""
        if not writes:
            return
        with self._condition:
            self._next.extend(writes)
            self._condition.notify_all()

    @property
    def ready(self) -> bool:
        """Nothing is waiting behind the batch in flight: time to prepare the next."""
        return not self._next

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing waiting."""
        with self._condition:
            return not self._next and not self._busy

    def wait_ready(self, timeout: float) -> None:
        """Wait at most ``timeout`` s until nothing is waiting."""
        with self._condition:
            self._condition.wait_for(lambda: not self._next, timeout)

    def take_waiting(self) -> list[PendingWrite]:
        """Remove what is waiting (not sent yet), for the shutdown deadline's accounting."""
        with self._condition:
            waiting, self._next = self._next, []
            self._condition.notify_all()
            return waiting

    def stop(self, timeout: float) -> None:
        """End the thread once it is idle; wait at most ``timeout`` s for that."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._next or self._stopping)
                if not self._next:
                    return
                job, self._next = self._next, []
                self._busy = True
            try:
                self._writer.write(job)
            except Exception as exc:  # the thread carries on with the next batch
                logger.exception("skopos: internal error while writing a batch")
                self._errors.note(exc)
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()
                self._on_done()
