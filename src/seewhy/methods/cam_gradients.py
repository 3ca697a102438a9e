"""The CAMs that need more of the model than one layer's gradient: ShapleyCAM and FullGrad.

ShapleyCAM adds the score's curvature at the layer (a Hessian-vector
product); FullGrad reads the gradient at every bias of the network. Both ask
the backend for it through :mod:`seewhy.backends.extra_gradients`, which
only PyTorch serves; other models are refused in one line before any pass.
"""

from __future__ import annotations

import numpy as np

from ..backends.base import Capture
from ..backends.capabilities import Gradients, Layers, Predicts
from ..backends.extra_gradients import BiasGradients, LayerCurvature
from ..backends.requirements import require
from ..errors import UnsupportedModel
from ..maps import normalise, upsample
from ..registry import register
from .base import Context, Method, RawResult
from .cam import CAM

__all__ = ["FullGrad", "ShapleyCAM", "channel_normalised"]


@register("shapleycam", "shapley-cam")
class ShapleyCAM(CAM):
    """ShapleyCAM (Cai, 2025, arXiv:2501.06261): Grad-CAM's weights with a second-order term.

    The layer's contribution to the score, read as a Shapley value and
    expanded to second order, weighs channel k by
    w_k = mean_ij (g - 1/2 H A)_k[i, j], with g the gradient and H A the
    Hessian of the score in the activations A times A (one double backward);
    map = sum_k w_k A_k. Where the score is piecewise linear in A (only
    ReLUs and pooling after the layer), H A = 0 and this is Grad-CAM.

    Parameters
    ----------
    aug_smooth : bool
        Average the maps of the flipped and scaled inputs (six passes).
    eigen_smooth : bool
        The first principal component of the weighted activations.

    Examples
    --------
    >>> seewhy.explain(model, images, "shapleycam")
    """

    requires = frozenset({Predicts, Layers, Gradients, LayerCurvature})

    def capture(self, ctx: Context, inputs: np.ndarray, targets: np.ndarray | None) -> Capture:
        backend = ctx.backend
        if not isinstance(backend, LayerCurvature):
            require(backend, self)  # the one-line refusal
            raise UnsupportedModel(f"{self.name}: the model's backend lacks second derivatives")
        cap, hvp = backend.capture_curvature(
            inputs, layer=str(ctx.layer), targets=targets, score=ctx.score
        )
        if cap.gradients is None:  # pragma: no cover - a backend bug
            raise UnsupportedModel(f"{self.name}: the backend returned no gradients")
        return Capture(
            logits=cap.logits,
            targets=cap.targets,
            activations=cap.activations,
            gradients=cap.gradients - 0.5 * hvp,  # what the weights average
        )

    def channel_weights(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        return gradients.mean(axis=(2, 3))


@register("fullgrad", "full-grad")
class FullGrad(Method):
    """FullGrad (Srinivas & Fleuret, NeurIPS 2019): input-gradient and every bias-gradient.

    map = psi(|x * grad_x f|) + sum_layers psi(|b * grad_z f|), with z a
    layer's output, b its bias (a BatchNorm's folded with its statistics)
    and psi normalising each channel to [0, 1] and resizing it to the input
    before the channels are summed, as the authors' code and
    pytorch-grad-cam do. Every ``Conv2d`` and ``BatchNorm2d`` with a bias is
    read, so no layer is chosen. PyTorch only.

    Examples
    --------
    >>> seewhy.explain(model, images, "fullgrad")
    """

    requires = frozenset({Predicts, Gradients, BiasGradients})

    def run(self, ctx: Context) -> RawResult:
        backend = ctx.backend
        if not isinstance(backend, BiasGradients):
            require(backend, self)  # the one-line refusal
            raise UnsupportedModel(f"{self.name}: the model's backend lacks bias gradients")
        cap = backend.bias_gradients(ctx.inputs, targets=ctx.targets, score=ctx.score)
        size = (ctx.inputs.shape[1], ctx.inputs.shape[2])
        x_grad = np.abs(ctx.inputs * cap.input_gradients).transpose(0, 3, 1, 2)
        total = channel_normalised(x_grad)
        for bias, grad in zip(cap.biases, cap.gradients, strict=True):
            total += upsample(channel_normalised(np.abs(bias[None, :, None, None] * grad)), size)
        if ctx.progress is not None:
            ctx.progress(len(ctx.inputs))
        return RawResult(maps=total, logits=cap.logits, targets=cap.targets)


def channel_normalised(maps: np.ndarray) -> np.ndarray:
    """(N, h, w): each channel of the (N, C, h, w) ``maps`` min-max normalised, then summed."""
    n, c, h, w = maps.shape
    return normalise(maps.reshape(n * c, h, w)).reshape(n, c, h, w).sum(axis=1)
