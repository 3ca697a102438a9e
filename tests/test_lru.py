"""The bounded caches of compiled passes keep the most recently used entries."""

from __future__ import annotations

import pytest

from seewhy._kit.lru import LRU


def test_past_its_capacity_the_least_recently_used_entry_goes() -> None:
    cache: LRU[str, int] = LRU(capacity=2)
    cache["a"], cache["b"] = 1, 2
    assert cache["a"] == 1  # a read is a use: "b" is now the oldest
    cache["c"] = 3
    assert list(cache) == ["a", "c"]
    cache["a"] = 4  # a write too
    cache["d"] = 5
    assert dict(cache) == {"a": 4, "d": 5}
    with pytest.raises(KeyError):
        cache["b"]
    assert "c" not in cache and len(cache) == 2
