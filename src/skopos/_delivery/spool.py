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

The journal holds only what PocketBase will store: page URLs only for JS errors (whose
records keep them), referrers without query or fragment, client addresses only for sites
that store them. What is read back is not trusted: the directory must be ours and closed
to others (``check_spool_dir``), only regular files are opened and never through a symlink
(``O_NOFOLLOW | O_NONBLOCK``: a planted FIFO cannot block us), every record is validated as
fresh input is (``decode_activity``: a bad one is skipped and counted, never sent), the
activities of an orphan must belong to a website PocketBase knows under that id, and what a
segment can make us allocate is bounded by its size (``MAX_ORPHAN_BYTES``, lines of at most
``MAX_LINE_BYTES``, acknowledgements clipped to the activities it holds); a segment beyond
those bounds is set aside as ``*.rejected`` and logged.

The worker thread journals and reads back, the writer thread records
transactions and acknowledgements: one lock serialises them.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import math
import os
import re
import secrets
import stat
import threading
import time
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from skopos._exceptions import ConfigurationError
from skopos._tracking.activity import Activity, ActivityType, JournalRef
from skopos._tracking.collect import (
    MAX_BREADCRUMB_MESSAGE_CHARS,
    MAX_BREADCRUMB_TYPE_CHARS,
    MAX_BREADCRUMBS,
    MAX_CLIENT_TIME_MS,
    MAX_ERROR_COUNT,
    MIN_CLIENT_TIME_MS,
    SCRIPT_VERSION,
    TOKEN,
)
from skopos._tracking.identity import derive_record_id
from skopos._tracking.ip_rules import IpBlacklist, normalize_ip
from skopos._tracking.payload import (
    MAX_ERROR_MESSAGE_CHARS,
    MAX_LANGUAGE_CHARS,
    MAX_SCREEN_PIXELS,
    MAX_STACK_TRACE_CHARS,
    MAX_URL_CHARS,
    Rejection,
    clean_text,
    validate_custom_data,
    validate_event_name,
)
from skopos._tracking.scrub import keep_allowed_query
from skopos._tracking.site_rules import SiteRules
from skopos._tracking.user_agent import ClientInfo

__all__ = ["Segment", "Spool", "check_spool_dir", "decode_line", "encode_line"]

logger = logging.getLogger("skopos")

SUFFIX = ".spool"
REJECTED_SUFFIX = ".rejected"
_READ_BLOCK = 1 << 20
_EMPTY_BLACKLIST = IpBlacklist(None)
# The longest line we write is an activity with every field at its bound (~120 KB with
# non-ASCII text escaped); longer ones are not ours.
MAX_LINE_BYTES = 256 << 10
# An orphan segment bigger than this is not one of ours (8 MiB segments, plus the
# acknowledgements written after they are sealed): set aside, never read.
MAX_ORPHAN_BYTES = 64 << 20
# Opening what is found in the directory: never through a symlink, never waiting on a FIFO.
_OPEN_FOUND = os.O_NOFOLLOW | os.O_NONBLOCK

# Asked on replay: did the transaction whose marker ``m`` took token ``t`` commit?
CommitCheck = Callable[[str, str], bool]
# Asked on replay: is (website record id, tracking id) a website PocketBase knows?
SiteCheck = Callable[[str, str], bool]


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
    if "u" in record:  # the pipeline scrubbed it; a journal never holds more than that
        record["u"] = keep_allowed_query(record["u"])
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


