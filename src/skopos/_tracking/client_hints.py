"""User-Agent Client Hints: what ``Sec-CH-UA*`` headers add to the user agent's story.

Chromium browsers reduce their user agent string (frozen OS versions, an Android model of
"K", the same string for Chrome, Brave and others) and say more in client hints:

- ``Sec-CH-UA``: the brands (``"Brave";v="131", "Chromium";v="131", "Not_A Brand";v="24"``):
  a distinct browser's brand replaces a generic Chrome family;
- ``Sec-CH-UA-Mobile`` (``?1``) and ``Sec-CH-UA-Model`` (high entropy: only sent when the
  site asks, or reported by ``skopos.js`` when the site opts in): phone or tablet;
- ``Sec-CH-UA-Platform``: the operating system when the user agent did not tell.

Hints only refine what the user agent said; a hint that is malformed is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from skopos._tracking.user_agent import UNKNOWN, ClientInfo

__all__ = ["ClientHints", "refine"]

_BRAND = re.compile(r'"([^"]{1,64})"\s*;\s*v\s*=\s*"[^"]{0,32}"')
# Brands that name a browser of their own, as the dashboard shows them.
_BROWSERS = {
    "brave": "Brave",
    "microsoft edge": "Edge",
    "opera": "Opera",
    "opera gx": "Opera",
    "vivaldi": "Vivaldi",
    "yandex": "Yandex Browser",
    "samsung internet": "Samsung Internet",
    "duckduckgo": "DuckDuckGo",
    "arc": "Arc",
}
_GENERIC = frozenset({"Chrome", "Chrome Mobile", "Chrome Mobile WebView", "Chromium", UNKNOWN})
_PLATFORMS = {
    "windows": "Windows",
    "macos": "macOS",
    "linux": "Linux",
    "android": "Android",
    "chrome os": "Chrome OS",
    "chromeos": "Chrome OS",
    "ios": "iOS",
    "fuchsia": "Fuchsia",
}
_TABLET_MODEL = re.compile(r"tablet|\btab\b|^sm-[tx]\d|^lenovo tb|^ipad", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ClientHints:
    """The client hints of one request (None: not sent)."""

    brands: str | None = None  # Sec-CH-UA
    mobile: str | None = None  # Sec-CH-UA-Mobile
    platform: str | None = None  # Sec-CH-UA-Platform
    model: str | None = None  # Sec-CH-UA-Model


def _unquote(value: str | None) -> str:
    return value.strip().strip('"').strip() if value else ""


def _brand(brands: str | None) -> str | None:
    if not brands:
        return None
    for name in _BRAND.findall(brands[:512]):
        known = _BROWSERS.get(name.strip().lower())
        if known is not None:
            return known
    return None


def refine(info: ClientInfo, hints: ClientHints) -> ClientInfo:
    """``info`` (from the user agent) corrected by ``hints``.

    >>> chrome = ClientInfo(browser="Chrome", os="Windows", device="desktop")
    >>> refine(chrome, ClientHints(brands='"Brave";v="131", "Chromium";v="131"')).browser
    'Brave'
    >>> refine(chrome, ClientHints(mobile="?1", model='"SM-X710"')).device
    'tablet'
    """
    browser = info.browser
    brand = _brand(hints.brands)
    if brand is not None and browser in _GENERIC:
        browser = brand
    os = info.os
    if os == UNKNOWN:
        os = _PLATFORMS.get(_unquote(hints.platform).lower(), os)
    device = info.device
    model = _unquote(hints.model)[:64]
    if model and _TABLET_MODEL.search(model):
        device = "tablet"
    elif hints.mobile is not None and hints.mobile.strip() == "?1" and device == "desktop":
        device = "mobile"
    if (browser, os, device) == (info.browser, info.os, info.device):
        return info
    return replace(info, browser=browser, os=os, device=device)
