"""Generative VLMs that cut a picture into tiles: LLaVA-NeXT (anyres) and Idefics3 / SmolVLM.

Their vision towers see one picture as several tiles plus the whole picture
shrunk to one tile (LLaVA-NeXT's *base image*, Idefics3's *global image*), so
a tower block holds more rows than pictures and a map read there would not
be one per picture. Here the picture seewhy explains is a *canvas* whose
sides are whole tiles, laid out as the processor lays a picture out (a
pinpoint resolution of LLaVA-NeXT; Idefics3's longest edge); the
:class:`~.generative_models.VisionPath` cuts it into the tiles and the whole
view exactly as the processor does, runs the user's tower on them, and puts
the features the projector reads through two identity layers:

* ``tiles``: (N, D, rows * g, cols * g), every tile's g x g patch grid placed
  where that tile lies on the picture: the default layer, one map per
  picture over the whole canvas;
* ``base_image`` (LLaVA-NeXT) / ``global_image`` (Idefics3): (N, D, g, g), the
  whole picture's own view, whose map also covers the whole canvas.

Then the features go back to the tower's rows and on through the model's own
projector (LLaVA-NeXT: and its ``pack_image_features``, newline tokens
included; Idefics3: its connector's pixel shuffle), so the language model
reads exactly what it reads from the processor's inputs for that canvas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UnsupportedModel

if TYPE_CHECKING:
    from ..preprocess import Preprocess
    from .generative_models import VisionPath

__all__ = [
    "TILED",
    "Shrink",
    "attention_cells",
    "canvases",
    "shrink_of",
    "tiled_features",
    "tiled_inputs",
    "tiles_preprocess",
    "whole_view",
]

#: The tiled families, as :func:`~.generative_models.family_of` names them.
TILED = ("llava-next", "idefics3")


def whole_view(family: str) -> str:
    """The layer name of the whole picture's own view in ``family``."""
    return "base_image" if family == "llava-next" else "global_image"


def canvases(path: VisionPath) -> tuple[tuple[int, int], ...] | None:
    """The (H, W) an input may have (LLaVA-NeXT: its pinpoints); None: any whole tiles."""
    if path.family.name != "llava-next":
        return None
    config: Any = path.config
    return tuple((int(h), int(w)) for h, w in config.image_grid_pinpoints)


def _layout(path: VisionPath, size: tuple[int, int]) -> tuple[int, int]:
    """(rows, cols) of tiles in a canvas of ``size``, or a one-line refusal."""
    tile = path.family.tile
    allowed = canvases(path)
    fits = size in allowed if allowed is not None else not (size[0] % tile or size[1] % tile)
    if not fits:
        sizes = (
            ", ".join(f"{h}x{w}" for h, w in allowed)
            if allowed is not None
            else f"multiples of {tile}"
        )
        raise UnsupportedModel(
            f"inputs: a {path.family.name} model cuts pictures into {tile}-pixel tiles laid out as "
            f"{sizes}; got {size[0]}x{size[1]} (pass preprocess= with one of those sizes)"
        )
    if path.family.name == "idefics3" and size == (tile, tile):
        raise UnsupportedModel(
            f"inputs: an Idefics3 processor sends a {tile}x{tile} picture unsplit, without tiles "
            "or a global image; pass preprocess= with a size of at least two tiles"
        )
    return size[0] // tile, size[1] // tile


