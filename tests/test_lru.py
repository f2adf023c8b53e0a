"""The bounded, thread-safe, fork-safe LRU cache behind every cache of the SDK."""

from __future__ import annotations

from skopos._lru import LruCache


def test_lru_evicts_least_recently_used() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None
    assert cache.get("a") == 1
    assert cache.get("c") == 3
    cache.clear()
    assert len(cache) == 0


def test_lru_bounded_by_bytes_evicts_until_it_fits() -> None:
    cache: LruCache[str, str] = LruCache(100, max_bytes=10, weigh=len)
    cache.put("a", "aaaa")
    cache.put("b", "bbbb")
    cache.put("a", "a")  # re-weighed in place
    assert cache.bytes == 5
    cache.put("c", "cccccc")  # 11 bytes: "b", the least recently used, goes
    assert (cache.get("b"), cache.bytes, len(cache)) == (None, 7, 2)
    cache.put("huge", "x" * 50)  # alone over the budget: nothing stays
    assert (len(cache), cache.bytes) == (0, 0)
    cache.put("d", "dd")
    cache.discard("d")
    assert cache.bytes == 0
