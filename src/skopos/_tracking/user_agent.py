"""User-agent parsing for the dashboard: browser, operating system and device class.

The worker enriches every accepted event with a :class:`ClientInfo`. Parsing is done by the
maintained `ua-parser <https://pypi.org/project/ua-parser/>`_ package (uap-core rules, with its
Rust backend when installed) and the mapped result is kept in a bounded LRU cache, because real
traffic repeats a small set of user-agent strings over and over.

Example::

    >>> parser = UserAgentParser(cache_size=1024)
    >>> parser.parse(
    ...     "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    ...     "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
    ... )
    ClientInfo(browser='Mobile Safari', os='iOS', device='mobile')
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

import ua_parser
from ua_parser import Domain, Matchers, Resolver

from skopos._lru import LruCache

__all__ = [
    "MAX_USER_AGENT_LENGTH",
    "UNKNOWN",
    "UNKNOWN_CLIENT",
    "ClientInfo",
    "DeviceType",
    "UserAgentParser",
    "import_parser",
]

MAX_USER_AGENT_LENGTH: Final = 512
"""Characters of a user agent that are looked at; the rest is ignored.

Real browser user agents stay well below this (in-app browsers, the longest, reach about 400);
the cap bounds both parse time and the memory held by each cache key.
"""

UNKNOWN: Final = "Unknown"
"""The value of any field the user agent does not reveal."""

DeviceType = Literal["desktop", "mobile", "tablet"]

_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """What the dashboard shows about a visitor's software.

    ``browser`` and ``os`` are uap-core family names ("Chrome", "Mobile Safari", "Samsung
    Internet", "Windows", "iOS", "Android", ...), except that "Mac OS X" is reported as "macOS".
    None of the fields is ever empty: anything unrecognised is :data:`UNKNOWN`.

    Example::

        >>> ClientInfo(browser="Firefox", os="Linux", device="desktop").device
        'desktop'
    """

    browser: str
    os: str
    device: DeviceType


UNKNOWN_CLIENT: Final = ClientInfo(browser=UNKNOWN, os=UNKNOWN, device="desktop")
"""The result for a missing, empty or unparseable user agent."""

_OS_NAMES: Final = {"Mac OS X": "macOS", "Other": UNKNOWN}
_TABLET_DEVICE_FAMILIES: Final = frozenset({"iPad", "Kindle", "Generic Tablet"})
_MOBILE_DEVICE_FAMILIES: Final = frozenset(
    {"iPhone", "iPod", "Generic Smartphone", "Generic Feature Phone"}
)
_MOBILE_OS_FAMILIES: Final = frozenset(
    {
        "iOS",
        "Android",
        "Windows Phone",
        "BlackBerry OS",
        "BlackBerry Tablet OS",
        "KaiOS",
        "Firefox OS",
        "Symbian OS",
        "Symbian^3",
        "Tizen",
        "webOS",
        "Sailfish",
        "HarmonyOS",
    }
)


def _resolver_parts() -> tuple[Callable[[Matchers], Resolver], Matchers]:
    """The resolver's class and the uap-core rules it takes: imported, not compiled."""
    try:
        from ua_parser import regex  # the Rust backend, from the ua-parser[regex] extra
    except ImportError:
        # Same results, pure Python, about 20 times slower (~1 ms per uncached parse).
        return ua_parser.BasicResolver, ua_parser.load_builtins()
    return regex.Resolver, ua_parser.load_lazy_builtins()


def import_parser() -> None:
    """Import the parser's backend and rules now, in the calling thread, without compiling
    them (``skopos._runtime.imports`` says why)."""
    _resolver_parts()


def _build_resolver() -> Resolver:
    # No ua-parser caching layer: we cache the mapped ClientInfo instead, which is smaller
    # and skips the mapping on a hit.
    resolver_class, rules = _resolver_parts()
    return resolver_class(rules)


_resolver_lock = threading.Lock()
_resolver: Resolver | None = None


def _shared_resolver() -> Resolver:
    """The process-wide uncached ua-parser resolver, built on first use.

    Building it compiles every uap-core rule (about 0.2 s with the Rust backend), so
    it happens once, lazily, on the worker thread, and is shared with the bot detector.
    """
    global _resolver
    resolver = _resolver
    if resolver is None:
        with _resolver_lock:
            resolver = _resolver
            if resolver is None:
                resolver = _resolver = _build_resolver()
    return resolver


def _after_fork_in_child() -> None:
    global _resolver_lock
    _resolver_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def device_family(user_agent: str) -> str | None:
    """uap-core's device family for ``user_agent`` ("iPhone", "Spider", ...), uncached.

    The bot detector uses the "Spider" family as one of its crawler lists. Raises whatever
    ua-parser raises; callers guard.

    Example::

        >>> device_family("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
        'Spider'
    """
    device = _shared_resolver()(user_agent[:MAX_USER_AGENT_LENGTH], Domain.DEVICE).device
    return None if device is None else device.family


def _device_type(user_agent: str, os_family: str, family: str, brand: str | None) -> DeviceType:
    # Tablets first: an Android tablet is an Android device without the "Mobile" token (the
    # convention Google documents for Chrome, and what uap-core encodes as
    # Generic_Android_Tablet); Firefox on Android says "Tablet" explicitly. iPadOS 13+ Safari
    # asks for desktop sites with a Macintosh user agent and is indistinguishable: desktop.
    if family in _TABLET_DEVICE_FAMILIES or brand == "Generic_Android_Tablet":
        return "tablet"
    if "iPad" in user_agent or (os_family != "Windows" and "Tablet" in user_agent):
        return "tablet"
    if family in _MOBILE_DEVICE_FAMILIES or "Mobi" in user_agent:
        return "mobile"
    if os_family == "Android":
        return "tablet"
    if os_family in _MOBILE_OS_FAMILIES:
        return "mobile"
    return "desktop"


def _parse_uncached(user_agent: str) -> ClientInfo:
    result = _shared_resolver()(user_agent, Domain.ALL)
    browser = result.user_agent.family if result.user_agent is not None else "Other"
    os_family = result.os.family if result.os is not None else "Other"
    family = result.device.family if result.device is not None else "Other"
    brand = result.device.brand if result.device is not None else None
    # A handful of distinct family names fill thousands of cache entries: share them.
    return ClientInfo(
        browser=sys.intern(UNKNOWN if browser in ("Other", "") else browser),
        os=sys.intern(_OS_NAMES.get(os_family, os_family) or UNKNOWN),
        device=_device_type(user_agent, os_family, family, brand),
    )


class UserAgentParser:
    """Parses user-agent strings into :class:`ClientInfo`, with a bounded LRU cache.

    ``parse`` never raises: a missing, empty, non-string or unparseable user agent gives
    :data:`UNKNOWN_CLIENT`. Only the first :data:`MAX_USER_AGENT_LENGTH` characters count.

    Memory: the cache holds at most ``cache_size`` entries, each a key of at most 512
    characters plus a small value (family names are interned and shared). Measured with
    tracemalloc at the default 2,048 entries of 512 characters: 1.4 MB for ASCII agents; 8.8 MB
    in the worst case where every character takes 4 bytes, as CPython then also keeps the UTF-8
    copy of each key that the Rust parser was given. Real traffic (ASCII, ~150 characters) is
    well under 1 MB.

    Safe to share between threads; the cache stays consistent under concurrent use.

    Example::

        >>> UserAgentParser().parse(
        ...     "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        ...     "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
        ... )
        ClientInfo(browser='Chrome', os='Windows', device='desktop')
    """

    __slots__ = ("_cache",)

    def __init__(self, cache_size: int = 2048) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self._cache: LruCache[str, ClientInfo] = LruCache(cache_size)

    @property
    def cache_size(self) -> int:
        """The maximum number of cached user agents."""
        return self._cache.maxsize

    def cache_len(self) -> int:
        """How many user agents are cached right now."""
        return len(self._cache)

    def parse(self, user_agent: str | None) -> ClientInfo:
        """Return the :class:`ClientInfo` for ``user_agent``; never raises."""
        if not isinstance(user_agent, str):
            return UNKNOWN_CLIENT
        key = user_agent[:MAX_USER_AGENT_LENGTH].strip()
        if not key:
            return UNKNOWN_CLIENT
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        try:
            info = _parse_uncached(key)
        except Exception:
            # Untrusted input must never break the worker; an odd string is just "Unknown".
            info = UNKNOWN_CLIENT
        self._cache.put(key, info)
        return info
