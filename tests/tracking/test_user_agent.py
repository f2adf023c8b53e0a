"""User-agent parsing: known agents map to dashboard values, the cache stays bounded, and no
input makes ``parse`` raise."""

from __future__ import annotations

import os
import signal
import threading
import warnings

import pytest
import ua_parser
from hypothesis import given
from hypothesis import strategies as st

from skopos._tracking import user_agent as _user_agent
from skopos._tracking.user_agent import (
    MAX_USER_AGENT_LENGTH,
    UNKNOWN,
    UNKNOWN_CLIENT,
    ClientInfo,
    UserAgentParser,
    device_family,
)

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)

KNOWN = [
    pytest.param(CHROME_WINDOWS, ClientInfo("Chrome", "Windows", "desktop"), id="chrome-windows"),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        ClientInfo("Mobile Safari", "iOS", "mobile"),
        id="safari-iphone",
    ),
    pytest.param(
        "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        ClientInfo("Mobile Safari", "iOS", "tablet"),
        id="safari-ipad",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        ClientInfo("Chrome", "Android", "tablet"),
        id="chrome-android-tablet",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Mobile Safari/537.36",
        ClientInfo("Chrome Mobile", "Android", "mobile"),
        id="chrome-android-phone-reduced-ua",
    ),
    pytest.param(
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        ClientInfo("Firefox", "Linux", "desktop"),
        id="firefox-linux",
    ),
    pytest.param(
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        ClientInfo("Firefox", "Ubuntu", "desktop"),
        id="firefox-ubuntu",
    ),
    pytest.param(
        CHROME_WINDOWS + " Edg/131.0.0.0", ClientInfo("Edge", "Windows", "desktop"), id="edge"
    ),
    pytest.param(
        CHROME_WINDOWS + " OPR/115.0.0.0", ClientInfo("Opera", "Windows", "desktop"), id="opera"
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 "
        "(KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
        ClientInfo("Samsung Internet", "Android", "mobile"),
        id="samsung-internet",
    ),
    pytest.param(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        ClientInfo("Safari", "macOS", "desktop"),
        id="safari-macos",
    ),
    pytest.param(
        "Mozilla/5.0 (Android 14; Tablet; rv:133.0) Gecko/133.0 Firefox/133.0",
        ClientInfo("Firefox Mobile", "Android", "tablet"),
        id="firefox-android-tablet",
    ),
    pytest.param(
        "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
        ClientInfo("Firefox Mobile", "Android", "mobile"),
        id="firefox-android-phone",
    ),
    pytest.param(
        "Mozilla/5.0 (Linux; Android 11; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Silk/131.2.1 like Chrome/131.0.6778.135 Safari/537.36",
        ClientInfo("Amazon Silk", "Android", "tablet"),
        id="kindle-fire",
    ),
    pytest.param(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
        ClientInfo("Chrome Mobile iOS", "iOS", "mobile"),
        id="chrome-ios",
    ),
    pytest.param(
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        ClientInfo("Chrome", "Chrome OS", "desktop"),
        id="chromebook",
    ),
    pytest.param(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        ClientInfo("Firefox", "Windows", "desktop"),
        id="firefox-windows",
    ),
    pytest.param(
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        ClientInfo("Googlebot", UNKNOWN, "desktop"),
        id="googlebot",
    ),
    pytest.param("Totally not a browser", UNKNOWN_CLIENT, id="unknown-string"),
]


@pytest.mark.parametrize(("user_agent", "expected"), KNOWN)
def test_known_user_agents(user_agent: str, expected: ClientInfo) -> None:
    assert UserAgentParser().parse(user_agent) == expected


@pytest.mark.parametrize("missing", [None, "", "   ", "\t\n"])
def test_missing_user_agent_is_unknown(missing: str | None) -> None:
    assert UserAgentParser().parse(missing) is UNKNOWN_CLIENT


@pytest.mark.parametrize("not_a_string", [b"Mozilla/5.0", 42, ["Mozilla"], object()])
def test_non_string_input_is_unknown(not_a_string: object) -> None:
    assert UserAgentParser().parse(not_a_string) is UNKNOWN_CLIENT  # type: ignore[arg-type]


