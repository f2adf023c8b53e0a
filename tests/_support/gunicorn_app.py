"""A WSGI app for the gunicorn test: the SDK is created at import, before the fork (--preload)."""

from __future__ import annotations

from typing import Any

from skopos import SkoposSDK
from skopos.integrations.wsgi import SkoposMiddleware

sdk = SkoposSDK.init(realtime=False)  # every option from SKOPOS_* in the environment
app = SkoposMiddleware(None, sdk)


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn hook (the documented wiring): flush before a worker process ends."""
    sdk.shutdown(timeout=10)
