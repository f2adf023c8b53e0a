"""Requests and payloads for tracking tests, and reading back what landed in PocketBase."""

from __future__ import annotations

from typing import Any

from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.filter import pb_filter

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def environ(ip: str, user_agent: str = CHROME, path: str = "/api/event") -> dict[str, Any]:
    """A WSGI environ as a real browser's sendBeacon request produces it."""
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "REMOTE_ADDR": ip,
        "HTTP_USER_AGENT": user_agent,
        "HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.9",
        "wsgi.version": (1, 0),
    }


def scope(ip: str, user_agent: str = CHROME, path: str = "/api/event") -> dict[str, Any]:
    """An ASGI scope for the same request."""
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "client": (ip, 50000),
        "headers": [
            (b"user-agent", user_agent.encode()),
            (b"accept-language", b"en-US,en;q=0.9"),
        ],
    }


def page_view(domain: str, path: str, **extra: Any) -> dict[str, Any]:
    return {"type": "pageView", "url": f"https://{domain}{path}", **extra}


def custom(domain: str, path: str, name: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "custom", "url": f"https://{domain}{path}", "name": name, "customData": data}


def js_error(domain: str, message: str, frame: str = "at render (app.js:10:5)") -> dict[str, Any]:
    return {
        "type": "jsError",
        "url": f"https://{domain}/app",
        "errorMessage": message,
        "stackTrace": f"Error: {message}\n    {frame}\n    at main (app.js:1:1)",
    }


def records(pb: PocketBaseClient, collection: str, **where: str) -> list[dict[str, Any]]:
    """Every record of ``collection`` whose fields equal ``where`` (oldest first)."""
    clauses = " && ".join(f"{name} = {{:{name}}}" for name in where)
    query = pb_filter(clauses, **where) if where else None
    return list(pb.iter_records(collection, filter=query, sort="created,id"))


def site_sessions(pb: PocketBaseClient, website_id: str) -> list[dict[str, Any]]:
    return records(pb, "sessions", website=website_id)


def site_events(pb: PocketBaseClient, website_id: str) -> list[dict[str, Any]]:
    sessions = {s["id"] for s in site_sessions(pb, website_id)}
    found: list[dict[str, Any]] = []
    for session_id in sessions:
        found.extend(records(pb, "events", session=session_id))
    return found
