"""What a backend's passes score (:class:`Head`) and how a backend picks one output of several.

A view from ``with_head`` (the :class:`~seewhy.backends.capabilities.Heads`
capability) scores a :class:`Head`; :mod:`seewhy._target_plan` decides which
head a user's ``target=``, ``output=`` and ``head=`` ask for. The head itself
lives here, with the backends that run it, so that no backend imports the
planning code that uses it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..targets import Target

__all__ = ["DEFAULT_HEAD", "Head", "output_position", "rows_scoring", "scoring_rows"]


@dataclass(frozen=True, eq=False)
class Head:
    """What a backend's passes score: which output, its activation, extra target columns.

    ``output``: an index, or a key or name, of a model returning several;
    ``sigmoid``: independent labels (declared ``head="sigmoid"``); ``columns``:
    targets scored, one column each, before the class logits (which follow
    when the output is (N, classes); None: the logits alone);
    ``probability``: columns take probabilities where the target has one.
    Heads compare by :attr:`key`: by value, each target by its
    ``pass_key()`` (its kind, settings and data shapes, not its data), so a
    Keras pass compiled for ``output="size"`` or for one Region mask is
    reused by the next call asking for the same, with its own
    :meth:`arrays` as the pass's inputs.
    """

    output: int | str | None = None
    sigmoid: bool = False
    columns: tuple[Target, ...] | None = None
    probability: bool = False

    @property
    def plain(self) -> bool:
        """True for the default head: the model's one output, as class logits."""
        return self.output is None and not self.sigmoid and self.columns is None

    @property
    def key(self) -> tuple[Any, ...]:
        """What a compiled pass scoring this head depends on: everything but target data."""
        columns = None if self.columns is None else tuple(t.pass_key() for t in self.columns)
        return (self.output, self.sigmoid, columns, self.probability)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Head) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """Every column's data (:meth:`Target.arrays`), in column order: a pass's inputs."""
        return tuple(a for t in self.columns or () for a in t.arrays())

    def bound(self, tensors: Sequence[Any]) -> Head:
        """This head with each column scoring its share of ``tensors`` (see :meth:`arrays`)."""
        if not tensors or self.columns is None:
            return self
        columns: list[Target] = []
        start = 0
        for t in self.columns:
            count = len(t.arrays())
            columns.append(t.bound(tensors[start : start + count]))
            start += count
        return replace(self, columns=tuple(columns))


DEFAULT_HEAD = Head()

#: The running gradient pass's target columns and which column each row reads.
_ROWS: ContextVar[tuple[tuple[Target, ...], np.ndarray] | None] = ContextVar(
    "seewhy_scoring_rows", default=None
)


@contextmanager
def scoring_rows(columns: tuple[Target, ...] | None, rows: Any) -> Iterator[None]:
    """Within: which column of ``columns`` each row of the pass reads (``rows``), for
    :func:`rows_scoring`; a backend's gradient pass sets it around its scored forward."""
    given = columns is not None and rows is not None
    token = _ROWS.set((columns, np.asarray(rows)) if given else None)  # type: ignore[arg-type]
    try:
        yield
    finally:
        _ROWS.reset(token)


def rows_scoring(target: Target) -> np.ndarray | None:
    """The rows of the running pass that read ``target``'s column, or None (unknown: all).

    A target whose score costs a model pass per row (SAM's mask decoder) scores only
    these: the pass reads no other row of its column, so k prompts on k rows cost k
    decoder passes and one backward through them, not k * k.
    """
    found = _ROWS.get()
    if found is None:
        return None
    columns, rows = found
    hits = [j for j, t in enumerate(columns) if t is target]
    return np.flatnonzero(rows == hits[0]) if len(hits) == 1 else None


def output_position(labels: Sequence[str], choice: int | str | None) -> int:
    """Which of several outputs, named ``labels``, ``choice`` (an index or a name) picks.

    One rule for every backend, so that no choice, an index past them and an
    unknown name are each the same one line whatever the framework.
    """
    if choice is None:
        raise InvalidInput(
            f"output: the model returns {len(labels)} outputs ({', '.join(labels)}); choose "
            "one with output=NAME or an index (--output)"
        )
    if isinstance(choice, int):
        if not 0 <= choice < len(labels):
            raise InvalidInput(f"output: {choice} is past the model's outputs {list(labels)}")
        return choice
    if choice not in labels:
        raise InvalidInput(f"output: no output {choice!r}; the model's are {', '.join(labels)}")
    return list(labels).index(choice)