_RECORD_ID = re.compile(r"[a-z0-9]{15}")
_VISITOR_ID = re.compile(r"[0-9a-f]{32}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_TYPES: frozenset[str] = frozenset({"pageView", "custom", "click", "jsError", "identify"})
_IDENTITY_FIELDS = {"userId": 255, "name": 255, "email": 255, "phone": 50}
# A /collect device pixel ratio as ``collect_records`` writes it (at most 20, 3 decimals).
_PIXEL_RATIO = re.compile(r"\d{1,2}(\.\d{1,3})?")
_CRUMB_KEYS = frozenset({"type", "message", "timestamp", "data"})
# Journaled times are the calls' own: never before 2000, never a day in the future.
_EARLIEST = 946_684_800.0
_FUTURE = 86_400.0


class _Invalid(Exception):
    """A journal record that fresh input could not have produced."""


def _text(value: object, limit: int, *, optional: bool = True) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise _Invalid
    return value


def _identity(data: object) -> dict[str, Any]:
    """An identify activity's fields, checked as ``Pipeline._identify`` builds them."""
    if not isinstance(data, dict):
        raise _Invalid
    fields: dict[str, Any] = {}
    for key, value in data.items():
        if key in _IDENTITY_FIELDS:
            fields[key] = _text(value, _IDENTITY_FIELDS[key], optional=False)
        elif key == "metadata":
            metadata = validate_custom_data(value)
            if metadata is None or isinstance(metadata, Rejection):
                raise _Invalid
            fields[key] = metadata
        else:
            raise _Invalid
    if not fields.get("userId"):
        raise _Invalid
    return fields


def _pattern(value: object, pattern: re.Pattern[str]) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _Invalid
    return value


def _breadcrumbs(value: object) -> list[dict[str, Any]] | None:
    """A ``/collect`` error's breadcrumbs, checked as ``collect_records`` builds them."""
    if value is None:
        return None
    if not isinstance(value, list) or not 0 < len(value) <= MAX_BREADCRUMBS:
        raise _Invalid
    for crumb in value:
        if not isinstance(crumb, dict) or crumb.keys() != _CRUMB_KEYS:
            raise _Invalid
        _text(crumb["type"], MAX_BREADCRUMB_TYPE_CHARS, optional=False)
        _text(crumb["message"], MAX_BREADCRUMB_MESSAGE_CHARS)
        stamp = crumb["timestamp"]
        if stamp is not None and (
            type(stamp) is not int or not MIN_CLIENT_TIME_MS <= stamp <= MAX_CLIENT_TIME_MS
        ):
            raise _Invalid
        data = crumb["data"]
        if data is not None:
            copied = validate_custom_data(data)
            if copied is None or isinstance(copied, Rejection):
                raise _Invalid
    return value


def _checked(record: dict[str, Any], sites: _SiteCache) -> Activity:
    kind = record.get("y")
    if kind not in _TYPES:
        raise _Invalid
    site_record_id, tracking_id, domain = record["s"]
    visitor_id, visitor_record_id = record["v"], record["vr"]
    at = record["at"]
    if not (
        isinstance(site_record_id, str)
        and _RECORD_ID.fullmatch(site_record_id)
        and isinstance(tracking_id, str)
        and 0 < len(tracking_id) <= 100
        and (domain is None or (isinstance(domain, str) and len(domain) <= 255))
        and isinstance(visitor_id, str)
        and _VISITOR_ID.fullmatch(visitor_id)
        and visitor_record_id == derive_record_id("visitor", site_record_id, visitor_id)
        and isinstance(record["id"], str)
        and _RECORD_ID.fullmatch(record["id"])
        and isinstance(at, (int, float))
        and not isinstance(at, bool)
        and math.isfinite(at)
        and _EARLIEST <= at <= time.time() + _FUTURE
    ):
        raise _Invalid
    activity_type: ActivityType = kind
    activity = Activity(
        type=activity_type,
        site=sites.get(site_record_id, tracking_id, domain),
        visitor_id=visitor_id,
        visitor_record_id=visitor_record_id,
        at=float(at),
        record_id=record["id"],
    )
    activity.path = _text(record.get("p", ""), MAX_URL_CHARS, optional=False)
    activity.url = _text(record.get("u", ""), MAX_URL_CHARS, optional=False)
    activity.referrer = _text(record.get("r"), MAX_URL_CHARS)
    name = record.get("n")
    if name is not None:
        checked_name = validate_event_name(name)
        if isinstance(checked_name, Rejection) or checked_name != name:
            raise _Invalid
        activity.name = checked_name
    data = record.get("d")
    if data is not None:
        if kind == "identify":
            activity.data = _identity(data)
        else:
            copied = validate_custom_data(data)
            if copied is None or isinstance(copied, Rejection):
                raise _Invalid
            activity.data = copied
    for key, attribute in (("w", "screen_width"), ("h", "screen_height")):
        value = record.get(key)
        if value is not None:
            if type(value) is not int or not 0 <= value <= MAX_SCREEN_PIXELS:
                raise _Invalid
            setattr(activity, attribute, value)
    activity.language = _text(record.get("l"), MAX_LANGUAGE_CHARS)
    ip = record.get("ip")
    if ip is not None:
        if not isinstance(ip, str) or len(ip) > 64 or normalize_ip(ip) is None:
            raise _Invalid
        activity.ip_address = ip
    country = record.get("cc", "")
    if country and not (isinstance(country, str) and _COUNTRY.fullmatch(country)):
        raise _Invalid
    activity.country = country
    activity.region = _text(record.get("rg", ""), 16, optional=False)
    anonymous = record.get("an", False)
    if type(anonymous) is not bool:
        raise _Invalid
    activity.anonymous = anonymous
    previous, previous_record = record.get("pv"), record.get("pvr")
    if previous is not None or previous_record is not None:  # daily ids, over midnight
        if not (
            isinstance(previous, str)
            and _VISITOR_ID.fullmatch(previous)
            and previous_record == derive_record_id("visitor", site_record_id, previous)
        ):
            raise _Invalid
        activity.previous_visitor_id = previous
        activity.previous_visitor_record_id = previous_record
    activity.device_pixel_ratio = _pattern(record.get("dpr"), _PIXEL_RATIO)
    activity.connection_type = _pattern(record.get("cn"), TOKEN)
    activity.script_version = _pattern(record.get("sv"), SCRIPT_VERSION)
    occurrences = record.get("oc", 1)
    if type(occurrences) is not int or not 1 <= occurrences <= MAX_ERROR_COUNT:
        raise _Invalid
    activity.occurrences = occurrences
    activity.breadcrumbs = _breadcrumbs(record.get("bc"))
    message = _text(record.get("em"), MAX_ERROR_MESSAGE_CHARS)
    trace = _text(record.get("st"), MAX_STACK_TRACE_CHARS)
    activity.error_message = clean_text(message, keep_lines=True) if message else message
    activity.stack_trace = clean_text(trace, keep_lines=True) if trace else trace
    if kind == "jsError" and not activity.error_message:
        raise _Invalid
    client = record.get("c")
    if client is not None:
        if not (
            isinstance(client, list)
            and len(client) == 3
            and all(isinstance(part, str) and len(part) <= 100 for part in client)
        ):
            raise _Invalid
        activity.client = ClientInfo(*client)
    return activity


def decode_activity(record: dict[str, Any], sites: _SiteCache) -> Activity | None:
    """The activity of a journal record; None if fresh input could not have produced it
    (a damaged disk, or a line someone planted): every field is checked as the pipeline
    checks fresh input, ids must be ids, the time a real one.

    >>> decode_activity({"a": 0, "y": "pageView", "at": float("nan")}, _SiteCache()) is None
    True
    """
    try:
        return _checked(record, sites)
    except (_Invalid, KeyError, TypeError, ValueError):
        return None


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
    # Orphans: per seq, 1 when it is not to be replayed (acknowledged, or refused).
    skip: bytearray = field(default_factory=bytearray)
    outstanding: int = 0  # activities journaled (or found unacknowledged) minus acks
    unread: int = 0  # activities not read back yet
    next_seq: int = 0
    number: int = 0  # this process's name for it in ``JournalRef`` values

    @property
    def finished(self) -> bool:
        """Nothing left to read or acknowledge: the file can go."""
        return self.sealed and self.unread == 0 and self.outstanding <= 0

    def skipped(self, seq: int) -> bool:
        """Whether ``seq`` is not to be replayed."""
        return seq < len(self.skip) and self.skip[seq] == 1


def _lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _same_file(fd: int, path: Path) -> bool:
    """After locking: ``path`` still names the file we hold (not unlinked, not replaced)."""
    try:
        on_disk = os.lstat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return held.st_nlink > 0 and (held.st_ino, held.st_dev) == (on_disk.st_ino, on_disk.st_dev)


class Unjournaled(NamedTuple):
    """What ``Spool.journal`` refused: ``full`` (over ``max_bytes``), ``unencodable``."""

    full: list[Activity]
    unencodable: list[Activity]


def check_spool_dir(directory: str | os.PathLike[str]) -> None:
    """Fail fast at ``init``: ``directory`` must be ours, closed to others and writable.

    A missing directory is created with mode 0700. An existing one (a symlink to one is
    fine) must be owned by this process's user and not writable by its group or others:
    anyone who can write there can plant files that a replay would read.
    """
    path = Path(directory)
    try:
        if not path.exists():
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        found = path.stat()
        if not stat.S_ISDIR(found.st_mode):
            raise ConfigurationError(f"spool_dir {str(path)!r} is not a directory")
        if hasattr(os, "geteuid") and found.st_uid != os.geteuid():
            raise ConfigurationError(
                f"spool_dir {str(path)!r} belongs to another user (uid {found.st_uid}); use a"
                " directory of this process's user"
            )
        if found.st_mode & 0o022:
            raise ConfigurationError(
                f"spool_dir {str(path)!r} is writable by its group or others (mode"
                f" {stat.S_IMODE(found.st_mode):o}); chmod go-w it, or use a new directory"
            )
        probe = path / f".probe-{secrets.token_hex(4)}.new"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        message = f"spool_dir {str(path)!r} is not a writable directory: {exc}"
        raise ConfigurationError(message) from None


def _open_found(path: Path, flags: int) -> int | None:
    """A descriptor of ``path`` if it is a regular file (never through a symlink, never
    waiting on a FIFO or a device); None otherwise, or when it is gone."""
    try:
        fd = os.open(path, flags | _OPEN_FOUND)
    except OSError:  # gone, a symlink (ELOOP), a directory, no permission...
        return None
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


class _NotOurs(Exception):
    """A file named like a segment that this SDK cannot have written."""


class _Scan:
    """An orphan's lines, tallied in memory bounded by the activities it holds.

    Seqs are given in line order from 0, one per activity line, so an activity's seq is
    never beyond the lines read so far, and acknowledgements and transactions only name
    seqs of activities before them: anything else is clipped. Bookkeeping is bounded too
    (ranges, distinct websites); beyond the bounds the file is not ours.
    """

    _MAX_SITES = 1000

    def __init__(self) -> None:
        self.lines = 0
        self.corrupt = 0
        self.present = bytearray()  # per seq: an activity line was read
        self.acked = bytearray()  # per seq: acknowledged
        self.site = array("I")  # per seq: index in ``sites`` (0: none)
        self.sites: dict[tuple[str, str] | None, int] = {None: 0}
        self.prepared: dict[tuple[str, str], list[tuple[int, int]]] = {}
        self._ranges = 0

    def _grow(self, size: int) -> None:
        missing = size - len(self.present)
        if missing > 0:
            self.present.extend(bytes(missing))
            self.acked.extend(bytes(missing))
            self.site.extend([0] * missing)

    def _ranges_of(self, flat: object) -> list[tuple[int, int]]:
        """Well-formed ranges, clipped to the activities read so far."""
        if not isinstance(flat, list) or len(flat) % 2:
            return []
        self._ranges += len(flat) // 2
        if self._ranges > 4 * self.lines + 1024:
            raise _NotOurs("more bookkeeping than activities")
        limit = len(self.present)
        ranges = []
        for start, stop in zip(flat[::2], flat[1::2], strict=True):
            if type(start) is int and type(stop) is int:
                start, stop = max(start, 0), min(stop, limit)
                if start < stop:
                    ranges.append((start, stop))
        return ranges

    def line(self, line: bytes) -> None:
        self.lines += 1
        record = decode_line(line)
        if record is None:
            self.corrupt += 1  # its seq is unreadable too: nothing to replay or count
            return
        seq = record.get("a")
        if type(seq) is int:
            if not 0 <= seq < self.lines:
                self.corrupt += 1
                return
            self._grow(seq + 1)
            self.present[seq] = 1
            site = record.get("s")
            key = None
            if isinstance(site, list) and len(site) == 3:
                rid, tid = site[0], site[1]
                if isinstance(rid, str) and isinstance(tid, str):
                    key = (rid, tid)
            index = self.sites.get(key)
            if index is None:
                if len(self.sites) > self._MAX_SITES:
                    raise _NotOurs("activities of too many websites")
                index = self.sites[key] = len(self.sites)
            self.site[seq] = index
        elif "k" in record:
            for start, stop in self._ranges_of(record["k"]):
                self.acked[start:stop] = b"\x01" * (stop - start)
        elif "p" in record and isinstance(record.get("m"), str):
            key = (record["m"], str(record.get("t"))[:64])
            ranges = self._ranges_of(record["p"])
            if ranges:
                self.prepared.setdefault(key, []).extend(ranges)

    def unacknowledged(self, ranges: list[tuple[int, int]]) -> list[int]:
        """The seqs in ``ranges`` that hold an activity not acknowledged."""
        found: set[int] = set()
        for start, stop in ranges:
            found.update(
                seq for seq in range(start, stop) if self.present[seq] and not self.acked[seq]
            )
        return sorted(found)

    def acknowledge(self, seqs: Iterable[int]) -> None:
        for seq in seqs:
            self.acked[seq] = 1

    def by_site(self) -> dict[tuple[str, str] | None, list[int]]:
        """The activities to replay, by the (record id, tracking id) they name."""
        keys = {index: key for key, index in self.sites.items()}
        found: dict[tuple[str, str] | None, list[int]] = {}
        for seq, present in enumerate(self.present):
            if present and not self.acked[seq]:
                found.setdefault(keys[self.site[seq]], []).append(seq)
        return found

    def unread(self) -> int:
        return sum(1 for seq, present in enumerate(self.present) if present and not self.acked[seq])


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
        self.refused_recovered = 0

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
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._counter += 1
        name = f"{self._token}-{self._counter:06d}"
        # Locked before it gets its final name, so no scanner ever sees it unlocked.
        temporary = self.directory / f".{name}.new"
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW
        fd = os.open(temporary, flags, 0o600)
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
                if len(block) == _READ_BLOCK:  # a line longer than any of ours: give up on
                    segment.read_offset = segment.size  # the rest, counted below
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
                if segment.skipped(seq):
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

    def claim_orphans(self, committed: CommitCheck, site_known: SiteCheck) -> int:
        """Take over segments no live process holds; returns the activities found.

        ``committed(marker, token)`` and ``site_known(record_id, tracking_id)`` may raise
        (PocketBase unreachable): the segment is released and tried again on a later call.
        Activities of a website PocketBase does not know (deleted since, or never ours)
        are not replayed; they are counted in ``refused_recovered``.
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
                    segment = self._claim(path, committed, site_known)
                    if segment is not None:
                        claimed.append(segment)
            finally:
                self._segments[:0] = claimed  # older than anything of ours: replay them first
            return sum(segment.unread for segment in claimed)

    def _claim(self, path: Path, committed: CommitCheck, site_known: SiteCheck) -> Segment | None:
        fd = _open_found(path, os.O_RDWR | os.O_APPEND)
        if fd is None:
            if path.is_symlink() or path.exists():
                self._set_aside(path, None, "not a regular file")
            return None
        if not _lock(fd) or not _same_file(fd, path):
            os.close(fd)
            return None
        try:
            segment = self._scan(path, fd, committed, site_known)
        except _NotOurs as exc:
            self._set_aside(path, fd, str(exc))
            return None
        except BaseException:
            os.close(fd)  # releases the lock: another attempt later
            raise
        if segment.unread == 0:
            self._remove_unlisted(segment)
            return None
        logger.info("skopos: replaying %d activities from %s", segment.unread, path.name)
        return segment

    def _set_aside(self, path: Path, fd: int | None, why: str) -> None:
        """A file named like a segment that is not one of ours: renamed, never read again."""
        logger.error(
            "skopos: %s in spool_dir is not a segment this SDK wrote (%s); set aside as %s",
            path.name,
            why,
            path.name + REJECTED_SUFFIX,
        )
        try:
            os.rename(path, path.with_name(path.name + REJECTED_SUFFIX))
        except OSError as exc:
            logger.error("skopos: could not set %s aside: %s", path.name, exc)
        finally:
            if fd is not None:
                os.close(fd)

    def _scan(self, path: Path, fd: int, committed: CommitCheck, site_known: SiteCheck) -> Segment:
        """Read an orphan's bookkeeping, in bounded memory; ``_NotOurs`` when it cannot be a
        segment we wrote (too big, a line too long, more bookkeeping than activities)."""
        size = os.fstat(fd).st_size
        if size > MAX_ORPHAN_BYTES:
            raise _NotOurs(f"{size} bytes")
        scan = _Scan()
        good = 0
        carry = b""
        while good + len(carry) < size:
            block = os.pread(fd, _READ_BLOCK, good + len(carry))
            if not block:
                break
            data = carry + block
            lines = data.split(b"\n")
            carry = lines.pop()
            if len(carry) > MAX_LINE_BYTES:
                raise _NotOurs("a line longer than any this SDK writes")
            for line in lines:
                if len(line) > MAX_LINE_BYTES:
                    raise _NotOurs("a line longer than any this SDK writes")
                scan.line(line)
                good += len(line) + 1
        if carry:
            os.ftruncate(fd, good)  # a torn last write; appends must start on a new line
        if scan.corrupt or carry:
            logger.warning(
                "skopos: %s: skipped %d corrupted lines%s",
                path.name,
                scan.corrupt,
                " and a torn last write" if carry else "",
            )
        segment = Segment(
            path, fd, own=False, size=good, sealed=True, skip=scan.acked, number=next(self._numbers)
        )
        for (marker, token), ranges in scan.prepared.items():
            in_doubt = scan.unacknowledged(ranges)
            if in_doubt and committed(marker, token):
                scan.acknowledge(in_doubt)
                self._append(segment, encode_line({"k": to_ranges(in_doubt)}))
        refused: list[int] = []
        for key, seqs in scan.by_site().items():
            if key is None or not site_known(*key):
                refused.extend(seqs)
        if refused:
            logger.warning(
                "skopos: %s: %d activities of a website PocketBase does not know; not replayed",
                path.name,
                len(refused),
            )
            scan.acknowledge(refused)
            self._append(segment, encode_line({"k": to_ranges(refused)}))
            self.refused_recovered += len(refused)
        segment.unread = segment.outstanding = scan.unread()
        return segment

    def take_refused(self) -> int:
        """Replayed activities refused (unknown website) since the last call."""
        with self._lock:
            count, self.refused_recovered = self.refused_recovered, 0
            return count

    def _remove_stale_temporaries(self) -> None:
        """Segments whose creator died before naming them (empty, or nearly)."""
        for path in self.directory.glob(".*.new"):
            if time.time() - _mtime(path) < 60:
                continue  # may be being created right now
            fd = _open_found(path, os.O_RDONLY)
            if fd is None:
                continue  # gone, or not a file we would have made: left alone
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
