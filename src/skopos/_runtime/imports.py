"""Modules the background threads would import lazily, imported first by the thread that
builds the runtime (the one calling ``SkoposSDK.init``).

``fork()`` copies the import system's per-module locks as they are. A worker thread that is
importing a module at that moment (its first DNS lookup imports the IDNA codec, its first user
agent ua-parser's rules) leaves that module's lock held in the child by a thread that does not
exist there, and the child's own worker then waits on it for good. gunicorn ``--preload``,
uWSGI and Celery's prefork pool all fork right after loading the app, which is when the worker
connects. With these imported up front, the threads import nothing;
``tests/runtime/test_imports.py`` checks that against a real PocketBase.
"""

from __future__ import annotations

import codecs

from skopos._tracking.bots import import_crawler_list
from skopos._tracking.user_agent import import_parser

__all__ = ["import_what_threads_need"]


def import_what_threads_need() -> None:
    """Import now what the worker, writer and realtime threads would import on first use
    (about 40 ms, once per process)."""
    codecs.lookup("idna")  # socket.getaddrinfo encodes host names with it
    import_parser()
    import_crawler_list()
