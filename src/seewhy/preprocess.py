"""Preprocessing presets: how an RGB photo becomes a model input.

Kept free of any framework: the output is a float32 numpy array in NHWC
layout; each backend moves it to its own layout and device. A preset with
one mean and one std is for a one-channel (grey) model: pictures become
their luminance first (ITU-R 601), while the display picture stays RGB.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ._kit.checks import bad_argument

__all__ = ["IMAGENET", "INTERPOLATIONS", "LUMA", "ModelSpec", "Preprocess"]

#: ITU-R BT.601 luma weights: how an RGB picture becomes grey (as Pillow's ``convert("L")``).
LUMA = (0.299, 0.587, 0.114)

#: Resampling filters a preset may name (Pillow's).
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


@dataclass(frozen=True)
class Preprocess:
    """Resize, crop and normalise an RGB uint8 image.

    ``resize`` is the length the shorter side is scaled to before a centre crop
    to ``size``; ``None`` resizes straight to ``size``. Pixel values become
    ``(x * scale - mean) / std``, per channel: one mean and std for a grey
    model, three for RGB. ``interpolation`` is the resampling filter (timm
    and many Hugging Face models were trained with ``"bicubic"``).
    """

    size: tuple[int, int] = (224, 224)
    resize: int | None = None
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    scale: float = 1.0 / 255.0
    interpolation: str = "bilinear"

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

    @property
    def channels(self) -> int:
        """How many channels the model input has (1 grey, 3 RGB)."""
        return len(self.mean)

    def model_pixels(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB (..., 3) as the model's channels, float32 (grey: rounded luma, as PIL)."""
        values = rgb.astype(np.float32)
        if self.channels == 1 and rgb.shape[-1] == 3:
            values = np.rint(values @ np.asarray(LUMA, np.float32))[..., None]
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
        return np.repeat(rgb, 3, axis=-1) if rgb.shape[-1] == 1 else rgb


IMAGENET = Preprocess()


@dataclass(frozen=True)
class ModelSpec:
    """What seewhy knows about a model beyond its weights.

    A model may carry one as the attribute ``seewhy_spec`` (the bundled zoo
    models do); otherwise :func:`seewhy.spec.resolve_spec` works one out from
    the caller's arguments, then the model's own hints, then defaults.
    ``source`` says where it came from; ``guessed`` names the parts that are
    defaults nobody declared (``"size"``, ``"channels"``, ``"value range"``).
    While the size is a guess, a picture no larger than it is fed at its own
    size.
    """

    name: str = "model"
    preprocess: Preprocess = field(default_factory=Preprocess)
    labels: tuple[str, ...] | None = None
    source: str = ""
    guessed: tuple[str, ...] = ()

    def at_size(self, size: tuple[int, int]) -> ModelSpec:
        """This spec fed ``size`` (H, W), no longer a guess; a resize-then-crop keeps its
        ratio of resize to crop (``--size`` on the command line)."""
        if not (
            isinstance(size, (tuple, list))
            and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
        ):
            raise bad_argument("size", "(height, width), two positive integers", size)
        size = (int(size[0]), int(size[1]))
        pre = self.preprocess
        resize = None if pre.resize is None else round(pre.resize * size[0] / pre.size[0])
        guessed = tuple(part for part in self.guessed if part != "size")
        return replace(self, preprocess=replace(pre, size=size, resize=resize), guessed=guessed)

    def label(self, index: int) -> str:
        if self.labels is not None and 0 <= index < len(self.labels):
            return self.labels[index]
        return f"class {index}"
