"""What a dual encoder's pictures become, read from the model or its processor.

open_clip keeps its recipe on the image tower (``visual.preprocess_cfg``;
older models ``image_mean``/``image_std``/``image_size``); a Hugging Face
model's is its image processor (passed, or saved beside the model). Without
either, the family's usual processor is assumed and said to be.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..preprocess import Preprocess

__all__ = ["dual_encoder_preprocess", "letterboxed"]

_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def dual_encoder_preprocess(
    model: Any, family: str, processor: Any
) -> tuple[Preprocess | None, str]:
    """The preprocessing and a few words on where it came from."""
    if family == "open_clip":
        return _open_clip(model.visual)
    return _hugging_face(model, family, processor)


def _side(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


def _open_clip(visual: Any) -> tuple[Preprocess | None, str]:
    cfg = dict(getattr(visual, "preprocess_cfg", None) or {})
    size = cfg.get("size", getattr(visual, "image_size", None))
    if size is None:
        return None, "seewhy's usual (the tower says nothing)"
    h, w = _side(size)
    mean = tuple(cfg.get("mean", getattr(visual, "image_mean", None) or _OPENAI_MEAN))
    std = tuple(cfg.get("std", getattr(visual, "image_std", None) or _OPENAI_STD))
    interpolation = str(cfg.get("interpolation", "bicubic"))
    mode = str(cfg.get("resize_mode", "shortest"))
    common: dict[str, Any] = {
        "size": (h, w),
        "mean": mean,
        "std": std,
        "interpolation": interpolation,
    }
    if mode == "squash":
        pre = Preprocess(**common, resize=None)
    elif mode == "longest":
        fill = int(cfg.get("fill_color", 0))
        pre = Preprocess(**common, resize=(h, w), fit="contain", fill=(fill, fill, fill))
    else:
        pre = Preprocess(
            **common, resize=min(h, w) if h == w else (h, w), fit="short" if h == w else "cover"
        )
    return pre, f"from visual.preprocess_cfg ({mode}, {h}x{w}, {interpolation})"


def _hugging_face(model: Any, family: str, processor: Any) -> tuple[Preprocess | None, str]:
    from ..backends.torch.hints_hf import image_processor_preset, saved_processor_preset

    images = getattr(processor, "image_processor", processor)
    if images is not None and hasattr(images, "to_dict"):
        return image_processor_preset(images), f"from the processor ({type(images).__name__})"
    saved = saved_processor_preset(model)
    if saved is not None:
        return saved, "from preprocessor_config.json beside the model"
    vision = getattr(model.config, "vision_config", None)
    side = getattr(vision, "image_size", 224)
    if family == "hf-siglip":
        pre = Preprocess(
            size=(side, side),
            resize=None,
            mean=(0.5,) * 3,
            std=(0.5,) * 3,
            interpolation="bicubic",
            resampler="torchvision",
        )
        return pre, f"assumed: SiglipImageProcessor's defaults at {side}x{side} (pass processor=)"
    pre = Preprocess(
        size=(side, side),
        resize=side,
        mean=_OPENAI_MEAN,
        std=_OPENAI_STD,
        interpolation="bicubic",
        crop_rounding="floor",
        resampler="torchvision",
    )
    return pre, f"assumed: CLIPImageProcessor's defaults at {side}x{side} (pass processor=)"


def letterboxed(fields: Mapping[str, Any], height: int, width: int) -> Preprocess:
    """The picture fitted into ``height`` x ``width`` with its aspect kept and padded black,
    then scaled and normalised as the image processor's ``fields`` (its ``to_dict()``) say:
    one size for every picture of a call, where the processor would size each its own."""
    return Preprocess(
        size=(height, width),
        resize=(height, width),
        fit="contain",
        mean=tuple(float(v) for v in fields["image_mean"]),
        std=tuple(float(v) for v in fields["image_std"]),
        scale=float(fields.get("rescale_factor") or 1 / 255),
        interpolation="bicubic",
        fill=(0,),
    )
