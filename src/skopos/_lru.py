"""A small thread-safe, fork-safe LRU mapping: every cache in the SDK is bounded by one,
by count and, where its entries vary in size with what clients send, by bytes."""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["LruCache"]

_K = TypeVar("_K")
_V = TypeVar("_V")


class LruCache(Generic[_K, _V]):
    """A small thread-safe least-recently-used mapping holding at most ``maxsize`` entries
    and, with ``weigh`` (an entry's bytes, from its value), at most ``max_bytes`` bytes.

    Only the bookkeeping runs under the lock; callers compute missing values outside it, so
    two threads missing the same key at once both compute it and the last write wins, which is
    harmless for pure functions. Values must not be None (None means "missing").

    Example::

        >>> cache: LruCache[str, int] = LruCache(2)
        >>> cache.put("a", 1); cache.put("b", 2); cache.put("c", 3)
        >>> cache.get("a") is None, cache.get("c"), len(cache)
        (True, 3, 2)
        >>> sized: LruCache[str, str] = LruCache(10, max_bytes=8, weigh=len)
        >>> sized.put("a", "xxxx"); sized.put("b", "yyyy"); sized.put("c", "z")
        >>> sized.get("a") is None, sized.bytes
        (True, 5)
    """

    __slots__ = (
        "__weakref__",
        "_data",
        "_lock",
        "_weigh",
        "_weights",
        "bytes",
        "max_bytes",
        "maxsize",
    )

    def __init__(
        self,
        maxsize: int,
        *,
        max_bytes: int | None = None,
        weigh: Callable[[_V], int] | None = None,
    ) -> None:
        if maxsize < 0:
            raise ValueError(f"maxsize must be >= 0, got {maxsize}")
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self._weigh = weigh
        self._weights: dict[_K, int] | None = {} if weigh is not None else None
        self.bytes = 0  # the entries' weight, with ``weigh``
        self._data: OrderedDict[_K, _V] = OrderedDict()
        self._lock = threading.Lock()
        _caches.add(self)

    def get(self, key: _K) -> _V | None:
        """Return the value for ``key`` (marking it recently used), or None."""
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: _K, value: _V) -> None:
        """Store ``value``, evicting the least recently used entries beyond the bounds."""
        if self.maxsize == 0:
            return
        weight = self._weigh(value) if self._weigh is not None else 0
        with self._lock:
            data, weights = self._data, self._weights
            data[key] = value
            data.move_to_end(key)
            if weights is not None:
                self.bytes += weight - weights.get(key, 0)
                weights[key] = weight
            limit = self.max_bytes
            while len(data) > self.maxsize or (limit is not None and self.bytes > limit and data):
                evicted, _ = data.popitem(last=False)
                if weights is not None:
                    self.bytes -= weights.pop(evicted, 0)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._data.clear()
            if self._weights is not None:
                self._weights.clear()
            self.bytes = 0

    def discard(self, key: _K) -> None:
        """Forget ``key`` if present."""
        with self._lock:
            self._data.pop(key, None)
            if self._weights is not None:
                self.bytes -= self._weights.pop(key, 0)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def _reset_lock(self) -> None:
        self._lock = threading.Lock()


# Every live cache, so a forked child can replace locks that another thread of the parent may
# have held at the moment of fork() (the child would otherwise wait on them forever).
_caches: weakref.WeakSet[LruCache[Any, Any]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cache in list(_caches):
        cache._reset_lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
