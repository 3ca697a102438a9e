"""Compute the next batch of inputs while the model works on this one."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

__all__ = ["Ahead"]

T = TypeVar("T")
_DONE = object()


class Ahead(Generic[T]):
    """Iterate ``items`` in order, each built in a thread while the caller uses the previous one.

    For numpy work that releases the GIL (random fills, arithmetic on large
    arrays) beside a framework call that also releases it. The first item
    starts at construction, so it overlaps whatever the caller does before
    the loop (a clean forward pass, say). Items are made one at a time, in
    order, so seeded draws do not change. Use as a context manager (or
    exhaust it) so that the thread ends.
    """

    def __init__(self, items: Iterable[T]) -> None:
        self._source = iter(items)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="seewhy-prefetch")
        self._pending: Future[object] = self._pool.submit(self._make)

    def _make(self) -> object:
        return next(self._source, _DONE)

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        item = self._pending.result()
        if item is _DONE:
            self.close()
            raise StopIteration
        self._pending = self._pool.submit(self._make)
        return item  # type: ignore[return-value]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Ahead[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
