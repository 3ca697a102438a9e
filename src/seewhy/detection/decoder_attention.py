"""A decoder query's cross-attention over the image (``query-attention``), as DETR draws it.

One pass without gradients on the twin of the explained detector: the last
decoder layer's cross-attention is read by a hook and the query that a
``Box`` target matches (the same rule as its score: the best-overlapping
query of its label) is picked from that pass's own output.

- DETR, Conditional DETR: the attention probabilities (computed by the eager
  kernel: the module gets a copy of the config saying so for the pass, put
  back after it), averaged over heads, on the encoder's feature grid.
- Deformable DETR, RT-DETR: each head's sampling points, where they sample
  and with what weight, splatted bilinearly onto the finest level's grid
  (a point's normalised location (x, y) is at ``x * w - 0.5`` on a ``w``
  wide grid, as ``grid_sample`` reads it), averaged over heads.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..errors import UnsupportedModel
from .hf_common import pixels_of

__all__ = ["query_attention", "splat"]


def _last_cross_attention(net: Any) -> Any:
    layers: Any = net.model.decoder.layers
    return layers[len(layers) - 1].encoder_attn


@contextlib.contextmanager
def _reading(net: Any, kept: dict[str, Any]) -> Iterator[None]:
    """Hooks keeping the last decoder layer's cross-attention (and the grid) in ``kept``."""
    attention = _last_cross_attention(net)
    kernel = attention.__dict__.get("_modules", {}).get("attn")
    handles = []
    config = attention.__dict__.get("config")
    if kernel is not None:  # deformable: the sampling points and their weights

        def sampled(_: Any, args: tuple[Any, ...]) -> None:
            kept["shapes"] = [tuple(int(v) for v in s) for s in args[1]]
            kept["locations"], kept["weights"] = args[4], args[5]

        handles.append(kernel.register_forward_pre_hook(sampled))
    elif config is not None and not _deformable_function(attention):

        def probabilities(_: Any, args: Any, out: Any) -> None:
            kept["weights"] = out[1]

        def grid(_: Any, args: Any, out: torch.Tensor) -> None:
            kept["shapes"] = [(int(out.shape[-2]), int(out.shape[-1]))]

        handles.append(attention.register_forward_hook(probabilities))
        handles.append(net.model.input_projection.register_forward_hook(grid))
        eager = copy.copy(config)
        eager._attn_implementation = "eager"
        attention.config = eager
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        if config is not None:
            attention.config = config


def _deformable_function(attention: Any) -> bool:
    """RT-DETR v2 samples in a plain function: no module to read its points from."""
    return "sampling_offsets" in attention.__dict__.get("_modules", {})


def query_attention(module: Any, x: np.ndarray, box: Any) -> np.ndarray:
    """(h, w) the cross-attention of the query ``box`` matches, for one input ``x`` (1, H, W, C)."""
    from ..backends.model_lock import model_lock
    from ..backends.torch.twin import run_on_twin

    pixels = pixels_of(module, x)

    def read(net: Any) -> tuple[Any, dict[str, Any]]:
        kept: dict[str, Any] = {}
        with torch.no_grad(), _reading(net, kept):
            out = net(pixels)
        return out, kept

    with model_lock(module):
        out, kept = run_on_twin(module, read)
    if "weights" not in kept:
        raise UnsupportedModel(
            f"method: query-attention cannot read {module.__dict__.get('name', 'this model')}'s "
            "decoder "
            "cross-attention (its deformable sampling runs in a plain function); use gradcam"
        )
    q = _matched(out[0], box)
    h, w = kept["shapes"][0]
    if q is None:
        return np.zeros((h, w), np.float32)
    if "locations" in kept:
        points = kept["locations"][0, q].float().cpu()  # (heads, levels, points, 2)
        weights = kept["weights"][0, q].float().cpu()  # (heads, levels, points)
        return splat(points.reshape(-1, 2), weights.reshape(-1), (h, w)) / weights.shape[0]
    heads = kept["weights"][0, :, q].float().mean(dim=0)  # (h * w,)
    return heads.reshape(h, w).cpu().numpy().astype(np.float32)


def _matched(item: dict[str, torch.Tensor], box: Any) -> int | None:
    """The query a Box scores: its label's (any, without one) best overlap; None: no overlap."""
    boxes = item["boxes"].float().cpu()
    x0, y0, x1, y1 = box.xyxy
    ix = (boxes[:, 2].clamp(max=x1) - boxes[:, 0].clamp(min=x0)).clamp_min(0)
    iy = (boxes[:, 3].clamp(max=y1) - boxes[:, 1].clamp(min=y0)).clamp_min(0)
    inter = ix * iy
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou = inter / (areas + (x1 - x0) * (y1 - y0) - inter).clamp_min(1e-12)
    if box.label is not None:
        iou = torch.where(item["labels"].cpu() == box.label, iou, torch.zeros_like(iou))
    if not bool(iou.max() > 0):
        return None
    return int(iou.argmax())


def splat(points: torch.Tensor, weights: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(h, w) ``weights`` of points at normalised (x, y) spread bilinearly onto a grid.

    A point at (x, y) sits at column ``x * w - 0.5`` and row ``y * h - 0.5``;
    each of the four cells around it gets the weight times its bilinear share
    (cells off the grid get nothing, as zero padding reads nothing there).
    """
    h, w = size
    grid = torch.zeros(h * w, dtype=torch.float64)
    col = points[:, 0].double() * w - 0.5
    row = points[:, 1].double() * h - 0.5
    c0, r0 = torch.floor(col), torch.floor(row)
    for dc in (0, 1):
        for dr in (0, 1):
            c, r = c0 + dc, r0 + dr
            share = (1 - (col - c).abs()) * (1 - (row - r).abs())
            inside = (c >= 0) & (c < w) & (r >= 0) & (r < h)
            index = (r.clamp(0, h - 1) * w + c.clamp(0, w - 1)).long()
            grid.index_add_(0, index[inside], (weights.double() * share)[inside])
    return grid.reshape(h, w).numpy().astype(np.float32)
