"""What a Hugging Face model says about its input: its config and its image processor.

The processor saved beside the model (``preprocessor_config.json``), or one
the model carries (``model.image_processor``), is read field by field as
its class applies them (``size`` in its forms, ``crop_size``, ``crop_pct``,
``do_center_crop``, ``do_resize``, ``do_rescale``, ``rescale_factor``,
``do_normalize``, ``image_mean``/``image_std``, ``do_flip_channel_order``,
``resample``). Where transformers can build the processor, seewhy's picture is
then checked against the processor's own on two non-square probes: a processor
seewhy does not reproduce is refused in one line, never followed quietly.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import warnings
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ...errors import UnsupportedModel
from ...preprocess import IMAGENET, Preprocess
from ..hints import ModelHints

__all__ = [
    "hf_preprocess",
    "hugging_face_hints",
    "image_processor_preset",
    "saved_processor_preset",
]

#: Pillow's resample codes, as Hugging Face image processors store them.
_PIL_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}

#: Processors whose pictures are not a resize, a crop and a normalisation: why, in a few words.
_REFUSED = {
    "ImageGPTImageProcessor": "pixels become colour-cluster tokens",
    "Siglip2ImageProcessor": "pictures become a variable number of patches",
    "DonutImageProcessor": "thumbnails, rotation and padding",
    "Gemma3ImageProcessor": "pan-and-scan crops",
    "PPLCNetImageProcessor": "its own size rule",
    "TextNetImageProcessor": "sizes rounded to a multiple of its size divisor",
    "PerceiverImageProcessor": "a crop relative to the short side before the resize",
}

_PROBES = ((227, 341), (341, 227))  # non-square, portrait and landscape, odd sides


def hugging_face_hints(model: nn.Module) -> ModelHints | None:
    """A Hugging Face model's config (size, channels, labels) and its processor, if any."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return None
    size = _pair(getattr(config, "image_size", None))
    channels = getattr(config, "num_channels", None)
    labels = _labels(getattr(config, "id2label", None))
    pre, source = _processor_preprocess(model, config)
    return ModelHints(
        pre.size if pre else size,
        channels if isinstance(channels, int) else None,
        pre,
        labels,
        "Hugging Face config" + source,
    )


def _pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int) and value > 0:
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    return None


def _labels(id2label: Any) -> tuple[str, ...] | None:
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


def _processor_preprocess(model: nn.Module, config: Any) -> tuple[Preprocess | None, str]:
    """The processor's preset and where it was read; (None, "") when there is none."""
    carried = getattr(model, "image_processor", None)
    if carried is not None and callable(carried) and hasattr(carried, "to_dict"):
        return _carried_preset(carried), " and its image_processor"
    folder = getattr(config, "_name_or_path", "") or getattr(model, "name_or_path", "")
    path = Path(folder) / "preprocessor_config.json" if folder else None
    if path is None or not path.is_file():
        return None, ""
    try:
        text = path.read_text(encoding="utf-8")
        fields = json.loads(text)
    except (OSError, ValueError):
        return None, ""
    if not isinstance(fields, dict):
        return None, ""
    return _from_folder(str(path.parent), text), " and preprocessor_config.json"


def image_processor_preset(processor: Any) -> Preprocess:
    """A Hugging Face image processor's preset, checked against the processor itself."""
    return _carried_preset(processor)


def saved_processor_preset(model: nn.Module) -> Preprocess | None:
    """The preset of the processor saved beside ``model`` (``config._name_or_path``), if any."""
    return _processor_preprocess(model, getattr(model, "config", None))[0]


# processor -> (its fields as JSON, its checked preset): the check runs the processor on two
# probe pictures, so it is done again only when the processor's fields change
_CARRIED: weakref.WeakKeyDictionary[Any, tuple[str, Preprocess]] = weakref.WeakKeyDictionary()


