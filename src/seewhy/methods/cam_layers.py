"""Several layers at once: each layer's map at the input's size, normalised, then fused.

A shallow layer sees edges at a fine grid, a deep one objects at a coarse
grid; fusing their maps (``layer=["layer3", "layer4"]``) keeps both. Each
layer's map is rectified (for the methods that rectify), min-max normalised
at its own grid, so no layer outweighs another by its scale, and upsampled
to the input (bilinear); the maps are then combined by their mean
(``fuse="mean"``, what pytorch-grad-cam's ``target_layers=[...]`` does) or
their pixel-wise maximum (``fuse="max"``) and normalised again.

Each layer's map is the method's own run at that layer; where the backend can
(torch), those runs share one forward and one backward that capture every
layer (:mod:`~seewhy.backends.layer_sharing`), as pytorch-grad-cam hooks every
layer in one pass. Every layer explains the same target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._kit.checks import bad_argument
from ..backends.layer_sharing import fusing
from ..errors import InvalidInput
from ..maps import normalise, upsample
from .base import Method, RawResult

__all__ = ["FUSIONS", "check_fuse", "fuse_results", "fused_layers", "layer_names"]

FUSIONS = ("mean", "max")


def layer_names(layer: Any) -> str | tuple[str, ...] | None:
    """One layer name, several (a list, a tuple, or ``"a,b"``), or None for the default.

    A string with commas names several layers, so an Explanation's ``layer``
    (``"layer3,layer4"``) and the command line's ``--layer a,b`` round-trip.
    """
    if layer is None:
        return None
    if isinstance(layer, str):
        names = [part.strip() for part in layer.split(",")] if "," in layer else [layer]
    elif isinstance(layer, (list, tuple)) and all(isinstance(n, str) for n in layer):
        names = list(layer)
    else:
        raise bad_argument("layer", "a layer name (str), a list of names, or None", layer)
    if not names or any(not name for name in names):
        raise InvalidInput(f"layer: empty layer name in {layer!r}; give names like 'layer4'")
    if len(set(names)) != len(names):
        raise InvalidInput(f"layer: {layer!r} names a layer twice; give each layer once")
    return names[0] if len(names) == 1 else tuple(names)


def check_fuse(fuse: Any) -> str:
    """``fuse``: how several layers' maps combine, ``"mean"`` or ``"max"``."""
    if fuse not in FUSIONS:
        raise bad_argument("fuse", "'mean' or 'max'", fuse)
    return str(fuse)


def fuse_results(
    results: Sequence[RawResult], size: tuple[int, int], *, rectify: bool, fuse: str
) -> RawResult:
    """One result from each layer's: maps fused at the input's ``size``.

    The scores and targets are the first layer's (every layer's pass scores
    the same inputs); so are the extras.
    """
    maps = np.stack([upsample(normalise(_rectified(r.maps, rectify)), size) for r in results])
    combined = maps.mean(axis=0) if fuse == "mean" else maps.max(axis=0)
    settings: dict[str, Any] = {}
    for result in results:
        settings.update(result.settings)
    first = results[0]
    return RawResult(
        maps=normalise(combined),
        logits=first.logits,
        targets=first.targets,
        extras=first.extras,
        settings=settings,
    )


def fused_layers(
    model: Any,
    layers: Sequence[str],
    run: Callable[[str], RawResult],
    size: tuple[int, int],
    method: Method,
    fuse: str,
) -> RawResult:
    """``run`` (the method on one batch) at each layer, fused; the runs over ``model`` share
    one pass capturing every layer where the backend can (torch: P3-P5 of a YOLO cost one
    forward and one backward, not three of each)."""
    with fusing(model, layers):
        results = [run(layer) for layer in layers]
    return fuse_results(results, size, rectify=method.rectify, fuse=fuse)


def _rectified(maps: np.ndarray, rectify: bool) -> np.ndarray:
    return np.maximum(maps, 0.0) if rectify else maps
