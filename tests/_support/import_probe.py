"""Run by ``tests/runtime/test_imports.py`` in a fresh interpreter: every kind of tracking call
through one SDK (options from ``SKOPOS_*``), and which modules threads other than the main one
imported meanwhile, printed as JSON on the last line with what the SDK wrote.

Usage: ``python -m tests._support.import_probe DOMAIN`` (``SKOPOS_*`` in the environment).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import sys
import threading
from collections.abc import Sequence
from types import ModuleType

from skopos import SkoposSDK
from tests._support import collect_client
from tests._support.tracking_helpers import custom, environ, js_error, page_view


class ImportSpy(importlib.abc.MetaPathFinder):
    """Notes each import a thread other than the main one starts; finds nothing itself."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        thread = threading.current_thread()
        if thread is not threading.main_thread():
            self.seen.append((thread.name, fullname))
        return None


def main(domain: str) -> None:
    spy = ImportSpy()
    sys.meta_path.insert(0, spy)
    sdk = SkoposSDK.init()  # from here on, only the SDK's threads could import
    visitor = environ("203.0.113.40")
    page = f"https://{domain}/pricing"
    sdk.track_api_event(visitor, page_view(domain, "/pricing"))
    sdk.track_api_event(visitor, json.dumps(custom(domain, "/pricing", "signup", {"plan": "pro"})))
    sdk.track_api_event(visitor, js_error(domain, "boom"))
    sdk.track_server_event(visitor, "paid", {"amount": 9})
    sdk.identify(visitor, "user-1", {"plan": "pro"})
    site_id = sdk.options.site_id
    messages = [
        collect_client.batch(
            collect_client.page_view(),
            collect_client.custom_event("cta"),
            collect_client.outbound("https://other.example/"),
            sid=site_id,
            url=page,
        ),
        collect_client.errors(collect_client.error("TypeError: x"), sid=site_id, url=page),
        collect_client.exit_message(12, sid=site_id, url=page),
    ]
    browser = environ("203.0.113.41", path="/collect")
    for message in messages:
        sdk.track_collect(browser, collect_client.encode_message(message))
    flushed = sdk.flush(timeout=30)
    stats = sdk.stats()
    sdk.shutdown(timeout=10)
    sys.meta_path.remove(spy)
    print(
        json.dumps(
            {
                "flushed": flushed,
                "written": stats.written,
                "accepted": stats.accepted,
                "dropped": stats.dropped,
                "imported_by_threads": sorted(set(spy.seen)),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
