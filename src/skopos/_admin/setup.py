"""``skopos setup``: prepare a PocketBase server for the SDK, idempotently.

1. Import the Skopos collections (additions only, see ``schema``).
2. Enable the batch API and raise its limits to what the SDK sends.
3. Optionally create a website and report its tracking id.

Run it as often as you like: a second run changes nothing.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from typing import Any

from skopos._admin.schema import load_schema, plan_schema
from skopos._exceptions import ConfigurationError
from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.filter import pb_filter

__all__ = [
    "BATCH_MAX_REQUESTS",
    "BATCH_TIMEOUT",
    "SetupReport",
    "Website",
    "apply_schema",
    "create_website",
    "ensure_batch_api",
    "ensure_website",
    "list_collections",
    "run_setup",
]

# One SDK flush is at most this many records in one transaction.
BATCH_MAX_REQUESTS = 1000
# Seconds PocketBase allows a batch transaction; 1,000 creates take ~0.3 s.
BATCH_TIMEOUT = 10

_TRACKING_ID_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class Website:
    """A ``websites`` record as setup reports it."""

    id: str
    name: str
    domain: str
    tracking_id: str
    created: bool


@dataclass
class SetupReport:
    """What ``run_setup`` did; ``changed`` is False on a repeated run."""

    created_collections: list[str] = field(default_factory=list)
    added: dict[str, list[str]] = field(default_factory=dict)
    batch_settings_changed: bool = False
    website: Website | None = None

    @property
    def changed(self) -> bool:
        """Whether the server's schema or settings were modified."""
        return bool(self.created_collections or self.added or self.batch_settings_changed)

    def lines(self) -> list[str]:
        """A human-readable summary, one line per change."""
        out = [f"created collection {name}" for name in self.created_collections]
        for name, additions in self.added.items():
            out.extend(f"{name}: added {what}" for what in additions)
        if self.batch_settings_changed:
            out.append(
                f"enabled the batch API (maxRequests >= {BATCH_MAX_REQUESTS},"
                f" timeout >= {BATCH_TIMEOUT}s)"
            )
        if not out:
            out.append("schema and settings already up to date")
        return out

    def summary(self) -> list[str]:
        """``lines()`` and, when there is one, the website with its tracking id."""
        out = self.lines()
        site = self.website
        if site is not None:
            state = "created" if site.created else "exists"
            out.append(
                f"website {site.name!r} ({site.domain}) {state}; tracking id: {site.tracking_id}"
            )
        return out


def apply_schema(client: PocketBaseClient) -> tuple[list[str], dict[str, list[str]]]:
    """Import missing Skopos collections, fields and indexes; return what changed.

    Raises ``ConfigurationError`` (and changes nothing) when an existing
    collection conflicts with what Skopos writes.
    """
    existing = list(list_collections(client))
    plan = plan_schema(load_schema(), existing)
    if plan.conflicts:
        raise ConfigurationError(
            "the PocketBase schema conflicts with Skopos; nothing was changed:\n  "
            + "\n  ".join(plan.conflicts)
        )
    if plan.changes:
        client.request(
            "PUT",
            "/api/collections/import",
            json_body={"collections": plan.collections, "deleteMissing": False},
        )
    return plan.created, plan.added


def list_collections(client: PocketBaseClient) -> list[dict[str, Any]]:
    """Every collection definition on the server (``GET /api/collections``, all pages)."""
    collections: list[dict[str, Any]] = []
    page = 1
    while True:
        data = client.request("GET", "/api/collections", params={"page": page, "perPage": 500})
        items = data.get("items", [])
        collections.extend(items)
        if len(items) < 500:
            return collections
        page += 1


def ensure_batch_api(client: PocketBaseClient) -> bool:
    """Enable the batch API with room for the SDK's batches; True if settings changed.

    Never lowers limits someone already raised.
    """
    settings = client.request("GET", "/api/settings", params={"fields": "batch"})
    batch = dict(settings.get("batch") or {})
    wanted = {
        "enabled": True,
        "maxRequests": max(int(batch.get("maxRequests") or 0), BATCH_MAX_REQUESTS),
        "timeout": max(int(batch.get("timeout") or 0), BATCH_TIMEOUT),
    }
    if all(batch.get(key) == value for key, value in wanted.items()):
        return False
    client.request("PATCH", "/api/settings", json_body={"batch": {**batch, **wanted}})
    return True


def new_tracking_id() -> str:
    """A fresh, unguessable tracking id: 16 characters of ``[a-z0-9]``."""
    return "".join(secrets.choice(_TRACKING_ID_ALPHABET) for _ in range(16))


def ensure_website(
    client: PocketBaseClient, name: str, domain: str, *, owner_email: str | None = None
) -> Website:
    """The website for ``domain``, created if no website has that domain yet."""
    domain = domain.strip().lower()
    if not domain:
        raise ConfigurationError("--domain must not be empty")
    found = client.first_record(
        "websites", pb_filter("domain = {:domain}", domain=domain), sort="created"
    )
    if found is not None:
        return Website(found["id"], found["name"], domain, found["trackingId"], created=False)
    return create_website(client, name, domain, owner_email=owner_email)


def create_website(
    client: PocketBaseClient, name: str, domain: str, *, owner_email: str | None = None
) -> Website:
    """A new website for ``domain`` with a fresh tracking id, even if another website has
    that domain (``ensure_website`` reuses it instead)."""
    record: dict[str, Any] = {
        "name": name or domain,
        "domain": domain,
        "trackingId": new_tracking_id(),
        "isArchived": False,
        "disableLocalhostTracking": False,
        "storeRawIp": False,
        "ipBlacklist": [],
    }
    if owner_email:
        owner = client.first_record("users", pb_filter("email = {:email}", email=owner_email))
        if owner is None:
            raise ConfigurationError(f"no user with email {owner_email!r} in 'users'")
        record["user"] = owner["id"]
    created = client.create_record("websites", record)
    return Website(created["id"], created["name"], domain, created["trackingId"], created=True)


def run_setup(
    client: PocketBaseClient,
    *,
    site_name: str | None = None,
    domain: str | None = None,
    owner_email: str | None = None,
) -> SetupReport:
    """Everything ``skopos setup`` does, in order. Authenticates first (fails fast)."""
    client.authenticate()
    report = SetupReport()
    report.created_collections, report.added = apply_schema(client)
    report.batch_settings_changed = ensure_batch_api(client)
    if domain:
        report.website = ensure_website(
            client, site_name or domain, domain, owner_email=owner_email
        )
    elif site_name:
        raise ConfigurationError("--site-name needs --domain (the site's domain name)")
    return report
