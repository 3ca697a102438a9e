"""pytorch-grad-cam's two smoothings of a CAM, for every CAM: ``aug_smooth`` and ``eigen_smooth``.

``aug_smooth`` (test-time augmentation): the map is computed for the input
flipped left-right or not, times each of 0.9, 1.0 and 1.1 (six passes, the
grid pytorch-grad-cam's ``ttach`` transforms make); each map is rectified,
brought to the input's size, normalised and flipped back, and the six are
averaged. Unlike pytorch-grad-cam, every pass explains the same target (the
caller's, or the top class of the input as given): an augmented copy whose
top class changes still explains the class asked about.

``eigen_smooth``: the map is the first principal component of the weighted
activations (the (h*w, C) matrix, centred over positions), as
pytorch-grad-cam's ``get_2d_projection``. An SVD's sign is arbitrary; seewhy
picks the sign under which the component agrees with the map it smooths
(pytorch-grad-cam keeps whichever sign LAPACK returns, so a map there can
come out inverted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..maps import postprocess
from .base import Context, RawResult

if TYPE_CHECKING:
    from .cam import CAM

__all__ = ["FACTORS", "augmented", "first_component"]

FACTORS = (0.9, 1.0, 1.1)  # the input scalings of pytorch-grad-cam's default augmentation


def first_component(weighted: np.ndarray, guide: np.ndarray) -> np.ndarray:
    """(N, h, w) projection of the (N, C, h, w) maps on their first principal component.

    The positions are the samples and the channels the features; the
    projection is of the centred maps. Its sign is the one that correlates
    positively with ``guide`` (N, h, w), the map being smoothed.
    """
    n, c, h, w = weighted.shape
    flat = np.nan_to_num(weighted.reshape(n, c, h * w).transpose(0, 2, 1).astype(np.float32))
    centred = flat - flat.mean(axis=1, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    proj = np.einsum("npc,nc->np", centred, vt[:, 0, :])
    aim = guide.reshape(n, h * w) - guide.reshape(n, h * w).mean(axis=1, keepdims=True)
    sign = np.sign(np.einsum("np,np->n", proj, aim))
    sign[sign == 0] = 1.0
    return (proj * sign[:, None]).reshape(n, h, w).astype(np.float32)


def augmented(method: CAM, ctx: Context) -> RawResult:
    """The mean of the maps of the six flipped and scaled inputs, at the input's size.

    The first pass is the input as given: its scores and targets are the
    result's, and its targets are explained by every other pass.
    """
    size = (ctx.inputs.shape[1], ctx.inputs.shape[2])
    base = method.capture(ctx, ctx.inputs, ctx.targets)
    maps = [postprocess(method.map_of(base, ctx), size, rectify=method.rectify)]
    for flip in (False, True):
        seen = ctx.inputs[:, :, ::-1, :] if flip else ctx.inputs
        for factor in FACTORS:
            if not flip and factor == 1.0:
                continue  # the first pass
            x = np.ascontiguousarray(seen * np.float32(factor), dtype=np.float32)
            cap = method.capture(ctx, x, base.targets)
            layer_map = postprocess(method.map_of(cap, ctx), size, rectify=method.rectify)
            maps.append(layer_map[:, :, ::-1] if flip else layer_map)
    mean: np.ndarray = np.stack(maps).mean(axis=0, dtype=np.float32)
    return RawResult(maps=mean, logits=base.logits, targets=base.targets)
