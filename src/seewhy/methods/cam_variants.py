"""CAM variants pytorch-grad-cam and torch-cam added in 2024-2026, each as its paper's formula.

Eigen-Grad-CAM, Grad-CAM element-wise and KPCA-CAM change only how the
layer's activations ``A`` and gradients ``g`` become a map; Finer-CAM changes
what is differentiated (the target's score against its nearest classes).
ShapleyCAM and FullGrad need more of the backend than one layer's gradient:
they are in :mod:`.cam_gradients`.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import scipy.linalg

from .._kit.checks import bad_argument, finite_float, one_of
from .._kit.scores import check_targets
from .._target_plan import plan_targets
from ..backends.base import Capture
from ..backends.capabilities import Gradients, Layers, Predicts
from ..backends.requirements import need_layers
from ..errors import InvalidInput, UnsupportedModel
from ..registry import register
from ..targets.base import Target, class_scores
from .base import Context
from .cam import CAM, _acts, _need
from .cam_smoothing import first_component

__all__ = ["KPCACAM", "EigenGradCAM", "FinerCAM", "GradCAMElementWise"]

KERNELS = ("linear", "poly", "rbf", "sigmoid", "cosine")


@register("eigengradcam", "eigen-grad-cam")
class EigenGradCAM(CAM):
    """Eigen-Grad-CAM (pytorch-grad-cam; after Muhammad & Yeasin, 2020): Eigen-CAM of g x A.

    map = (G - mean) v_1, G the (hw, C) matrix of g_k[i, j] A_k[i, j], centred
    over positions, v_1 its first right singular vector. Class-specific,
    unlike Eigen-CAM. The sign is the one that agrees with sum_k g_k A_k
    (an SVD's is arbitrary); ``eigen_smooth`` changes nothing here.

    Parameters
    ----------
    aug_smooth : bool
        Average the maps of the flipped and scaled inputs (six passes).
    eigen_smooth : bool
        Accepted for every CAM; this map already is a principal component.

    Examples
    --------
    >>> seewhy.explain(model, images, "eigengradcam")
    """

    smoothable = False

    def layer_map(self, cap: Capture, ctx: Context) -> np.ndarray:
        product = _need(cap.gradients, self.name) * _acts(cap)
        return first_component(product, product.sum(axis=1))


@register("gradcam-elementwise", "gradcamelementwise")
class GradCAMElementWise(CAM):
    """Grad-CAM element-wise (pytorch-grad-cam): the positive part of g x A, summed.

    map[i, j] = sum_k relu(g_k[i, j] A_k[i, j]): like HiResCAM, but a channel
    whose product is negative at a position takes nothing away there.

    Parameters
    ----------
    aug_smooth : bool
        Average the maps of the flipped and scaled inputs (six passes).
    eigen_smooth : bool
        The first principal component of relu(g x A) instead of its sum.

    Examples
    --------
    >>> seewhy.explain(model, images, "gradcam-elementwise")
    """

    def layer_map(self, cap: Capture, ctx: Context) -> np.ndarray:
        return self.weighted_activations(cap, ctx).sum(axis=1)

    def weighted_activations(self, cap: Capture, ctx: Context) -> np.ndarray:
        return np.maximum(_need(cap.gradients, self.name) * _acts(cap), 0.0)


@register("kpcacam", "kpca-cam")
class KPCACAM(CAM):
    """KPCA-CAM (Karmani et al., 2024): Eigen-CAM with kernel PCA.

    The (hw, C) activations, centred over positions, give the kernel matrix
    K[p, q] = k(a_p, a_q); centred in feature space (Kc = K - 1K - K1 + 1K1)
    its first eigenpair (lambda_1, u_1) gives map = sqrt(lambda_1) u_1, as
    scikit-learn's ``KernelPCA(n_components=1).fit_transform``. Kernels as
    scikit-learn's: linear <a, b>; poly (gamma <a, b> + 1)^3; rbf
    exp(-gamma |a - b|^2); sigmoid tanh(gamma <a, b> + 1); cosine. Class-
    independent; the sign agrees with the mean activation.

    Parameters
    ----------
    kernel : str
        One of linear, poly, rbf, sigmoid (pytorch-grad-cam's default), cosine.
    gamma : float or None
        The kernel's scale; None: 1 / channels (scikit-learn's default).
    aug_smooth : bool
        Average the maps of the flipped and scaled inputs (six passes).
    eigen_smooth : bool
        Accepted for every CAM; this map already is a principal component.

    Examples
    --------
    >>> seewhy.explain(model, images, "kpcacam", kernel="rbf")
    """

    requires = frozenset({Predicts, Layers})
    smoothable = False

    def __init__(
        self,
        *,
        kernel: str = "sigmoid",
        gamma: float | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> None:
        super().__init__(aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
        self.kernel = one_of(kernel, KERNELS, "kernel", where=self.name)
        self.gamma = None if gamma is None else finite_float(gamma, "gamma", where=self.name)

    def layer_map(self, cap: Capture, ctx: Context) -> np.ndarray:
        acts = _acts(cap)
        n, c, h, w = acts.shape
        flat = acts.reshape(n, c, h * w).transpose(0, 2, 1).astype(np.float64)
        maps = [self.projection(f - f.mean(axis=0)) for f in flat]
        out = np.stack(maps)
        sign = np.sign(np.einsum("np,np->n", out - out.mean(1, keepdims=True), flat.mean(axis=2)))
        sign[sign == 0] = 1.0
        return (out * sign[:, None]).reshape(n, h, w).astype(np.float32)

    def projection(self, x: np.ndarray) -> np.ndarray:
        """(hw,) the positions ``x`` (hw, C) on the first kernel principal component."""
        k = kernel_matrix(x, self.kernel, 1.0 / x.shape[1] if self.gamma is None else self.gamma)
        centred = k - k.mean(axis=0) - k.mean(axis=1)[:, None] + k.mean()
        size = len(centred)
        value, vector = scipy.linalg.eigh(centred, subset_by_index=(size - 1, size - 1))
        return vector[:, 0] * np.sqrt(max(float(value[0]), 0.0))


def kernel_matrix(x: np.ndarray, kernel: str, gamma: float) -> np.ndarray:
    """(P, P) kernel between the rows of ``x``, as scikit-learn's ``pairwise_kernels``."""
    dot = x @ x.T
    if kernel == "linear":
        return dot
    if kernel == "poly":
        return (gamma * dot + 1.0) ** 3
    if kernel == "sigmoid":
        return np.tanh(gamma * dot + 1.0)
    if kernel == "rbf":
        sq = np.diag(dot)
        return np.exp(-gamma * np.maximum(sq[:, None] + sq[None, :] - 2.0 * dot, 0.0))
    norms = np.linalg.norm(x, axis=1)
    unit = np.divide(x, norms[:, None], out=np.zeros_like(x), where=norms[:, None] > 0)
    return unit @ unit.T


@register("finercam", "finer-cam")
class FinerCAM(CAM):
    """Finer-CAM (Zhang et al., CVPR 2025): Grad-CAM of the score against the nearest classes.

    With y the logits, m the target class and c_1, c_2, ... the classes whose
    logits are nearest y_m (``comparison_categories`` picks their ranks: 1 is
    the nearest), the score differentiated is
    sum_c p_c (y_m - alpha y_c) / sum_c p_c, p = softmax(y), as
    pytorch-grad-cam's ``FinerWeightedTarget``; the map is Grad-CAM's with
    its gradients. What the target shares with its look-alikes cancels, so
    the map keeps what tells them apart. One pass picks the classes (inside
    the pass, from comparisons that carry no gradient) and differentiates
    the score.

    Parameters
    ----------
    comparison_categories : tuple of int
        Ranks of the compared classes by logit distance to the target (0 is
        the target itself); ranks past the last class are dropped.
    alpha : float
        How much of the compared classes' scores is taken away.
    aug_smooth : bool
        Average the maps of the flipped and scaled inputs (six passes).
    eigen_smooth : bool
        The first principal component of the weighted activations.

    Examples
    --------
    >>> seewhy.explain(model, images, "finercam", alpha=0.6)
    """

    requires = frozenset({Predicts, Layers, Gradients})

    def __init__(
        self,
        *,
        comparison_categories: tuple[int, ...] = (1, 2, 3),
        alpha: float = 1.0,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> None:
        super().__init__(aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
        self.comparison_categories = _ranks(comparison_categories, self.name)
        self.alpha = finite_float(alpha, "alpha", where=self.name)

    def channel_weights(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        return gradients.mean(axis=(2, 3))

    def capture(self, ctx: Context, inputs: np.ndarray, targets: np.ndarray | None) -> Capture:
        if ctx.score != "logit":
            raise InvalidInput(f"{self.name}: compares class logits; leave score as 'logit'")
        if ctx.target_objects is not None:
            raise UnsupportedModel(
                f"{self.name}: compares class logits, not {ctx.target_objects[0].kind!r} targets; "
                "give a class (or no target), or use gradcam, which works on any target"
            )
        chosen = [-1] * len(inputs) if targets is None else [int(t) for t in targets]
        ranks, alpha = self.comparison_categories, self.alpha
        scores = {main: _FinerScore(main, ranks, alpha) for main in dict.fromkeys(chosen)}
        return self._scored(ctx, inputs, tuple(scores[main] for main in chosen), targets)

    def _scored(
        self, ctx: Context, inputs: np.ndarray, scored: tuple[Target, ...], targets: Any
    ) -> Capture:
        plan = plan_targets(ctx.backend, scored, score="logit", sigmoid_detected=ctx.sigmoid)
        cap = need_layers(plan.backend, f"method: {self.name}").capture(
            inputs, layer=str(ctx.layer), targets=plan.targets, gradients=True, score="logit"
        )
        logits = cap.logits[:, plan.columns :]
        main = logits.argmax(axis=1) if targets is None else targets
        return Capture(
            logits=logits,
            targets=check_targets(main, len(logits), logits.shape[1]),
            activations=cap.activations,
            gradients=cap.gradients,
        )


def _ranks(value: Any, where: str) -> tuple[int, ...]:
    try:
        ranks = tuple(int(r) for r in value if not isinstance(r, bool) and int(r) == r)
    except TypeError:
        ranks = ()
    if not ranks or len(ranks) != len(value) or min(ranks) < 1:
        raise bad_argument(
            "comparison_categories", "ranks >= 1, e.g. (1, 2, 3)", value, where=where
        )
    return ranks


class _FinerScore(Target):
    """Finer-CAM's score of each image, picked and computed inside the pass (one pass).

    The data is the target class (-1: each image's top class). The classes
    nearest the target's logit are picked one rank at a time (row minima,
    ties by index; comparisons carry no gradient), O(classes) per rank; the
    score is then pytorch-grad-cam's ``FinerWeightedTarget`` over the chosen
    ranks, the target's own logit where none is left.
    """

    kind = "finer-cam"

    def __init__(self, main: int, ranks: tuple[int, ...], alpha: float) -> None:
        self.main, self.ranks, self.alpha = main, ranks, alpha

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        y = ops.cast(class_scores(output, ops), "float32")  # (N, K)
        k = int(y.shape[1])
        index = ops.convert_to_tensor(np.arange(k, dtype=np.float32))[None, :]
        main = self._data(ops, 0)[:, None]  # (1, 1): the class, or -1 for the top one
        asked = ops.cast(main >= 0, "float32")
        top = _first(y >= ops.max(y, axis=1)[:, None], index, ops)
        target_of = ops.cast(index == main, "float32") * asked + top * (1.0 - asked)
        target = ops.sum(y * target_of, axis=1)  # (N,)
        gap = y - target[:, None]
        far = ops.maximum(gap, -gap) + target_of * _TAKEN  # |y_j - y_m|; y_m itself is rank 0
        compared = 0.0 * y
        for rank in range(1, max(self.ranks) + 1):  # the nearest class left, ties by index
            if rank >= k:
                break
            nearest = _first(far <= -ops.max(-far, axis=1)[:, None], index, ops)
            if rank in self.ranks:
                compared = compared + nearest
            far = far + nearest * _TAKEN
        weight = ops.softmax(y, axis=-1) * compared
        total = ops.sum(weight, axis=1)
        finer = ops.sum(weight * (target[:, None] - self.alpha * y), axis=1) / (total + 1e-9)
        return ops.where(total > 0, finer, target)

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (np.array([self.main], np.float32),)

    def pass_key(self) -> Hashable:
        return (self.kind, self.ranks, self.alpha)

    def to_json(self) -> dict[str, Any]:  # pragma: no cover - never recorded
        return {"kind": self.kind, "ranks": list(self.ranks), "alpha": self.alpha}


def _first(chosen: Any, index: Any, ops: Any) -> Any:
    """(N, K) 0/1: the lowest-index class of each row where ``chosen`` holds (no gradient)."""
    lowest = -ops.max(ops.where(chosen, -index, -float(_TAKEN)), axis=1)
    return ops.cast(index == lowest[:, None], "float32")


_TAKEN = 3.0e38  # added to a class's distance once it has its rank: never the nearest again
