"""LIME and Kernel SHAP on superpixels.

LIME (Ribeiro et al., 2016), as in the seed chapter: cut the picture into
superpixels, switch random subsets of them off, score each perturbed image,
weight every sample by its closeness to the original (cosine distance of the
on/off vector to all-on, exponential kernel of width 0.25, square-rooted as
in the chapter and the lime package) and fit a weighted ridge regression of
the score on the on/off vector. Its coefficients are the superpixels' weights.

Kernel SHAP (Lundberg & Lee, 2017) is the same machinery with the Shapley
kernel: coalitions drawn by size with probability proportional to
(M - 1) / (k (M - k)) (all of them when the budget allows, with exact kernel
weights), paired with their complements, and a least-squares fit constrained
so that the weights add up to score(all on) - score(all off).

Everything per picture is numpy: one segmentation, one (samples, S) boolean
matrix, perturbed batches composed straight into a reused buffer, one
``backend.predict`` per batch, a closed-form solve.
"""

from __future__ import annotations

from math import comb

import numpy as np

from ..errors import InvalidInput
from ..registry import register
from .base import Context, Method, RawResult
from .perturbation import (
    ImageProgress,
    chunks,
    fill_values,
    forward_batch_of,
    positive_int,
    predict,
    predict_targets,
    target_scores,
    unit_float,
)
from .superpixels import boundary_picture, compose, label_runs, segment, segment_means

__all__ = ["KernelSHAP", "Lime", "kernel_shap_fit", "lime_weights", "ridge_fit"]


def lime_weights(on: np.ndarray, kernel_width: float) -> np.ndarray:
    """sqrt(exp(-d^2 / width^2)), d = cosine distance of each row of ``on`` to all-on."""
    k = on.sum(axis=1).astype(np.float64)
    d = 1.0 - np.sqrt(k / on.shape[1])  # cos(z, 1) = |z|_1 / (sqrt(|z|_1) sqrt(S)) for 0/1 z
    return np.sqrt(np.exp(-(d**2) / kernel_width**2))


def ridge_fit(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray, alpha: float
) -> tuple[np.ndarray, float, float]:
    """Weighted ridge with intercept, closed form: (coefficients, intercept, weighted R^2).

    Minimises sum_i w_i (y_i - b - x_i . beta)^2 + alpha |beta|^2 (the
    intercept is not penalised), like scikit-learn's Ridge with sample_weight.
    """
    w = weights / weights.sum()
    xf = x.astype(np.float64)
    x_mean = w @ xf
    y_mean = float(w @ y)
    xc = xf - x_mean
    yc = y - y_mean
    weighted = xc * weights[:, None]
    beta = np.linalg.solve(weighted.T @ xc + alpha * np.eye(x.shape[1]), weighted.T @ yc)
    intercept = y_mean - float(x_mean @ beta)
    resid = yc - xc @ beta
    total = float(w @ (yc * yc))
    r2 = 1.0 - float(w @ (resid * resid)) / total if total > 0 else 0.0
    return beta, intercept, r2


