"""LIME and Kernel SHAP on superpixels.

LIME (Ribeiro et al., 2016), as the lime package runs it: cut the picture into
superpixels, switch random subsets of them off, score each perturbed image,
weight every sample by its closeness to the original (cosine distance of the
on/off vector to all-on, exponential kernel of width 0.25, square-rooted as
the lime package does) and fit a weighted ridge regression of
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

from collections.abc import Mapping
from math import comb
from typing import Any, ClassVar

import numpy as np

from .._kit.batching import ImageProgress, chunks
from .._kit.checks import bad_argument, finite_float, flag, one_of, positive_int, unit_float
from .._kit.fills import check_fill, chosen_blur_sigma, fill_values
from .._kit.superpixels import (
    DEFAULTS,
    Segmentation,
    boundary_picture,
    compose,
    label_runs,
    segment,
    segment_means,
)
from ..backends.capabilities import Predicts
from ..errors import InvalidInput
from ..registry import register
from .base import Context, Method, RawResult, check_copies

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
    """LIME (Ribeiro et al., 2016): a weighted linear fit to copies with superpixels switched off.

    Settings: ``samples`` (1000), ``segmentation`` (``"quickshift"``,
    ``"slic"``, ``"felzenszwalb"``, a function picture -> labels, or an
    (H, W) label array) with ``segmentation_params`` (defaults: quickshift
    kernel_size=4, max_dist=200, ratio=0.2), ``p`` (chance a superpixel stays
    on, 0.5), ``kernel_width`` (0.25), ``alpha`` (ridge penalty, 1.0),
    ``fill`` for switched-off superpixels (``"mean"``: each superpixel's own
    mean colour, the default as in the lime package; or any fill of
    :mod:`seewhy._kit.fills`, e.g. ``"blur"`` with ``blur_sigma``,
    ``"black"``, an RGB triple), ``top_superpixels`` (5) and ``positive_only`` (True)
    for the mask, ``explainer`` (``"lime"`` or ``"shap"``; None: ``"lime"``
    here, ``"shap"`` for ``kernelshap``), ``copies_per_pass`` (perturbed
    copies per forward pass), ``seed``.

    LIME: weights = argmin_b sum_i pi(z_i) (f(z_i) - b0 - z_i . b)^2 + alpha |b|^2,
    pi(z) = sqrt(exp(-d(z, 1)^2 / kernel_width^2)), d the cosine distance.

    Parameters
    ----------
    samples : int
        Perturbed copies scored (superpixels on or off).
    segmentation : str, array or callable
        Superpixels: quickshift, slic, felzenszwalb, a label array or a function.
    segmentation_params : mapping or None
        The segmentation's own settings (None: its defaults).
    p : float
        Chance that a superpixel stays on in a copy.
    kernel_width : float
        Width of the similarity kernel on the cosine distance.
    alpha : float
        Ridge penalty of the fit.
    fill : str, float or array
        What a switched-off superpixel shows: mean (its own colour) or any fill.
    blur_sigma : float or None
        The blur fill's sigma in pixels (None: chosen from the size).
    top_superpixels : int
        Superpixels in the mask of the strongest ones.
    positive_only : bool
        Only superpixels that raise the score go in the mask.
    explainer : str or None
        The fit: lime or shap (None: the method's own).
    copies_per_pass : int or None
        Perturbed copies per forward pass (None: the explainer's or the backend's).
    seed : int
        Seed of the perturbations.

    Examples
    --------
    >>> seewhy.explain(model, images, "lime", samples=500, segmentation="slic")

    Notes
    -----
    ``extras``: ``segments`` (N, H, W), ``superpixel_weights`` (N,) object
    array of per-superpixel float32 weights, ``intercept`` (N,),
    ``fit_score`` (N,; weighted R^2 for LIME, NaN for SHAP), ``mask`` (N, H,
    W) bool of the top-k superpixels and ``picture`` (N, H, W, 3) uint8 of it.
    """

    forward_only = True
    requires = frozenset({Predicts})
    rectify = True  # the picture of evidence *for* the class, as LIME's positive_only
    default_explainer: ClassVar[str] = "lime"

    def __init__(
        self,
        *,
        samples: int = 1000,
        segmentation: Segmentation = "quickshift",
        segmentation_params: Mapping[str, Any] | None = None,
        p: float = 0.5,
        kernel_width: float = 0.25,
        alpha: float = 1.0,
        fill: Any = "mean",
        blur_sigma: float | None = None,
        top_superpixels: int = 5,
        positive_only: bool = True,
        explainer: str | None = None,
        copies_per_pass: int | None = None,
        seed: int = 0,
    ) -> None:
        where = self.name
        self.samples = positive_int(samples, "samples", where=where)
        self.segmentation = _check_segmentation(segmentation, where)
        if segmentation_params is not None and not isinstance(segmentation_params, Mapping):
            raise bad_argument("segmentation_params", "a mapping", segmentation_params, where=where)
        self.segmentation_params = segmentation_params
        self.p = unit_float(p, "p", where=where)
        self.kernel_width = unit_float(kernel_width, "kernel_width", where=where, high=1e9)
        self.alpha = finite_float(alpha, "alpha", where=where, minimum=0.0)
        self.fill = check_fill(fill, f"{where}: fill")
        self.blur_sigma = (
            None
            if blur_sigma is None
            else finite_float(blur_sigma, "blur_sigma", where=where, minimum=0.0)
        )
        self.top_superpixels = positive_int(top_superpixels, "top_superpixels", where=where)
        self.positive_only = flag(positive_only, "positive_only", where=where)
        chosen = self.default_explainer if explainer is None else explainer
        self.explainer = one_of(chosen, ("lime", "shap"), "explainer", where=where)
        self.copies_per_pass = check_copies(copies_per_pass, where)
        self.seed = positive_int(seed, "seed", where=where, minimum=0)

    def run(self, ctx: Context) -> RawResult:
        samples, explainer, p, seed = self.samples, self.explainer, self.p, self.seed
        bs = ctx.forward_copies(self.copies_per_pass)
        x = np.ascontiguousarray(ctx.inputs, dtype=np.float32)
        n, h, w, c = x.shape
        pictures = _pictures(ctx)
        own_means = isinstance(self.fill, str) and self.fill == "mean"
        fills = (
            None
            if own_means
            else fill_values(
                x,
                self.fill,
                ctx.preprocess,
                seed=seed,
                sigma=self.blur_sigma,
                where=f"{self.name}: fill",
            )
        )
        logits, targets = ctx.logits_and_targets(bs)
        full_scores = ctx.scores(logits, targets)

        maps = np.zeros((n, h, w), np.float32)
        segments = np.zeros((n, h, w), np.int32)
        masks = np.zeros((n, h, w), bool)
        weights_out = np.empty(n, dtype=object)
        intercepts = np.zeros(n, np.float32)
        fit_scores = np.full(n, np.nan, np.float32)
        buffer = np.empty((min(bs, samples + 1), h, w, c), np.float32)
        progress = ImageProgress(ctx.progress, 1)
        for i in range(n):
            labels = segment(pictures[i], self.segmentation, self.segmentation_params, seed=seed)
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
                reg_weights = lime_weights(on, self.kernel_width)
            else:
                on, reg_weights = shap_coalitions(count, samples, rng)
                on = np.concatenate([np.zeros((1, count), bool), on])  # all off first
            scores = np.empty(len(on), np.float64)
            for start, stop in chunks(len(on), bs):
                batch = compose(on[start:stop], labels, x[i], fill, buffer, runs)
                out = ctx.predict(batch, bs)
                scores[start:stop] = ctx.scores(out, np.full(len(out), targets[i]))
            if explainer == "lime":
                coef, intercept, r2 = ridge_fit(on, scores, reg_weights, self.alpha)
                fit_scores[i] = r2
            else:
                coef = kernel_shap_fit(on[1:], scores[1:], reg_weights, scores[0], full_scores[i])
                intercept = float(scores[0])
            coef32 = coef.astype(np.float32)
            maps[i] = coef32[labels]
            segments[i] = labels
            weights_out[i] = coef32
            intercepts[i] = intercept
            keep = _top(coef, self.top_superpixels, self.positive_only)
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
        settings = chosen_blur_sigma(self.fill, self.blur_sigma, h, w)
        return RawResult(
            maps=maps, logits=logits, targets=targets, extras=extras, settings=settings
        )


@register("kernelshap", "kernel-shap", "shap")
class KernelSHAP(Lime):
    """Kernel SHAP over the same superpixels (``lime(..., explainer="shap")``).

    phi = argmin sum_z k(z) (f(z) - f(0) - z . phi)^2 subject to
    sum(phi) = f(1) - f(0), k(z) = (M - 1) / (C(M, |z|) |z| (M - |z|)).

    Examples
    --------
    >>> seewhy.explain(model, images, "kernelshap", samples=256)
    """

    default_explainer = "shap"


def _check_segmentation(how: Any, where: str) -> Segmentation:
    """A segmentation LIME can use: an algorithm's name, a function or a label array."""
    if isinstance(how, np.ndarray) or callable(how) or (isinstance(how, str) and how in DEFAULTS):
        return how
    expected = f"one of {', '.join(DEFAULTS)}, a function or an (H, W) label array"
    raise bad_argument("segmentation", expected, how, where=where)


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
