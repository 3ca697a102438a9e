"""Preprocessing presets: how an RGB photo becomes a model input.

Kept free of any framework: the output is a float32 numpy array in NHWC
layout; each backend moves it to its own layout and device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["IMAGENET", "ModelSpec", "Preprocess"]


@dataclass(frozen=True)
class Preprocess:
    """Resize, crop and normalise an RGB uint8 image.

    ``resize`` is the length the shorter side is scaled to before a centre crop
    to ``size``; ``None`` resizes straight to ``size``. Pixel values become
    ``(x * scale - mean) / std``.
    """

    size: tuple[int, int] = (224, 224)
    resize: int | None = None
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    scale: float = 1.0 / 255.0

    def normalise(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 (..., H, W, 3) already at ``size`` -> float32 model input."""
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        return ((rgb.astype(np.float32) * np.float32(self.scale)) - mean) / std

    def denormalise(self, x: np.ndarray) -> np.ndarray:
        """Float32 model input (..., H, W, 3) -> uint8 picture, for display."""
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        rgb = (x * std + mean) / np.float32(self.scale)
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


IMAGENET = Preprocess()


@dataclass(frozen=True)
class ModelSpec:
    """What seewhy knows about a model beyond its weights.

    A model may carry one as the attribute ``seewhy_spec`` (the bundled zoo
    models do); otherwise ``explain`` builds one from its arguments.
    """

    name: str = "model"
    preprocess: Preprocess = field(default_factory=Preprocess)
    labels: tuple[str, ...] | None = None

    def label(self, index: int) -> str:
        if self.labels is not None and 0 <= index < len(self.labels):
            return self.labels[index]
        return f"class {index}"
