"""Two capabilities beyond one layer's gradient: every bias's gradient, and curvature.

``BiasGradients`` (FullGrad, :mod:`seewhy.methods.cam_gradients`): one
backward pass that returns the input's gradient and the gradient at the
output of every layer with a bias, with those biases. ``LayerCurvature``
(ShapleyCAM): a layer's activations, gradient, and the Hessian of the score
in that layer's output times the output itself (a Hessian-vector product,
one double backward). Only PyTorch serves them;
:func:`~seewhy.backends.requirements.require` refuses the others in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from .._kit.scores import Score
from .base import Capture

__all__ = ["BiasCapture", "BiasGradients", "LayerCurvature"]


@dataclass(frozen=True)
class BiasCapture:
    """One FullGrad pass: the input's gradient and each bias layer's output gradient.

    ``gradients[k]`` is d(score)/d(output of ``layers[k]``), (N, C, h, w);
    ``biases[k]`` (C,) is that layer's bias as it acts on its output (a
    BatchNorm's: ``beta - mean * gamma / sqrt(var + eps)``). A layer called
    twice in a forward appears twice.
    """

    logits: np.ndarray  # (N, K) float32
    targets: np.ndarray  # (N,) int64
    input_gradients: np.ndarray  # (N, H, W, C) float32
    layers: tuple[str, ...]
    biases: tuple[np.ndarray, ...]
    gradients: tuple[np.ndarray, ...]


@runtime_checkable
class BiasGradients(Protocol):
    """The gradient at every biased layer's output, and at the input (FullGrad)."""

    def bias_gradients(
        self, x: np.ndarray, *, targets: np.ndarray | None, score: Score = "logit"
    ) -> BiasCapture:
        """One forward and one backward through every layer with a bias.

        Parameters
        ----------
        x : numpy.ndarray
            Model inputs (N, H, W, C) float32, already preprocessed.
        targets : numpy.ndarray or None
            (N,) the column scored per image; None: each image's top-1.
        score : str
            ``"logit"`` or ``"probability"``: what the gradients are of.
        """
        ...


@runtime_checkable
class LayerCurvature(Protocol):
    """A layer's gradient and its Hessian-vector product with the layer's output (ShapleyCAM)."""

    def capture_curvature(
        self, x: np.ndarray, *, layer: str, targets: np.ndarray | None, score: Score = "logit"
    ) -> tuple[Capture, np.ndarray]:
        """``capture(gradients=True)`` and H A, H the Hessian of the score in the output A.

        Parameters
        ----------
        x : numpy.ndarray
            Model inputs (N, H, W, C) float32, already preprocessed.
        layer : str
            The layer read.
        targets : numpy.ndarray or None
            (N,) the column scored per image; None: each image's top-1.
        score : str
            ``"logit"`` or ``"probability"``: what is differentiated.

        Returns
        -------
        tuple of (Capture, numpy.ndarray)
            The capture and H A, shaped as its gradients (zeros where the
            score is piecewise linear in the layer, as after ReLUs).
        """
        ...
