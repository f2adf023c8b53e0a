"""SIGTERM as a normal exit, so that what the SDK holds is written when a process is stopped.

Python turns SIGINT into ``KeyboardInterrupt``: the interpreter exits normally and runs
``atexit`` hooks, among them the SDK's flush. SIGTERM, what systemd, Docker and Kubernetes
send, has no Python handler by default: the process dies at once (or, as PID 1 in a
container, ignores it until the SIGKILL that follows), and nothing queued is written.
Servers that handle SIGTERM themselves (gunicorn, uvicorn, hypercorn, Celery) shut down
their own way and call our shutdown or ``atexit``; the development servers of Flask and
Django, a bare ``python app.py`` and plain scripts do not.

``install`` fills that gap, and only that gap:

- only over the default disposition (``SIG_DFL``): a handler the host or its server
  installed is never replaced, and one installed after ours replaces ours;
- only from the main thread (Python allows no other);
- at the signal, ``is_needed()`` decides: with no live SDK in this process (a Django
  autoreloader's parent, a process that never tracked), it behaves exactly as before, by
  restoring ``SIG_DFL`` and sending itself the signal again;
- otherwise it raises ``SystemExit(143)`` (128 + SIGTERM, what a shell reports) in the
  main thread, as SIGINT raises ``KeyboardInterrupt``: ``finally`` blocks and ``atexit``
  hooks run, the SDK flushes for up to a second, and the process exits. ``SIG_DFL`` is
  restored first, so a second SIGTERM kills at once, as it would have.

Nothing is done inside the handler but raising: it runs between two bytecodes of whatever
the main thread was doing, possibly holding a lock the flush would need.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

__all__ = ["EXIT_CODE", "install"]

EXIT_CODE = 128 + signal.SIGTERM


def install(is_needed: Callable[[], bool]) -> bool:
    """Turn SIGTERM into ``SystemExit(143)`` while ``is_needed()``; True if installed now.

    A no-op (False) off the main thread, when a handler other than the default is in
    place (ours included: once per process), or where signals are not available.

    Example::

        install(lambda: bool(live_sdks))  # at init, from the main thread
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return False

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second one kills at once
            if not is_needed():
                os.kill(os.getpid(), signal.SIGTERM)  # the default, as if we were not here
                return
            raise SystemExit(EXIT_CODE)

        signal.signal(signal.SIGTERM, on_sigterm)
    except (ValueError, OSError, AttributeError):  # no signals here (embedded interpreters)
        return False
    return True
