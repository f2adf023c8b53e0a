"""Our PocketBase client: superuser auth, records, filters, the batch API.

A thin, typed layer over ``httpx.Client`` that speaks just the parts of
PocketBase's REST API Skopos needs. It never retries on its own except for one
re-authentication when a token is refused: retry policy belongs to the caller
(the background worker), which knows what is safe to repeat.

Example::

    client = PocketBaseClient("http://127.0.0.1:8090", "admin@example.com", "secret")
    site = client.first_record("websites", pb_filter("trackingId = {:t}", t="abc"))
    client.batch([BatchRequest.create("events", {"session": sid, "type": "pageView"})])
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import httpx

from skopos._exceptions import (
    PocketBaseAuthError,
    PocketBaseBatchDisabled,
    PocketBaseNotFound,
    PocketBaseServerError,
    PocketBaseUnreachable,
    PocketBaseValidationError,
    PocketBaseVersionError,
)
from skopos._version import __version__

__all__ = ["BatchRequest", "PocketBaseClient", "RecordPage"]

logger = logging.getLogger("skopos")

Record = dict[str, Any]
_SUPERUSER_AUTH = "/api/collections/_superusers/auth-with-password"
_SUPERUSER_REFRESH = "/api/collections/_superusers/auth-refresh"
# PocketBase caps perPage at 1,000.
MAX_PER_PAGE = 1000
_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One request inside a ``POST /api/batch`` transaction.

    Build them with the constructors::

        BatchRequest.create("events", {"id": "...", "type": "pageView"})
        BatchRequest.update("sessions", session_id, {"exitPath": "/about"})
        BatchRequest.upsert("visitors", {"id": visitor_id, "visitorId": "..."})
        BatchRequest.delete("events", event_id)
    """

    method: Literal["POST", "PATCH", "PUT", "DELETE"]
    url: str
    body: Mapping[str, Any] | None = None
    label: str = ""

    @classmethod
    def create(cls, collection: str, body: Mapping[str, Any]) -> BatchRequest:
        """A record create; a superuser may pass its own 15-char ``id``."""
        return cls("POST", _records_path(collection), body, f"create {collection}")

    @classmethod
    def update(cls, collection: str, record_id: str, body: Mapping[str, Any]) -> BatchRequest:
        """A partial update; PocketBase modifiers such as ``{"count+": 1}`` work."""
        path = _record_path(collection, record_id)
        return cls("PATCH", path, body, f"update {collection}/{record_id}")

    @classmethod
    def upsert(cls, collection: str, body: Mapping[str, Any]) -> BatchRequest:
        """Create the record with ``body["id"]``, or update it if it exists."""
        label = f"upsert {collection}/{body.get('id', '?')}"
        return cls("PUT", _records_path(collection), body, label)

    @classmethod
    def delete(cls, collection: str, record_id: str) -> BatchRequest:
        """A record delete."""
        return cls("DELETE", _record_path(collection, record_id), None, f"delete {collection}")

    def to_json(self) -> dict[str, Any]:
        """The wire form PocketBase expects inside ``{"requests": [...]}``."""
        item: dict[str, Any] = {"method": self.method, "url": self.url}
        if self.body is not None:
            item["body"] = self.body
        return item


@dataclass(frozen=True, slots=True)
class RecordPage:
    """One page of ``list_records``."""

    items: list[Record]
    page: int
    per_page: int
    total_items: int = -1
    total_pages: int = -1


@dataclass(slots=True)
class _Token:
    value: str
    expires_at: float  # wall-clock seconds, from the JWT's ``exp``
    lifetime: float = field(default=0.0)


def _records_path(collection: str) -> str:
    return f"/api/collections/{quote(collection, safe='')}/records"


def _record_path(collection: str, record_id: str) -> str:
    return f"{_records_path(collection)}/{quote(record_id, safe='')}"


