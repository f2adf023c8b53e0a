"""Site rules by tracking id, kept current with what the dashboard edits.

The dashboard edits websites; the SDK follows: a realtime subscription applies
changes within a moment, and a refresh every ``config_refresh_interval`` (also
after every reconnect) catches anything realtime missed or when it is off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from skopos._exceptions import PocketBaseError
from skopos._pocketbase.client import PocketBaseClient
from skopos._pocketbase.filter import any_of, pb_filter
from skopos._pocketbase.realtime import RealtimeEvent, RealtimeSubscription
from skopos._tracking.site_rules import SiteRules

__all__ = ["SiteRegistry"]

logger = logging.getLogger("skopos")

# How long an unknown tracking id stays unknown before we ask PocketBase again.
_UNKNOWN_SITE_RETRY = 60.0
_MAX_SITES = 1000


class SiteRegistry:
    """Site rules by tracking id, loaded on first use and kept current.

    Read by the worker thread, updated by the realtime thread; a lock guards
    the maps, and rules objects are immutable.
    """

    def __init__(
        self,
        client: PocketBaseClient,
        *,
        refresh_interval: float,
        realtime: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._refresh_interval = refresh_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._sites: dict[str, SiteRules] = {}
        self._unknown: dict[str, float] = {}
        self._next_refresh = clock() + refresh_interval
        self._subscription: RealtimeSubscription | None = None
        if realtime:
            self._subscription = RealtimeSubscription(
                client, ["websites/*"], self._on_change, on_connect=self._on_reconnect
            )

    def remember(self, sites: dict[str, SiteRules]) -> None:
        """Seed the registry with rules already known (a forked child's parent's)."""
        with self._lock:
            self._sites.update(sites)

    def snapshot_unlocked(self) -> dict[str, SiteRules]:
        """A copy of the known rules without taking the lock: only for a forked
        child, where the lock may be held by a parent thread that no longer exists."""
        return dict(self._sites)

    def start(self) -> None:
        """Start following realtime changes (no-op when realtime is off)."""
        if self._subscription is not None:
            self._subscription.start()

    def stop(self) -> None:
        """Stop the realtime thread."""
        if self._subscription is not None:
            self._subscription.stop()

    @property
    def realtime_connected(self) -> bool:
        """Whether the realtime stream is subscribed right now."""
        return self._subscription is not None and self._subscription.connected

    def get(self, tracking_id: str, *, fresh: bool = False) -> SiteRules | None:
        """The rules for ``tracking_id``, loading them on first use; None if no such site.

        An unknown id is asked again only after a minute, unless ``fresh``."""
        with self._lock:
            rules = self._sites.get(tracking_id)
            retry_at = self._unknown.get(tracking_id)
        if rules is not None:
            return rules
        if retry_at is not None and self._clock() < retry_at and not fresh:
            return None
        return self._load(tracking_id)

    def _load(self, tracking_id: str) -> SiteRules | None:
        try:
            query = pb_filter("trackingId = {:tid}", tid=tracking_id)
        except ValueError:
            return None
        record = self._client.first_record("websites", query, sort="created")
        with self._lock:
            if record is None:
                if len(self._unknown) >= _MAX_SITES:
                    self._unknown.clear()
                self._unknown[tracking_id] = self._clock() + _UNKNOWN_SITE_RETRY
                return None
            rules = SiteRules.from_record(record)
            if len(self._sites) < _MAX_SITES:
                self._sites[tracking_id] = rules
            self._unknown.pop(tracking_id, None)
            return rules

    def refresh_due(self) -> bool:
        """Whether the periodic refresh should run now."""
        return self._clock() >= self._next_refresh

    def refresh(self) -> None:
        """Re-read every known site (the polling fallback), ``ANY_OF_CHUNK`` ids a query."""
        self._next_refresh = self._clock() + self._refresh_interval
        with self._lock:
            known = list(self._sites)
        if not known:
            return
        records = {
            record.get("trackingId"): record
            for query in any_of("trackingId", known)
            for record in self._client.iter_records("websites", filter=query)
        }
        with self._lock:
            for tracking_id in known:
                record = records.get(tracking_id)
                if record is None:
                    self._sites.pop(tracking_id, None)
                else:
                    self._sites[tracking_id] = SiteRules.from_record(record)

    def _on_change(self, event: RealtimeEvent) -> None:
        tracking_id = event.record.get("trackingId")
        with self._lock:
            stale = [
                tid
                for tid, rules in self._sites.items()
                if rules.record_id == event.record.get("id")
            ]
            for tid in stale:
                del self._sites[tid]
            if event.action != "delete" and (tracking_id in stale or tracking_id in self._unknown):
                self._sites[tracking_id] = SiteRules.from_record(event.record)
                self._unknown.pop(tracking_id, None)
        logger.debug("skopos: website %s %sd", event.record.get("id"), event.action)

    def _on_reconnect(self) -> None:
        # Changes made while the stream was down never arrive: re-read now.
        try:
            self.refresh()
        except PocketBaseError as exc:
            logger.warning("skopos: could not refresh site rules after reconnect: %s", exc)
