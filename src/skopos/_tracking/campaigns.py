"""Where a visit came from: campaign parameters of its first page, and its referrer's source
and channel, from a list maintained here (no lookup service).

``campaign(url, referrer, site_domain)`` gives what a session stores in the fields ``skopos
setup`` adds: ``utmSource``, ``utmMedium``, ``utmCampaign``, ``utmTerm``, ``utmContent``,
``clickId`` (the *name* of the ad click parameter present, ``gclid`` say: its value identifies
the click at the ad network, so it is never stored), ``source`` (a name: ``Google``,
``Facebook``, a referrer's host, or the ``utm_source``) and ``channel``:

- ``paid``: a click id, or ``utm_medium`` of cpc/ppc/paid/display/...;
- ``email``: ``utm_medium`` email/newsletter, or a webmail referrer;
- ``social`` / ``search``: a social network's or a search engine's referrer (or such a
  ``utm_source``, or ``utm_medium`` social);
- ``referral``: any other site;
- ``direct``: nothing at all (no referrer, no campaign).

The dashboard's own fields keep their meaning: ``referrer`` stays the referrer URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from skopos._tracking.hosts import host_matches_domain
from skopos._tracking.scrub import CLICK_ID_PARAMETERS

__all__ = ["Campaign", "Channel", "campaign", "classify_host"]

Channel = Literal["direct", "search", "social", "email", "paid", "referral"]

# host suffix → (source name, channel). A host matches an entry when it is that domain or a
# subdomain of it; "google." style entries match any country domain (google.co.uk).
_KNOWN: dict[str, tuple[str, Channel]] = {
    # search engines
    "google.": ("Google", "search"),
    "bing.com": ("Bing", "search"),
    "duckduckgo.com": ("DuckDuckGo", "search"),
    "search.yahoo.com": ("Yahoo", "search"),
    "yahoo.co.jp": ("Yahoo", "search"),
    "yandex.": ("Yandex", "search"),
    "baidu.com": ("Baidu", "search"),
    "ecosia.org": ("Ecosia", "search"),
    "search.brave.com": ("Brave", "search"),
    "startpage.com": ("Startpage", "search"),
    "qwant.com": ("Qwant", "search"),
    "naver.com": ("Naver", "search"),
    "seznam.cz": ("Seznam", "search"),
    "kagi.com": ("Kagi", "search"),
    "perplexity.ai": ("Perplexity", "search"),
    "chatgpt.com": ("ChatGPT", "search"),
    # social networks
    "facebook.com": ("Facebook", "social"),
    "fb.com": ("Facebook", "social"),
    "instagram.com": ("Instagram", "social"),
    "t.co": ("X", "social"),
    "twitter.com": ("X", "social"),
    "x.com": ("X", "social"),
    "linkedin.com": ("LinkedIn", "social"),
    "lnkd.in": ("LinkedIn", "social"),
    "reddit.com": ("Reddit", "social"),
    "news.ycombinator.com": ("Hacker News", "social"),
    "youtube.com": ("YouTube", "social"),
    "youtu.be": ("YouTube", "social"),
    "tiktok.com": ("TikTok", "social"),
    "pinterest.": ("Pinterest", "social"),
    "mastodon.social": ("Mastodon", "social"),
    "bsky.app": ("Bluesky", "social"),
    "threads.net": ("Threads", "social"),
    "vk.com": ("VK", "social"),
    "weibo.com": ("Weibo", "social"),
    "discord.com": ("Discord", "social"),
    "telegram.org": ("Telegram", "social"),
    "t.me": ("Telegram", "social"),
    "whatsapp.com": ("WhatsApp", "social"),
    "quora.com": ("Quora", "social"),
    "stackoverflow.com": ("Stack Overflow", "social"),
    "github.com": ("GitHub", "social"),
    # webmail
    "mail.google.com": ("Gmail", "email"),
    "outlook.live.com": ("Outlook", "email"),
    "outlook.office.com": ("Outlook", "email"),
    "mail.yahoo.com": ("Yahoo Mail", "email"),
    "mail.proton.me": ("Proton Mail", "email"),
}
# Exact domains first (mail.google.com before google.*), then the any-TLD names.
_DOMAINS = sorted(
    ((suffix, known) for suffix, known in _KNOWN.items() if not suffix.endswith(".")),
    key=lambda item: -len(item[0]),
)
_ANY_TLD = [(suffix[:-1], known) for suffix, known in _KNOWN.items() if suffix.endswith(".")]
# Source names as campaigns spell them: "google", "facebook", "Hacker News".
_NAMES = {known[0].lower(): known for known in _KNOWN.values()} | {
    suffix.rstrip(".").split(".")[0]: known for suffix, known in _KNOWN.items()
}
_PAID_MEDIA = frozenset(
    {"cpc", "ppc", "paid", "paidsearch", "paid_search", "display", "cpm", "banner", "paid_social"}
)
_EMAIL_MEDIA = frozenset({"email", "e-mail", "newsletter", "mail"})
_SOCIAL_MEDIA = frozenset({"social", "social-network", "social_network", "sm"})
_MAX_VALUE = 100


@dataclass(frozen=True)
class Campaign:
    """Where a session came from; empty strings where unknown."""

    source: str = ""
    channel: Channel = "direct"
    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    utm_term: str = ""
    utm_content: str = ""
    click_id: str = ""

    def fields(self) -> dict[str, str]:
        """The ``sessions`` fields it fills (the ones ``skopos setup`` adds)."""
        return {
            "source": self.source,
            "channel": self.channel,
            "utmSource": self.utm_source,
            "utmMedium": self.utm_medium,
            "utmCampaign": self.utm_campaign,
            "utmTerm": self.utm_term,
            "utmContent": self.utm_content,
            "clickId": self.click_id,
        }


def classify_host(host: str) -> tuple[str, Channel]:
    """A referrer host's source name and channel (``referral`` for any other site).

    >>> classify_host("www.google.co.uk"), classify_host("old.reddit.com")
    (('Google', 'search'), ('Reddit', 'social'))
    >>> classify_host("blog.example.org")
    ('blog.example.org', 'referral')
    """
    host = host.lower().removeprefix("www.")
    for suffix, known in _DOMAINS:
        if host == suffix or host.endswith("." + suffix):
            return known
    labels = host.split(".")[:-1]
    for name, known in _ANY_TLD:
        if name in labels:  # google.com, google.co.uk, news.google.de
            return known
    return host, "referral"


def _named_source(value: str) -> tuple[str, Channel] | None:
    """A ``utm_source`` that names a known network (``google``, ``facebook.com``)."""
    named, channel = classify_host(value)
    if channel != "referral":
        return named, channel
    return _NAMES.get(value.strip().lower())


def _parameter(query: dict[str, str], name: str) -> str:
    return query.get(name, "").strip()[:_MAX_VALUE]


def campaign(url: str, referrer: str | None, site_domain: str | None) -> Campaign:
    """The campaign of a session whose first page is ``url``, reached from ``referrer``.

    >>> campaign("https://a.test/?utm_source=newsletter&utm_medium=email", None, "a.test")
    ... # doctest: +NORMALIZE_WHITESPACE
    Campaign(source='newsletter', channel='email', utm_source='newsletter', utm_medium='email',
             utm_campaign='', utm_term='', utm_content='', click_id='')
    >>> campaign("https://a.test/?gclid=XYZ", "https://www.google.com/", "a.test").channel
    'paid'
    >>> campaign("https://a.test/", "https://a.test/pricing", "a.test").channel
    'direct'
    """
    try:
        query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=False))
    except ValueError:
        query = {}
    utm = {key: _parameter(query, f"utm_{key}") for key in _UTM_KEYS}
    click_id = next((name for name in sorted(CLICK_ID_PARAMETERS) if query.get(name)), "")
    source = ""
    channel: Channel = "direct"
    host = _referrer_host(referrer, site_domain)
    if host:
        source, channel = classify_host(host)
    if utm["source"]:
        known = _named_source(utm["source"])
        if known is not None:  # the campaign names a known network
            source, channel = known
        else:
            source = utm["source"]
            if channel == "direct":
                channel = "referral"
    medium = utm["medium"].lower()
    if click_id or medium in _PAID_MEDIA:
        channel = "paid"
    elif medium in _EMAIL_MEDIA:
        channel = "email"
    elif medium in _SOCIAL_MEDIA:
        channel = "social"
    return Campaign(
        source=source[:_MAX_VALUE],
        channel=channel,
        utm_source=utm["source"],
        utm_medium=utm["medium"],
        utm_campaign=utm["campaign"],
        utm_term=utm["term"],
        utm_content=utm["content"],
        click_id=click_id,
    )


_UTM_KEYS = ("source", "medium", "campaign", "term", "content")


def _referrer_host(referrer: str | None, site_domain: str | None) -> str:
    """The referrer's host, or "" for none or the site's own pages (navigation)."""
    if not referrer:
        return ""
    try:
        host = urlsplit(referrer).hostname or ""
    except ValueError:
        return ""
    if not host or (site_domain and host_matches_domain(host, site_domain)):
        return ""
    return host
