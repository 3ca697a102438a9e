"""Average Drop and Increase in Confidence (Chattopadhyay et al., Grad-CAM++, 2018).

The image shown through its map (multiplied by the [0, 1] map) should keep
the target's confidence: both numbers come from the same two passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..._kit.blas import one_blas_thread
from ...explanation import Explanation
from ...preprocess import Preprocess
from ..registry import TEXT_SIDE, Direction, Need, metric
from .cases import Baseline, baseline_label, resolve_case

__all__ = ["ConfidenceChange", "average_drop", "increase_in_confidence"]


@dataclass(frozen=True)
class ConfidenceChange:
    """Average Drop and Increase in Confidence (Grad-CAM++), in percent.

    ``original`` and ``masked`` are each image's target probability on the
    image and on the image multiplied by its map.

    Attributes
    ----------
    original : numpy.ndarray
        (N,) each image's target probability on the image itself.
    masked : numpy.ndarray
        (N,) the same on the image shown through its map.
    targets : numpy.ndarray
        (N,) the class scored per image (-1 when the target is not a class).
    params : Mapping
        The settings the numbers were made with (baseline, precision, target).
    """

    original: np.ndarray  # (N,)
    masked: np.ndarray  # (N,)
    targets: np.ndarray  # (N,) classes (-1: the target has none; params["target"] says what)
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def drops(self) -> np.ndarray:
        """(N,) relative drop max(0, Y - O) / Y per image."""
        y = np.maximum(self.original, 1e-12)
        out: np.ndarray = np.maximum(self.original - self.masked, 0.0) / y
        return out

    @property
    def average_drop(self) -> float:
        """Mean relative drop of the target's confidence, % (lower is better)."""
        return float(100.0 * self.drops.mean())

    @property
    def increase_in_confidence(self) -> float:
        """Share of images whose confidence rose on the masked image, % (higher is better)."""
        return float(100.0 * np.mean(self.masked > self.original))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers."""
        return {
            "metric": "average_drop",
            "average_drop": round(self.average_drop, 6),
            "increase_in_confidence": round(self.increase_in_confidence, 6),
            "original": [round(float(v), 6) for v in self.original],
            "masked": [round(float(v), 6) for v in self.masked],
            "targets": [int(t) for t in self.targets],
            "params": dict(self.params),
        }


# one function, two metrics: both numbers come from the same two passes
@metric(
    "increase_in_confidence",
    direction=Direction.HIGHER,
    needs=frozenset({Need.PREDICTIONS}),
    settings=TEXT_SIDE,
    headline="increase_in_confidence",
)
@metric(
    "average_drop",
    direction=Direction.LOWER,
    needs=frozenset({Need.PREDICTIONS}),
    settings=TEXT_SIDE,
    headline="average_drop",
)
def average_drop(
    model: Any,
    explanation: Explanation | np.ndarray,
    *,
    images: Any = None,
    targets: Any = None,
    baseline: Baseline = "black",
    blur_sigma: float | None = None,
    batch_size: int | None = None,
    preprocess: Preprocess | None = None,
    precision: str = "float32",
    tokenizer: Any = None,
    processor: Any = None,
) -> ConfidenceChange:
    """Average Drop and Increase in Confidence of the image shown through its map.

    The "explanation map" of the Grad-CAM++ paper is the image multiplied by
    the [0, 1] map, i.e. ``baseline + map * (image - baseline)`` with a black
    baseline; both numbers come from the same two passes. ``precision`` as in
    :func:`~seewhy.metrics.deletion`.

    Parameters
    ----------
    model, explanation, images, targets, blur_sigma, batch_size, preprocess, precision
        As in :func:`~seewhy.metrics.deletion`.
    tokenizer, processor : object, optional
        As in :func:`~seewhy.metrics.deletion`.
    baseline : str, float, tuple or numpy.ndarray
        What the map's zeros show (``"black"``, as in the paper; any fill
        :func:`~seewhy.metrics.deletion` takes).

    Returns
    -------
    ConfidenceChange
        Both numbers: ``average_drop`` (lower is better) and
        ``increase_in_confidence`` (higher is better).
    """
    with one_blas_thread():  # numpy's BLAS on one thread (see _kit/blas.py)
        case = resolve_case(
            "average_drop",
            model,
            explanation,
            images,
            targets,
            preprocess,
            precision,
            batch_size,
            tokenizer=tokenizer,
            processor=processor,
        )
        x = case.inputs
        fill = case.fill(baseline, blur_sigma)
        weight = np.clip(case.maps, 0.0, 1.0)[..., None]
        masked = (fill + weight * (x - fill)).astype(np.float32)
        logits = case.predict(np.concatenate([x, masked]))
        n = len(x)
        case.check_rebuilt(logits[:n])
        targets_ = case.scored_targets(logits[:n])
        original = case.scores(logits[:n], targets_, "probability")
        shown = case.scores(logits[n:], targets_, "probability")
        params = {
            "baseline": baseline_label(baseline),
            "precision": case.precision,
            **case.recorded(),
        }
        return ConfidenceChange(original, shown, case.reported(targets_), params)


def increase_in_confidence(
    model: Any, explanation: Explanation | np.ndarray, **kwargs: Any
) -> ConfidenceChange:
    """Same passes as :func:`average_drop`; read ``.increase_in_confidence``.

    Parameters
    ----------
    model : object
        The model that was explained.
    explanation : Explanation or numpy.ndarray
        The explanation, or bare maps with ``images=``.
    **kwargs
        Any keyword of :func:`average_drop`.

    Returns
    -------
    ConfidenceChange
        The same result as :func:`average_drop`'s.
    """
    with one_blas_thread():  # numpy's BLAS on one thread (see _kit/blas.py)
        return average_drop(model, explanation, **kwargs)
