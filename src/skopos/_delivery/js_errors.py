"""JS errors: grouped by message + top stack frame, counted in memory between writes.

One ``js_errors`` record per (website, group): its id is derived from both, so
every process writes the same record; a write upserts the group's latest
details and increments ``count`` with PocketBase's ``count+`` modifier, in the
same transaction. By default groups aggregate only within a batch and go with it
(``js_error_batch_interval`` 0); a longer interval holds them in memory that long.

Held groups are bounded by count (``MAX_GROUPS``) and by bytes (``MAX_GROUP_BYTES``: a
group holds a message, a stack trace and a URL of up to ~50 KB with 4-byte characters):
either bound reached makes the aggregator ``full``, and the worker writes it at once.

An occurrence of the official client script (``/collect``) may stand for several (its
``count``) and carries breadcrumbs: the group adds its count and keeps the latest
breadcrumbs (``{type, message, timestamp, data}``), as the dashboard's collector does.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from skopos._delivery.writes import PendingWrite
from skopos._pocketbase.client import BatchRequest
from skopos._pocketbase.dates import pb_date
from skopos._stats import CallParts
from skopos._tracking.activity import Activity, JournalRef
from skopos._tracking.identity import derive_record_id

__all__ = ["ErrorAggregator", "ErrorGroup", "error_hash", "top_frame"]

# A stack line naming a location: Chrome "at f (url:1:2)", Firefox/Safari "f@url:1:2".
_FRAME = re.compile(r"(?:^\s*at\s)|@|:\d+:\d+")
# Cache-busting query strings (app.js?v=123) must not split a group.
_QUERY_IN_FRAME = re.compile(r"\?[^:\s)]*")
MAX_GROUPS = 10_000
MAX_GROUP_BYTES = 8 << 20
# A group's memory besides its strings, and one more occurrence's spool reference.
_GROUP_OVERHEAD = 512
_REF_BYTES = 72


def top_frame(stack_trace: str | None, message: str) -> str:
    """The first line of ``stack_trace`` that names a code location, normalised."""
    if not stack_trace:
        return ""
    for line in stack_trace.splitlines()[:50]:
        text = line.strip()
        if text and text != message.strip() and _FRAME.search(text):
            return _QUERY_IN_FRAME.sub("", text)[:500]
    return ""


def error_hash(message: str, stack_trace: str | None) -> str:
    """The group key of an error: 32 hex characters of SHA-256(message, top frame)."""
    frame = top_frame(stack_trace, message)
    return hashlib.sha256(f"{message}\x1f{frame}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass
class ErrorGroup:
    """Occurrences of one error on one site since the last write."""

    site_record_id: str
    error_hash: str
    message: str
    stack_trace: str | None
    url: str
    session_id: str | None
    last_seen: float
    count: int = 0  # occurrences (``count+``), from the activities below
    recovered: int = 0  # activities replayed from another process's spool
    refs: list[JournalRef] | None = field(default=None, repr=False)
    acks: int = 0  # activities that are this process's tracking calls, one each
    # Activities of calls that became several (a /collect errors message).
    parts: list[CallParts] | None = field(default=None, repr=False)
    # This process's activities that are not in the spool (all, without one): what a
    # shutdown deadline leaves undelivered rather than spooled.
    unjournaled: int = 0
    unjournaled_parts: list[CallParts] | None = field(default=None, repr=False)
    breadcrumbs: list[dict[str, Any]] | None = field(default=None, repr=False)

    def writes(self) -> list[PendingWrite]:
        """Upsert the group's record, then add this interval's count (one key, so a
        rejected upsert takes its count with it); the upsert acknowledges the calls."""
        record_id = derive_record_id("js_error", self.site_record_id, self.error_hash)
        body: dict[str, object] = {
            "id": record_id,
            "website": self.site_record_id,
            "errorHash": self.error_hash,
            "errorMessage": self.message,
            "stackTrace": self.stack_trace or "",
            "url": self.url,
            "lastSeen": pb_date(self.last_seen),
        }
        if self.session_id:
            body["session"] = self.session_id
        if self.breadcrumbs is not None:
            body["breadcrumbs"] = self.breadcrumbs
        count = BatchRequest.update("js_errors", record_id, {"count+": self.count})
        upsert = PendingWrite(
            BatchRequest.upsert("js_errors", body),
            "js_errors",
            record_id,
            self.acks,
            parent=True,
            recovered=self.recovered,
            refs=self.refs,
            parts=self.parts,
        )
        return [upsert, PendingWrite(count, "js_errors", record_id)]


class ErrorAggregator:
    """Accumulates error occurrences between writes; bounded to ``MAX_GROUPS`` groups."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], ErrorGroup] = {}
        self.bytes = 0  # what the held groups hold, roughly

    def add(self, activity: Activity) -> None:
        """Count one occurrence (a sessionized ``jsError`` activity)."""
        site_record_id = activity.site.record_id
        message, stack_trace = activity.error_message or "", activity.stack_trace
        url, session_id, seen_at = activity.url, activity.session_id, activity.at
        key_hash = error_hash(message, stack_trace)
        group = self._groups.get((site_record_id, key_hash))
        if group is None:
            group = ErrorGroup(
                site_record_id, key_hash, message, stack_trace, url, session_id, seen_at
            )
            self._groups[(site_record_id, key_hash)] = group
            self.bytes += _GROUP_OVERHEAD + _text_bytes(message, stack_trace, url)
        group.count += activity.occurrences
        parts = activity.parts
        if activity.recovered:
            group.recovered += 1
        elif parts is not None:
            if group.parts is None:
                group.parts = []
            group.parts.append(parts)
        else:
            group.acks += 1
        if activity.spool_ref is not None:
            if group.refs is None:
                group.refs = []
            group.refs.append(activity.spool_ref)
            self.bytes += _REF_BYTES
        elif not activity.recovered:
            if parts is None:
                group.unjournaled += 1
            else:
                if group.unjournaled_parts is None:
                    group.unjournaled_parts = []
                group.unjournaled_parts.append(parts)
        if seen_at >= group.last_seen:
            before = _text_bytes(None, group.stack_trace, group.url)
            group.last_seen, group.url, group.session_id = (
                seen_at,
                url,
                session_id or group.session_id,
            )
            group.stack_trace = stack_trace or group.stack_trace
            self.bytes += _text_bytes(None, group.stack_trace, group.url) - before
            group.breadcrumbs = activity.breadcrumbs or group.breadcrumbs

    @property
    def full(self) -> bool:
        """Too many groups, or bytes, held: write them now rather than grow."""
        return len(self._groups) >= MAX_GROUPS or self.bytes >= MAX_GROUP_BYTES

    @property
    def occurrences(self) -> int:
        """Occurrences held, not yet written."""
        return sum(group.count for group in self._groups.values())

    def take(self) -> list[ErrorGroup]:
        """Remove and return every group."""
        groups = list(self._groups.values())
        self._groups.clear()
        self.bytes = 0
        return groups


def _text_bytes(*texts: str | None) -> int:
    """The memory of ``texts`` (1, 2 or 4 bytes a character)."""
    return sum(sys.getsizeof(text) for text in texts if text)
