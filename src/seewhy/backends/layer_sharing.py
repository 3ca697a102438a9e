"""Several layers fused (``layer=[...]``): one pass captures them all, each layer's run reads it.

The explainer runs a method once per fused layer (each layer's map is the
method's own, unchanged), inside :func:`fusing`. A backend able to capture
several layers in one forward and one backward (torch) asks :func:`serve`:
the first layer's capture runs the pass for every fused layer and keeps the
others, so the next layers' runs, asking the same of the same inputs, get
theirs without a pass (YOLOv8n's P3-P5 default: one pass instead of three).
Only the latest pass is kept (a method that captures noisy copies, such as
smoothing, runs as before), and only for the same model, inputs, targets and
head, so anything else runs its own pass.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .base import Capture

__all__ = ["fusing", "serve"]


@dataclass
class _Fused:
    model: Any
    layers: tuple[str, ...]
    ask: tuple[Any, ...] = ()  # what the kept pass was asked: inputs, targets, head, settings
    kept: dict[str, Capture] = field(default_factory=dict)  # captures not yet served


_FUSED: contextvars.ContextVar[_Fused | None] = contextvars.ContextVar("seewhy_fused", default=None)


@contextlib.contextmanager
def fusing(model: Any, layers: Sequence[str]) -> Iterator[None]:
    """Within: captures of ``model`` at one of ``layers`` capture all of them in one pass."""
    token = _FUSED.set(_Fused(model, tuple(layers)))
    try:
        yield
    finally:
        _FUSED.reset(token)


def serve(
    model: Any,
    layer: str,
    ask: tuple[Any, ...],
    run: Callable[[tuple[str, ...]], Sequence[Capture]],
) -> Capture:
    """``layer``'s capture: kept from the last pass if ``ask`` (inputs, targets, head, settings,
    compared by :func:`_same`) is the same, else ``run`` over every fused layer (or ``layer``
    alone outside :func:`fusing`)."""
    fused = _FUSED.get()
    if fused is None or fused.model is not model or layer not in fused.layers:
        return run((layer,))[0]
    if layer in fused.kept and _same(fused.ask, ask):
        return fused.kept.pop(layer)
    captures = dict(zip(fused.layers, run(fused.layers), strict=True))
    fused.ask, fused.kept = ask, captures
    return captures.pop(layer)


def _same(a: Any, b: Any) -> bool:
    """Equal arrays (by value), equal settings, the same objects otherwise (targets, heads)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(p, q) for p, q in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and np.array_equal(a, b)
        )
    if isinstance(a, (str, bool, int, float, type(None))):
        return type(a) is type(b) and a == b
    return a is b
