"""Skopos for Python: privacy-first, server-side analytics into PocketBase.

Example::

    from skopos import SkoposSDK

    skopos = SkoposSDK.init(pocketbase_url="http://127.0.0.1:8090", site_id="TRACKING_ID",
                            admin_email="admin@example.com", admin_password="...")
    skopos.track_api_event(request, payload)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from skopos._exceptions import (
    ConfigurationError,
    PocketBaseAuthError,
    PocketBaseBatchDisabled,
    PocketBaseError,
    PocketBaseNotFound,
    PocketBaseServerError,
    PocketBaseUnreachable,
    PocketBaseValidationError,
    PocketBaseVersionError,
    SkoposError,
)
from skopos._stats import SkoposStats
from skopos._version import __version__

if TYPE_CHECKING:
    from skopos._sdk import SkoposSDK

__all__ = [
    "ConfigurationError",
    "PocketBaseAuthError",
    "PocketBaseBatchDisabled",
    "PocketBaseError",
    "PocketBaseNotFound",
    "PocketBaseServerError",
    "PocketBaseUnreachable",
    "PocketBaseValidationError",
    "PocketBaseVersionError",
    "SkoposError",
    "SkoposSDK",
    "SkoposStats",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # SkoposSDK pulls in the whole engine and httpx; importing it on first use keeps
    # ``import skopos._tracking.activity`` (the worker process, tools, tests) light.
    if name == "SkoposSDK":
        from skopos._sdk import SkoposSDK

        return SkoposSDK
    raise AttributeError(f"module 'skopos' has no attribute {name!r}")
