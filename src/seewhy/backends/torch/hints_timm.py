"""What a timm model says about its input: its ``pretrained_cfg`` read as timm reads it.

timm's own evaluation pipeline is ``create_transform(**resolve_data_config(model=...))``;
every field of that data config is followed here (input size, ``crop_pct``
with timm's 0.875 default, ``crop_mode`` ``"center"``/``"squash"``/``"border"``,
interpolation, mean and std), so the model gets the very picture timm makes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import nn

from ...errors import UnsupportedModel
from ...preprocess import IMAGENET, INTERPOLATIONS, Preprocess
from ..hints import ModelHints

__all__ = ["timm_hints", "timm_preprocess"]

#: timm's defaults where a config says nothing (``timm.data.constants``).
_DEFAULT_CROP_PCT = 0.875
_DEFAULT_MODE = "center"


def timm_hints(model: nn.Module) -> ModelHints | None:
    """A timm model's data config as a preset; None for models that are not timm's."""
    cfg = getattr(model, "pretrained_cfg", None)
    if not isinstance(cfg, Mapping) or "input_size" not in cfg:
        return None
    data = _data_config(model, cfg)
    size = _built_size(model)
    source = "timm pretrained_cfg"
    if size is not None and tuple(size) != tuple(data["input_size"][1:]):
        source += f" (size {size[0]}x{size[1]} from patch_embed.img_size)"
    pre = timm_preprocess(data, size)
    channels = int(data["input_size"][0])
    classes = int(getattr(model, "num_classes", 0) or 0)
    from ...zoo import imagenet_labels

    labels = imagenet_labels() if classes == 1000 else None
    return ModelHints(pre.size, channels, pre, labels, source)


def _data_config(model: nn.Module, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``timm.data.resolve_data_config`` itself; its rules for the fields we read without it."""
    try:
        from timm.data.config import resolve_data_config
    except ImportError:
        return {
            "input_size": tuple(cfg["input_size"]),
            "interpolation": cfg.get("interpolation") or "bicubic",
            "mean": tuple(cfg.get("mean") or IMAGENET.mean),
            "std": tuple(cfg.get("std") or IMAGENET.std),
            "crop_pct": cfg.get("crop_pct") or _DEFAULT_CROP_PCT,
            "crop_mode": cfg.get("crop_mode") or _DEFAULT_MODE,
        }
    data: dict[str, Any] = resolve_data_config({}, model=model)  # type: ignore[no-untyped-call]
    return dict(data)


def _built_size(model: nn.Module) -> tuple[int, int] | None:
    """The (H, W) a timm ViT was built for, when its patch embedding refuses any other.

    ``timm.create_model(..., img_size=(224, 320))`` keeps the pretrained cfg's
    224 x 224: fed that, the model dies on timm's own assertion.
    """
    embed = getattr(model, "patch_embed", None)
    size = getattr(embed, "img_size", None)
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        return None
    if not getattr(embed, "strict_img_size", False) or getattr(embed, "dynamic_img_size", False):
        return None
    return int(size[0]), int(size[1])


def timm_preprocess(data: Mapping[str, Any], size: tuple[int, int] | None = None) -> Preprocess:
    """timm's eval transform (``transforms_imagenet_eval``) for a data config, as a preset.

    ``size`` (H, W) replaces the config's input size, as ``create_transform`` given
    that size would.
    """
    height, width = size or (int(data["input_size"][1]), int(data["input_size"][2]))
    crop_pct = float(data.get("crop_pct") or _DEFAULT_CROP_PCT)
    mode = str(data.get("crop_mode") or _DEFAULT_MODE)
    interpolation = str(data.get("interpolation") or "bilinear")
    if interpolation not in INTERPOLATIONS:
        raise UnsupportedModel(
            f"model: its timm config asks for interpolation {interpolation!r}, which seewhy "
            f"does not have ({', '.join(INTERPOLATIONS)}); pass preprocess=seewhy.Preprocess(...)"
        )
    mean = tuple(float(v) for v in data["mean"])
    std = tuple(float(v) for v in data["std"])
    scale = (math.floor(height / crop_pct), math.floor(width / crop_pct))
    common: dict[str, Any] = {
        "size": (height, width),
        "mean": mean,
        "std": std,
        "interpolation": interpolation,
    }
    if mode == "squash":
        return Preprocess(resize=scale, fit="stretch", fill=(0,), **common)
    if mode == "border":
        fill = tuple(round(255 * v) for v in mean)
        return Preprocess(resize=scale, fit="contain", fill=fill, **common)
    if mode != "center":
        raise UnsupportedModel(
            f"model: its timm config has crop_mode {mode!r}, which seewhy does not know "
            "('center', 'squash', 'border'); pass preprocess=seewhy.Preprocess(...)"
        )
    if scale[0] == scale[1]:  # timm: torchvision's Resize(int), the short side
        return Preprocess(resize=scale[0], fill=(0,), **common)
    return Preprocess(resize=scale, fit="cover", fill=(0,), **common)
