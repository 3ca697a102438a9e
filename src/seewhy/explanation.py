"""The result of an explanation: plain numpy, frozen, framework-free.

Everything downstream (pictures, metrics, reports, the CLI) reads this and
nothing else, so it never needs the model's framework.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ._kit.scores import probabilities
from .errors import NonFiniteScoresWarning

if TYPE_CHECKING:
    from PIL import Image

    from .inputs import Failure, Photo

__all__ = ["NOT_FINITE", "Explanation", "NonFiniteScoresWarning", "Prediction"]

#: The class index of :meth:`Prediction.not_finite`: no class, the scores were NaN or infinite.
NOT_FINITE = -1


@dataclass(frozen=True)
class Prediction:
    """One of an image's top-k classes.

    An image whose logits are not all finite gets one prediction,
    :meth:`not_finite` (``index`` :data:`NOT_FINITE`, NaN probability),
    rather than a made-up class 0.

    Attributes
    ----------
    index : int
        The class index, or :data:`NOT_FINITE`.
    label : str
        The class name (the index as text when the model has no names).
    probability : float
        Softmax probability, or a sigmoid head's own probability of the label.
    logit : float
        The model's raw score for the class.
    """

    index: int
    label: str
    probability: float
    logit: float

    @classmethod
    def not_finite(cls) -> Prediction:
        """The one "prediction" of an image whose scores are NaN or infinite."""
        return cls(NOT_FINITE, "scores not finite", float("nan"), float("nan"))

    @property
    def finite(self) -> bool:
        """False for :meth:`not_finite`: there is no class to report."""
        return self.index != NOT_FINITE


@dataclass(frozen=True, eq=False)
class Explanation:
    """Maps for a batch of images, with what the model predicted.

    ``maps`` are (N, H, W) float32 in [0, 1] at the model's input resolution;
    ``layer_maps`` are the method's raw maps (N, h, w) before rectifying,
    upsampling and normalising, for analysis. ``images`` are what the model
    saw; ``photos`` keep each raw picture as given (long side at most 2048
    px) with the box of it the model saw, so pictures draw the map back onto
    it (None for preprocessed inputs). ``params`` holds every setting
    of the method, defaults included, with the values it chose for settings
    left to the input size (e.g. occlusion's window); ``to_dict()["params"]``
    is their JSON form, which ``explain(..., **params)`` takes back.
    ``input_spec`` records what the model was fed (size, channels, value
    range, crop, where that was read and what was guessed);
    ``seewhy.spec.preprocess_from_record`` turns it back into a Preprocess.
    A model that sizes each photo its own (Qwen2-VL, LLaVA-NeXT's tiles) is
    fed each at that size; photos fed at several sizes in one call are laid,
    maps and pictures, onto one canvas (the photo fitted, aspect kept, its
    ``photos`` box moved to match), each one's fed size in
    ``input_spec["fed_sizes"]``.

    Attributes
    ----------
    maps : numpy.ndarray
        (N, H, W) float32 in [0, 1], at the model's input resolution.
    layer_maps : numpy.ndarray
        (N, h, w) float32, the method's raw maps before rectifying, upsampling
        and normalising.
    images : numpy.ndarray
        (N, H, W, 3) uint8, what the model saw.
    sources : tuple of str
        Where each image came from (a path, ``sample:NAME``, ``array[i]``).
    targets : numpy.ndarray
        (N,) int64, the class explained per image (-1 when the target is not a
        class: a region, a box, an output unit).
    target_labels : tuple of str
        A caption for each image's target.
    logits : numpy.ndarray
        (N, K) float32, the model's class scores.
    predictions : tuple of tuple of Prediction
        The top-k classes of each image.
    method : str
        The method's registered name.
    layer : str or None
        The layer a layer method used; None for pixel and perturbation methods.
    params : Mapping
        Every setting of the method, defaults and chosen values included.
    framework : str
        ``"torch"``, ``"keras"``, ``"onnx"`` or ``"blackbox"``.
    model_name : str
        The model's class name.
    failures : tuple of Failure
        Inputs that could not be read, each with its one-line reason.
    extras : Mapping
        Per-image arrays a method or target adds (``"target_score"``: a
        target's own score).
    photos : tuple of Photo or None
        Each raw picture as given, or None for preprocessed inputs.
    input_spec : Mapping
        What the model was fed and where each value came from.
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
    photos: tuple[Photo | None, ...] = ()
    input_spec: Mapping[str, Any] = field(default_factory=dict)  # seewhy.spec.spec_record

    def __len__(self) -> int:
        return len(self.maps)

    @property
    def scores_finite(self) -> np.ndarray:
        """(N,) bool: False where the model's logits hold a NaN or an infinity."""
        return np.asarray(np.isfinite(self.logits).all(axis=1))

    def target_probability(self, i: int) -> float:
        """Probability of image ``i``'s target class: softmax, or a sigmoid head's own.

        NaN if the scores are not finite or the target has no class (a region
        of a segmenter, a box, an output unit).

        Parameters
        ----------
        i : int
            Index of the image in this explanation.
        """
        target = int(self.targets[i])
        if not 0 <= target < self.logits.shape[1]:
            return float("nan")
        sigmoid = self.params.get("head") == "sigmoid"
        return float(probabilities(self.logits[i : i + 1], sigmoid)[0, target])

    def label(self, i: int) -> str:
        """Caption for image ``i``: the explained class and its probability (or target score)."""
        if not self.scores_finite[i]:
            return f"{self.target_labels[i]}: scores not finite"
        if "target_score" in self.extras:  # a seewhy.targets target: its own score
            return f"{self.target_labels[i]}: score {float(self.extras['target_score'][i]):.3g}"
        return f"{self.target_labels[i]}: {100 * self.target_probability(i):.1f}%"

    def photo(self, i: int) -> Photo | None:
        """Image ``i`` as the user gave it and where the model's input came from, if kept."""
        return self.photos[i] if i < len(self.photos) else None

    def overlay(
        self, i: int, *, cmap: str | None = None, alpha: float = 0.5, at: str = "original"
    ) -> Image.Image:
        """Image ``i`` with its map laid over it, drawn as :meth:`panel` draws it.

        Parameters
        ----------
        i : int
            Index of the image.
        cmap : str, optional
            A matplotlib colormap name or ``"cv2:jet"`` / ``"cv2:viridis"``.
        alpha : float
            Opacity of the heatmap over the photo.
        at : {"original", "input"}
            Draw on the photo as given (the crop undone), or on the model's input.
        """
        from PIL import Image

        from .viz import explanation_parts

        third = explanation_parts(self, i, cmap=cmap, alpha=alpha, at=at, lime="heat")[2]
        return Image.fromarray(third)

    def heatmap(self, i: int, *, cmap: str | None = None, at: str = "original") -> Image.Image:
        """Map ``i`` alone, coloured as :meth:`panel` colours it.

        Parameters
        ----------
        i : int
            Index of the image.
        cmap : str, optional
            A matplotlib colormap name or ``"cv2:jet"`` / ``"cv2:viridis"``.
        at : {"original", "input"}
            At the photo's own size and aspect, or at the model's input size.
        """
        from PIL import Image

        from .viz import explanation_parts

        return Image.fromarray(explanation_parts(self, i, cmap=cmap, at=at)[1])

    def panel(
        self,
        i: int,
        *,
        cmap: str | None = None,
        alpha: float = 0.5,
        arrangement: str = "horizontal",
        at: str = "original",
        signed: bool = False,
        percentile: float = 99.0,
        lime: str = "superpixels",
        top: int | None = None,
        negative: bool = False,
        layout: str | None = None,
    ) -> Image.Image:
        """Original | heatmap | overlay with the class and probability, on the photo.

        ``at="original"`` (default) draws on the photo as given, at its aspect
        and resolution, the crop undone (no heat outside what the model saw);
        ``"input"`` on the model's input. ``arrangement="vertical"`` stacks the
        parts (``layout=``: its old name, deprecated).
        Pixel attributions are scaled to the ``percentile`` of |a| (``signed``:
        in a diverging colormap); LIME shows its ``top`` superpixels
        (``negative`` too) unless ``lime="heat"``. ``cmap``: any matplotlib
        name or ``"cv2:jet"`` / ``"cv2:viridis"`` (default viridis; bwr signed).
        """
        from .viz import explanation_panel

        return explanation_panel(
            self,
            i,
            cmap=cmap,
            alpha=alpha,
            arrangement=arrangement,
            layout=layout,
            at=at,
            signed=signed,
            percentile=percentile,
            lime=lime,
            top=top,
            negative=negative,
        )

    def figure(self, *, cmap: str = "viridis", alpha: float = 0.5) -> Any:
        """A matplotlib Figure with one row per image (the model's view, maps as they are).

        Parameters
        ----------
        cmap : str
            A matplotlib colormap name.
        alpha : float
            Opacity of the heatmap in the overlay column.
        """
        from . import viz

        labels = [self.label(i) for i in range(len(self))]
        return viz.figure(self.images, self.maps, labels=labels, cmap=cmap, alpha=alpha)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: per image, its source, target and top-k classes.

        No value is NaN or infinite (strict JSON): an image whose scores are
        not finite has ``"scores_finite": false`` and no predictions.
        """
        return {
            "method": self.method,
            "layer": self.layer,
            "framework": self.framework,
            "model": self.model_name,
            "params": {key: json_safe(value) for key, value in self.params.items()},
            "input": json_safe(dict(self.input_spec)),
            "images": [
                {
                    "source": self.sources[i],
                    "target": int(self.targets[i]),
                    "target_label": self.target_labels[i],
                    "scores_finite": finite,
                    "predictions": [
                        {
                            "index": p.index,
                            "label": p.label,
                            "probability": round(p.probability, 6),
                            "logit": round(p.logit, 6),
                        }
                        for p in self.predictions[i]
                        if finite
                    ],
                }
                for i, finite in enumerate(self.scores_finite.tolist())
            ],
            "failures": [{"source": f.source, "reason": f.reason} for f in self.failures],
        }

    # -- display in consoles and notebooks: thin calls into notebook.py ---------------

    def __repr__(self) -> str:
        """One line (method, layer, images, size, top-1s), not the arrays."""
        from .notebook import summary

        return summary(self)

    def _repr_png_(self) -> bytes | None:
        """Jupyter: the panels of the first few images as one PNG."""
        from .notebook import png_bytes

        return png_bytes(self)

    def _repr_html_(self) -> str:
        """Jupyter: method, layer, panels and top classes of the first few images."""
        from .notebook import html_block

        return html_block(self)

    def plot(
        self, indices: list[int] | tuple[int, ...] | range | None = None, **options: Any
    ) -> Any:
        """A matplotlib Figure of the panels (first few images unless ``indices``).

        Parameters
        ----------
        indices : sequence of int, optional
            The images to show.
        **options
            Passed to each panel, as :meth:`panel` takes them.
        """
        from .notebook import plot

        return plot(self, indices, **options)


def json_safe(value: Any) -> Any:
    """A method setting as JSON: arrays summarised, callables named, the rest as text.

    Settings may be anything a method accepts (a custom baseline array, a
    segmentation function); a summary must still serialise, as strict JSON
    (a non-finite number becomes None). Numbers, words,
    None and pairs (as lists) come back as settings the methods accept.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # strict JSON has no NaN
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, np.ndarray):
        if value.size <= 16:
            return json_safe(value.tolist())
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
