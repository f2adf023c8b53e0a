"""``skopos privacy``: what this deployment stores and who can link it, from the live
configuration (``SKOPOS_*``) and PocketBase.

Example::

    statement = privacy_statement(client, options_from_environment(), site="abc123")
    print(render_statement(statement))
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Mapping
from typing import Any

from skopos._config import OPTION_NAMES, SkoposOptions
from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.dates import parse_pb_date
from skopos._pocketbase.filter import pb_filter
from skopos._tracking.salt import DAILY_PREFIX, SALT_KEY

__all__ = ["options_from_environment", "privacy_statement", "render_statement"]

# What each collection holds, field by field, as the SDK writes it.
_STORED = {
    "visitors": (
        "visitorId: a keyed hash (HMAC-SHA256) of site, client IP and user agent; no IP",
        "userId, name, email, phone, metadata: only what your app passes to identify()",
    ),
    "sessions": (
        "entryPath, exitPath: paths without query strings{scrub}",
        "referrer: the referring URL without query string or fragment; empty for your pages",
        "source, channel, utm*: campaign parameters of the first page; clickId: the name of an"
        " ad click parameter, never its value",
        "browser, os, device, screenWidth, screenHeight, language: from headers and the page",
        "country (and state with a local GeoIP file): looked up locally, never by a service",
        "ipAddress: only when the website's storeRawIp is on",
        "firstActivity, lastActivity: when the visitor was active (session decisions)",
    ),
    "events": (
        "type, path{scrub}, eventName",
        "eventData: what the page or your server sends, e-mails and tokens replaced",
    ),
    "js_errors": (
        "errorMessage, stackTrace: e-mails and tokens replaced",
        "url: the page, with only campaign parameters in its query",
    ),
}


def options_from_environment() -> dict[str, str]:
    """The ``SKOPOS_*`` variables that name SDK options (secrets left out)."""
    found = {}
    for name in OPTION_NAMES - {"admin_password"}:
        value = os.environ.get("SKOPOS_" + name.upper())
        if value:
            found[name] = value
    return found


def _effective(options: Mapping[str, str]) -> dict[str, Any]:
    defaults = {f.name: f.default for f in dataclasses.fields(SkoposOptions)}
    return {**defaults, **options}


def privacy_statement(
    client: PocketBaseClient, options: Mapping[str, str], *, site: str | None = None
) -> dict[str, Any]:
    """The facts, as one JSON-ready dict."""
    config = _effective(options)
    daily = str(config["visitor_id"]).lower() == "daily"
    salts = []
    query = pb_filter("key = {:stable} || key ~ {:daily}", stable=SALT_KEY, daily=DAILY_PREFIX)
    for record in client.iter_records("skopos_config", filter=query, fields="key,created"):
        created = parse_pb_date(record.get("created", ""))
        age = (dt.datetime.now(dt.timezone.utc).timestamp() - created) / 86400 if created else None
        salts.append({"key": record["key"], "age_days": None if age is None else round(age, 1)})
    website = None
    if site:
        found = client.first_record("websites", pb_filter("trackingId = {:t}", t=site))
        if found is not None:
            website = {
                "tracking_id": site,
                "domain": found.get("domain", ""),
                "store_raw_ip": bool(found.get("storeRawIp")),
                "ip_blacklist_size": len(found.get("ipBlacklist") or []),
            }
    respect = _truthy(config["respect_privacy_signals"])
    scrub_paths, scrub_ids = _truthy(config["scrub_paths"]), _truthy(config["scrub_ids"])
    scrub = ""
    if scrub_paths:
        scrub = "; e-mails, tokens" + (" and numeric ids" if scrub_ids else "") + " replaced"
    return {
        "visitor_ids": {
            "mode": "daily" if daily else "stable",
            "how": "HMAC-SHA256(salt, website + client IP + user agent), 128 bits kept",
            "salt_location": "PocketBase (skopos_config)"
            + (", keyed by a secret outside it (salt_file)" if config["salt_file"] else ""),
            "linkable_across_days": not daily,
            "recomputable_from_a_database_backup": not config["salt_file"] and not daily,
            "salts": salts,
        },
        "stored": {
            collection: [line.format(scrub=scrub) for line in lines]
            for collection, lines in _STORED.items()
        },
        "raw_ip_addresses": "only for websites with storeRawIp on"
        + (f" (this one: {'on' if website['store_raw_ip'] else 'off'})" if website else ""),
        "privacy_signals": (
            f"Sec-GPC{' and DNT' if _truthy(config['respect_dnt']) else ''}:"
            f" {config['privacy_signal_action']}"
            if respect
            else "not acted on (respect_privacy_signals is off)"
        ),
        "scrubbing": {
            "query_strings": "only utm_*, ref, source and ad click ids are kept",
            "paths": scrub.lstrip("; ") or "off",
            "texts": "e-mail addresses, UUIDs and long tokens in messages, traces and"
            " event properties",
            "before_send": bool(config["before_send"]),
        },
        "cookies": "none",
        "third_parties_contacted": [],
        "countries": "local data only (the iptocc package"
        + (", and a local GeoIP file" if config["geoip_database"] else "")
        + ")"
        if _truthy(config["country_lookup"])
        else "not looked up",
        "website": website,
    }


def _truthy(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def render_statement(statement: Mapping[str, Any]) -> str:
    """The statement as plain text for a terminal."""
    ids = statement["visitor_ids"]
    lines = [
        "Skopos privacy statement (from this configuration and PocketBase)",
        "",
        f"Visitor ids: {ids['mode']}, {ids['how']}",
        f"  salt in {ids['salt_location']}",
        f"  linkable across days: {'yes' if ids['linkable_across_days'] else 'no'};"
        f" recomputable from a database backup alone:"
        f" {'yes' if ids['recomputable_from_a_database_backup'] else 'no'}",
    ]
    for salt in ids["salts"]:
        lines.append(f"  {salt['key']}: {salt['age_days']} days old")
    lines += ["", "What is stored:"]
    for collection, facts in statement["stored"].items():
        lines.append(f"  {collection}:")
        lines += [f"    - {fact}" for fact in facts]
    scrubbing = statement["scrubbing"]
    lines += [
        "",
        f"Raw IP addresses: {statement['raw_ip_addresses']}",
        f"Privacy signals: {statement['privacy_signals']}",
        f"Query strings: {scrubbing['query_strings']}",
        f"Paths: {scrubbing['paths']}",
        f"Texts: {scrubbing['texts']}",
        f"before_send hook: {'set' if scrubbing['before_send'] else 'none'}",
        f"Countries: {statement['countries']}",
        f"Cookies: {statement['cookies']}",
        "Third parties contacted: none (the SDK talks to your PocketBase only)",
    ]
    return "\n".join(lines)
