"""``PendingWrite``: one PocketBase batch request and the tracking calls it acknowledges.

Built by the sessionizer and the JS error groups, sent by the writer.
"""

from __future__ import annotations

from dataclasses import dataclass

from skopos._pocketbase.client import BatchRequest
from skopos._stats import CallParts
from skopos._tracking.activity import Activity, JournalRef

__all__ = ["PendingWrite"]


@dataclass(slots=True)
class PendingWrite:
    """One batch request and the tracking calls it acknowledges once written.

    Writes that share a ``key`` depend on the one marked ``parent`` (a visitor's
    session and events on the visitor, a JS error's count on its group record):
    when PocketBase rejects a parent, its dependants are dropped with it.
    """

    request: BatchRequest
    collection: str
    key: str | None = None
    acks: int = 0  # this process's tracking calls
    parent: bool = False
    # For a create: what to send instead when another writer created the id first
    # (None: the record is already there, nothing to add).
    if_exists: BatchRequest | None = None
    recovered: int = 0  # calls replayed from another process's spool
    refs: list[JournalRef] | None = None  # the spool entries of all of them, when spooling
    # Activities of calls that became several (a /collect message): one settled per entry.
    parts: list[CallParts] | None = None

    @classmethod
    def for_activity(
        cls, request: BatchRequest, collection: str, key: str, activity: Activity
    ) -> PendingWrite:
        """The write that acknowledges ``activity``'s tracking call (or its part of one)."""
        ref = activity.spool_ref
        parts = activity.parts
        return cls(
            request,
            collection,
            key,
            0 if activity.recovered or parts is not None else 1,
            recovered=1 if activity.recovered else 0,
            refs=None if ref is None else [ref],
            parts=None if parts is None else [parts],
        )

    def replaced_by(self, request: BatchRequest) -> PendingWrite:
        """The same acknowledgements carried by another request."""
        return PendingWrite(
            request,
            self.collection,
            self.key,
            self.acks,
            self.parent,
            recovered=self.recovered,
            refs=self.refs,
            parts=self.parts,
        )
