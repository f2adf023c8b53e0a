"""The exceptions Skopos raises.

Only configuration-time calls raise (``SkoposSDK.init``, ``skopos setup``, the
PocketBase client used directly). Tracking calls never raise into the host app.

    SkoposError
    ├── ConfigurationError          bad options, raised by init / setup
    └── PocketBaseError             anything PocketBase said or failed to say
        ├── PocketBaseUnreachable   connection refused, DNS, timeouts
        ├── PocketBaseAuthError     wrong credentials, token rejected twice
        ├── PocketBaseNotFound      404: no such record or collection
        ├── PocketBaseValidationError  400 with field errors (batch: which request)
        ├── PocketBaseBatchDisabled    the batch API is off (run `skopos setup`)
        ├── PocketBaseServerError   5xx, 408, 429: worth retrying later
        └── PocketBaseVersionError  the server predates PocketBase 0.23
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
]


class SkoposError(Exception):
    """Base class of every exception Skopos raises."""


class ConfigurationError(SkoposError, ValueError):
    """An option is missing or invalid; raised at ``init`` or ``setup`` time.

    Example::

        try:
            SkoposSDK.init(pocketbase_url="ftp://x", site_id="abc", ...)
        except ConfigurationError as exc:
            print(exc)  # pocketbase_url must be an http(s) URL, got 'ftp://x'
    """


class PocketBaseError(SkoposError):
    """PocketBase refused a request, or could not be reached.

    ``status`` is the HTTP status (0 when no response arrived), ``data`` the
    ``data`` object of PocketBase's error body (field errors), ``retryable``
    tells whether the same request may succeed later.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.data: Mapping[str, Any] = data or {}


class PocketBaseUnreachable(PocketBaseError):
    """No answer from PocketBase: connection refused, DNS failure or timeout."""

    retryable = True


class PocketBaseAuthError(PocketBaseError):
    """The superuser credentials were refused, or a fresh token was rejected."""


class PocketBaseNotFound(PocketBaseError):
    """404: the record or the collection does not exist."""


class PocketBaseValidationError(PocketBaseError):
    """400: PocketBase rejected the data.

    ``field_errors`` maps field names to PocketBase's message for them. For a
    batch, ``request_index`` is the position of the failing request in the batch
    and ``request_label`` says what it was (e.g. ``create events/abc123``).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        data: Mapping[str, Any] | None = None,
        field_errors: Mapping[str, str] | None = None,
        request_index: int | None = None,
        request_label: str | None = None,
    ) -> None:
        super().__init__(message, status=status, data=data)
        self.field_errors: Mapping[str, str] = field_errors or {}
        self.request_index = request_index
        self.request_label = request_label


class PocketBaseBatchDisabled(PocketBaseError):
    """The batch API is disabled on the server; ``skopos setup`` enables it."""


class PocketBaseServerError(PocketBaseError):
    """5xx, 408 or 429: PocketBase is overloaded or failing; retry later.

    ``retry_after`` carries the server's ``Retry-After`` in seconds, if it sent one.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        data: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, data=data)
        self.retry_after = retry_after


class PocketBaseVersionError(PocketBaseError):
    """The server is older than PocketBase 0.23, which Skopos does not support."""