def shap_coalitions(
    features: int, samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Coalitions (R, M) bool and their regression weights for Kernel SHAP.

    Every proper, non-empty coalition with its exact Shapley-kernel weight
    when there are at most ``samples`` of them; otherwise ``samples`` drawn
    in complementary pairs with size probability proportional to the
    kernel's mass per size, each then weighing the same.
    """
    m = features
    if m < 2:
        return np.zeros((0, m), bool), np.zeros(0)
    if 2**m - 2 <= samples:
        codes = np.arange(1, 2**m - 1)
        z = ((codes[:, None] >> np.arange(m)) & 1).astype(bool)
        k = z.sum(axis=1)
        kernel = (m - 1) / (np.array([comb(m, int(v)) for v in k], np.float64) * k * (m - k))
        return z, kernel
    sizes = np.arange(1, m)
    mass = (m - 1) / (sizes * (m - sizes)).astype(np.float64)
    half = (samples + 1) // 2
    drawn = rng.choice(sizes, size=half, p=mass / mass.sum())
    keys = rng.random((half, m))
    ranks = np.argsort(np.argsort(keys, axis=1), axis=1)  # a random permutation per row
    z = ranks < drawn[:, None]  # the first k features of that permutation
    both = np.concatenate([z, ~z])[:samples]
    return both, np.ones(len(both))


def kernel_shap_fit(
    z: np.ndarray, y: np.ndarray, weights: np.ndarray, empty: float, full: float
) -> np.ndarray:
    """Shapley values (M,) from coalition scores, with sum(phi) = full - empty exactly.

    The last feature is eliminated with the constraint, the rest solved by
    weighted least squares.
    """
    m = z.shape[1]
    total = full - empty
    if m == 1:
        return np.array([total])
    zf = z.astype(np.float64)
    target = y - empty - zf[:, -1] * total
    design = zf[:, :-1] - zf[:, -1:]
    root = np.sqrt(weights)[:, None]
    beta = np.linalg.lstsq(design * root, target * root[:, 0], rcond=None)[0]
    return np.append(beta, total - beta.sum())


@register("lime")
class Lime(Method):
    """LIME on superpixels (see the module docstring).

    Parameters: ``samples`` (1000), ``segmentation`` (``"quickshift"``,
    ``"slic"``, ``"felzenszwalb"``, a function picture -> labels, or an
    (H, W) label array) with ``segmentation_params`` (defaults: quickshift
    kernel_size=4, max_dist=200, ratio=0.2), ``p`` (chance a superpixel stays
    on, 0.5), ``kernel_width`` (0.25), ``alpha`` (ridge penalty, 1.0),
    ``fill`` for switched-off superpixels (``"mean"``: each superpixel's own
    mean colour, the default as in the lime package; or any fill of
    :func:`~seewhy.methods.perturbation.fill_values`, e.g. ``"blur"``,
    ``"black"``, an RGB triple), ``top_superpixels`` (5) and ``positive_only`` (True)
    for the mask, ``explainer`` (``"lime"`` or ``"shap"``), ``batch_size``,
    ``seed``.

    ``extras``: ``segments`` (N, H, W), ``superpixel_weights`` (N,) object
    array of per-superpixel float32 weights, ``intercept`` (N,),
    ``fit_score`` (N,; weighted R^2 for LIME, NaN for SHAP), ``mask`` (N, H,
    W) bool of the top-k superpixels and ``picture`` (N, H, W, 3) uint8 of it.
    """

    forward_only = True
    uses_layer = False
    rectify = True  # the picture of evidence *for* the class, as LIME's positive_only
    explainer = "lime"

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        return (
            "samples",
            "segmentation",
            "segmentation_params",
            "p",
            "kernel_width",
            "alpha",
            "fill",
            "blur_sigma",
            "top_superpixels",
            "positive_only",
            "explainer",
            "batch_size",
            "seed",
        )

    def run(self, ctx: Context) -> RawResult:
        samples = positive_int(self.param("samples", 1000), "samples", self.name)
        explainer = self.param("explainer", self.explainer)
        if explainer not in ("lime", "shap"):
            raise InvalidInput(
                f"{self.name}: explainer must be 'lime' or 'shap', got {explainer!r}"
            )
        p = unit_float(self.param("p", 0.5), "p", self.name)
        width = unit_float(self.param("kernel_width", 0.25), "kernel_width", self.name, high=1e9)
        alpha = float(self.param("alpha", 1.0))
        if alpha < 0:
            raise InvalidInput(f"{self.name}: alpha must be >= 0, got {alpha!r}")
        top = positive_int(self.param("top_superpixels", 5), "top_superpixels", self.name)
        seed = int(self.param("seed", 0))
        bs = forward_batch_of(self, ctx)
        fill_kind = self.param("fill", "mean")
        x = np.ascontiguousarray(ctx.inputs, dtype=np.float32)
        n, h, w, c = x.shape
        pictures = _pictures(ctx)
        fills = (
            None
            if isinstance(fill_kind, str) and fill_kind == "mean"
            else fill_values(ctx, fill_kind, seed=seed, sigma=self.param("blur_sigma", None))
        )
        logits, targets = predict_targets(ctx, bs)
        full_scores = target_scores(logits, targets, ctx.score)

        maps = np.zeros((n, h, w), np.float32)
        segments = np.zeros((n, h, w), np.int32)
        masks = np.zeros((n, h, w), bool)
        weights_out = np.empty(n, dtype=object)
        intercepts = np.zeros(n, np.float32)
        fit_scores = np.full(n, np.nan, np.float32)
        buffer = np.empty((min(bs, samples + 1), h, w, c), np.float32)
        progress = ImageProgress(ctx, 1)
        for i in range(n):
            labels = segment(
                pictures[i],
                self.param("segmentation", "quickshift"),
                self.param("segmentation_params", None),
                seed=seed,
            )
            count = int(labels.max()) + 1
            runs = label_runs(labels)  # the same for every batch of this image
            fill = (
                segment_means(x[i], labels)
                if fills is None
                else np.ascontiguousarray(fills[i], dtype=np.float32)
            )
            rng = np.random.default_rng(seed)
            if explainer == "lime":
                on = rng.random((samples, count)) < p
                on[0] = True  # the picture itself, as the lime package
                reg_weights = lime_weights(on, width)
            else:
                on, reg_weights = shap_coalitions(count, samples, rng)
                on = np.concatenate([np.zeros((1, count), bool), on])  # all off first
            scores = np.empty(len(on), np.float64)
            for start, stop in chunks(len(on), bs):
                batch = compose(on[start:stop], labels, x[i], fill, buffer, runs)
                out = predict(ctx, batch, bs)
                scores[start:stop] = target_scores(out, np.full(len(out), targets[i]), ctx.score)
            if explainer == "lime":
                coef, intercept, r2 = ridge_fit(on, scores, reg_weights, alpha)
                fit_scores[i] = r2
            else:
                coef = kernel_shap_fit(on[1:], scores[1:], reg_weights, scores[0], full_scores[i])
                intercept = float(scores[0])
            coef32 = coef.astype(np.float32)
            maps[i] = coef32[labels]
            segments[i] = labels
            weights_out[i] = coef32
            intercepts[i] = intercept
            keep = _top(coef, top, bool(self.param("positive_only", True)))
            masks[i] = np.isin(labels, keep)
            progress.advance(1)
        picture = np.stack([boundary_picture(pictures[i], segments[i], masks[i]) for i in range(n)])
        extras = {
            "segments": segments,
            "superpixel_weights": weights_out,
            "intercept": intercepts,
            "fit_score": fit_scores,
            "mask": masks,
            "picture": picture,
        }
        return RawResult(maps=maps, logits=logits, targets=targets, extras=extras)


@register("kernelshap", "kernel-shap", "shap")
class KernelSHAP(Lime):
    """Kernel SHAP over the same superpixels (``lime(..., explainer="shap")``)."""

    explainer = "shap"


def _top(weights: np.ndarray, k: int, positive_only: bool) -> np.ndarray:
    order = np.argsort(-weights, kind="stable")[:k]
    return order[weights[order] > 0] if positive_only else order


def _pictures(ctx: Context) -> np.ndarray:
    """The uint8 pictures to segment: the caller's, else the inputs shown back as pixels."""
    if ctx.images is not None:
        if ctx.images.shape[:3] != ctx.inputs.shape[:3]:
            raise InvalidInput(
                f"images: expected pictures of shape {ctx.inputs.shape[:3]}, got {ctx.images.shape}"
            )
        return np.asarray(ctx.images, dtype=np.uint8)
    if ctx.preprocess is not None and ctx.inputs.shape[-1] == 3:
        return ctx.preprocess.denormalise(ctx.inputs)
    x = ctx.inputs
    lo = x.min(axis=(1, 2, 3), keepdims=True)
    span = np.maximum(x.max(axis=(1, 2, 3), keepdims=True) - lo, 1e-12)
    grey = np.rint((x - lo) / span * 255).astype(np.uint8)
    return grey if grey.shape[-1] == 3 else np.repeat(grey[..., :1], 3, axis=-1)
