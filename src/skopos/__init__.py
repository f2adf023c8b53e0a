"""Skopos for Python: privacy-first, server-side analytics into PocketBase.

Example::

    from skopos import SkoposSDK

    skopos = SkoposSDK.init(pocketbase_url="http://127.0.0.1:8090", site_id="TRACKING_ID",
                            admin_email="admin@example.com", admin_password="...")
    skopos.track_api_event(request, payload)
"""

from __future__ import annotations

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
from skopos._sdk import SkoposSDK
from skopos._stats import SkoposStats
from skopos._version import __version__

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
