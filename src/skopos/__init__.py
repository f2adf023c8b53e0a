"""Skopos for Python: privacy-first, server-side analytics into PocketBase.

The tracking SDK (``SkoposSDK``) lands in a later release; today the package
provides the PocketBase schema, ``skopos setup`` and ``skopos demo``.
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
    "__version__",
]
