"""Pixel attributions from input gradients.

Vanilla gradient (saliency), Gradient x Input, SmoothGrad, Integrated
Gradients, Guided Backprop and Guided Grad-CAM. Each gives a signed
attribution per pixel and channel, (N, H, W, C) in model-input space, kept in
``extras["attributions"]``; the map is a per-pixel reduction over channels
chosen by ``reduce``:

* ``"absmax"``: max_c |a| (Simonyan et al.'s saliency map; default of ``saliency``);
* ``"abssum"``: sum_c |a| (the default elsewhere, as the PAIR saliency library);
* ``"l2"``: the norm over channels;
* ``"sum"``: sum_c a, signed (negative evidence shows low);
* ``"positive"``: max(sum_c a, 0), only evidence for the class.

The maps are not rectified by ``explain`` (``rectify=False``): a reduction
already decides what the sign means. Signed attributions are best shown with
``viz.signed_to_rgb`` (the tutorials' ``deprocess_image``). Every method::

    >>> e = seewhy.explain(model, images, "saliency", reduce="abssum")
    >>> e.extras["attributions"].shape  # (N, H, W, C), signed
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from .._kit.batching import ImageProgress, chunks
from .._kit.checks import finite_float, flag, one_of, positive_int
from .._kit.fills import check_fill, chosen_blur_sigma, fill_values
from .._kit.prefetch import Ahead
from ..backends.capabilities import Gradients, Layers, Predicts
from ..backends.requirements import need_gradients, need_layers
from ..errors import InvalidInput, UnsupportedModel
from ..maps import normalise, upsample
from ..registry import register
from .base import Context, Method, RawResult, check_copies
from .cam import GradCAM

__all__ = [
    "GradientXInput",
    "GuidedBackprop",
    "GuidedGradCAM",
    "IntegratedGradients",
    "Saliency",
    "SmoothGrad",
    "reduce_channels",
]

REDUCTIONS = ("absmax", "abssum", "l2", "sum", "positive")


def reduce_channels(attributions: np.ndarray, how: str) -> np.ndarray:
    """(N, H, W, C) attributions -> (N, H, W) map (see the module docstring)."""
    a = np.asarray(attributions, dtype=np.float32)
    if how == "absmax":
        return np.abs(a).max(axis=-1)
    if how == "abssum":
        return np.abs(a).sum(axis=-1)
    if how == "l2":
        return np.sqrt(np.square(a).sum(axis=-1))
    if how == "sum":
        return a.sum(axis=-1)
    if how == "positive":
        return np.maximum(a.sum(axis=-1), 0.0)
    raise InvalidInput(f"reduce: expected one of {', '.join(REDUCTIONS)}, got {how!r}")


class PixelAttribution(Method):
    """Base of the pixel methods: attributions in, reduced map out.

    Parameters
    ----------
    reduce : str
        How the colour channels' attributions become one map: absmax, abssum, l2, sum or positive.
    """

    requires = frozenset({Predicts, Gradients})
    rectify = False

    def __init__(self, *, reduce: str = "abssum") -> None:
        self.reduce = one_of(reduce, REDUCTIONS, "reduce", where=self.name)

    def run(self, ctx: Context) -> RawResult:
        attributions, logits, targets, extras = self.attribute(ctx)
        attributions = attributions.astype(np.float32, copy=False)
        return RawResult(
            maps=reduce_channels(attributions, self.reduce),
            logits=logits,
            targets=targets,
            extras={"attributions": attributions, **extras},
            settings=self.chosen_settings(ctx),
        )

    def chosen_settings(self, ctx: Context) -> dict[str, Any]:
        """Values picked for the settings left to the input size (None defaults)."""
        return {}

    def attribute(
        self, ctx: Context
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """(attributions (N, H, W, C), logits, targets, extra arrays)."""
        raise NotImplementedError


def _gradients(ctx: Context, *, guided: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cap = need_gradients(ctx.backend, "method: this one").input_gradients(
        ctx.inputs, targets=ctx.targets, score=ctx.score, guided=guided
    )
    if cap.gradients is None:  # pragma: no cover - a backend bug
        raise UnsupportedModel("the backend returned no input gradients")
    if ctx.progress is not None:
        ctx.progress(len(ctx.inputs))
    return cap.gradients, cap.logits, cap.targets


class _GradientMap(PixelAttribution):
    """The gradient itself is the attribution, reduced by ``absmax`` unless told otherwise.

    Saliency and Guided Backprop differ only in the backward rule
    (``guided``), so they share this body.
    """

    guided: ClassVar[bool] = False  # the backend's Guided Backprop rule through each ReLU

    def __init__(self, *, reduce: str = "absmax") -> None:
        super().__init__(reduce=reduce)

    def attribute(
        self, ctx: Context
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        grads, logits, targets = _gradients(ctx, guided=self.guided)
        return grads, logits, targets, {}


@register("saliency", "gradient", "vanilla-gradient")
class Saliency(_GradientMap):
    """Vanilla gradient (Simonyan et al., 2014): d score / d pixel.

    map = max_c |d score / d x_c| (``reduce="absmax"``).

    Examples
    --------
    >>> seewhy.explain(model, images, "saliency")
    """


@register("gradient-x-input", "gradxinput", "input-x-gradient")
class GradientXInput(PixelAttribution):
    """Gradient x Input (Shrikumar et al., 2016): first-order contribution of each input value.

    a = x * d score / d x, taken in model-input space, i.e. relative to an
    all-zero input.

    Examples
    --------
    >>> seewhy.explain(model, images, "gradient-x-input")
    """

    def attribute(
        self, ctx: Context
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        grads, logits, targets = _gradients(ctx)
        return grads * ctx.inputs, logits, targets, {}


@register("guided-backprop", "guidedbackprop", "guided-backpropagation")
class GuidedBackprop(_GradientMap):
    """Guided Backprop (Springenberg et al., 2015): only positive gradients through active ReLUs.

    Backward through each ReLU: g_in = relu(g_out) * [x > 0]. The backend
    applies the rule to every ReLU / ReLU6 call without touching the model's
    modules.

    Examples
    --------
    >>> seewhy.explain(model, images, "guided-backprop")
    """

    guided = True


@register("guided-gradcam", "guidedgradcam", "guided-grad-cam")
class GuidedGradCAM(PixelAttribution):
    """Guided Grad-CAM (Selvaraju et al., 2017): Guided Backprop x upsampled Grad-CAM.

    As in the tutorials: the Grad-CAM map is rectified, upsampled to the input
    and scaled to [0, 1], then multiplies the Guided Backprop attribution of
    the same class: a = guided_backprop(x) * normalise(upsample(relu(gradcam))).
    The Grad-CAM map is kept in ``extras["gradcam"]``.

    Examples
    --------
    >>> seewhy.explain(model, images, "guided-gradcam", layer="layer4")
    """

    requires = frozenset({Predicts, Layers, Gradients})

    def __init__(self, *, reduce: str = "absmax") -> None:
        super().__init__(reduce=reduce)

    def attribute(
        self, ctx: Context
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        if ctx.layer is None:
            raise UnsupportedModel(f"{self.name}: needs a layer with a spatial feature map")
        cap = need_layers(ctx.backend, f"method: {self.name}").capture(
            ctx.inputs, layer=ctx.layer, targets=ctx.targets, gradients=True, score=ctx.score
        )
        cam = np.maximum(GradCAM().layer_map(cap, ctx), 0.0)
        heat = normalise(upsample(cam, ctx.inputs.shape[1:3]))
        guided = (
            need_gradients(ctx.backend, f"method: {self.name}")
            .input_gradients(ctx.inputs, targets=cap.targets, score=ctx.score, guided=True)
            .gradients
        )
        if guided is None:  # pragma: no cover - a backend bug
            raise UnsupportedModel("the backend returned no input gradients")
        if ctx.progress is not None:
            ctx.progress(len(ctx.inputs))
        return guided * heat[..., None], cap.logits, cap.targets, {"gradcam": heat}


@register("smoothgrad", "smooth-grad")
class SmoothGrad(PixelAttribution):
    """SmoothGrad (Smilkov et al., 2017): the gradient averaged over noisy copies.

    ``samples`` copies (default 25) get Gaussian noise of standard deviation
    ``noise`` x (max - min of the image's inputs) (default 0.15, the paper's
    10-20 %); ``squared=True`` averages squared gradients (SmoothGrad-Squared;
    the attributions are then unsigned). Noise is drawn from ``seed``;
    ``copies_per_pass`` noisy copies go through each gradient pass (default:
    the explainer's ``batch_size``).

    a = (1 / samples) sum_i d score / d x (x + e_i), e_i ~ N(0, sigma^2).

    Parameters
    ----------
    samples : int
        Noisy copies whose gradients are averaged.
    noise : float
        The noise's standard deviation, as a share of the image's input range.
    squared : bool
        Average squared gradients (SmoothGrad-Squared; unsigned).
    copies_per_pass : int or None
        Noisy copies per gradient pass (None: the explainer's batch_size).
    seed : int
        Seed of the noise.

    Examples
    --------
    >>> seewhy.explain(model, images, "smoothgrad", samples=50, noise=0.1)
    """

    def __init__(
        self,
        *,
        reduce: str = "abssum",
        samples: int = 25,
        noise: float = 0.15,
        squared: bool = False,
        copies_per_pass: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(reduce=reduce)
        self.samples = positive_int(samples, "samples", where=self.name)
        self.noise = finite_float(noise, "noise", where=self.name, minimum=0.0)
        self.squared = flag(squared, "squared", where=self.name)
        self.copies_per_pass = check_copies(copies_per_pass, self.name)
        self.seed = positive_int(seed, "seed", where=self.name, minimum=0)

    def attribute(
        self, ctx: Context
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        samples, squared = self.samples, self.squared
        bs = ctx.gradient_copies(self.copies_per_pass)
        x = ctx.inputs
        n = len(x)
        flat = x.reshape(n, -1)
        sigma = (self.noise * (flat.max(axis=1) - flat.min(axis=1))).astype(np.float32)
        # one stream per image, each from the seed: an image's noise (and so its map)
        # does not depend on the images explained with it
        streams = [np.random.default_rng(self.seed) for _ in range(n)]

        def noisy_batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for start, stop in chunks(n * samples, bs):
                img = np.arange(start, stop) // samples
                noisy = np.empty((stop - start, *x.shape[1:]), dtype=np.float32)
                cuts = np.flatnonzero(np.diff(img)) + 1  # rows of one image are consecutive
                for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(img)], strict=True):
                    streams[img[a]].standard_normal(dtype=np.float32, out=noisy[a:b])
                noisy *= sigma[img, None, None, None]  # in place: one batch-sized array
                noisy += x[img]
                yield img, noisy

        total = np.zeros(x.shape, np.float64)
        progress = ImageProgress(ctx.progress, samples)
        with Ahead(noisy_batches()) as batches:  # noise is drawn during the clean pass
            logits, targets = ctx.logits_and_targets(bs)
            for img, noisy in batches:
                g = _input_grads(ctx, noisy, targets[img])
                if squared:
                    g = g * g
                _add_rows(total, img, g)
                progress.advance(len(img))
        return (total / samples).astype(np.float32), logits, targets, {}


def _add_rows(total: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """total[rows[j]] += values[j]; rows come sorted, as chunks of a row-major loop."""
    cuts = np.flatnonzero(np.diff(rows)) + 1
    for start, stop in zip(np.r_[0, cuts], np.r_[cuts, len(rows)], strict=True):
        total[rows[start]] += values[start:stop].sum(axis=0, dtype=np.float64)


def _input_grads(ctx: Context, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
    cap = need_gradients(ctx.backend, "method: this one").input_gradients(
        x, targets=targets, score=ctx.score
    )
    if cap.gradients is None:  # pragma: no cover - a backend bug
        raise UnsupportedModel("the backend returned no input gradients")
    return cap.gradients


RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def path_points(steps: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Points alpha in [0, 1] and weights of a quadrature rule for the path integral."""
    k = np.arange(steps, dtype=np.float64)
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1.0) / 2.0, weights / 2.0
    if rule == "riemann_left":
        return k / steps, np.full(steps, 1.0 / steps)
    if rule == "riemann_right":
        return (k + 1.0) / steps, np.full(steps, 1.0 / steps)
    if rule == "riemann_middle":
        return (k + 0.5) / steps, np.full(steps, 1.0 / steps)
    if rule == "riemann_trapezoid":
        if steps < 2:
            raise InvalidInput("steps: the trapezoid rule needs at least 2 steps")
        w = np.full(steps, 1.0 / (steps - 1))
        w[[0, -1]] /= 2.0
        return k / (steps - 1), w
    raise InvalidInput(f"rule: expected one of {', '.join(RULES)}, got {rule!r}")


def _path_batches(
    baseline: np.ndarray, delta: np.ndarray, alphas: np.ndarray, n: int, steps: int, bs: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(image index, step index, points on the straight path) per batch, images row-major."""
    for start, stop in chunks(n * steps, bs):
        img, k = np.divmod(np.arange(start, stop), steps)
        yield img, k, baseline[img] + alphas[k, None, None, None].astype(np.float32) * delta[img]


@register("integrated-gradients", "integratedgradients", "ig")
class IntegratedGradients(PixelAttribution):
    """Integrated Gradients (Sundararajan et al., 2017).

    IG = (x - x') * integral_0^1 grad f(x' + a (x - x')) da, by a quadrature
    ``rule`` (default Gauss-Legendre, as Captum) with ``steps`` points
    (default 50). ``baseline`` x' is any fill of :mod:`seewhy._kit.fills`:
    ``"zeros"`` (default; 0 in model-input space), ``"black"``, ``"white"``,
    ``"gray"``, ``"mean"`` (the image's mean colour), ``"blur"`` (Gaussian,
    ``blur_sigma`` pixels, default 5 px at 224), ``"noise"`` (uniform random
    pixels from ``seed``; ``baselines=K`` averages K of them), a number, or an
    array broadcastable to the inputs (model-input space). ``copies_per_pass``
    path points go through each gradient pass (default: the explainer's
    ``batch_size``).

    Completeness (the attributions sum to f(x) - f(x')) is checked and
    reported per image in ``extras``: ``"attribution_sum"``,
    ``"score_difference"`` and ``"completeness_error"`` (their difference).

    Parameters
    ----------
    steps : int
        Points of the path from the baseline to the input.
    baseline : str, float or array
        Where the path starts: zeros, black, white, gray, mean, blur, noise, a number or an array.
    rule : str
        The quadrature: gausslegendre or riemann_left/right/middle/trapezoid.
    baselines : int
        Noise baselines averaged (with baseline='noise').
    blur_sigma : float or None
        The blur baseline's sigma in pixels (None: 5 px at 224).
    copies_per_pass : int or None
        Path points per gradient pass (None: the explainer's batch_size).
    seed : int
        Seed of the noise baseline.

    Examples
    --------
    >>> seewhy.explain(model, images, "ig", steps=64, baseline="blur")
    """

    def __init__(
        self,
        *,
        reduce: str = "abssum",
        steps: int = 50,
        baseline: Any = "zeros",
        rule: str = "gausslegendre",
        baselines: int = 1,
        blur_sigma: float | None = None,
        copies_per_pass: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(reduce=reduce)
        self.steps = positive_int(steps, "steps", where=self.name)
        self.baseline = check_fill(baseline, f"{self.name}: baseline")
        self.rule = one_of(rule, RULES, "rule", where=self.name)
        path_points(self.steps, self.rule)  # the trapezoid rule needs 2 steps
        self.baselines = positive_int(baselines, "baselines", where=self.name)
        noisy = isinstance(baseline, str) and baseline.lower() in ("noise", "uniform")
        if self.baselines > 1 and not noisy:
            raise InvalidInput(f"{self.name}: baselines > 1 needs baseline='noise'")
        self.blur_sigma = (
            None
            if blur_sigma is None
            else finite_float(blur_sigma, "blur_sigma", where=self.name, minimum=0.0)
        )
        self.copies_per_pass = check_copies(copies_per_pass, self.name)
        self.seed = positive_int(seed, "seed", where=self.name, minimum=0)

    def chosen_settings(self, ctx: Context) -> dict[str, Any]:
        """The blur's sigma, when a blurred baseline was left to the input size."""
        return chosen_blur_sigma(self.baseline, self.blur_sigma, *ctx.inputs.shape[1:3])

    def _baseline_values(self, ctx: Context) -> list[np.ndarray]:
        """The baselines x' (N, H, W, C), one per ``baselines``, each from its own seed."""
        rng = np.random.default_rng(self.seed)
        out = []
        for _ in range(self.baselines):
            sub_seed = int(rng.integers(0, 2**63 - 1))
            values = fill_values(
                ctx.inputs,
                self.baseline,
                ctx.preprocess,
                seed=sub_seed,
                sigma=self.blur_sigma,
                where=f"{self.name}: baseline",
            )
            out.append(values)
        return out

    def attribute(
        self, ctx: Context
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        steps, count = self.steps, self.baselines
        alphas, weights = path_points(steps, self.rule)
        bs = ctx.gradient_copies(self.copies_per_pass)
        x = ctx.inputs
        n = len(x)
        logits, targets = ctx.logits_and_targets(bs)
        attributions = np.zeros(x.shape, np.float64)
        base_scores = np.zeros(n, np.float64)
        progress = ImageProgress(ctx.progress, steps * count)
        for baseline in self._baseline_values(ctx):
            delta = x - baseline
            path_grads = np.zeros(x.shape, np.float64)
            with Ahead(_path_batches(baseline, delta, alphas, n, steps, bs)) as batches:
                for img, k, points in batches:
                    g = _input_grads(ctx, points, targets[img]) * weights[k, None, None, None]
                    _add_rows(path_grads, img, g)
                    progress.advance(len(img))
            attributions += delta * path_grads
            base_out = ctx.backend.predict(baseline, batch_size=bs)
            base_scores += ctx.scores(base_out, targets)
        attributions /= count
        base_scores /= count
        summed = attributions.reshape(n, -1).sum(axis=1)
        difference = ctx.scores(logits, targets) - base_scores
        extras = {
            "attribution_sum": summed.astype(np.float32),
            "score_difference": difference.astype(np.float32),
            "completeness_error": (summed - difference).astype(np.float32),
        }
        return attributions.astype(np.float32), logits, targets, extras
