"""What a PyTorch model says about its own input, read without changing it.

In order: timm's ``pretrained_cfg`` (size, mean/std, crop, interpolation),
a Hugging Face ``config`` (``image_size``, ``num_channels``, ``id2label``)
with the image-processor config saved beside it, a torchvision model
object (its family's crop and ImageNet labels); then the first convolution's
input channels; and for a model whose size is fixed (a Flatten head) and
otherwise unknown, the size found by trying a few common ones.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...preprocess import IMAGENET, INTERPOLATIONS, Preprocess
from ...spec import ModelHints, input_rejected

__all__ = ["input_mismatch", "model_hints", "torchvision_preprocess"]

#: Sizes tried, after the default, on a model that says nothing and rejects 224 px.
TRIED_SIZES = (32, 28, 64, 96, 128, 256, 299, 384, 512, 16, 48)
#: Pillow's resample codes, as Hugging Face image processors store them.
_PIL_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def model_hints(
    model: nn.Module, device: torch.device, dtype: torch.dtype, *, try_sizes: bool = True
) -> ModelHints:
    """Everything ``model`` declares about its input (see the module docstring).

    ``try_sizes=False`` reads only: the model is not run to find its size.
    """
    hints = _timm(model) or _hugging_face(model) or _torchvision(model)
    channels = hints.channels if hints else None
    channels = channels or _first_conv_channels(model)
    if hints is not None and (hints.size is not None or hints.preprocess is not None):
        return ModelHints(
            hints.size, channels, hints.preprocess, hints.labels, hints.source, hints.value_range
        )
    labels = hints.labels if hints else None
    source = [hints.source] if hints and hints.source else []
    if channels is not None:
        source.append("first convolution")
    size = _size_by_trying(model, channels or 3, device, dtype) if try_sizes else None
    if size is not None:
        source.append("sizes tried")
    value_range = hints.value_range if hints else None
    return ModelHints(size, channels, None, labels, ", ".join(source), value_range)


def _first_conv_channels(model: nn.Module) -> int | None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    return None


def _size_by_trying(
    model: nn.Module, channels: int, device: torch.device, dtype: torch.dtype
) -> tuple[int, int] | None:
    """The first size the model takes; None when that is the default 224 px, or none works."""
    from .structure import call_model, eval_mode, is_scripted  # structure calls input_mismatch

    if is_scripted(model):
        return None  # its code may do anything; its errors are its own
    for side in (IMAGENET.size[0], *TRIED_SIZES):
        probe = torch.zeros((1, channels, side, side), device=device, dtype=dtype)
        try:
            with eval_mode(model), torch.no_grad():
                call_model(model, probe)
        except Exception:  # any refusal of this size: try the next
            continue
        return None if side == IMAGENET.size[0] else (side, side)
    return None


# -- timm ----------------------------------------------------------------------------


def _timm(model: nn.Module) -> ModelHints | None:
    cfg = getattr(model, "pretrained_cfg", None)
    if not isinstance(cfg, dict) or "input_size" not in cfg:
        return None
    channels, height, width = (int(v) for v in cfg["input_size"])
    crop = float(cfg.get("crop_pct") or 1.0)
    mean = tuple(float(v) for v in cfg.get("mean", IMAGENET.mean))
    std = tuple(float(v) for v in cfg.get("std", IMAGENET.std))
    interpolation = str(cfg.get("interpolation") or "bilinear")
    pre = Preprocess(
        size=(height, width),
        resize=math.floor(min(height, width) / crop) if crop < 1.0 else None,
        mean=mean,
        std=std,
        interpolation=interpolation if interpolation in INTERPOLATIONS else "bicubic",
    )
    classes = int(getattr(model, "num_classes", 0) or 0)
    labels = _imagenet_labels() if classes == 1000 else None
    return ModelHints((height, width), channels, pre, labels, "timm pretrained_cfg")


def _imagenet_labels() -> tuple[str, ...] | None:
    from ...zoo import imagenet_labels

    return imagenet_labels()


# -- Hugging Face --------------------------------------------------------------------


def _hugging_face(model: nn.Module) -> ModelHints | None:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return None
    size = _pair(getattr(config, "image_size", None))
    channels = getattr(config, "num_channels", None)
    labels = _hf_labels(getattr(config, "id2label", None))
    folder = getattr(config, "_name_or_path", "") or getattr(model, "name_or_path", "")
    pre = _processor_config(Path(folder)) if folder else None
    source = "Hugging Face config" + (" and preprocessor_config.json" if pre else "")
    return ModelHints(size, channels if isinstance(channels, int) else None, pre, labels, source)


def _pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int) and value > 0:
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    return None


def _hf_labels(id2label: Any) -> tuple[str, ...] | None:
    """Class names by index; Hugging Face's placeholders (``LABEL_0``) are no names."""
    if not isinstance(id2label, dict) or not id2label:
        return None
    names = {int(k): str(v) for k, v in id2label.items()}
    if set(names) != set(range(len(names))):
        return None
    ordered = tuple(names[i] for i in range(len(names)))
    if all(re.fullmatch(r"LABEL_\d+", n) for n in ordered):
        return None
    return ordered


