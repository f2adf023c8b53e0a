"""A tracking call → an activity, or the reason it is dropped (in the worker).

validate (payload) → filter (site rules, bots) → enrich (user agent) →
identify (visitor hash). Each step either passes the call on or names a drop
reason (``_stats.DropReason``, ``invalid(code)``, ``bot(code)``): a stable string that
becomes a ``stats().dropped`` counter.

A ``/collect`` call (the official client script's message) goes through the same steps
with the message's site (``sid``, which must be one this SDK serves) and host, and becomes
``Expanded``: the activities of its events or errors, and the parts of it left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from skopos._lru import LruCache
from skopos._stats import DropReason, bot, invalid
from skopos._tracking.activity import Activity, TrackCall
from skopos._tracking.bots import BotDetector, RequestSignals
from skopos._tracking.client_hints import ClientHints, refine
from skopos._tracking.client_ip import TrustedProxies, resolve_client_ip
from skopos._tracking.collect import CollectRejection, decode_collect
from skopos._tracking.collect_activities import Visit, collect_activities
from skopos._tracking.collect_message import CollectBatch, CollectErrors
from skopos._tracking.collect_records import collect_records
from skopos._tracking.geo import GeoLocator
from skopos._tracking.hooks import BeforeSendHook
from skopos._tracking.hosts import host_matches_domain, is_localhost, traffic_source
from skopos._tracking.identity import VisitorHasher, derive_record_id
from skopos._tracking.ip_rules import IPAddress
from skopos._tracking.payload import (
    Rejection,
    validate_custom_data,
    validate_event_name,
    validate_payload,
)
from skopos._tracking.scrub import Scrubber, scrub_text
from skopos._tracking.site_rules import SiteRules
from skopos._tracking.sites import SiteRegistry
from skopos._tracking.snapshot import RequestSnapshot
from skopos._tracking.user_agent import ClientInfo, UserAgentParser

__all__ = ["Expanded", "Pipeline", "PrivacySignals"]

# The visitor behind server events that come without a request (cron jobs, queues).
SERVER_VISITOR = "server"
# Traits identify() stores in visitor fields (at most this many characters); the rest go
# to ``metadata``.
_IDENTIFY_FIELDS = {"name": 255, "email": 255, "phone": 50}
_COUNTRY_CODE = re.compile(r"[A-Z]{2}")
_WARM_UP_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
# Verdicts on an event's host, memoised per (host, site domain): a site sees few hosts, and
# the checks re-normalise both sides (~10 µs an event). Hosts come from the browser, so the
# memo is bounded.
_HOST_LOCAL, _HOST_ON_DOMAIN, _HOST_OFF_DOMAIN = 0, 1, 2
_HOST_VERDICTS = 4096


class _Origin(NamedTuple):
    ip: str | None  # the client address as text
    address: IPAddress | None
    country: str
    region: str
    unresolved: bool = False  # behind a trusted proxy that named no usable address


_NO_ORIGIN = _Origin(None, None, "", "")


class _Browser(NamedTuple):
    """A browser's request that passed the site's and the bot filters."""

    origin: _Origin
    user_agent: str
    client: ClientInfo


@dataclass(slots=True)
class Expanded:
    """A call that became several activities (a ``/collect`` message), in the order sent,
    and the drop reasons of the parts of it left out (``invalid:<code>``, one each)."""

    activities: list[Activity]
    left_out: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PrivacySignals:
    """What the site does with visitors who ask not to be tracked (``Sec-GPC: 1``, and with
    ``dnt``, ``DNT: 1``): nothing special (``respect=False``), count them without identifying
    them (``action="anonymous"``: a page view in a session of its own, no visitor record, no
    IP), or drop them (``"drop"``)."""

    respect: bool = False
    dnt: bool = False
    action: str = "anonymous"

    def asked(self, snapshot: RequestSnapshot | None) -> bool:
        """Whether the request carries a signal this site respects."""
        if not self.respect or snapshot is None:
            return False
        if (snapshot.sec_gpc or "").strip() == "1":
            return True
        return self.dnt and (snapshot.dnt or "").strip() == "1"


def _hints(snapshot: RequestSnapshot | None, model: str | None = None) -> ClientHints:
    if snapshot is None:
        return ClientHints(model=model)
    return ClientHints(
        brands=snapshot.sec_ch_ua,
        mobile=snapshot.sec_ch_ua_mobile,
        platform=snapshot.sec_ch_ua_platform,
        model=snapshot.sec_ch_ua_model or model,
    )


class Pipeline:
    """Turns ``TrackCall`` objects into ``Activity`` objects; stateless apart from caches."""

    def __init__(
        self,
        sites: SiteRegistry,
        hasher: VisitorHasher,
        *,
        trusted_proxies: TrustedProxies | None = None,
        client_ip_header: str = "x-forwarded-for",
        user_agents: UserAgentParser | None = None,
        bots: BotDetector | None = None,
        geo: GeoLocator | None = None,
        scrubber: Scrubber | None = None,
        privacy: PrivacySignals | None = None,
        before_send: BeforeSendHook | None = None,
        collect_sites: Iterable[str] = (),
    ) -> None:
        self._sites = sites
        # The tracking ids /collect messages may name: the SDK's site_id and collect_site_ids.
        self._collect_sites = frozenset(collect_sites)
        self._hasher = hasher
        self._scrubber = scrubber or Scrubber()
        self._privacy = privacy or PrivacySignals()
        self._before_send = before_send
        self.anonymous_calls = 0  # counted without identification (privacy signals)
        self._trusted = trusted_proxies or TrustedProxies([])
        self._client_ip_header = client_ip_header
        self._geo = geo or GeoLocator()
        self._user_agents = user_agents or UserAgentParser()
        self._bots = bots or BotDetector()
        self.spoof_attempts = 0
        self._host_verdicts: LruCache[tuple[str, str | None], int] = LruCache(_HOST_VERDICTS)

    def warm_up(self) -> None:
        """Load the user-agent and bot rules now, not on the first request."""
        self._user_agents.parse(_WARM_UP_AGENT)
        self._bots.verdict(RequestSignals(user_agent=_WARM_UP_AGENT, accept_language="en"))

    def prepare(self, call: TrackCall) -> Activity | Expanded | str:
        """The activity for ``call`` (activities, for a ``/collect`` call), or a drop reason.
        May raise ``PocketBaseError`` (site rules could not be loaded); the caller retries
        later."""
        snapshot = None if call.request is None else call.request.snapshot()
        anonymous = self._privacy.asked(snapshot)
        if anonymous and (self._privacy.action == "drop" or call.kind == "identify"):
            return DropReason.PRIVACY_SIGNAL
        if call.kind == "collect":
            return self._collect(call, snapshot, anonymous)
        site = self._sites.get(call.site_id)
        if site is None:
            return DropReason.UNKNOWN_SITE
        if site.is_archived:
            return DropReason.SITE_ARCHIVED
        if call.kind == "api":
            result = self._browser_event(call, site, snapshot)
        elif call.kind == "server":
            result = self._server_event(call, site, snapshot)
        else:
            result = self._identify(call, site, snapshot)
        if isinstance(result, str):
            return result
        if anonymous:
            self._anonymise(result)
        return self._finish(result)

    def _anonymise(self, activity: Activity) -> None:
        self.anonymous_calls += 1
        activity.anonymous = True
        activity.ip_address = None
        activity.visitor_id = activity.visitor_record_id = ""
        activity.previous_visitor_id = activity.previous_visitor_record_id = None

    def _finish(self, activity: Activity) -> Activity | str:
        """No personal data: scrubbing, then the site's own hook. What is kept (and journaled
        with a spool) is what PocketBase stores: the URL's query cut to the allowlist (the
        campaign parameters a session stores), the referrer as a traffic source (no query,
        none for the site's own pages)."""
        scrub = self._scrubber
        activity.path = scrub.path(activity.path)
        if activity.url:
            activity.url = scrub.url(activity.url)
        if activity.referrer:
            source = traffic_source(activity.referrer, activity.site.domain)
            activity.referrer = scrub.url(source) or None
        if activity.type != "identify" and activity.data is not None:
            data = validate_custom_data(scrub.data(activity.data))
            if isinstance(data, Rejection):  # scrubbing grew it past a bound: rare
                return invalid(data.reason)
            activity.data = data
        if activity.error_message:
            activity.error_message = scrub_text(activity.error_message)
        if activity.stack_trace:
            activity.stack_trace = scrub_text(activity.stack_trace)
        if self._before_send is not None and activity.type != "identify":
            return self._before_send.apply(activity)
        return activity

    def _origin(self, snapshot: RequestSnapshot | None) -> _Origin:
        """Where the request came from: the client address (parsed, for the blacklist, and
        as text) and its location (a trusted Cloudflare edge's country wins)."""
        if snapshot is None:
            return _NO_ORIGIN
        resolved = resolve_client_ip(
            snapshot.peer, snapshot.forwarding_headers(), self._trusted, self._client_ip_header
        )
        if resolved.spoof_attempt:
            self.spoof_attempts += 1
        country, region = self._geo.locate(resolved.ip)
        if resolved.source == "cf-connecting-ip" and snapshot.cf_ipcountry:
            code = snapshot.cf_ipcountry.strip().upper()
            # Cloudflare's XX (unknown) and T1 (Tor) are not countries.
            if _COUNTRY_CODE.fullmatch(code) and code not in ("XX", "T1") and code != country:
                country, region = code, ""
        ip = str(resolved.ip) if resolved.ip is not None else None
        return _Origin(ip, resolved.ip, country, region, resolved.unresolved)

    def _host_verdict(self, host: str, domain: str | None) -> int:
        key = (host, domain)
        verdict = self._host_verdicts.get(key)
        if verdict is None:
            if is_localhost(host):
                verdict = _HOST_LOCAL
            elif domain and not host_matches_domain(host, domain):
                verdict = _HOST_OFF_DOMAIN
            else:
                verdict = _HOST_ON_DOMAIN
            self._host_verdicts.put(key, verdict)
        return verdict

    def _blacklist_drop(self, site: SiteRules, origin: _Origin) -> DropReason | None:
        """Why the site's IP blacklist drops a call from ``origin``, if it does."""
        if not len(site.blacklist):
            return None
        if origin.address is None:
            # Behind a trusted proxy that named no usable address, the blacklist cannot be
            # applied: such a request must not slip past it.
            return DropReason.NO_CLIENT_IP if origin.unresolved else None
        # ``address`` is what resolve_client_ip parsed: no second parse of its text.
        return DropReason.IP_BLACKLISTED if site.blacklist.contains(origin.address) else None

    def _visitor(
        self, site: SiteRules, ip: str | None, user_agent: str, at: float
    ) -> tuple[str, str]:
        visitor_id = self._hasher.visitor_id(site.record_id, ip or "", user_agent, at)
        return visitor_id, derive_record_id("visitor", site.record_id, visitor_id)

    def _identified(self, activity: Activity, ip: str | None, user_agent: str) -> Activity:
        """``activity`` with the visitor's ids (of today, and of yesterday early in a day)."""
        site = activity.site
        activity.visitor_id, activity.visitor_record_id = self._visitor(
            site, ip, user_agent, activity.at
        )
        previous = self._hasher.previous_day_id(site.record_id, ip or "", user_agent, activity.at)
        if previous is not None:
            activity.previous_visitor_id = previous
            activity.previous_visitor_record_id = derive_record_id(
                "visitor", site.record_id, previous
            )
        return activity

    def _browser(
        self, site: SiteRules, host: str, snapshot: RequestSnapshot | None, model: str | None
    ) -> _Browser | str:
        """The filters every browser request goes through (its page's host on the site's
        domain, the IP blacklist, bots), and what it says about the client; or a drop reason."""
        host_verdict = self._host_verdict(host, site.domain)
        if host_verdict == _HOST_LOCAL:
            # Local development: allowed unless the site turned it off in the dashboard.
            if site.disable_localhost:
                return DropReason.LOCALHOST
        elif host_verdict == _HOST_OFF_DOMAIN:
            return DropReason.OFF_DOMAIN
        origin = self._origin(snapshot)
        dropped = self._blacklist_drop(site, origin)
        if dropped is not None:
            return dropped
        user_agent = (snapshot.user_agent if snapshot else None) or ""
        verdict = self._bots.verdict(
            RequestSignals(
                user_agent=user_agent,
                accept_language=snapshot.accept_language if snapshot else None,
                sec_fetch_mode=snapshot.sec_fetch_mode if snapshot else None,
                sec_ch_ua=snapshot.sec_ch_ua if snapshot else None,
            )
        )
        if verdict.is_bot:
            return bot(verdict.reason)
        client = self._user_agents.parse(user_agent)
        if snapshot is not None or model:
            client = refine(client, _hints(snapshot, model))
        return _Browser(origin, user_agent, client)

    def _browser_event(
        self, call: TrackCall, site: SiteRules, snapshot: RequestSnapshot | None
    ) -> Activity | str:
        payload = validate_payload(call.payload)
        if isinstance(payload, Rejection):
            return invalid(payload.reason)
        browser = self._browser(site, payload.host, snapshot, payload.device_model)
        if isinstance(browser, str):
            return browser
        origin = browser.origin
        activity = Activity(
            type=payload.type,
            site=site,
            visitor_id="",
            visitor_record_id="",
            at=call.at,
            path=payload.path,
            url=payload.url,
            referrer=payload.referrer,
            name=payload.name if payload.type != "jsError" else None,
            data=payload.custom_data if payload.type != "jsError" else None,
            client=browser.client,
            screen_width=payload.screen_width,
            screen_height=payload.screen_height,
            language=payload.language,
            ip_address=origin.ip if site.store_raw_ip else None,
            country=origin.country,
            region=origin.region,
            error_message=payload.error_message,
            stack_trace=payload.stack_trace,
        )
        return self._identified(activity, origin.ip, browser.user_agent)

    def _collect(
        self, call: TrackCall, snapshot: RequestSnapshot | None, anonymous: bool
    ) -> Expanded | str:
        """A ``/collect`` message: decoded and validated here, in the worker; its ``sid``
        must be a site this SDK serves; its ``vid``, ``ssid`` and ``ts`` are not used (our
        visitor id, sessions and times stand, as for our own script)."""
        message = decode_collect(call.payload)
        if isinstance(message, CollectRejection):
            return invalid(message.reason)
        if message.site_id not in self._collect_sites:
            return DropReason.SITE_NOT_SERVED
        site = self._sites.get(message.site_id)
        if site is None:
            return DropReason.UNKNOWN_SITE
        if site.is_archived:
            return DropReason.SITE_ARCHIVED
        browser = self._browser(site, message.host, snapshot, None)
        if isinstance(browser, str):
            return browser
        origin = browser.origin
        visit = Visit(
            site,
            "",
            "",
            call.at,
            client=browser.client,
            ip_address=origin.ip if site.store_raw_ip else None,
            country=origin.country,
            region=origin.region,
        )
        body = message.body
        left_out = (
            [invalid(rejection.reason) for rejection in body.dropped]
            if isinstance(body, (CollectBatch, CollectErrors))
            else []
        )
        kept: list[Activity] = []
        for activity in collect_activities(collect_records(message), message.url, visit):
            if anonymous and activity.type == "identify":
                left_out.append(DropReason.PRIVACY_SIGNAL.value)
                continue
            self._identified(activity, origin.ip, browser.user_agent)
            if anonymous:
                self._anonymise(activity)
            finished = self._finish(activity)
            if isinstance(finished, str):
                left_out.append(str(finished))
            else:
                kept.append(finished)
        return Expanded(kept, left_out)

    def _server_event(
        self, call: TrackCall, site: SiteRules, snapshot: RequestSnapshot | None
    ) -> Activity | str:
        name = validate_event_name(call.name)
        if isinstance(name, Rejection):
            return invalid(name.reason)
        data = validate_custom_data(call.data)
        if isinstance(data, Rejection):
            return invalid(data.reason)
        origin = self._origin(snapshot)
        if snapshot is None:
            user_agent, client = SERVER_VISITOR, None
        else:
            dropped = self._blacklist_drop(site, origin)
            if dropped is not None:
                return dropped
            user_agent = snapshot.user_agent or ""
            client = refine(self._user_agents.parse(user_agent), _hints(snapshot))
        activity = Activity(
            type="custom",
            site=site,
            visitor_id="",
            visitor_record_id="",
            at=call.at,
            path=snapshot.path if snapshot else "",
            name=name,
            data=data,
            client=client,
            ip_address=origin.ip if site.store_raw_ip else None,
            country=origin.country,
            region=origin.region,
        )
        return self._identified(activity, origin.ip, user_agent)

    def _identify(
        self, call: TrackCall, site: SiteRules, snapshot: RequestSnapshot | None
    ) -> Activity | str:
        if snapshot is None:
            return DropReason.IDENTIFY_WITHOUT_REQUEST
        user_id = call.name
        if not isinstance(user_id, (str, int)) or isinstance(user_id, bool):
            return invalid("bad_user_id")
        user_id = str(user_id).strip()
        if not 0 < len(user_id) <= 255:
            return invalid("bad_user_id")
        traits = validate_custom_data(call.data)
        if isinstance(traits, Rejection):
            return invalid(traits.reason)
        fields: dict[str, object] = {"userId": user_id}
        metadata = dict(traits or {})
        for key, limit in _IDENTIFY_FIELDS.items():
            value = metadata.pop(key, None)
            if isinstance(value, str):
                fields[key] = value[:limit]
        if metadata:
            fields["metadata"] = metadata
        origin = self._origin(snapshot)
        activity = Activity(
            type="identify", site=site, visitor_id="", visitor_record_id="", at=call.at
        )
        activity.data = fields
        return self._identified(activity, origin.ip, snapshot.user_agent or "")