def test_cache_returns_the_same_object_and_stays_bounded() -> None:
    parser = UserAgentParser(cache_size=16)
    first = parser.parse(CHROME_WINDOWS)
    assert parser.parse(CHROME_WINDOWS) is first
    for i in range(200):
        parser.parse(f"{CHROME_WINDOWS} Build/{i}")
        assert parser.cache_len() <= 16
    assert parser.cache_len() == 16
    assert parser.cache_size == 16


def test_zero_cache_size_disables_caching() -> None:
    parser = UserAgentParser(cache_size=0)
    assert parser.parse(CHROME_WINDOWS).browser == "Chrome"
    assert parser.cache_len() == 0


def test_negative_cache_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="cache_size"):
        UserAgentParser(cache_size=-1)


def test_only_the_first_512_characters_count() -> None:
    parser = UserAgentParser(cache_size=4)
    head = CHROME_WINDOWS.ljust(MAX_USER_AGENT_LENGTH, "x")
    first = parser.parse(head + "A" * 10_000)
    assert parser.parse(head + "B" * 10_000) is first  # same cache key: the first 512 chars
    assert parser.cache_len() == 1
    assert first.browser == "Chrome"


def test_device_family_exposes_uap_spider() -> None:
    assert device_family("Mozilla/5.0 (compatible; bingbot/2.0)") == "Spider"
    assert device_family(CHROME_WINDOWS) in (None, "Other")


def test_concurrent_use_keeps_the_cache_consistent() -> None:
    parser = UserAgentParser(cache_size=32)
    errors: list[BaseException] = []

    def hammer(offset: int) -> None:
        try:
            for i in range(300):
                info = parser.parse(f"{CHROME_WINDOWS} Thread/{(offset + i) % 64}")
                assert info.browser == "Chrome"
        except BaseException as exc:  # collected and re-raised on the main thread
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n * 7,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert parser.cache_len() <= 32


_SHARED_PARSER = UserAgentParser(cache_size=64)


@given(st.text(max_size=2000))
def test_garbage_never_raises(garbage: str) -> None:
    info = _SHARED_PARSER.parse(garbage)
    assert info.browser
    assert info.os
    assert info.device in ("desktop", "mobile", "tablet")
    assert _SHARED_PARSER.cache_len() <= 64


_TOKENS = ["Mozilla/5.0", " ", "(", ")", ";", "Android 14", "iPad", "iPhone", "Mobile", "Tablet"]
_TOKENS += ["AppleWebKit/537.36", "(KHTML, like Gecko)", "Chrome/131.0", "Safari/604.1", "\x00"]


@given(st.lists(st.sampled_from(_TOKENS), max_size=60).map("".join))
def test_browser_like_garbage_never_raises(garbage: str) -> None:
    info = _SHARED_PARSER.parse(garbage)
    assert info.browser
    assert info.os


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_inherit_a_held_cache_lock() -> None:
    parser = UserAgentParser(cache_size=8)
    parser.parse(CHROME_WINDOWS)
    # Another thread of the parent is inside the cache at the moment of fork().
    parser._cache._lock.acquire()
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork() in a process that has threads; this test is
            # precisely about surviving that.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # child: must not block on the inherited lock
            signal.alarm(10)
            ok = parser.parse(CHROME_WINDOWS).browser == "Chrome"
            ok = ok and parser.parse(CHROME_WINDOWS + " Fresh").browser == "Chrome"
            os._exit(0 if ok else 1)
    finally:
        parser._cache._lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_pure_python_fallback_gives_the_same_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the ua-parser[regex] extra (ua-parser-rs), ua-parser's own Python resolver runs.
    basic = ua_parser.BasicResolver(ua_parser.load_builtins())
    monkeypatch.setattr(_user_agent, "_resolver", basic)
    parser = UserAgentParser()
    for case in KNOWN:
        user_agent, expected = case.values
        assert isinstance(user_agent, str)
        assert parser.parse(user_agent) == expected, case.id
