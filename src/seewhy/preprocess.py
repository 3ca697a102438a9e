"""Preprocessing presets: how an RGB photo becomes a model input.

Kept free of any framework: the output is a float32 numpy array in NHWC
layout; each backend moves it to its own layout and device. A preset with
one mean and one std is for a one-channel (grey) model: pictures become
their luminance first (ITU-R 601), while the display picture stays RGB.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ._kit.checks import bad_argument

__all__ = [
    "CHANNEL_ORDERS",
    "CROP_ROUNDINGS",
    "FITS",
    "IMAGENET",
    "INTERPOLATIONS",
    "LUMA",
    "RESAMPLERS",
    "ModelSpec",
    "Preprocess",
]

#: ITU-R BT.601 luma weights: how an RGB picture becomes grey (as Pillow's ``convert("L")``).
LUMA = (0.299, 0.587, 0.114)

#: Resampling filters a preset may name (Pillow's).
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")

#: The orders a model may take its colour channels in.
CHANNEL_ORDERS = ("RGB", "BGR")

#: How ``Preprocess.resize`` is met: the short side (an int), or a box (H, W) stretched to,
#: covered with the aspect kept, or contained with the aspect kept (then padded).
FITS = ("short", "stretch", "cover", "contain")

#: How a centre crop's offset is rounded: to nearest, ties to even (torchvision, timm),
#: or down (Hugging Face).
CROP_ROUNDINGS = ("round", "floor")

#: Whose resampling makes the pictures: Pillow's (torchvision and timm on PIL images),
#: torchvision's on uint8 tensors (Hugging Face's default image processors), or OpenCV's
#: ``cv2.resize`` without antialiasing (ultralytics' LetterBox).
RESAMPLERS = ("pillow", "torchvision", "opencv")

#: Where a picture smaller than the input sits: centred (most libraries), or in the top-left
#: corner, padded after (SAM: its bottom-right padding).
ALIGNS = ("centre", "top-left")


@dataclass(frozen=True)
class Preprocess:
    """Resize, crop and normalise an RGB uint8 image.

    The geometry follows the libraries' own rules, so a model gets exactly the
    picture its pipeline makes. Pixel values become ``(x * scale - mean) / std``,
    per channel.

    Parameters
    ----------
    size : (int, int)
        (H, W) the model is fed.
    resize : int or (int, int) or None
        What the picture is resized to before a centre crop to ``size``: the
        short side's length (``fit="short"``) or (H, W) for the other fits;
        None resizes straight to ``size``.
    mean, std : tuple of float
        Per-channel normalisation: one value for a grey model, three for RGB,
        in the model's own channel order.
    scale : float
        Factor from 0-255 pixels to the range ``mean`` and ``std`` are given in.
    interpolation : str
        The resampling filter, one of :data:`INTERPOLATIONS` (timm and many
        Hugging Face models were trained with ``"bicubic"``).
    channel_order : {"RGB", "BGR"}
        ``"BGR"`` for models trained on BGR pixels (Caffe-era weights:
        keras.applications ResNet50 and VGG, OpenCV pipelines): the channels
        are reversed before ``mean`` and ``std``; pictures shown to a person
        stay RGB.
    fit : {"short", "stretch", "cover", "contain"}
        How ``resize`` is met. ``"short"``: the short side to ``resize``, the
        long side ``int(resize * long / short)``, as torchvision's
        ``Resize(int)``; ``"stretch"``: exactly ``resize`` (H, W);
        ``"cover"`` / ``"contain"``: the aspect kept, sides rounded, the
        picture covering or inside ``resize`` (H, W), as timm's
        ``ResizeKeepRatio``.
    crop_rounding : {"round", "floor"}
        How the centre crop's offset is rounded: ``"round"`` as torchvision
        and timm, ``"floor"`` as Hugging Face.
    fill : tuple of int, optional
        Padding (one value or one per channel, 0-255) for a picture smaller
        than ``size`` after the resize, centred. Without it a short-side
        resize is raised until the crop fits, and ``"contain"`` pads with black.
    resampler : {"pillow", "torchvision", "opencv"}
        ``"torchvision"`` resizes as torchvision does on uint8 tensors (Hugging
        Face's default image processors), which differs from Pillow by one
        grey level on some pixels; ``"opencv"`` as ``cv2.resize`` (not
        antialiased: ultralytics' letterbox), ``interpolation`` "nearest",
        "bilinear" or "bicubic".
    align : {"centre", "top-left"}
        Where a picture smaller than ``size`` sits: centred, or in the
        top-left corner with the padding after it (SAM pads bottom-right).

    Raises
    ------
    InvalidInput
        A value out of its range, in one line naming the field.
    """

    size: tuple[int, int] = (224, 224)
    resize: int | tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    scale: float = 1.0 / 255.0
    interpolation: str = "bilinear"
    channel_order: str = "RGB"
    fit: str = "short"
    crop_rounding: str = "round"
    fill: tuple[int, ...] | None = None
    resampler: str = "pillow"
    align: str = "centre"

    def __post_init__(self) -> None:
        if len(self.mean) not in (1, 3) or len(self.std) != len(self.mean):
            raise bad_argument(
                "Preprocess",
                "mean and std of one length, 1 (grey) or 3 (RGB)",
                f"mean={self.mean}, std={self.std}",
            )
        if self.interpolation not in INTERPOLATIONS:
            raise bad_argument(
                "Preprocess.interpolation", f"one of {INTERPOLATIONS}", self.interpolation
            )
        if self.channel_order not in CHANNEL_ORDERS:
            raise bad_argument("Preprocess.channel_order", "'RGB' or 'BGR'", self.channel_order)
        self._check_geometry()
        if self.channel_order == "BGR" and len(self.mean) != 3:
            raise bad_argument(
                "Preprocess.channel_order",
                "'RGB' for a one-channel (grey) model, as grey has no channel order",
                self.channel_order,
            )

    def _check_geometry(self) -> None:
        for name in ("resize", "fill"):  # lists (JSON, the user) read as tuples
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        for name, value, allowed in (
            ("fit", self.fit, FITS),
            ("crop_rounding", self.crop_rounding, CROP_ROUNDINGS),
            ("resampler", self.resampler, RESAMPLERS),
            ("align", self.align, ALIGNS),
        ):
            if value not in allowed:
                raise bad_argument(f"Preprocess.{name}", f"one of {allowed}", value)
        if self.fit == "short":
            if self.resize is not None and not _positive(self.resize):
                raise bad_argument(
                    "Preprocess.resize", "a positive short-side length or None", self.resize
                )
        elif not (isinstance(self.resize, tuple) and len(self.resize) == 2) or not all(
            _positive(v) for v in self.resize
        ):
            raise bad_argument(
                "Preprocess.resize", f"(height, width) for fit={self.fit!r}", self.resize
            )
        if self.fill is not None and not (
            isinstance(self.fill, tuple)
            and len(self.fill) in (1, 3)
            and all(isinstance(v, int) and 0 <= v <= 255 for v in self.fill)
        ):
            raise bad_argument("Preprocess.fill", "None or 1 or 3 values in 0..255", self.fill)

    def plan(self, height: int, width: int) -> tuple[int, int, int, int]:
        """``(new_h, new_w, top, left)`` for a ``height`` x ``width`` picture: the size it is
        resized to, and where the ``size`` crop starts in it (negative: padded by that much).

        The one geometry rule: resizing, drawing maps back onto the photo and the
        audit's boxes all follow it.
        """
        out_h, out_w = self.size
        if self.resize is None:
            return out_h, out_w, 0, 0
        if isinstance(self.resize, tuple):
            new_h, new_w = _box_fit(height, width, self.resize, self.fit)
        else:
            short, long_ = min(height, width), max(height, width)
            new_long = int(self.resize * long_ / short)
            new_h, new_w = (self.resize, new_long) if height <= width else (new_long, self.resize)
            if (new_h < out_h or new_w < out_w) and self.fill is None:
                factor = max(out_h / height, out_w / width)  # raised until the crop fits
                new_h, new_w = max(out_h, round(height * factor)), max(out_w, round(width * factor))
        return new_h, new_w, self._offset(new_h, out_h), self._offset(new_w, out_w)

    def _offset(self, have: int, want: int) -> int:
        """Where a centre crop of ``want`` starts in ``have``; negative: the padding before."""
        if have < want:
            # every library pads the odd pixel after; top-left: all of it after
            return 0 if self.align == "top-left" else -((want - have) // 2)
        if self.crop_rounding == "floor":
            return (have - want) // 2
        return round((have - want) / 2.0)

    @classmethod
    def from_torchvision(cls, weights: Any) -> Preprocess:
        """The preprocessing of torchvision ``weights`` (a weights enum member, or its
        ``transforms()``): resize, centre crop, filter, mean and std, as torchvision
        applies them to a PIL image (read by attribute: torchvision is not imported)."""
        preset = weights.transforms() if callable(getattr(weights, "transforms", None)) else weights
        try:
            crop = [int(v) for v in preset.crop_size]
            resize = [int(v) for v in preset.resize_size]
            mode = str(getattr(preset.interpolation, "value", preset.interpolation))
            mean = tuple(float(v) for v in preset.mean)
            std = tuple(float(v) for v in preset.std)
        except (AttributeError, TypeError, ValueError):
            raise bad_argument(
                "weights", "torchvision weights or their transforms()", type(weights).__name__
            ) from None
        size: int | tuple[int, int] = resize[0] if len(resize) == 1 else (resize[0], resize[1])
        fit = "short" if len(resize) == 1 else "stretch"
        return cls(
            size=(crop[0], crop[-1]),
            resize=size,
            mean=mean,
            std=std,
            interpolation=mode,
            fit=fit,
            fill=(0,),  # CenterCrop pads with black where the crop is larger
        )

    @property
    def channels(self) -> int:
        """How many channels the model input has (1 grey, 3 RGB)."""
        return len(self.mean)

    def model_pixels(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB (..., 3) as the model's channels, float32 (grey: rounded luma, as PIL;
        BGR: reversed)."""
        values = rgb.astype(np.float32)
        if self.channels == 1 and rgb.shape[-1] == 3:
            values = np.rint(values @ np.asarray(LUMA, np.float32))[..., None]
        elif self.channel_order == "BGR":
            values = np.ascontiguousarray(values[..., ::-1])
        return values

    def normalise(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 (..., H, W, 3) already at ``size`` -> float32 model input (..., C)."""
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        return (self.model_pixels(rgb) * np.float32(self.scale) - mean) / std

    def denormalise(self, x: np.ndarray) -> np.ndarray:
        """Float32 model input (..., H, W, C) -> uint8 RGB picture, for display."""
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        rgb = np.clip(np.rint((x * std + mean) / np.float32(self.scale)), 0, 255).astype(np.uint8)
        if rgb.shape[-1] == 1:
            return np.repeat(rgb, 3, axis=-1)
        return np.ascontiguousarray(rgb[..., ::-1]) if self.channel_order == "BGR" else rgb


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _box_fit(height: int, width: int, box: tuple[int, int], fit: str) -> tuple[int, int]:
    """The resized (H, W) of a picture meeting ``box`` by ``fit`` (timm's ResizeKeepRatio)."""
    if fit == "stretch":
        return box
    ratio_h, ratio_w = height / box[0], width / box[1]
    ratio = min(ratio_h, ratio_w) if fit == "cover" else max(ratio_h, ratio_w)
    return max(1, round(height / ratio)), max(1, round(width / ratio))


IMAGENET = Preprocess()


@dataclass(frozen=True)
class ModelSpec:
    """What seewhy knows about a model beyond its weights.

    A model may carry one as the attribute ``seewhy_spec`` (the bundled zoo
    models do); otherwise :func:`seewhy.spec.resolve_spec` works one out from
    the caller's arguments, then the model's own hints, then defaults.
    ``source`` says where it came from; ``guessed`` names the parts that are
    defaults nobody declared (``"size"``, ``"channels"``, ``"value range"``),
    or ``"preprocessing"`` when a whole recipe was assumed from what the model
    is (a torchvision object's family), with ``assumed`` saying which and how
    to change it.
    While the size is a guess, a picture no larger than it is fed at its own
    size.

    Parameters
    ----------
    name : str
        The model's name in captions and reports.
    preprocess : Preprocess
        What each picture becomes before the model sees it.
    labels : tuple of str, optional
        Class names, by index.
    source : str
        Where the spec came from (the caller, the model's hints, defaults).
    guessed : tuple of str
        Parts nobody declared: ``"size"``, ``"channels"``, ``"value range"``
        or ``"preprocessing"``.
    assumed : str
        For a whole recipe assumed from what the model is: which, and how to
        change it.
    """

    name: str = "model"
    preprocess: Preprocess = field(default_factory=Preprocess)
    labels: tuple[str, ...] | None = None
    source: str = ""
    guessed: tuple[str, ...] = ()
    assumed: str = ""

    def at_size(self, size: tuple[int, int]) -> ModelSpec:
        """This spec fed ``size`` (H, W), no longer a guess.

        A resize-then-crop keeps its ratio of resize to crop (``--size`` on the
        command line).

        Parameters
        ----------
        size : (int, int)
            The new input size, (H, W).
        """
        if not (
            isinstance(size, (tuple, list))
            and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
        ):
            raise bad_argument("size", "(height, width), two positive integers", size)
        size = (int(size[0]), int(size[1]))
        pre = self.preprocess
        resize: int | tuple[int, int] | None = None
        if isinstance(pre.resize, tuple):
            resize = (
                round(pre.resize[0] * size[0] / pre.size[0]),
                round(pre.resize[1] * size[1] / pre.size[1]),
            )
        elif pre.resize is not None:
            resize = round(pre.resize * size[0] / pre.size[0])
        guessed = tuple(part for part in self.guessed if part != "size")
        return replace(self, preprocess=replace(pre, size=size, resize=resize), guessed=guessed)

    def label(self, index: int) -> str:
        if self.labels is not None and 0 <= index < len(self.labels):
            return self.labels[index]
        return f"class {index}"
