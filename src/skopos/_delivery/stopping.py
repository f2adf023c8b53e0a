"""A stop request and its deadline, shared by the worker and the writer.

``shutdown(timeout)`` asks the background threads to write what they can and end: the
worker stops waiting for intervals, the writer keeps retrying until the deadline and not
after it. One object carries both, so neither reaches into the other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Stopping"]


class Stopping:
    """Whether a stop was requested, and whether its deadline passed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._event = threading.Event()
        self._deadline: float | None = None

    def request(self, timeout: float) -> None:
        """Ask to stop, writing for at most ``timeout`` more seconds."""
        self._deadline = self._clock() + timeout
        self._event.set()

    @property
    def requested(self) -> bool:
        """A stop was requested."""
        return self._event.is_set()

    def deadline_passed(self) -> bool:
        """The stop's deadline passed: give up on what is left."""
        return self._deadline is not None and self._clock() > self._deadline

    def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less when a stop is requested meanwhile; True if it was."""
        return self._event.wait(seconds)
