"""The result of an explanation: plain numpy, frozen, framework-free.

Everything downstream (pictures, metrics, reports, the CLI) reads this and
nothing else, so it never needs the model's framework.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ._kit.scores import softmax

if TYPE_CHECKING:
    from PIL import Image

    from .inputs import Failure

__all__ = ["Explanation", "Prediction"]


@dataclass(frozen=True)
class Prediction:
    """One of an image's top-k classes."""

    index: int
    label: str
    probability: float
    logit: float


@dataclass(frozen=True, eq=False)
class Explanation:
    """Maps for a batch of images, with what the model predicted.

    ``maps`` are (N, H, W) float32 in [0, 1] at the model's input resolution;
    ``layer_maps`` are the method's raw maps (N, h, w) before rectifying,
    upsampling and normalising, for analysis. ``params`` holds every setting
    of the method, defaults included, with the values it chose for settings
    left to the input size (e.g. occlusion's window); ``to_dict()["params"]``
    is their JSON form, which ``explain(..., **params)`` takes back.
    """

    maps: np.ndarray
    layer_maps: np.ndarray
    images: np.ndarray  # (N, H, W, 3) uint8, what the model saw
    sources: tuple[str, ...]
    targets: np.ndarray  # (N,) int64
    target_labels: tuple[str, ...]
    logits: np.ndarray  # (N, K) float32
    predictions: tuple[tuple[Prediction, ...], ...]
    method: str
    layer: str | None
    params: Mapping[str, Any] = field(default_factory=dict)
    framework: str = ""
    model_name: str = ""
    failures: tuple[Failure, ...] = ()
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.maps)

    def target_probability(self, i: int) -> float:
        """Softmax probability of image ``i``'s target class."""
        return float(softmax(self.logits[i])[int(self.targets[i])])

    def label(self, i: int) -> str:
        """Caption for image ``i``: the explained class and its probability."""
        return f"{self.target_labels[i]}: {100 * self.target_probability(i):.1f}%"

    def overlay(self, i: int, *, cmap: str = "viridis", alpha: float = 0.5) -> Image.Image:
        """Image ``i`` with its map laid over it."""
        from PIL import Image

        from . import viz

        return Image.fromarray(viz.overlay(self.images[i], self.maps[i], cmap=cmap, alpha=alpha))

    def heatmap(self, i: int, *, cmap: str = "viridis") -> Image.Image:
        """Map ``i`` alone, coloured."""
        from PIL import Image

        from . import viz

        return Image.fromarray(viz.colorize(self.maps[i], cmap=cmap))

    def panel(
        self, i: int, *, cmap: str = "viridis", alpha: float = 0.5, layout: str = "horizontal"
    ) -> Image.Image:
        """Original | heatmap | overlay with the label, as in the tutorials."""
        from . import viz

        return viz.panel(
            self.images[i],
            self.maps[i],
            label=self.label(i),
            cmap=cmap,
            alpha=alpha,
            layout=layout,
        )

    def figure(self, *, cmap: str = "viridis", alpha: float = 0.5) -> Any:
        """A matplotlib Figure with one row per image."""
        from . import viz

        labels = [self.label(i) for i in range(len(self))]
        return viz.figure(self.images, self.maps, labels=labels, cmap=cmap, alpha=alpha)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: per image, its source, target and top-k classes."""
        return {
            "method": self.method,
            "layer": self.layer,
            "framework": self.framework,
            "model": self.model_name,
            "params": {key: json_safe(value) for key, value in self.params.items()},
            "images": [
                {
                    "source": self.sources[i],
                    "target": int(self.targets[i]),
                    "target_label": self.target_labels[i],
                    "predictions": [
                        {
                            "index": p.index,
                            "label": p.label,
                            "probability": round(p.probability, 6),
                            "logit": round(p.logit, 6),
                        }
                        for p in self.predictions[i]
                    ],
                }
                for i in range(len(self))
            ],
            "failures": [{"source": f.source, "reason": f.reason} for f in self.failures],
        }


def json_safe(value: Any) -> Any:
    """A method setting as JSON: arrays summarised, callables named, the rest as text.

    Settings may be anything a method accepts (a custom baseline array, a
    segmentation function); a summary must still serialise. Numbers, words,
    None and pairs (as lists) come back as settings the methods accept.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.size <= 16:
            return value.tolist()
        return {"array": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if callable(value):
        module = getattr(value, "__module__", None)
        name = getattr(value, "__qualname__", None) or type(value).__qualname__
        return f"{module}.{name}" if module else name
    return repr(value)
