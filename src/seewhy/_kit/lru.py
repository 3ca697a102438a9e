"""A dict that keeps only its most recently used entries.

Compiled passes and traces are cached per model and per what they depend on
(an input size, a target's data shapes); a session explaining Region masks of
ever new shapes would otherwise keep one compiled graph per shape for as long
as the model lives.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

__all__ = ["LRU"]

K = TypeVar("K")
V = TypeVar("V")


class LRU(OrderedDict[K, V]):
    """``dict`` whose reads count as use; past ``capacity`` entries the least recent goes."""

    def __init__(self, capacity: int = 32) -> None:
        super().__init__()
        self.capacity = capacity

    def __getitem__(self, key: K) -> V:
        value = super().__getitem__(key)
        self.move_to_end(key)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.capacity:
            self.popitem(last=False)
