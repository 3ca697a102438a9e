"""The class-activation-map family, each written as its paper's formula.

A CAM is a weighted sum of a layer's feature maps ``A`` (N, C, h, w). Most
variants differ only in the channel weights; a few weigh each position.
Every one is used the same way::

    >>> import seewhy
    >>> e = seewhy.explain(model, "cat.jpg", "gradcam")  # or "layercam", "eigencam", ...
    >>> e.maps.shape  # (1, H, W), in [0, 1]
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .._kit.checks import flag
from .._kit.scores import two_classes
from ..backends.base import Capture
from ..backends.capabilities import Gradients, Layers, Predicts
from ..backends.requirements import need_layers
from ..errors import UnsupportedModel
from ..registry import register
from ..targets import Class, MultiLabel
from .base import Context, Method, RawResult

__all__ = [
    "CAM",
    "ClassCAM",
    "EigenCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "XGradCAM",
]

_EPS = np.float32(1e-7)
# CAM's head check: logits within this fraction of their terms' size (float32 sums of
# thousands of channels stay near 1e-5; another layer's pooling lands O(1) away)
_HEAD_RTOL = 1e-3


class CAM(Method):
    """Base of the family: capture the layer, then combine its channels.

    Every CAM takes pytorch-grad-cam's two smoothings: ``aug_smooth``
    (:mod:`.cam_smoothing`: the mean map over horizontal flips and input
    scalings, each mapped back) and ``eigen_smooth`` (the first principal
    component of the weighted activations instead of their channel sum).

    Parameters
    ----------
    aug_smooth : bool
        Average the maps of the flipped and scaled inputs (six passes).
    eigen_smooth : bool
        The weighted activations' first principal component as the map.
    """

    requires = frozenset({Predicts, Layers, Gradients})
    # False where the map already is a principal component: eigen_smooth changes nothing
    smoothable: ClassVar[bool] = True

    def __init__(self, *, aug_smooth: bool = False, eigen_smooth: bool = False) -> None:
        self.aug_smooth = flag(aug_smooth, "aug_smooth", where=self.name)
        self.eigen_smooth = flag(eigen_smooth, "eigen_smooth", where=self.name)

    def run(self, ctx: Context) -> RawResult:
        if ctx.layer is None:
            raise UnsupportedModel(f"{self.name}: needs a layer with a spatial feature map")
        if self.aug_smooth:
            from .cam_smoothing import augmented

            raw = augmented(self, ctx)
        else:
            cap = self.capture(ctx, ctx.inputs, ctx.targets)
            raw = RawResult(maps=self.map_of(cap, ctx), logits=cap.logits, targets=cap.targets)
        if ctx.progress is not None:
            ctx.progress(len(ctx.inputs))
        return raw

    def capture(self, ctx: Context, inputs: np.ndarray, targets: np.ndarray | None) -> Capture:
        """The layer's activations (and gradients) for ``inputs``: one pass of the backend."""
        return need_layers(ctx.backend, f"method: {self.name}").capture(
            inputs,
            layer=str(ctx.layer),
            targets=targets,
            gradients=self.needs_gradients,
            score=ctx.score,
        )

    def map_of(self, cap: Capture, ctx: Context) -> np.ndarray:
        """(N, h, w): :meth:`layer_map`, or with ``eigen_smooth`` its principal component."""
        if self.eigen_smooth and self.smoothable:
            from .cam_smoothing import first_component

            weighted = self.weighted_activations(cap, ctx)
            return first_component(weighted, weighted.sum(axis=1))
        return self.layer_map(cap, ctx)

    def layer_map(self, cap: Capture, ctx: Context) -> np.ndarray:
        """(N, h, w) map: sum over channels of weight x activation."""
        acts = _acts(cap)
        weights = self.channel_weights(acts, _need(cap.gradients, self.name))
        return np.einsum("nc,nchw->nhw", weights, acts, optimize=True)

    def weighted_activations(self, cap: Capture, ctx: Context) -> np.ndarray:
        """(N, C, h, w) what :meth:`layer_map` sums over channels (``eigen_smooth`` reads it)."""
        acts = _acts(cap)
        weights = self.channel_weights(acts, _need(cap.gradients, self.name))
        return weights[:, :, None, None] * acts

    def channel_weights(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        """(N, C) weight of each feature map."""
        raise NotImplementedError


def _acts(cap: Capture) -> np.ndarray:
    if cap.activations is None:  # pragma: no cover - a backend bug
        raise UnsupportedModel("the backend returned no activations")
    return cap.activations


def _need(gradients: np.ndarray | None, name: str) -> np.ndarray:
    if gradients is None:  # pragma: no cover - a backend bug
        raise UnsupportedModel(f"{name}: the backend returned no gradients")
    return gradients


@register("gradcam", "grad-cam")
class GradCAM(CAM):
    """Grad-CAM (Selvaraju et al., 2017): channel weight = mean gradient.

    map = sum_k w_k A_k with w_k = mean_ij d score / d A_k[i, j].
    ``guided=True`` is the variant of the pyimagesearch tutorial: gradients
    count only where both the activation and the gradient are positive.

    Parameters
    ----------
    guided : bool
        Count gradients only where activation and gradient are both positive.

    Examples
    --------
    >>> seewhy.explain(model, images, "gradcam", guided=True)
    """

    def __init__(
        self, *, guided: bool = False, aug_smooth: bool = False, eigen_smooth: bool = False
    ) -> None:
        super().__init__(aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
        self.guided = flag(guided, "guided", where=self.name)

    def channel_weights(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        if self.guided:
            gradients = gradients * ((activations > 0) & (gradients > 0))
        return gradients.mean(axis=(2, 3))


@register("gradcam++", "gradcampp", "gradcam-plus-plus")
class GradCAMPlusPlus(CAM):
    """Grad-CAM++ (Chattopadhyay et al., 2018), closed form for exp(score).

    alpha = g^2 / (2 g^2 + sum_ab(A) g^3); weight = sum_ij alpha relu(g).

    Examples
    --------
    >>> seewhy.explain(model, images, "gradcam++")
    """

    def channel_weights(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        g2 = gradients**2
        g3 = g2 * gradients
        sum_a = activations.sum(axis=(2, 3), keepdims=True)
        denom = 2.0 * g2 + sum_a * g3
        nonzero = denom != 0
        alpha = np.where(nonzero, g2 / np.where(nonzero, denom, 1.0), 0.0)
        return (alpha * np.maximum(gradients, 0.0)).sum(axis=(2, 3))


@register("xgradcam", "xgrad-cam")
class XGradCAM(CAM):
    """XGrad-CAM (Fu et al., 2020): gradients weighted by normalised activations.

    w_k = sum_ij (g_k A_k)[i, j] / sum_ij A_k[i, j].

    Examples
    --------
    >>> seewhy.explain(model, images, "xgradcam")
    """

    def channel_weights(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        sum_a = activations.sum(axis=(2, 3))
        return (gradients * activations).sum(axis=(2, 3)) / (sum_a + _EPS)


@register("hirescam", "hires-cam")
class HiResCAM(CAM):
    """HiResCAM (Draelos & Carin, 2020): gradient times activation, position by position.

    map[i, j] = sum_k g_k[i, j] A_k[i, j].

    Examples
    --------
    >>> seewhy.explain(model, images, "hirescam")
    """

    def layer_map(self, cap: Capture, ctx: Context) -> np.ndarray:
        return np.einsum("nchw,nchw->nhw", _need(cap.gradients, self.name), _acts(cap))

    def weighted_activations(self, cap: Capture, ctx: Context) -> np.ndarray:
        return _need(cap.gradients, self.name) * _acts(cap)


@register("layercam", "layer-cam")
class LayerCAM(CAM):
    """LayerCAM (Jiang et al., 2021): positive gradients weigh each position.

    map[i, j] = sum_k relu(g_k[i, j]) A_k[i, j].

    Examples
    --------
    >>> seewhy.explain(model, images, "layercam")
    """

    def layer_map(self, cap: Capture, ctx: Context) -> np.ndarray:
        positive = np.maximum(_need(cap.gradients, self.name), 0.0)
        return np.einsum("nchw,nchw->nhw", positive, _acts(cap))

    def weighted_activations(self, cap: Capture, ctx: Context) -> np.ndarray:
        return np.maximum(_need(cap.gradients, self.name), 0.0) * _acts(cap)


@register("eigencam", "eigen-cam")
class EigenCAM(CAM):
    """Eigen-CAM (Muhammad & Yeasin, 2020): first principal component of the maps.

    map = A v_1, v_1 the first right singular vector of the centred (hw, C)
    activations. Class-independent. The component's sign is chosen so that
    the map agrees with the mean activation, since an SVD's sign is arbitrary.

    Examples
    --------
    >>> seewhy.explain(model, images, "eigencam")
    """

    requires = frozenset({Predicts, Layers})
    smoothable = False  # already the first principal component

    def layer_map(self, cap: Capture, ctx: Context) -> np.ndarray:
        activations = _acts(cap)
        n, c, h, w = activations.shape
        flat = activations.reshape(n, c, h * w).transpose(0, 2, 1)  # (N, hw, C)
        centred = flat - flat.mean(axis=1, keepdims=True)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        proj = np.einsum("npc,nc->np", flat, vt[:, 0, :])
        mean_map = flat.mean(axis=2)
        sign = np.sign(np.einsum("np,np->n", proj - proj.mean(1, keepdims=True), mean_map))
        sign[sign == 0] = 1.0
        return (proj * sign[:, None]).reshape(n, h, w).astype(np.float32)


@register("cam")
class ClassCAM(CAM):
    """CAM (Zhou et al., 2016): the classifier's weights for the class.

    Only defined when the layer feeds global average pooling and one linear
    layer; this is checked numerically on the batch (logits must equal
    W . mean(A) + b), so a wrong head gives a clear error, not a wrong map.
    map = sum_k W[class, k] A_k. A one-logit head (``Dense(1, "sigmoid")``)
    has two classes: class 1 weighs by W, class 0 by -W (its score is -z).

    Examples
    --------
    >>> seewhy.explain(model, images, "cam")
    """

    requires = frozenset({Predicts, Layers})

    def layer_map(self, cap: Capture, ctx: Context) -> np.ndarray:
        return np.einsum("nc,nchw->nhw", self.head_weights(cap, ctx), _acts(cap))

    def weighted_activations(self, cap: Capture, ctx: Context) -> np.ndarray:
        return self.head_weights(cap, ctx)[:, :, None, None] * _acts(cap)

    def head_weights(self, cap: Capture, ctx: Context) -> np.ndarray:
        """(N, C) the classifier's weights of each image's class, the head checked first."""
        activations = _acts(cap)
        head = need_layers(ctx.backend, f"method: {self.name}").final_linear()
        hint = "use gradcam, which equals CAM on such heads and works on any model"
        if head is None:
            raise UnsupportedModel(f"cam: the model has no final linear layer; {hint}")
        weight, bias = two_classes(head[0]), two_classes(head[1])  # one logit: two classes
        if weight.shape[1] != activations.shape[1]:
            raise UnsupportedModel(
                f"cam: layer {ctx.layer!r} has {activations.shape[1]} channels but the final "
                f"linear layer takes {weight.shape[1]}; {hint}"
            )
        logits = cap.logits[:, cap.logits.shape[1] - len(weight) :]  # after any target columns
        if not self.check_head(activations, logits, weight, bias):
            raise UnsupportedModel(
                f"cam: the logits are not global-average-pooling of layer {ctx.layer!r} followed "
                f"by the final linear layer; {hint}"
            )
        return self.class_weights(weight, cap, ctx)

    @staticmethod
    def class_weights(weight: np.ndarray, cap: Capture, ctx: Context) -> np.ndarray:
        """(N, C) classifier weights of each image's class, or its labels' sum (MultiLabel)."""
        if ctx.target_objects is None:
            return weight[cap.targets]
        rows = []
        for target in ctx.target_objects:
            if isinstance(target, MultiLabel):
                picked = target.indices
            elif isinstance(target, Class):
                picked = (target.index,)
            else:
                raise UnsupportedModel(
                    f"cam: explains classes and sigmoid labels (a one-logit head's class 0 is "
                    f"target=0), not {target.kind!r} targets; use gradcam, which works on any "
                    "target"
                )
            rows.append(weight[np.asarray(picked, dtype=np.int64)].sum(axis=0))
        return np.stack(rows)

    @staticmethod
    def check_head(
        activations: np.ndarray, logits: np.ndarray, weight: np.ndarray, bias: np.ndarray
    ) -> bool:
        """True when the logits are W . mean(A) + b, to float32 rounding of that sum.

        The tolerance is relative to the size of the sum's terms, sum_k |W_k|
        |mean A_k| + |b|, per image: float rounding grows with them, and so
        does how far another layer lands. (An absolute floor would accept any
        layer of a head whose logits are all tiny.) Exactly-zero terms allow
        only exactly the logits.
        """
        pooled = activations.astype(np.float64).mean(axis=(2, 3))
        w, b = weight.astype(np.float64), bias.astype(np.float64)
        expected = pooled @ w.T + b
        terms = np.abs(pooled) @ np.abs(w).T + np.abs(b)
        scale = np.maximum(terms, np.abs(logits)).max(axis=1, keepdims=True)
        return bool((np.abs(expected - logits) <= _HEAD_RTOL * scale).all())
