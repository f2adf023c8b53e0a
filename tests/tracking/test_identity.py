"""Who a visitor is: the keyed visitor hash, and record ids (derived and random) in PocketBase's
shape, also across fork()."""

from __future__ import annotations

import hashlib
import hmac
import os
import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skopos._tracking import identity as _identity
from skopos._tracking.identity import VisitorHasher, derive_record_id, random_record_id


def test_record_ids_are_pocketbase_shaped() -> None:
    for record_id in [derive_record_id("a", "b"), random_record_id()]:
        assert len(record_id) == 15
        assert record_id.isalnum()
        assert record_id == record_id.lower()
    assert derive_record_id("session", "v", "") != derive_record_id("session", "v", "x")
    assert derive_record_id("a", "bc") != derive_record_id("ab", "c")


def test_visitor_ids_depend_on_salt_site_ip_and_agent() -> None:
    one, two = VisitorHasher(b"salt-one"), VisitorHasher(b"salt-two")
    base = one.visitor_id("site", "203.0.113.1", "UA")
    assert base == one.visitor_id("site", "203.0.113.1", "UA")
    assert len(base) == 32
    assert base != two.visitor_id("site", "203.0.113.1", "UA")
    assert base != one.visitor_id("other", "203.0.113.1", "UA")
    assert base != one.visitor_id("site", "203.0.113.2", "UA")
    assert base != one.visitor_id("site", "203.0.113.1", "UA2")


# -- the fast paths: base36 in pairs, the HMAC, one random source per process -----------------


def _base36_reference(number: int) -> str:
    chars = []
    for _ in range(15):
        number, digit = divmod(number, 36)
        chars.append("abcdefghijklmnopqrstuvwxyz0123456789"[digit])
    return "".join(chars)


@given(st.integers(min_value=0, max_value=2**128 - 1))
def test_base36_in_pairs_is_digit_by_digit(number: int) -> None:
    assert _identity._base36(number) == _base36_reference(number)


def test_base36_edges() -> None:
    for number in (0, 35, 36, 1295, 1296, 36**14, 36**15 - 1, 36**15, 2**128 - 1):
        assert _identity._base36(number) == _base36_reference(number)


def test_visitor_id_is_the_hmac_hexdigest() -> None:
    hasher = VisitorHasher(b"salt")
    message = "site\x1f203.0.113.9\x1fMozilla \ud800".encode("utf-8", "surrogatepass")
    expected = hmac.new(b"salt", message, hashlib.sha256).hexdigest()[:32]
    assert hasher.visitor_id("site", "203.0.113.9", "Mozilla \ud800") == expected


def test_random_ids_are_distinct_and_use_every_character() -> None:
    ids = {random_record_id() for _ in range(20_000)}
    assert len(ids) == 20_000
    assert all(len(i) == 15 and i.isalnum() and i.isascii() and i == i.lower() for i in ids)
    counts = Counter("".join(ids))
    assert set(counts) == set("abcdefghijklmnopqrstuvwxyz0123456789")
    expected = 20_000 * 15 / 36
    assert all(0.8 * expected < count < 1.25 * expected for count in counts.values())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_repeats_the_parents_ids() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(read_end)
            os.write(write_end, " ".join(random_record_id() for _ in range(100)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    parent = {random_record_id() for _ in range(100)}
    with os.fdopen(read_end, "rb") as pipe:
        child = set(pipe.read().decode().split())
    os.waitpid(pid, 0)
    assert len(child) == 100
    assert not parent & child


def test_a_fork_that_bypassed_the_hook_reseeds_on_the_pid() -> None:
    generator = _identity._id_random
    state = generator._random.getstate()
    replay = random.Random()
    replay.setstate(state)
    generator._pid = -2  # as if this process were a fork the hook never saw
    assert generator.record_id() != replay.randbytes(15).translate(_identity._BYTE_TO_CHAR).decode()
    assert generator._pid == os.getpid()