def _carried_preset(processor: Any) -> Preprocess:
    """The checked preset of the processor a model carries, worked out once per processor."""
    fields = dict(processor.to_dict())
    key = json.dumps(fields, sort_keys=True, default=str)
    known = _CARRIED.get(processor)
    if known is None or known[0] != key:
        known = (key, _checked(processor, fields))
        _CARRIED[processor] = known
    return known[1]


@functools.lru_cache(maxsize=16)
def _from_folder(folder: str, text: str) -> Preprocess:
    """A folder's processor (cached on its JSON text): built by transformers where it can
    be, so seewhy's picture is checked against the processor's own."""
    processor = _load_processor(folder)
    fields = json.loads(text)
    if processor is None:
        return hf_preprocess(fields, _resampler(str(fields.get("image_processor_type", ""))))
    return _checked(processor, fields)


def _load_processor(folder: str) -> Any:
    try:
        from transformers import AutoImageProcessor
    except ImportError:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except Exception:  # custom code (auto_map), an unknown class: read the fields alone
        return None


def _resampler(kind: str) -> str:
    """Whose resize the processor runs: Pillow for a ``...Pil`` class, else torchvision's
    (transformers' default backend) when it is installed."""
    if kind.endswith("Pil"):
        return "pillow"
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return "pillow"
    return "torchvision"


def _checked(processor: Any, fields: Mapping[str, Any]) -> Preprocess:
    """The preset read from the processor's own attributes, then held to its output."""
    kind = type(processor).__name__
    merged = dict(fields)
    for key in [*merged, "size", "crop_size", "crop_pct", "data_config"]:
        value = getattr(processor, key, None)
        if value is not None and not callable(value):
            merged[key] = _plain(value)
    merged["image_processor_type"] = kind
    pre = hf_preprocess(merged, _resampler(kind))
    _hold_to(processor, pre, kind)
    return pre


def _plain(value: Any) -> Any:
    """A processor attribute as JSON would hold it (transformers' ``SizeDict`` as a dict)."""
    if isinstance(value, Mapping):
        return dict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return value


def _hold_to(processor: Any, pre: Preprocess, kind: str) -> None:
    """Refuse in one line when ``pre`` makes another input than ``processor`` does."""
    from ...inputs.batches import resize_for_model

    rng = np.random.default_rng(0)
    for shape in _PROBES:
        probe = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        ours = pre.normalise(resize_for_model(probe, pre))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = processor(images=probe, return_tensors="np")["pixel_values"]
        except Exception as exc:  # its own failure on a plain photo: nothing to hold to
            raise _refusal(kind, f"it fails on a photo: {type(exc).__name__}") from None
        theirs = np.moveaxis(np.asarray(out, dtype=np.float32)[0], 0, -1)
        if theirs.shape != ours.shape:
            raise _refusal(kind, f"it makes {theirs.shape[:2]} inputs, seewhy {ours.shape[:2]}")
        level = float(np.min(np.float32(pre.scale) / np.asarray(pre.std, np.float32)))
        worst = float(np.abs(theirs - ours).max())
        if worst > 0.25 * level:
            raise _refusal(kind, f"pixels differ by up to {worst / level:.2g} grey levels")


def _refusal(kind: str, why: str) -> UnsupportedModel:
    return UnsupportedModel(
        f"model: seewhy cannot reproduce its Hugging Face image processor {kind} ({why}); "
        "pass preprocess=seewhy.Preprocess(...), or the processor's own pixel_values "
        "(a 4-D float tensor) as the images"
    )


