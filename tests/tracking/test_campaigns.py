"""Campaigns and channels (``_tracking/campaigns.py``): pure."""

from __future__ import annotations

import pytest

from skopos._tracking.campaigns import Campaign, campaign, classify_host

SITE = "shop.example"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("www.google.com", ("Google", "search")),
        ("google.de", ("Google", "search")),
        ("news.google.co.uk", ("Google", "search")),
        ("duckduckgo.com", ("DuckDuckGo", "search")),
        ("m.facebook.com", ("Facebook", "social")),
        ("t.co", ("X", "social")),
        ("old.reddit.com", ("Reddit", "social")),
        ("mail.google.com", ("Gmail", "email")),
        ("googleusercontent.example", ("googleusercontent.example", "referral")),
        ("blog.other.org", ("blog.other.org", "referral")),
    ],
)
def test_referrer_hosts_are_classified(host: str, expected: tuple[str, str]) -> None:
    assert classify_host(host) == expected


def test_no_referrer_and_no_campaign_is_direct() -> None:
    assert campaign("https://shop.example/", None, SITE) == Campaign()


def test_the_sites_own_pages_are_not_a_source() -> None:
    assert (
        campaign("https://shop.example/b", "https://www.shop.example/a", SITE).channel == "direct"
    )


def test_utm_parameters_are_captured_and_win_over_the_referrer() -> None:
    found = campaign(
        "https://shop.example/?utm_source=newsletter&utm_medium=email&utm_campaign=spring"
        "&utm_term=shoes&utm_content=top",
        "https://mail.google.com/",
        SITE,
    )
    assert found.fields() == {
        "source": "newsletter",
        "channel": "email",
        "utmSource": "newsletter",
        "utmMedium": "email",
        "utmCampaign": "spring",
        "utmTerm": "shoes",
        "utmContent": "top",
        "clickId": "",
    }


@pytest.mark.parametrize(
    ("url", "referrer", "channel", "source"),
    [
        ("https://shop.example/?gclid=abc", "https://www.google.com/", "paid", "Google"),
        ("https://shop.example/?utm_source=google&utm_medium=cpc", None, "paid", "Google"),
        ("https://shop.example/?utm_source=facebook", None, "social", "Facebook"),
        ("https://shop.example/?utm_medium=social&utm_source=partner", None, "social", "partner"),
        ("https://shop.example/?utm_source=partner", None, "referral", "partner"),
        ("https://shop.example/", "https://www.bing.com/search?q=x", "search", "Bing"),
    ],
)
def test_channels(url: str, referrer: str | None, channel: str, source: str) -> None:
    found = campaign(url, referrer, SITE)
    assert (found.channel, found.source) == (channel, source)


def test_only_the_name_of_a_click_id_is_kept() -> None:
    found = campaign("https://shop.example/?fbclid=IwAR123secret", None, SITE)
    assert found.click_id == "fbclid"
    assert "IwAR123secret" not in str(found)


def test_values_are_bounded() -> None:
    assert (
        len(campaign(f"https://shop.example/?utm_campaign={'x' * 500}", None, SITE).utm_campaign)
        == 100
    )
