"""The size a generative VLM's own processor gives each photo, as a Preprocess per photo.

Qwen2-VL / Qwen2.5-VL see every photo at its own resolution: the
processor's ``smart_resize`` stretches it to sides that are multiples of
``patch_size * merge_size`` with a pixel count within ``min_pixels`` ..
``max_pixels``, keeping the aspect as closely as whole merged patches allow.
One square canvas for every photo of a call (what seewhy fed before) gives
the model other pixels, other tokens and another answer than its own
pipeline does, so the explained answer would not be the model's.

:func:`photo_sizes` returns ``size(height, width) -> Preprocess`` (the
:attr:`seewhy.adapters.Adapted.sizes` of the model): the photo stretched
to the processor's size for it, resampled as the processor resamples
(torchvision's antialiased filter on 8-bit pixels), scaled and normalised
by its fields. The input stream prepares each photo with it and explains
photos of one size together (:class:`seewhy.inputs.BatchStream`).

LLaVA-NeXT picks a pinpoint (a layout of tiles) per photo: the photo is
resized into it with its aspect kept (its processor's rounding) and padded
black around, centred, so the tiles seewhy cuts are its processor's. What is
still the canvas's rather than the photo's: the whole-picture view (its
processor shrinks the photo itself; seewhy the padded canvas) and
``image_sizes`` (the canvas's, so the padding's features are kept rather
than cut off). Idefics3 / SmolVLM resize a photo twice before cutting it,
which one Preprocess cannot say: they keep one canvas per call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInput, UnsupportedModel
from ..preprocess import Preprocess

if TYPE_CHECKING:
    from .generative_models import VisionPath

__all__ = ["photo_sizes", "pinpoint_layout", "pixel_budget", "qwen_size"]

# PIL's resampling filters, as the processors' ``resample`` holds them, in seewhy's names
_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def photo_sizes(path: VisionPath, processor: Any) -> Callable[[int, int], Preprocess] | None:
    """``size(height, width)``: the Preprocess the model's processor amounts to for a photo of
    that size; None for families that see every photo at one size (or as one canvas)."""
    if path.family.name == "llava-next":
        return _pinpoints(path, processor)
    if not path.family.patch_rows:
        return None
    fields = dict(processor.image_processor.to_dict())
    factor = int(fields.get("patch_size") or path.family.patch) * int(
        fields.get("merge_size") or path.family.merge
    )
    if factor != path.family.step:
        raise UnsupportedModel(
            f"processor: its patches of {factor} px do not match the model's "
            f"{path.family.step} px (patch_size x spatial_merge_size); pass the model's own "
            "processor"
        )
    budget = pixel_budget(fields)
    base = _stretched(fields, (factor, factor))

    def size(height: int, width: int) -> Preprocess:
        fed = qwen_size(height, width, factor, budget)
        return replace(base, size=fed, resize=fed)

    return size


def _stretched(fields: dict[str, Any], size: tuple[int, int]) -> Preprocess:
    """A photo stretched to ``size``, resampled, scaled and normalised as the image processor's
    ``fields`` say: resized on 8-bit pixels by torchvision, as its processor does."""
    resample = fields.get("resample")
    return Preprocess(
        size=size,
        resize=size,
        fit="stretch",
        mean=tuple(float(v) for v in fields["image_mean"]),
        std=tuple(float(v) for v in fields["image_std"]),
        scale=float(fields.get("rescale_factor") or 1 / 255),
        interpolation=_FILTERS.get(int(resample) if resample is not None else 3, "bicubic"),
        fill=(0,),  # where a canvas is larger: black, centred, the odd pixel after, as LLaVA-NeXT
        resampler="torchvision",
    )


def qwen_size(height: int, width: int, factor: int, budget: tuple[int, int]) -> tuple[int, int]:
    """(H, W) the Qwen2-VL processor resizes a ``height`` x ``width`` photo to (its own
    ``smart_resize``), or a one-line refusal for a photo it refuses."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    try:
        fed = smart_resize(height, width, factor=factor, min_pixels=budget[0], max_pixels=budget[1])
    except ValueError as exc:  # an aspect ratio beyond 200: this photo is skipped, not the call
        raise InvalidInput(
            f"the Qwen2-VL processor refuses a {height}x{width} photo ({exc}); crop it"
        ) from None
    return int(fed[0]), int(fed[1])


def pixel_budget(fields: dict[str, Any]) -> tuple[int, int]:
    """(min_pixels, max_pixels) from the processor's fields (``size`` or the older names)."""
    size = fields.get("size") or {}
    low = size.get("shortest_edge") or fields.get("min_pixels") or 56 * 56
    high = size.get("longest_edge") or fields.get("max_pixels") or 28 * 28 * 1280
    return int(low), int(high)


def _pinpoints(path: VisionPath, processor: Any) -> Callable[[int, int], Preprocess]:
    """LLaVA-NeXT: each photo in the pinpoint its processor picks for it (its tiles)."""
    from .generative_tiles import canvases

    allowed = canvases(path) or ()
    base = _stretched(dict(processor.image_processor.to_dict()), (1, 1))

    def size(height: int, width: int) -> Preprocess:
        canvas, inner = pinpoint_layout(height, width, allowed)
        return replace(base, size=canvas, resize=inner)  # the photo in it, padded around

    return size


def pinpoint_layout(
    height: int, width: int, allowed: tuple[tuple[int, int], ...]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """(the pinpoint (H, W) LLaVA-NeXT's processor picks for a ``height`` x ``width`` photo,
    the size the photo is resized to inside it), by its own functions."""
    from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
    from transformers.image_utils import ChannelDimension

    best = select_best_resolution((height, width), [list(p) for p in allowed])
    canvas = (int(best[0]), int(best[1]))
    blank = np.empty((height, width, 1), np.uint8)  # only its shape is read
    inner = get_patch_output_size(blank, canvas, ChannelDimension.LAST)  # type: ignore[no-untyped-call]
    return canvas, (int(inner[0]), int(inner[1]))