def hf_preprocess(fields: Mapping[str, Any], resampler: str = "pillow") -> Preprocess:
    """An image processor's fields (its ``to_dict()``/JSON) as a preset, as its class
    applies them; a field seewhy cannot reproduce is refused in one line."""
    kind = re.sub(r"(Fast|Pil)$", "", str(fields.get("image_processor_type", "")))
    if kind in _REFUSED:
        raise _refusal(kind, _REFUSED[kind])
    if kind == "TimmWrapperImageProcessor" and isinstance(fields.get("data_config"), Mapping):
        from .hints_timm import timm_preprocess

        return timm_preprocess(fields["data_config"])
    if fields.get("do_pad"):
        raise _refusal(kind, "do_pad pads pictures to a size of its own")
    resize, out, fit = _geometry(fields, kind)
    mean, std = _normalisation(fields, kind)
    scale = float(fields.get("rescale_factor", 1 / 255)) if fields.get("do_rescale", True) else 1.0
    if fields.get("rescale_offset"):  # EfficientNet: x * scale - 1
        mean = tuple(m + 1.0 for m in mean)
    resample = fields.get("resample", 2)
    interpolation = _PIL_FILTERS.get(int(resample), None) if isinstance(resample, int) else None
    if interpolation is None:
        raise _refusal(kind, f"resample {resample!r}")
    flip = bool(fields.get("do_flip_channel_order"))
    return Preprocess(
        size=out,
        resize=resize,
        mean=mean,
        std=std,
        scale=scale,
        interpolation=interpolation,
        channel_order="BGR" if flip else "RGB",
        fit=fit,
        crop_rounding="floor",
        fill=(0,),
        resampler=resampler,
    )


def _normalisation(
    fields: Mapping[str, Any], kind: str
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) in the model's channel order; MobileViT's class never normalises."""
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    if fields.get("do_normalize", True) and kind != "MobileViTImageProcessor":
        mean = _triple(fields.get("image_mean", IMAGENET.mean))
        std = _triple(fields.get("image_std", IMAGENET.std))
    if kind == "EfficientNetImageProcessor" and fields.get("include_top", True):
        top = _triple(fields.get("image_std", IMAGENET.std))  # its top divides once more
        std = tuple(s * t for s, t in zip(std, top, strict=True))
    return mean, std


def _triple(value: Any) -> tuple[float, ...]:
    values = [float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value]
    return tuple(values)


def _geometry(
    fields: Mapping[str, Any], kind: str
) -> tuple[int | tuple[int, int] | None, tuple[int, int], str]:
    """(resize, crop size, fit) of a processor's resize and centre crop."""
    size = fields.get("size")
    if isinstance(size, int):
        size = {"height": size, "width": size}
    size = {k: v for k, v in (size or {}).items() if v is not None}
    crop = fields.get("crop_size")
    if isinstance(crop, int):
        crop = {"height": crop, "width": crop}
    cropped = bool(fields.get("do_center_crop")) and isinstance(crop, Mapping)
    crop_hw = (int(crop["height"]), int(crop["width"])) if cropped and crop else None
    if not fields.get("do_resize", True):
        raise _refusal(kind, "do_resize=False keeps each picture's own size")
    if set(size) == {"height", "width"}:
        box = (int(size["height"]), int(size["width"]))
        pct = fields.get("crop_pct") if kind == "PoolFormerImageProcessor" else None
        if pct:
            if box[0] == box[1]:
                return _short(int(box[0] / pct), crop_hw or box)
            box = (int(box[0] / pct), int(box[1] / pct))
        return box, crop_hw or box, "stretch"
    if set(size) == {"shortest_edge"}:
        edge = int(size["shortest_edge"])
        if kind in ("ConvNextImageProcessor", "PoolFormerImageProcessor"):
            pct = fields.get("crop_pct")
            if kind == "ConvNextImageProcessor" and edge >= 384:
                return (edge, edge), (edge, edge), "stretch"  # warped, no crop, at 384 up
            pct = pct if pct else 224 / 256
            return _short(int(edge / pct), crop_hw or (edge, edge))
        if kind == "LevitImageProcessor":
            edge = int((256 / 224) * edge)
        if crop_hw is None:
            raise _refusal(kind, "a short-side resize without a crop keeps each picture's aspect")
        return _short(edge, crop_hw)
    raise _refusal(kind, f"size {dict(size)}")


def _short(edge: int, crop: tuple[int, int]) -> tuple[int, tuple[int, int], str]:
    return edge, crop, "short"