def _processor_config(folder: Path) -> Preprocess | None:
    """The image processor saved beside a model (``preprocessor_config.json``), if any."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    size = cfg.get("size") or {}
    crop = cfg.get("crop_size") or {}
    resize: int | None = None
    if isinstance(size, int):
        out = (size, size)
    elif "height" in size:
        out = (int(size["height"]), int(size["width"]))
    elif "shortest_edge" in size:
        resize = int(size["shortest_edge"])
        out = (resize, resize)
    else:
        return None
    if cfg.get("do_center_crop") and crop:
        out = (int(crop["height"]), int(crop["width"])) if isinstance(crop, dict) else (crop, crop)
        resize = resize or max(out)
    normalize = cfg.get("do_normalize", True)
    mean = tuple(cfg.get("image_mean", IMAGENET.mean)) if normalize else (0.0, 0.0, 0.0)
    std = tuple(cfg.get("image_std", IMAGENET.std)) if normalize else (1.0, 1.0, 1.0)
    rescale = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0
    return Preprocess(
        size=out,
        resize=resize,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        scale=rescale,
        interpolation=_PIL_FILTERS.get(int(cfg.get("resample", 2)), "bilinear"),
    )


# -- torchvision ---------------------------------------------------------------------


def torchvision_preprocess(transforms: Any) -> Preprocess:
    """A torchvision weights' ``transforms()`` (resize, centre crop, mean/std) as a preset."""
    crop = int(transforms.crop_size[0])
    resize = int(transforms.resize_size[0])
    mode = str(getattr(transforms.interpolation, "value", "bilinear"))
    return Preprocess(
        size=(crop, crop),
        resize=resize,
        mean=tuple(float(v) for v in transforms.mean),
        std=tuple(float(v) for v in transforms.std),
        interpolation=mode if mode in INTERPOLATIONS else "bilinear",
    )


def _torchvision(model: nn.Module) -> ModelHints | None:
    """A torchvision classifier object: its family's crop, as its ImageNet weights use."""
    if not type(model).__module__.startswith("torchvision.models"):
        return None
    name = type(model).__name__
    if type(model).__module__.startswith("torchvision.models.detection"):
        return _torchvision_detector(model, name)
    side = int(
        getattr(model, "image_size", 0)
        or _maxvit_side(model)
        or (299 if name == "Inception3" else 224)
    )
    resize = 342 if side == 299 else round(side / 0.875)
    pre = Preprocess(size=(side, side), resize=resize)
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    labels = _imagenet_labels() if last and last[-1].out_features == 1000 else None
    return ModelHints((side, side), 3, pre, labels, f"torchvision {name}")


def _maxvit_side(model: nn.Module) -> int:
    """A torchvision MaxViT's input side, fixed when it was built: its first attention
    grid is the input / 4 (stem and first block each halve it); 0 for other models."""
    for module in model.modules():
        grid = getattr(module, "grid_size", None)
        if hasattr(module, "partition_type") and isinstance(grid, tuple):
            return 4 * int(grid[0])
    return 0


def _torchvision_detector(model: nn.Module, name: str) -> ModelHints:
    """A torchvision detector: [0, 1] pictures at any size (it resizes and normalises inside).

    Its size stays a guess (pictures no larger than the default keep their own);
    COCO's names go with a 91-class head, as torchvision's COCO weights have.
    """
    classes = {
        int(n)
        for m in model.modules()
        for n in (getattr(m, "num_classes", None),)
        if isinstance(n, int) and not isinstance(n, bool)
    }
    cls_score = getattr(
        getattr(getattr(model, "roi_heads", None), "box_predictor", None), "cls_score", None
    )
    if isinstance(cls_score, nn.Linear):
        classes.add(int(cls_score.out_features))
    labels = _coco_labels() if classes == {91} else None
    return ModelHints(
        channels=3,
        labels=labels,
        source=f"torchvision {name} (normalises inside)",
        value_range=(0.0, 1.0),
    )


def _coco_labels() -> tuple[str, ...] | None:
    try:
        from torchvision.models._meta import _COCO_CATEGORIES
    except ImportError:  # a private table: without it, no names
        return None
    return tuple(str(c) for c in _COCO_CATEGORIES)


# -- the model's own complaint about its input ---------------------------------------

_SIZE_WORDS = (
    "mat1 and mat2 shapes cannot be multiplied",
    "doesn't match model",
    "channels, but got",  # "expected input[1, 3, 28, 28] to have 1 channels, but got 3"
    "size mismatch",
    "shape '[",  # view/reshape to a fixed shape
    "is invalid for input of size",
    "must match the size of tensor",
)


def input_mismatch(exc: BaseException, shape: tuple[int, ...]) -> Exception | None:
    """The model's own complaint about the input's size or channels as one line with the fix.

    None when ``exc`` is not such a complaint (it is then the model's own error).
    """
    from ...errors import BackendError

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if not any(word in text for word in _SIZE_WORDS):
        return None
    _, channels, height, width = (*shape, 0, 0, 0, 0)[:4]
    return BackendError(input_rejected(text, height, width, channels))