def _views(path: VisionPath, pixels: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """(N, K + 1, C, s, s) each canvas's tiles and whole view in the processor's order
    (LLaVA-NeXT: the base image first; Idefics3: the global image last), rows, cols."""
    n, c = int(pixels.shape[0]), int(pixels.shape[1])
    rows, cols = _layout(path, (int(pixels.shape[-2]), int(pixels.shape[-1])))
    tile = path.family.tile
    cut = pixels.reshape(n, c, rows, tile, cols, tile).permute(0, 2, 4, 1, 3, 5)
    cut = cut.reshape(n, rows * cols, c, tile, tile)
    whole = _shrunk(pixels, tile, path.shrink or Shrink())[:, None]
    parts = [whole, cut] if path.family.name == "llava-next" else [cut, whole]
    return torch.cat(parts, dim=1), rows, cols


def tiled_inputs(path: VisionPath, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The processor's pixel inputs for canvases (N, C, H, W): what the model's own
    ``generate`` takes."""
    views, rows, cols = _views(path, pixels)
    if path.family.name != "llava-next":
        return {"pixel_values": views}
    tile = path.family.tile
    sizes = torch.tensor([[rows * tile, cols * tile]] * len(views), device=pixels.device)
    return {"pixel_values": views, "image_sizes": sizes}


def tiled_features(path: VisionPath, pixels: torch.Tensor) -> torch.Tensor:
    """(N, T, D) the image features the language model reads for canvases (N, C, H, W)."""
    n, c = int(pixels.shape[0]), int(pixels.shape[1])
    stack, rows, cols = _views(path, pixels)
    tile = path.family.tile
    llava = path.family.name == "llava-next"
    hidden = _tower(path, stack.reshape(-1, c, tile, tile))  # (N * (K + 1), g * g, D)
    g = tile // path.family.patch
    hidden = hidden.reshape(n, rows * cols + 1, g, g, -1)
    first, last = (1, rows * cols + 1) if llava else (0, rows * cols)
    grid = _placed(hidden[:, first:last], rows, cols)
    grid = path.tiles(grid)
    whole = hidden[:, 0 if llava else -1].permute(0, 3, 1, 2)  # (N, D, g, g)
    view = getattr(path, whole_view(path.family.name))(whole)
    parts = [_unplaced(grid, rows, cols), view.flatten(2).transpose(1, 2)[:, None]]
    per_tile = torch.cat(parts[::-1] if llava else parts, dim=1)  # (N, K + 1, g * g, D)
    per_tile = per_tile.reshape(n * (rows * cols + 1), g * g, -1)
    inner: Any = path.model
    if llava:
        projected = inner.multi_modal_projector(per_tile).reshape(n, rows * cols + 1, g * g, -1)
        config: Any = path.config
        sizes = torch.tensor([[rows * tile, cols * tile]] * n, device=pixels.device)
        packed, _ = inner.pack_image_features(
            list(projected),
            sizes,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
            image_newline=inner.image_newline,
        )
        return torch.stack(packed)
    shuffled = inner.connector(per_tile)  # (N * (K + 1), (g / r)^2, D)
    return shuffled.reshape(n, -1, shuffled.shape[-1])


# PIL's resampling filters, as the processors' ``resample`` holds them, in torch's names
_RESAMPLE = {1: "lanczos", 2: "bilinear", 3: "bicubic"}


@dataclass(frozen=True)
class Shrink:
    """How a processor shrinks the whole picture to one tile: ``F.interpolate``'s ``mode``,
    and the prepared pixel range per channel (``low``, ``high``) its 8-bit result is held in."""

    mode: str = "bicubic"
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None


def shrink_of(processor: Any) -> Shrink:
    """The processor's own shrinking (LLaVA-NeXT: bicubic; Idefics3 / SmolVLM: Lanczos).

    Processors resize 8-bit pixels, so the overshoot of Lanczos and bicubic
    lobes at sharp edges is clipped to 0..255 before the rescale and
    normalisation; seewhy resizes prepared pixels, so it clips to their image.
    Without the clip (or with bicubic for Lanczos) the whole view misses by up
    to a tenth of the pixel range on fine detail. Bicubic where torch has no Lanczos.
    """
    images = processor.image_processor
    resample = getattr(images, "resample", None)
    mode = _RESAMPLE.get(int(resample) if resample is not None else 3, "bicubic")
    if mode == "lanczos":
        try:  # torch >= 2.12
            F.interpolate(torch.zeros(1, 1, 2, 2), size=(1, 1), mode=mode, antialias=True)
        except (ValueError, NotImplementedError, RuntimeError):
            mode = "bicubic"
    scale = float(images.rescale_factor) if getattr(images, "do_rescale", True) else 1.0
    ends = np.array([[0.0], [255.0 * scale]]) * np.ones((1, 3))
    if getattr(images, "do_normalize", True):
        mean = np.broadcast_to(np.asarray(images.image_mean, dtype=np.float64), (3,))
        std = np.broadcast_to(np.asarray(images.image_std, dtype=np.float64), (3,))
        ends = (ends - mean) / std
    return Shrink(mode, tuple(float(v) for v in ends[0]), tuple(float(v) for v in ends[1]))


def _shrunk(pixels: torch.Tensor, tile: int, how: Shrink) -> torch.Tensor:
    """The whole picture squashed to one tile, as the processor resizes it (:func:`shrink_of`),
    in float32 so a bfloat16 model's pixels resize too."""
    if pixels.shape[-2:] == (tile, tile):
        return pixels
    resized = F.interpolate(
        pixels.float(), size=(tile, tile), mode=how.mode, antialias=True, align_corners=False
    )
    if how.low is not None and how.high is not None and resized.shape[1] == len(how.low):
        shape = (1, -1, 1, 1)
        low = torch.tensor(how.low, device=resized.device).reshape(shape)
        high = torch.tensor(how.high, device=resized.device).reshape(shape)
        resized = torch.maximum(torch.minimum(resized, high), low)
    return resized.to(pixels.dtype)


def _tower(path: VisionPath, tiles: torch.Tensor) -> torch.Tensor:
    """(K, g * g, D) the tower's features of (K, C, s, s) tiles where the projector reads."""
    inner: Any = path.model
    config: Any = path.config
    if path.family.name == "idefics3":
        return inner.vision_model(pixel_values=tiles, return_dict=True).last_hidden_state
    out = inner.vision_tower(tiles, output_hidden_states=True, return_dict=True)
    layer = config.vision_feature_layer
    if isinstance(layer, int):
        chosen = out.hidden_states[layer]
    else:
        chosen = torch.cat([out.hidden_states[i] for i in layer], dim=-1)
    if config.vision_feature_select_strategy == "default":
        chosen = chosen[:, 1:]  # the class token, which the projector never reads
    return chosen


def _placed(tiles: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(N, K, g, g, D) tiles in row-major order -> (N, D, rows * g, cols * g), as they lie."""
    n, _, g, _, d = tiles.shape
    grid = tiles.reshape(n, rows, cols, g, g, d).permute(0, 5, 1, 3, 2, 4)
    return grid.reshape(n, d, rows * g, cols * g)


def _unplaced(grid: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The inverse of :func:`_placed`: (N, K, g * g, D) in the tower's row order."""
    n, d, height = grid.shape[:3]
    g = height // rows
    tiles = grid.reshape(n, d, rows, g, cols, g).permute(0, 2, 4, 3, 5, 1)
    return tiles.reshape(n, rows * cols, g * g, d)


def attention_cells(path: VisionPath, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Which image tokens tile the canvas, in row-major order over the (h, w) grid returned.

    The positions index the model's image tokens in prompt order. The whole
    picture's own view and LLaVA-NeXT's row-end newline tokens are left out:
    they lie nowhere on the canvas.
    """
    rows, cols = _layout(path, size)
    tile = path.family.tile
    g = tile // path.family.patch
    if path.family.name == "llava-next":
        height, width = rows * g, cols * g
        cells = g * g + np.arange(height)[:, None] * (width + 1) + np.arange(width)[None, :]
        return cells.reshape(-1), (height, width)
    side = g // path.family.merge  # each tile's tokens after the pixel shuffle
    per_tile = side * side
    r, y, c, x = np.meshgrid(
        np.arange(rows), np.arange(side), np.arange(cols), np.arange(side), indexing="ij"
    )
    cells = (r * cols + c) * per_tile + y * side + x
    return cells.reshape(-1), (rows * side, cols * side)


def tiles_preprocess(path: VisionPath, processor: Any) -> tuple[Preprocess, str]:
    """The canvas a picture is fitted into, and a few words on it.

    LLaVA-NeXT: the pinpoint its processor picks for a square picture; the
    picture fitted inside with its aspect kept and padded with black, as the
    processor pads: the canvas photos of several layouts are shown on, each
    being fed in its own pinpoint (:mod:`.photo_sizes`); ``preprocess=`` with
    a pinpoint's size feeds every photo in that one. Idefics3: one canvas of
    its longest edge for every photo.
    """
    from .preprocessing import letterboxed

    fields = processor.image_processor.to_dict()
    tile = path.family.tile
    allowed = canvases(path)
    if allowed is not None:
        from transformers.image_processing_utils import select_best_resolution

        side = max(max(h, w) for h, w in allowed)
        height, width = (int(v) for v in select_best_resolution((side, side), list(allowed)))
        others = ", ".join(f"{h}x{w}" for h, w in allowed)
        choice = f"the pinpoint its processor picks for a square picture; others: {others}"
    else:
        longest = int((fields.get("size") or {}).get("longest_edge") or 4 * tile)
        height = width = max(tile, longest // tile * tile)
        choice = "its processor's longest edge, whole tiles"
    pre = letterboxed(fields, height, width)
    rows, cols = height // tile, width // tile
    if allowed is not None:  # each photo is fed in its own pinpoint (.photo_sizes)
        how = (
            f"each fed in the pinpoint its processor picks for it, cut into its {tile} px tiles "
            f"as the processor cuts them ({others}); photos of several layouts in one call are "
            f"laid onto a {height}x{width} canvas with their aspect kept (pass preprocess= "
            "with one pinpoint's size to feed one layout)"
        )
        return pre, how
    how = (
        f"fitted into a {height}x{width} canvas ({choice}: {rows}x{cols} tiles of {tile} px) "
        "with their aspect kept and padded (its processor would choose the layout per picture; "
        "pass preprocess= with another size)"
    )
    return pre, how
