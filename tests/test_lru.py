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
