"""User-Agent Client Hints refine browser, OS and device (``_tracking/client_hints.py``)."""

from __future__ import annotations

from skopos._tracking.client_hints import ClientHints, refine
from skopos._tracking.user_agent import UNKNOWN, ClientInfo

CHROME = ClientInfo(browser="Chrome", os="Windows", device="desktop")


def test_a_distinct_brand_replaces_a_generic_chrome() -> None:
    brave = '"Brave";v="131", "Chromium";v="131", "Not_A Brand";v="24"'
    assert refine(CHROME, ClientHints(brands=brave)).browser == "Brave"
    chrome = '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"'
    assert refine(CHROME, ClientHints(brands=chrome)) is CHROME
    firefox = ClientInfo(browser="Firefox", os="Linux", device="desktop")
    assert refine(firefox, ClientHints(brands=brave)).browser == "Firefox"  # not a Chromium


def test_the_platform_fills_an_unknown_os_only() -> None:
    unknown = ClientInfo(browser="Chrome", os=UNKNOWN, device="desktop")
    assert refine(unknown, ClientHints(platform='"macOS"')).os == "macOS"
    assert refine(CHROME, ClientHints(platform='"Linux"')).os == "Windows"


def test_mobile_and_model_decide_the_device() -> None:
    assert refine(CHROME, ClientHints(mobile="?1")).device == "mobile"
    assert refine(CHROME, ClientHints(mobile="?0")).device == "desktop"
    assert refine(CHROME, ClientHints(mobile="?1", model='"Pixel Tablet"')).device == "tablet"
    assert refine(CHROME, ClientHints(model='"SM-T870"')).device == "tablet"


def test_malformed_hints_change_nothing() -> None:
    for hints in (
        ClientHints(brands="garbage"),
        ClientHints(mobile="yes"),
        ClientHints(platform=""),
    ):
        assert refine(CHROME, hints) is CHROME