def _token_expiry(token: str) -> float:
    """Read ``exp`` from a JWT without verifying it (the server does that)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError):
        # Unknown expiry: refresh again in a minute rather than trust it forever.
        return time.time() + 60.0


class PocketBaseClient:
    """A superuser session with one PocketBase server.

    Thread-safe: one pooled ``httpx.Client`` shared by all threads, the token
    guarded by a lock. Every call has a timeout. Tokens are refreshed shortly
    before they expire; a request refused with 401/403 triggers one
    re-authentication with the password and one repeat of the request.

    ``transport`` is the I/O seam for tests (``httpx.MockTransport``).
    """

    def __init__(
        self,
        url: str,
        email: str,
        password: str,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        max_connections: int = 10,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url.rstrip("/")
        self._email = email
        self._password = password
        self._clock = clock
        self._token: _Token | None = None
        self._auth_lock = threading.Lock()
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._http = httpx.Client(
            base_url=self.url,
            timeout=self._timeout,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"User-Agent": f"skopos-python/{__version__}"},
            transport=transport,
        )
        self._batch_limits: tuple[int, float] | None = None  # maxRequests, timeout

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Close pooled connections. The client is unusable afterwards."""
        self._http.close()

    def __enter__(self) -> PocketBaseClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- auth ------------------------------------------------------------------------

    def authenticate(self) -> None:
        """Log in as superuser now; raises on bad credentials or an old server.

        Example::

            client.authenticate()  # PocketBaseAuthError if the password is wrong
        """
        with self._auth_lock:
            self._password_auth()

    def auth_header(self) -> str:
        """A currently valid token, refreshed or re-acquired if it is about to expire."""
        with self._auth_lock:
            token = self._token
            if token is None:
                return self._password_auth()
            remaining = token.expires_at - self._clock()
            # Refresh ahead of expiry: 20% of the lifetime, but at most a minute.
            margin = min(60.0, max(1.0, token.lifetime * 0.2))
            if remaining > margin:
                return token.value
            if remaining > 0.5:
                try:
                    return self._refresh(token.value)
                except PocketBaseAuthError:
                    pass
            return self._password_auth()

    def revalidate(self) -> None:
        """Prove the token to the server now (a refresh), logging in again if it is refused.

        For calls where PocketBase quietly treats a revoked token as a guest
        instead of refusing it, such as ``POST /api/realtime``.
        """
        with self._auth_lock:
            if self._token is not None:
                try:
                    self._refresh(self._token.value)
                    return
                except PocketBaseAuthError:
                    pass
            self._password_auth()

    def _password_auth(self) -> str:
        body = {"identity": self._email, "password": self._password}
        response = self._send("POST", _SUPERUSER_AUTH, json_body=body, auth=False)
        if response.status_code == 404:
            self._raise_if_too_old()
        if response.status_code in (400, 401, 403):
            raise PocketBaseAuthError(
                f"PocketBase at {self.url} refused the superuser credentials for {self._email!r}"
                " (check the email and password of a _superusers account)",
                status=response.status_code,
            )
        return self._store_token(self._json(response))

    def _refresh(self, token: str) -> str:
        response = self._send("POST", _SUPERUSER_REFRESH, auth=False, token=token)
        if response.status_code in (400, 401, 403, 404):
            raise PocketBaseAuthError("token refresh refused", status=response.status_code)
        return self._store_token(self._json(response))

    def _store_token(self, data: Any) -> str:
        value = data.get("token") if isinstance(data, dict) else None
        if not isinstance(value, str) or not value:
            raise PocketBaseAuthError("PocketBase answered the login without a token")
        now = self._clock()
        expires_at = _token_expiry(value)
        self._token = _Token(value, expires_at, lifetime=max(0.0, expires_at - now))
        return value

    def _invalidate_token(self, rejected: str) -> None:
        with self._auth_lock:
            if self._token is not None and self._token.value == rejected:
                self._token = None

    def _raise_if_too_old(self) -> None:
        legacy = self._send("POST", "/api/admins/auth-with-password", json_body={}, auth=False)
        if legacy.status_code != 404:
            raise PocketBaseVersionError(
                f"PocketBase at {self.url} is older than 0.23; Skopos needs PocketBase 0.23 or"
                " newer (superusers live in the _superusers collection since 0.23)",
                status=legacy.status_code,
            )
        raise PocketBaseNotFound(
            f"{self.url} does not look like a PocketBase server (no _superusers collection)",
            status=404,
        )

    # -- transport ---------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str | int] | None = None,
        auth: bool = True,
        token: str | None = None,
    ) -> httpx.Response:
        headers = {}
        if auth:
            token = self.auth_header()
        if token is not None:
            headers["Authorization"] = token
        try:
            return self._http.request(method, path, json=json_body, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            raise PocketBaseUnreachable(
                f"PocketBase at {self.url} timed out ({method} {path}): {exc!r}"
            ) from exc
        except httpx.TransportError as exc:
            raise PocketBaseUnreachable(
                f"cannot reach PocketBase at {self.url} ({method} {path}): {exc!r}"
            ) from exc

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str | int] | None = None,
    ) -> Any:
        """Send an authenticated request and return the decoded JSON body.

        Raises the matching ``PocketBaseError`` subclass for any non-2xx answer.
        A 401/403 causes one fresh password login and one repeat.
        """
        response = self._send(method, path, json_body=json_body, params=params)
        if response.status_code in (401, 403):
            self._invalidate_token(response.request.headers.get("Authorization", ""))
            response = self._send(method, path, json_body=json_body, params=params)
        self._raise_for_status(response)
        if response.status_code == 204 or not response.content:
            return None
        return self._json(response)

    def _json(self, response: httpx.Response) -> Any:
        self._raise_for_status(response)
        try:
            return response.json()
        except ValueError as exc:
            raise PocketBaseServerError(
                f"PocketBase sent a non-JSON answer to {response.request.url.path}",
                status=response.status_code,
            ) from exc

    def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        body = _error_body(response)
        message = str(body.get("message") or response.reason_phrase)
        data = _dict_or_empty(body.get("data"))
        where = f"{response.request.method} {response.request.url.path}"
        if status in _RETRYABLE_STATUSES or status >= 500:
            raise PocketBaseServerError(
                f"PocketBase answered {status} to {where}: {message}",
                status=status,
                data=data,
                retry_after=_retry_after(response),
            )
        if status in (401, 403):
            raise PocketBaseAuthError(
                f"PocketBase refused {where} ({status}): {message}", status=status, data=data
            )
        if status == 404:
            raise PocketBaseNotFound(f"{where}: {message}", status=status, data=data)
        field_errors = _field_errors(data)
        detail = "; ".join(f"{name}: {text}" for name, text in field_errors.items())
        raise PocketBaseValidationError(
            f"PocketBase rejected {where}: {message}" + (f" ({detail})" if detail else ""),
            status=status,
            data=data,
            field_errors=field_errors,
        )

    # -- records -------------------------------------------------------------------------

    def health(self) -> bool:
        """True when ``GET /api/health`` answers 200 (no auth needed)."""
        try:
            return self._send("GET", "/api/health", auth=False).status_code == 200
        except PocketBaseUnreachable:
            return False

    def get_record(self, collection: str, record_id: str) -> Record:
        """One record by id; ``PocketBaseNotFound`` if there is none."""
        result: Record = self.request("GET", _record_path(collection, record_id))
        return result

    def list_records(
        self,
        collection: str,
        *,
        filter: str | None = None,
        sort: str | None = None,
        page: int = 1,
        per_page: int = 100,
        fields: str | None = None,
        with_total: bool = False,
    ) -> RecordPage:
        """One page of records. Build ``filter`` with ``pb_filter``, never by formatting.

        ``with_total=False`` (the default) skips PocketBase's costly count query.
        """
        params: dict[str, str | int] = {"page": page, "perPage": min(per_page, MAX_PER_PAGE)}
        if filter:
            params["filter"] = filter
        if sort:
            params["sort"] = sort
        if fields:
            params["fields"] = fields
        if not with_total:
            params["skipTotal"] = 1
        data = self.request("GET", _records_path(collection), params=params)
        return RecordPage(
            items=list(data.get("items", [])),
            page=int(data.get("page", page)),
            per_page=int(data.get("perPage", per_page)),
            total_items=int(data.get("totalItems", -1)),
            total_pages=int(data.get("totalPages", -1)),
        )

    def iter_records(
        self,
        collection: str,
        *,
        filter: str | None = None,
        sort: str | None = None,
        per_page: int = 500,
        fields: str | None = None,
    ) -> Iterator[Record]:
        """Every matching record, page by page."""
        page = 1
        while True:
            result = self.list_records(
                collection, filter=filter, sort=sort, page=page, per_page=per_page, fields=fields
            )
            yield from result.items
            if len(result.items) < result.per_page:
                return
            page += 1

    def first_record(
        self, collection: str, filter: str, *, sort: str | None = None
    ) -> Record | None:
        """The first record matching ``filter``, or None."""
        items = self.list_records(collection, filter=filter, sort=sort, per_page=1).items
        return items[0] if items else None

    def create_record(self, collection: str, data: Mapping[str, Any]) -> Record:
        """Create a record; a superuser may choose its 15-char ``id``."""
        result: Record = self.request("POST", _records_path(collection), json_body=dict(data))
        return result

    def update_record(self, collection: str, record_id: str, data: Mapping[str, Any]) -> Record:
        """Update fields of a record; modifiers like ``{"count+": 2}`` are allowed."""
        path = _record_path(collection, record_id)
        result: Record = self.request("PATCH", path, json_body=dict(data))
        return result

    def upsert_record(self, collection: str, data: Mapping[str, Any]) -> Record:
        """Create ``data["id"]`` or update it when it already exists (one transaction)."""
        if not data.get("id"):
            raise ValueError("upsert_record needs an 'id' in data")
        [result] = self.batch([BatchRequest.upsert(collection, data)])
        return result

    def delete_record(self, collection: str, record_id: str) -> None:
        """Delete a record; ``PocketBaseNotFound`` if it is already gone."""
        self.request("DELETE", _record_path(collection, record_id))

    # -- batch -----------------------------------------------------------------------------

    def batch_max_requests(self) -> int:
        """The server's ``batch.maxRequests`` (read once from the settings, then cached)."""
        return self._batch_settings()[0]

    def batch_timeout(self) -> float:
        """The server's ``batch.timeout`` in seconds: no batch transaction runs longer (one
        that would is rolled back), so a batch sent earlier than that has settled."""
        return self._batch_settings()[1]

    def _batch_settings(self) -> tuple[int, float]:
        if self._batch_limits is None:
            settings = self.request("GET", "/api/settings", params={"fields": "batch"})
            batch = settings.get("batch") or {}
            if not batch.get("enabled"):
                raise PocketBaseBatchDisabled(
                    f"the batch API is disabled on {self.url}; run `skopos setup` to enable it",
                    status=403,
                )
            self._batch_limits = (
                max(1, int(batch.get("maxRequests") or 50)),
                max(1.0, float(batch.get("timeout") or 3)),
            )
        return self._batch_limits

    def batch(self, requests: Sequence[BatchRequest]) -> list[Record]:
        """Run ``requests`` through ``POST /api/batch`` and return each response body.

        Each chunk of up to the server's ``maxRequests`` is one transaction: a
        failing request rolls its whole chunk back and raises
        ``PocketBaseValidationError`` whose ``request_index`` counts from the start
        of ``requests``. Requests beyond the limit go in further transactions, so
        keep a batch within ``batch_max_requests()`` when it must be atomic.
        """
        if not requests:
            return []
        limit = self.batch_max_requests()
        results: list[Record] = []
        for start in range(0, len(requests), limit):
            results.extend(self._batch_chunk(requests[start : start + limit], start))
        return results

    def _batch_chunk(self, chunk: Sequence[BatchRequest], offset: int) -> list[Record]:
        body = {"requests": [item.to_json() for item in chunk]}
        for attempt in (1, 2):
            response = self._send("POST", "/api/batch", json_body=body)
            if response.status_code < 400:
                answers = self._json(response)
                return [answer.get("body") or {} for answer in answers]
            failed = _failed_batch_item(response)
            auth_refused = response.status_code in (401, 403) or (
                failed is not None and failed[1].get("status") in (401, 403)
            )
            if auth_refused and attempt == 1:
                self._invalidate_token(response.request.headers.get("Authorization", ""))
                continue
            self._raise_batch_error(response, chunk, offset, failed)
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_batch_error(
        self,
        response: httpx.Response,
        chunk: Sequence[BatchRequest],
        offset: int,
        failed: tuple[int, Mapping[str, Any]] | None,
    ) -> None:
        body = _error_body(response)
        if response.status_code == 403 and "not allowed" in str(body.get("message", "")):
            self._batch_limits = None
            raise PocketBaseBatchDisabled(
                f"the batch API is disabled on {self.url}; run `skopos setup` to enable it",
                status=403,
            )
        if failed is None:
            self._raise_for_status(response)
            return
        index, inner = failed
        inner_status = int(inner.get("status") or 400)
        inner_data = _dict_or_empty(inner.get("data"))
        field_errors = _field_errors(inner_data)
        label = chunk[index].label if index < len(chunk) else "?"
        detail = "; ".join(f"{name}: {text}" for name, text in field_errors.items())
        message = (
            f"batch request {offset + index} ({label}) failed with {inner_status}:"
            f" {inner.get('message', '')}"
            + (f" ({detail})" if detail else "")
            + "; nothing from this batch was written"
        )
        if inner_status in (401, 403):
            raise PocketBaseAuthError(message, status=inner_status, data=inner_data)
        if inner_status >= 500 or inner_status in _RETRYABLE_STATUSES:
            raise PocketBaseServerError(message, status=inner_status, data=inner_data)
        raise PocketBaseValidationError(
            message,
            status=inner_status,
            data=inner_data,
            field_errors=field_errors,
            request_index=offset + index,
            request_label=label,
        )


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _dict_or_empty(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _field_errors(data: Mapping[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for name, value in data.items():
        if isinstance(value, dict) and "message" in value:
            errors[str(name)] = str(value["message"])
    return errors


def _failed_batch_item(response: httpx.Response) -> tuple[int, Mapping[str, Any]] | None:
    """Find ``data.requests.<index>.response`` in a failed batch answer."""
    data = _error_body(response).get("data")
    requests = data.get("requests") if isinstance(data, dict) else None
    if not isinstance(requests, dict):
        return None
    for key, value in requests.items():
        if str(key).isdigit() and isinstance(value, dict):
            inner = value.get("response")
            return int(key), inner if isinstance(inner, dict) else {}
    return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
