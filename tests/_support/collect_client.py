"""A test client that sends ``/collect`` messages the way the official ``skopos.min.js`` 1.3
does, written from ``collect-protocol.md`` (the script itself is never copied).

The script builds a message object, ``JSON.stringify``s it, XORs each UTF-16 code unit of
that text with the key's code unit at the same position (modulo the key's length), encodes
the result as UTF-8 and base64, and posts ``{"_d": <base64>, "_v": 1}``. This module does
the same, deliberately without the SDK's decoder: it works on a list of code units and
builds surrogate pairs by hand, so that a shared mistake cannot make both sides agree.

Example::

    body = encode_message(batch(page_view("/"), custom_event("bars_click", {"bar": 3})))
    # b'{"_d":"CEk...","_v":1}'
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

__all__ = [
    "KEY",
    "SCRIPT_VERSION",
    "batch",
    "breadcrumb",
    "custom_event",
    "download",
    "encode_message",
    "envelope",
    "error",
    "errors",
    "exit_message",
    "identify",
    "json_stringify",
    "obfuscate",
    "outbound",
    "page_view",
]

KEY = "sk0p0s_4n4lyt1cs_0bf_k3y_2026"
SCRIPT_VERSION = "1.3.0"
SITE_ID = "TRACKING_ID"
PAGE_URL = "https://example.com/pricing?plan=pro"
CLIENT_TIME_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z

_LONE_SURROGATE_ESCAPE = re.compile(r"[\ud800-\udfff]")


# --- the wire format -------------------------------------------------------------------------


def _code_units(text: str) -> list[int]:
    """``text`` as JavaScript sees it: UTF-16 code units (a Python string may already hold
    surrogates, as ``"\\ud83d\\ude00"``; they stay units of their own, as in JavaScript)."""
    units: list[int] = []
    for char in text:
        point = ord(char)
        if point > 0xFFFF:
            point -= 0x10000
            units.append(0xD800 | (point >> 10))
            units.append(0xDC00 | (point & 0x3FF))
        else:
            units.append(point)
    return units


def _from_code_units(units: list[int]) -> str:
    """A Python string for code units: pairs joined, lone surrogates kept as they are."""
    chars: list[str] = []
    index = 0
    while index < len(units):
        unit = units[index]
        following = units[index + 1] if index + 1 < len(units) else None
        if 0xD800 <= unit <= 0xDBFF and following is not None and 0xDC00 <= following <= 0xDFFF:
            chars.append(chr(0x10000 + ((unit - 0xD800) << 10) + (following - 0xDC00)))
            index += 2
        else:
            chars.append(chr(unit))
            index += 1
    return "".join(chars)


def _well_formed(text: str) -> str:
    """``text`` with the surrogate pairs it holds as two code points joined (as JavaScript
    reads them), lone ones left alone."""
    return _from_code_units(_code_units(text))


def json_stringify(value: Any) -> str:
    """``JSON.stringify(value)``: compact, non-ASCII characters as they are, lone surrogates
    escaped as ``\\udXXX`` (ES2019's well-formed stringify). NaN and infinities raise
    (JavaScript would write ``null``): hostile bodies are built with :func:`obfuscate`."""
    text = _well_formed(
        json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    )
    # After joining pairs, any surrogate left in a Python string is a lone one; JSON.dumps
    # only writes them inside strings, where an escape means the same.
    return _LONE_SURROGATE_ESCAPE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def obfuscate(text: str) -> str:
    """The ``_d`` value for any text: code units XORed with the key's, UTF-8, base64.

    Lone surrogates left after the XOR are written as U+FFFD, as ``TextEncoder`` does.
    """
    key_units = [ord(char) for char in KEY]
    units = _code_units(text)
    mixed = [unit ^ key_units[index % len(key_units)] for index, unit in enumerate(units)]
    encoded = _from_code_units(mixed)
    encoded = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in encoded)
    return base64.b64encode(encoded.encode("utf-8")).decode("ascii")


def encode_message(message: dict[str, Any]) -> bytes:
    """The body the official script posts for ``message``: ``{"_d": ..., "_v": 1}``."""
    body = {"_d": obfuscate(json_stringify(message)), "_v": 1}
    return json.dumps(body, separators=(",", ":")).encode("ascii")


# --- messages --------------------------------------------------------------------------------
# Values are typed Any on purpose: tests send hostile ones through the same builders.


def envelope(message_type: str, **fields: Any) -> dict[str, Any]:
    """The fields every message carries, with realistic values; ``fields`` override them."""
    return {
        "type": message_type,
        "sid": SITE_ID,
        "vid": "v_m5x2k9q1w8",
        "ssid": "s_m5x2l0a7c3",
        "url": PAGE_URL,
        "ref": "https://www.google.com/",
        "sw": 1920,
        "sh": 1080,
        "vw": 1280,
        "vh": 720,
        "dpr": 1.5,
        "cn": "4g",
        "lang": "en-US",
        "tz": "Europe/Berlin",
        "ts": CLIENT_TIME_MS,
        "sv": SCRIPT_VERSION,
        **fields,
    }


def page_view(path: str | None = None) -> dict[str, Any]:
    """A ``pv`` item (the script sends ``p``, the path, for SPA navigations)."""
    return {"t": "pv"} if path is None else {"t": "pv", "p": path}


def custom_event(name: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """An ``ev`` item, as ``skopos('event', name, data)`` queues it."""
    return {"t": "ev", "n": name} if data is None else {"t": "ev", "n": name, "d": data}


def outbound(url: str) -> dict[str, Any]:
    """An ``out`` item: a click on a link to another host."""
    return {"t": "out", "u": url}


def download(filename: str, url: str) -> dict[str, Any]:
    """A ``dl`` item: a click on a link to a file."""
    return {"t": "dl", "f": filename, "u": url}


def batch(*events: Any, **fields: Any) -> dict[str, Any]:
    """A ``batch`` message of ``events`` (items from the builders above)."""
    return envelope("batch", events=list(events), **fields)


def breadcrumb(
    kind: str, message: str, ts: int = CLIENT_TIME_MS, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A breadcrumb ``{t, m, ts, d}``, e.g. ``breadcrumb("navigation", "Navigated to /")``."""
    crumb: dict[str, Any] = {"t": kind, "m": message, "ts": ts}
    if data is not None:
        crumb["d"] = data
    return crumb


def error(
    msg: Any,
    *,
    stack: Any = None,
    src: Any = "https://example.com/static/app.js",
    line: Any = 42,
    col: Any = 13,
    count: Any = 1,
    bc: Any = None,
) -> dict[str, Any]:
    """One error ``{msg, stack, src, line, col, count, bc}`` (None leaves a field out)."""
    item: dict[str, Any] = {"msg": msg, "count": count}
    for key, value in (("stack", stack), ("src", src), ("line", line), ("col", col)):
        if value is not None:
            item[key] = value
    if bc is not None:
        item["bc"] = bc
    return item


def errors(*items: Any, **fields: Any) -> dict[str, Any]:
    """An ``errors`` message of ``items`` (from :func:`error`)."""
    return envelope("errors", errors=list(items), **fields)


def exit_message(dur: Any, reason: Any = "leave", **fields: Any) -> dict[str, Any]:
    """An ``exit`` message: ``dur`` seconds on the page."""
    return envelope("exit", dur=dur, reason=reason, **fields)


def identify(
    uid: Any,
    *,
    name: Any = None,
    email: Any = None,
    phone: Any = None,
    meta: Any = None,
    **fields: Any,
) -> dict[str, Any]:
    """An ``identify`` message, as ``skopos('identify', uid, {name, email, phone, metadata})``
    sends it (absent traits left out)."""
    traits = {"name": name, "email": email, "phone": phone, "meta": meta}
    return envelope(
        "identify", uid=uid, **{k: v for k, v in traits.items() if v is not None}, **fields
    )
