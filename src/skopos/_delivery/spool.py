"""The durable spool (opt-in ``spool_dir``): a write-ahead journal the worker reads back.

With a spool, every activity the pipeline produces is appended to a segment
file before anything else happens to it, and the worker reads its work back
from the journal. Memory then holds a bounded read-ahead, whatever PocketBase
does, and what was journaled survives a crash, a SIGKILL or a shutdown deadline:
the next process that opens the same directory replays it.

One file per segment, ``<owner token>-<n>.spool``, locked with ``flock`` by the
process that owns it; the kernel drops the lock when that process dies, which is
how a live process tells an orphan (safe to replay) from a busy segment. Lines
are ``<crc32 hex> <json>``; a torn or corrupted line is skipped. Three kinds:

- ``{"a": seq, ...}``: an activity (``encode_activity``);
- ``{"p": ranges, "m": marker, "t": token}``: those seqs are in a transaction
  whose commit marker ``m`` takes the value ``t`` (see ``writer``);
- ``{"k": ranges}``: those seqs are acknowledged (written or dropped for good).

Replaying an orphan skips acknowledged seqs and asks PocketBase about the last
transaction of each writer still in doubt: if its marker holds the token, it
committed. Record ids stored with each activity make the rest idempotent.

The worker thread journals and reads back, the writer thread records
transactions and acknowledgements: one lock serialises them.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import os
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from skopos._exceptions import ConfigurationError
from skopos._tracking.activity import Activity, JournalRef
from skopos._tracking.ip_rules import IpBlacklist
from skopos._tracking.site_rules import SiteRules
from skopos._tracking.user_agent import ClientInfo

__all__ = ["Segment", "Spool", "check_spool_dir", "decode_line", "encode_line"]

logger = logging.getLogger("skopos")

SUFFIX = ".spool"
_READ_BLOCK = 1 << 20
_EMPTY_BLACKLIST = IpBlacklist(None)

# Asked on replay: did the transaction whose marker ``m`` took token ``t`` commit?
CommitCheck = Callable[[str, str], bool]


# -- line format --------------------------------------------------------------------------


def encode_line(record: dict[str, Any]) -> bytes:
    """One journal line: the CRC-32 of the JSON, a space, the JSON, a newline."""
    payload = json.dumps(record, separators=(",", ":")).encode("ascii")
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def decode_line(line: bytes) -> dict[str, Any] | None:
    """The record of a complete line (without its newline); None if torn or corrupt."""
    if len(line) < 10 or line[8:9] != b" ":
        return None
    payload = line[9:]
    try:
        if int(line[:8], 16) != zlib.crc32(payload):
            return None
        record = json.loads(payload)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def to_ranges(seqs: Iterable[int]) -> list[int]:
    """Sorted seqs as flat ``[start, stop, ...]`` half-open ranges."""
    flat: list[int] = []
    for seq in sorted(set(seqs)):
        if flat and flat[-1] == seq:
            flat[-1] = seq + 1
        else:
            flat += [seq, seq + 1]
    return flat


def from_ranges(flat: object) -> Iterator[int]:
    """The seqs of ``to_ranges`` output; nothing for malformed input."""
    if not isinstance(flat, list) or len(flat) % 2:
        return
    for start, stop in zip(flat[::2], flat[1::2], strict=True):
        if isinstance(start, int) and isinstance(stop, int) and 0 <= stop - start <= 1 << 20:
            yield from range(start, stop)


# -- activities <-> records ---------------------------------------------------------------

_OPTIONAL = (
    ("p", "path", ""),
    ("u", "url", ""),
    ("r", "referrer", None),
    ("n", "name", None),
    ("d", "data", None),
    ("w", "screen_width", None),
    ("h", "screen_height", None),
    ("l", "language", None),
    ("ip", "ip_address", None),
    ("cc", "country", ""),
    ("rg", "region", ""),
    ("an", "anonymous", False),
    ("pv", "previous_visitor_id", None),
    ("pvr", "previous_visitor_record_id", None),
    ("em", "error_message", None),
    ("st", "stack_trace", None),
    ("dpr", "device_pixel_ratio", None),
    ("cn", "connection_type", None),
    ("sv", "script_version", None),
    ("oc", "occurrences", 1),
    ("bc", "breadcrumbs", None),
)


def encode_activity(seq: int, activity: Activity) -> dict[str, Any]:
    """The journal record of ``activity`` (everything sessionizing and writing need)."""
    site = activity.site
    record: dict[str, Any] = {
        "a": seq,
        "y": activity.type,
        "s": [site.record_id, site.tracking_id, site.domain],
        "v": activity.visitor_id,
        "vr": activity.visitor_record_id,
        "at": activity.at,
        "id": activity.record_id,
    }
    for key, attribute, default in _OPTIONAL:
        value = getattr(activity, attribute)
        if value != default:
            record[key] = value
    client = activity.client
    if client is not None:
        record["c"] = [client.browser, client.os, client.device]
    return record


class _SiteCache:
    """Minimal ``SiteRules`` for replayed activities: they were filtered when journaled."""

    def __init__(self) -> None:
        self._sites: dict[tuple[str, str, str | None], SiteRules] = {}

    def get(self, record_id: str, tracking_id: str, domain: str | None) -> SiteRules:
        key = (record_id, tracking_id, domain)
        site = self._sites.get(key)
        if site is None:
            if len(self._sites) >= 1000:
                self._sites.clear()
            site = SiteRules(record_id, tracking_id, domain, False, False, False, _EMPTY_BLACKLIST)
            self._sites[key] = site
        return site


def decode_activity(record: dict[str, Any], sites: _SiteCache) -> Activity | None:
    """The activity of a journal record; None if the record is not a valid one."""
    try:
        record_id, tracking_id, domain = record["s"]
        client = record.get("c")
        activity = Activity(
            type=record["y"],
            site=sites.get(str(record_id), str(tracking_id), domain),
            visitor_id=str(record["v"]),
            visitor_record_id=str(record["vr"]),
            at=float(record["at"]),
            record_id=str(record["id"]),
            client=ClientInfo(*client) if client else None,
        )
        for key, attribute, _ in _OPTIONAL:
            if key in record:
                setattr(activity, attribute, record[key])
    except (KeyError, TypeError, ValueError):
        return None
    if activity.type not in ("pageView", "custom", "click", "jsError", "identify"):
        return None
    return activity


# -- segments -----------------------------------------------------------------------------


@dataclass(eq=False)
class Segment:
    """One journal file, locked by this process, and where reading it back stands."""

    path: Path
    fd: int
    own: bool  # written by this process (False: an orphan being replayed)
    size: int = 0
    sealed: bool = False  # no more activities will be appended
    read_offset: int = 0
    skip: set[int] = field(default_factory=set)  # seqs already acknowledged (orphans)
    outstanding: int = 0  # activities journaled (or found unacknowledged) minus acks
    unread: int = 0  # activities not read back yet
    next_seq: int = 0
    number: int = 0  # this process's name for it in ``JournalRef`` values

    @property
    def finished(self) -> bool:
        """Nothing left to read or acknowledge: the file can go."""
        return self.sealed and self.unread == 0 and self.outstanding <= 0


def _lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _same_file(fd: int, path: Path) -> bool:
    """After locking: ``path`` still names the file we hold (not unlinked, not replaced)."""
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return held.st_nlink > 0 and (held.st_ino, held.st_dev) == (on_disk.st_ino, on_disk.st_dev)


class Unjournaled(NamedTuple):
    """What ``Spool.journal`` refused: ``full`` (over ``max_bytes``), ``unencodable``."""

    full: list[Activity]
    unencodable: list[Activity]


def check_spool_dir(directory: str | os.PathLike[str]) -> None:
    """Fail fast at ``init``: ``directory`` must exist or be creatable, and be writable."""
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{secrets.token_hex(4)}.new"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        message = f"spool_dir {str(path)!r} is not a writable directory: {exc}"
        raise ConfigurationError(message) from None


class Spool:
    """Journal, read-back and replay of activities in ``directory``."""

    def __init__(
        self, directory: str | os.PathLike[str], *, max_bytes: int, segment_bytes: int = 8 << 20
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._token = secrets.token_hex(6)
        self._counter = 0
        self._numbers = itertools.count(1)
        self._segments: list[Segment] = []  # reading order: orphans first, then ours
        self._current: Segment | None = None
        self._dirty: set[Segment] = set()
        self._sites = _SiteCache()
        self._lock = threading.RLock()
        self.unreadable_own = 0
        self.unreadable_recovered = 0

    # -- writing ----------------------------------------------------------------------

    def journal(self, activities: list[Activity]) -> Unjournaled:
        """Append ``activities``; returns those it could not journal, and why.

        Raises ``OSError`` when the disk refuses the write (nothing was journaled).
        """
        with self._lock:
            segment = self._writable()
            room = self.max_bytes - self.total_bytes
            lines: list[bytes] = []
            refused = Unjournaled([], [])
            seq = segment.next_seq
            size = 0
            for activity in activities:
                try:
                    line = encode_line(encode_activity(seq, activity))
                except (TypeError, ValueError):  # not JSON: the writer will tell PocketBase's view
                    refused.unencodable.append(activity)
                    continue
                if size + len(line) > room:
                    refused.full.append(activity)
                    continue
                activity.spool_ref = (segment.number, seq)
                lines.append(line)
                size += len(line)
                seq += 1
            if lines:
                self._append(segment, b"".join(lines))
                count = seq - segment.next_seq
                segment.next_seq = seq
                segment.outstanding += count
                segment.unread += count
            return refused

    def prepared(self, marker_id: str, token: str, refs: Iterable[JournalRef]) -> None:
        """Record that ``refs`` are about to be sent in the transaction of ``token``."""
        with self._lock:
            for segment, seqs in self._by_segment(refs).items():
                record = {"p": to_ranges(seqs), "m": marker_id, "t": token}
                self._append(segment, encode_line(record))

    def acknowledge(self, refs: Iterable[JournalRef]) -> None:
        """``refs`` are written or dropped for good: never replay them."""
        with self._lock:
            for segment, seqs in self._by_segment(refs).items():
                self._append(segment, encode_line({"k": to_ranges(seqs)}))
                segment.outstanding -= len(seqs)
                if segment.finished:
                    self._remove(segment)

    def sync(self) -> None:
        """fsync what was appended since the last call (before a transaction is sent)."""
        with self._lock:
            for segment in self._dirty:
                if segment in self._segments:
                    os.fsync(segment.fd)
            self._dirty.clear()

    @property
    def total_bytes(self) -> int:
        """Bytes in the segments this process holds."""
        with self._lock:
            return sum(segment.size for segment in self._segments)

    @property
    def backlog(self) -> int:
        """Activities journaled or found in orphans and not read back yet."""
        with self._lock:
            return sum(segment.unread for segment in self._segments)

    @property
    def own_outstanding(self) -> int:
        """This process's activities journaled and not acknowledged."""
        with self._lock:
            return sum(segment.outstanding for segment in self._segments if segment.own)

    def _writable(self) -> Segment:
        current = self._current
        if current is not None and current.size < self.segment_bytes:
            return current
        if current is not None:
            current.sealed = True
            if current.finished:
                self._remove(current)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._counter += 1
        name = f"{self._token}-{self._counter:06d}"
        # Locked before it gets its final name, so no scanner ever sees it unlocked.
        temporary = self.directory / f".{name}.new"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        _lock(fd)
        path = self.directory / f"{name}{SUFFIX}"
        os.rename(temporary, path)
        segment = Segment(path, fd, own=True, number=next(self._numbers))
        self._segments.append(segment)
        self._current = segment
        return segment

    def _append(self, segment: Segment, data: bytes) -> None:
        written = os.write(segment.fd, data)
        while written < len(data):
            written += os.write(segment.fd, data[written:])
        segment.size += len(data)
        self._dirty.add(segment)

    def _remove(self, segment: Segment) -> None:
        if segment in self._segments:
            self._segments.remove(segment)
        self._dirty.discard(segment)
        if self._current is segment:
            self._current = None
        try:
            segment.path.unlink(missing_ok=True)
        finally:
            os.close(segment.fd)

    def _by_segment(self, refs: Iterable[JournalRef]) -> dict[Segment, list[int]]:
        """Seqs by segment, for the segments still held (a closed one is replayed later)."""
        held = {segment.number: segment for segment in self._segments}
        grouped: dict[Segment, list[int]] = {}
        for number, seq in refs:
            segment = held.get(number)
            if segment is not None:
                grouped.setdefault(segment, []).append(seq)
        return grouped

    # -- reading back -----------------------------------------------------------------

    def read_back(self, limit: int) -> list[Activity]:
        """Up to ``limit`` journaled activities not yet handed out, oldest first."""
        with self._lock:
            out: list[Activity] = []
            for segment in list(self._segments):
                if len(out) >= limit:
                    break
                if segment.unread > 0:
                    self._read(segment, limit - len(out), out)
                if segment.finished:
                    self._remove(segment)
            return out

    def _read(self, segment: Segment, limit: int, out: list[Activity]) -> None:
        found = 0
        while found < limit and segment.read_offset < segment.size:
            block = os.pread(segment.fd, _READ_BLOCK, segment.read_offset)
            end = block.rfind(b"\n") + 1
            if end == 0:
                break  # a torn tail; orphans were truncated, our own never tear
            start = 0
            while start < end and found < limit:
                stop = block.index(b"\n", start)
                line = block[start:stop]
                start = stop + 1
                if line[9:14] != b'{"a":':
                    continue  # acknowledgements, transactions, corrupt lines
                record = decode_line(line)
                seq = record.get("a") if record is not None else None
                if record is None or not isinstance(seq, int):
                    self._unreadable(segment, counted=segment.own)
                    continue
                if seq in segment.skip:
                    continue
                activity = decode_activity(record, self._sites)
                if activity is None:
                    self._unreadable(segment, counted=True)
                    continue
                activity.spool_ref = (segment.number, seq)
                activity.recovered = not segment.own
                out.append(activity)
                segment.unread -= 1
                found += 1
            segment.read_offset += start
        if segment.read_offset >= segment.size and segment.sealed and segment.unread:
            self._unreadable(segment, counted=True, count=segment.unread)

    def _unreadable(self, segment: Segment, *, counted: bool, count: int = 1) -> None:
        """A journaled activity that cannot be read back (a corrupted disk)."""
        if counted:
            segment.unread -= count
            segment.outstanding -= count
            if segment.own:
                self.unreadable_own += count
            else:
                self.unreadable_recovered += count

    def take_unreadable(self) -> tuple[int, int]:
        """Activities lost to corruption since the last call: this process's, recovered."""
        with self._lock:
            counts = self.unreadable_own, self.unreadable_recovered
            self.unreadable_own = self.unreadable_recovered = 0
            return counts

    # -- replaying orphans ------------------------------------------------------------

    def claim_orphans(self, committed: CommitCheck) -> int:
        """Take over segments no live process holds; returns the activities found.

        ``committed(marker, token)`` may raise (PocketBase unreachable): the
        segment is released and tried again on a later call.
        """
        with self._lock:
            if not self.directory.is_dir():
                return 0
            self._remove_stale_temporaries()
            held = {segment.path for segment in self._segments}
            paths = sorted(
                (p for p in self.directory.glob(f"*{SUFFIX}") if p not in held), key=_mtime
            )
            claimed: list[Segment] = []
            try:
                for path in paths:
                    segment = self._claim(path, committed)
                    if segment is not None:
                        claimed.append(segment)
            finally:
                self._segments[:0] = claimed  # older than anything of ours: replay them first
            return sum(segment.unread for segment in claimed)

    def _claim(self, path: Path, committed: CommitCheck) -> Segment | None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            return None
        if not _lock(fd) or not _same_file(fd, path):
            os.close(fd)
            return None
        try:
            segment = self._scan(path, fd, committed)
        except BaseException:
            os.close(fd)  # releases the lock: another attempt later
            raise
        if segment.unread == 0:
            self._remove_unlisted(segment)
            return None
        logger.info("skopos: replaying %d activities from %s", segment.unread, path.name)
        return segment

    def _scan(self, path: Path, fd: int, committed: CommitCheck) -> Segment:
        data = b""
        while True:
            block = os.pread(fd, _READ_BLOCK, len(data))
            if not block:
                break
            data += block
        good = data.rfind(b"\n") + 1
        if good < len(data):
            os.ftruncate(fd, good)  # a torn last write; appends must start on a new line
        activities: set[int] = set()
        acked: set[int] = set()
        prepared: dict[tuple[str, str], set[int]] = {}
        corrupt = 0
        for line in data[:good].split(b"\n")[:-1]:
            record = decode_line(line)
            if record is None:
                corrupt += 1  # its seq is unreadable too: nothing to replay or count
            elif isinstance(record.get("a"), int):
                activities.add(record["a"])
            elif "k" in record:
                acked.update(from_ranges(record["k"]))
            elif "p" in record and isinstance(record.get("m"), str):
                key = (record["m"], str(record.get("t")))
                prepared.setdefault(key, set()).update(from_ranges(record["p"]))
        if corrupt or good < len(data):
            logger.warning(
                "skopos: %s: skipped %d corrupted lines%s",
                path.name,
                corrupt,
                " and a torn last write" if good < len(data) else "",
            )
        segment = Segment(
            path, fd, own=False, size=good, sealed=True, skip=acked, number=next(self._numbers)
        )
        for (marker, token), seqs in prepared.items():
            in_doubt = (seqs & activities) - acked
            if in_doubt and committed(marker, token):
                acked |= in_doubt
                self._append(segment, encode_line({"k": to_ranges(in_doubt)}))
        unread = len(activities - acked)
        segment.unread = segment.outstanding = unread
        return segment

    def _remove_stale_temporaries(self) -> None:
        """Segments whose creator died before naming them (empty, or nearly)."""
        for path in self.directory.glob(".*.new"):
            if time.time() - _mtime(path) < 60:
                continue  # may be being created right now
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                if _lock(fd) and _same_file(fd, path):
                    path.unlink(missing_ok=True)
            finally:
                os.close(fd)

    def _remove_unlisted(self, segment: Segment) -> None:
        try:
            segment.path.unlink(missing_ok=True)
        finally:
            os.close(segment.fd)

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Release every segment; finished ones are deleted, the rest wait for a replay."""
        with self._lock:
            for segment in list(self._segments):
                segment.sealed = True
                if segment.finished:
                    self._remove(segment)
                else:
                    os.fsync(segment.fd)
                    os.close(segment.fd)
            self._segments.clear()
            self._current = None
            self._dirty.clear()

    def abandon(self) -> None:
        """In a forked child: drop the parent's descriptors without touching its locks."""
        for segment in self._segments:
            with contextlib.suppress(OSError):
                os.close(segment.fd)  # the parent's descriptor keeps the lock
        self._segments.clear()
        self._current = None
        self._dirty.clear()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
