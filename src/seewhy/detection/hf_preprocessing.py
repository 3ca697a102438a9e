"""What a Hugging Face detector's pictures become, read from its image processor.

The processor passed as ``processor=``, else the one saved beside the model
(``preprocessor_config.json``), else the family's usual one (said). A fixed
size (RT-DETR, OWL-ViT: ``size={"height", "width"}``) is the processor's own
preset, checked against it. DETR, Conditional and Deformable DETR size each
photo its own (the short side to ``shortest_edge``, the long side at most
``longest_edge``) and pad a batch: each photo is then fed at the size the
processor gives it (``sizes``), and where one size is needed for all (the
metrics), the picture is fitted into a ``shortest_edge`` square with its
aspect kept, the padding the colour that normalises to 0, as the processor
pads. OWLv2 pads to a square, then resizes: fitted into its square likewise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..preprocess import IMAGENET, Preprocess

__all__ = ["Sizes", "detector_preprocess", "own_size"]

#: A photo's own preprocessing from its (height, width).
Sizes = Callable[[int, int], Preprocess]

_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def own_size(height: int, width: int, shortest: int, longest: int | None) -> tuple[int, int]:
    """The (height, width) a DETR-style processor resizes a ``height`` x ``width`` photo to.

    The short side becomes ``shortest`` unless the long side would then pass
    ``longest``: the long side is then ``longest`` and the short side rounded
    from it; the other side keeps the aspect, rounded down.
    """
    short, long_ = min(height, width), max(height, width)
    side = float(shortest)
    exact: float | None = None
    if longest is not None and long_ / short * shortest > longest:
        exact = longest * short / long_
        side = float(round(exact))
    if short == side:
        return height, width
    scale = (exact if exact is not None else side) / short
    other = int(scale * long_)
    return (int(side), other) if height <= width else (other, int(side))


def detector_preprocess(
    model: Any, processor: Any, usual: Mapping[str, Any]
) -> tuple[Preprocess, Sizes | None, str]:
    """(the preprocessing for one size, each photo's own or None, a few words on both)."""
    fields, given, source = _fields(model, processor, usual)
    size = dict(fields.get("size") or {})
    if set(size) == {"height", "width"} and not fields.get("do_pad"):
        from ..backends.torch.hints_hf import _resampler, hf_preprocess, image_processor_preset

        kind = str(fields.get("image_processor_type", ""))
        pre = (
            image_processor_preset(given)
            if given is not None
            else hf_preprocess(fields, _resampler(kind))
        )
        return pre, None, f"{source}: stretched to {size['height']}x{size['width']}"
    if set(size) == {"height", "width"}:  # OWLv2: padded to a square, then resized
        h, w = int(size["height"]), int(size["width"])
        grey = round(255 * 0.5)
        pre = _fitted(fields, (h, w), (grey,))
        return (
            pre,
            None,
            (
                f"{source}: fitted into {h}x{w} with its aspect kept, padded grey (the processor "
                "pads at the bottom-right, seewhy centres the picture)"
            ),
        )
    if "shortest_edge" not in size:
        from ..backends.torch.hints_hf import _refusal

        raise _refusal(str(fields.get("image_processor_type", "")), f"size {size}")
    shortest = int(size["shortest_edge"])
    longest = int(size["longest_edge"]) if size.get("longest_edge") else None
    side = min(shortest, longest or shortest)
    fill = tuple(round(255 * m) for m in _mean(fields)) if _normalised(fields) else (0,)
    pre = _fitted(fields, (side, side), fill)

    def sizes(height: int, width: int) -> Preprocess:
        out = own_size(height, width, shortest, longest)
        return Preprocess(**{**_values(fields), "size": out, "resize": None, "fill": None})

    most = f", the long side at most {longest}" if longest else ""
    said = (
        f"{source}: each photo's short side to {shortest}{most}, as the processor sizes it "
        f"(one size for all, as the metrics need: fitted into {side}x{side}, padded)"
    )
    return pre, sizes, said


def _fields(
    model: Any, processor: Any, usual: Mapping[str, Any]
) -> tuple[dict[str, Any], Any, str]:
    """(the processor's fields, the processor object or None, where they came from)."""
    images = getattr(processor, "image_processor", processor)
    if images is not None and callable(getattr(images, "to_dict", None)):
        return dict(images.to_dict()), images, f"from the processor ({type(images).__name__})"
    folder = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "")
    path = Path(folder) / "preprocessor_config.json" if folder else None
    if path is not None and path.is_file():
        try:
            fields = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            fields = None
        if isinstance(fields, dict):
            return fields, None, "from preprocessor_config.json beside the model"
    return (
        dict(usual),
        None,
        ("the family's usual processor (none passed or saved beside the model; pass processor=)"),
    )


def _normalised(fields: Mapping[str, Any]) -> bool:
    return bool(fields.get("do_normalize", True))


def _mean(fields: Mapping[str, Any]) -> tuple[float, ...]:
    return tuple(float(v) for v in fields.get("image_mean") or IMAGENET.mean)


def _values(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The processor's value mapping and filter as :class:`Preprocess` keywords."""
    from ..backends.torch.hints_hf import _resampler

    normalised = _normalised(fields)
    std = tuple(float(v) for v in fields.get("image_std") or IMAGENET.std)
    resample = fields.get("resample", 2)
    return {
        "mean": _mean(fields) if normalised else (0.0, 0.0, 0.0),
        "std": std if normalised else (1.0, 1.0, 1.0),
        "scale": float(fields.get("rescale_factor") or 1 / 255)
        if fields.get("do_rescale", True)
        else 1.0,
        "interpolation": _FILTERS.get(int(resample), "bilinear"),
        "resampler": _resampler(str(fields.get("image_processor_type", ""))),
    }


def _fitted(fields: Mapping[str, Any], size: tuple[int, int], fill: tuple[int, ...]) -> Preprocess:
    """The picture fitted into ``size`` with its aspect kept, padded with ``fill``."""
    return Preprocess(**{**_values(fields), "size": size, "resize": size, "fit": "contain",
                         "fill": fill})  # fmt: skip
