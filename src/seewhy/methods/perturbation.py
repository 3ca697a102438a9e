"""Perturbation methods: change the input (or a layer), watch the score move.

Occlusion, RISE, Score-CAM and Ablation-CAM. None of them needs a gradient,
so they work on any model the backend can run forward. Every prediction goes
through ``backend.predict(x, batch_size=...)`` (or, for Ablation-CAM,
``backend.predict_with_layer_edit``), and perturbed batches are built chunk by
chunk, so memory stays at one batch whatever the number of samples.

Each method takes ``batch_size`` (default: the explainer's when it was given,
else the backend's ``preferred_batch_size``; Ablation-CAM: the explainer's) and
``seed``; the same seed gives the same map. Occlusion, RISE and Score-CAM only
predict, so they may run in reduced precision (``Context.precision``).

The helpers at the top (fills, target scores, progress) are shared with the
gradient and LIME methods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidInput, UnsupportedModel
from ..maps import _bilinear_matrix, upsample
from ..registry import register
from .base import Context, Method, RawResult

__all__ = [
    "RISE",
    "AblationCAM",
    "Occlusion",
    "ScoreCAM",
    "fill_values",
    "target_scores",
]

FILLS = ("zeros", "black", "white", "gray", "mean", "blur", "noise")


# -- shared helpers -------------------------------------------------------------


def target_scores(logits: np.ndarray, targets: np.ndarray, score: str) -> np.ndarray:
    """Score of each row's target class: the logit, or the softmax probability."""
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(logits))
    if score == "probability":
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        return p[rows, targets]
    if score == "logit":
        return logits[rows, targets]
    raise InvalidInput(f"score: expected 'logit' or 'probability', got {score!r}")


def predict(ctx: Context, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Logits for ``x`` at the context's precision, ``batch_size`` inputs per pass."""
    return ctx.backend.predict(x, batch_size=batch_size, precision=ctx.precision)


def predict_targets(ctx: Context, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of the unperturbed inputs and the classes to explain (checked)."""
    logits = predict(ctx, ctx.inputs, batch_size)
    classes = logits.shape[1]
    if ctx.targets is None:
        return logits, logits.argmax(axis=1).astype(np.int64)
    targets = np.asarray(ctx.targets, dtype=np.int64)
    if targets.shape != (len(logits),):
        raise InvalidInput(f"target: expected one class per image, got shape {targets.shape}")
    bad = targets[(targets < 0) | (targets >= classes)]
    if bad.size:
        raise InvalidInput(f"target: class {int(bad[0])} is outside the model's 0..{classes - 1}")
    return logits, targets


def positive_int(value: Any, name: str, method: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInput(f"{method}: {name} must be a positive integer, got {value!r}")
    return int(value)


def unit_float(value: Any, name: str, method: str, *, low: float = 0.0, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InvalidInput(f"{method}: {name} must be a number in ({low}, {high}], got {value!r}")
    if not low < float(value) <= high:
        raise InvalidInput(f"{method}: {name} must be in ({low}, {high}], got {value!r}")
    return float(value)


def batch_size_of(method: Method, ctx: Context) -> int:
    return positive_int(method.param("batch_size", ctx.batch_size), "batch_size", method.name)


def forward_batch_of(method: Method, ctx: Context) -> int:
    """Perturbed copies per forward-only pass: the method's, the caller's, or the backend's.

    Left to the backend, PyTorch on the CPU gets batches that keep every
    activation under 32 MiB (6 for Lite0), which run faster than 32.
    """
    chosen = method.param("batch_size", ctx.forward_batch)
    if chosen is None:
        return ctx.backend.preferred_batch_size(ctx.inputs, ctx.precision)
    return positive_int(chosen, "batch_size", method.name)


def _picture_colour(ctx: Context, rgb: tuple[float, float, float], what: str) -> np.ndarray:
    """An RGB colour (0..255) as a model input value (C,)."""
    if ctx.preprocess is None:
        raise InvalidInput(
            f"fill: {what} is a colour, which needs the model's preprocess (pass preprocess=...)"
        )
    return ctx.preprocess.normalise(np.asarray(rgb, dtype=np.float32).reshape(1, 1, 3))[0, 0]


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of (N, H, W, C) inputs along H and W."""
    from scipy.ndimage import gaussian_filter

    values = np.asarray(x, dtype=np.float32)
    out = gaussian_filter(values, sigma=(0, sigma, sigma, 0), mode="nearest")
    return np.asarray(out, dtype=np.float32)


def fill_values(
    ctx: Context,
    fill: Any,
    *,
    seed: int | None = 0,
    sigma: float | None = None,
    inputs: np.ndarray | None = None,
) -> np.ndarray:
    """What a hidden pixel is replaced with, (N, H, W, C) in model-input space.

    ``fill`` is a number (model-input units; ``"zeros"`` is 0, the training
    mean under the usual normalisation), a colour name (``"black"``,
    ``"white"``, ``"gray"``) or RGB triple 0..255 (put through the model's
    preprocess), ``"mean"`` (each image's mean colour), ``"blur"`` (a Gaussian
    blur, ``sigma`` pixels, default a sixteenth of the image side), ``"noise"``
    (uniform random pixels from ``seed``) or an array broadcastable to the inputs.
    """
    x = ctx.inputs if inputs is None else inputs
    n, h, w, c = x.shape
    if isinstance(fill, np.ndarray):
        try:
            return np.broadcast_to(fill.astype(np.float32, copy=False), x.shape)
        except ValueError:
            raise InvalidInput(
                f"fill: an array fill must broadcast to the inputs {x.shape}, got {fill.shape}"
            ) from None
    if isinstance(fill, (int, float, np.integer, np.floating)) and not isinstance(fill, bool):
        return np.full(x.shape, np.float32(fill), dtype=np.float32)
    if isinstance(fill, (tuple, list)) and len(fill) == 3:
        colour = _picture_colour(ctx, (float(fill[0]), float(fill[1]), float(fill[2])), repr(fill))
        return np.broadcast_to(colour, x.shape)
    named = {"black": 0.0, "white": 255.0, "gray": 128.0, "grey": 128.0}
    if fill == "zeros" or fill == "zero":
        return np.zeros(x.shape, np.float32)
    if isinstance(fill, str) and fill in named:
        v = named[fill]
        return np.broadcast_to(_picture_colour(ctx, (v, v, v), repr(fill)), x.shape)
    if fill == "mean":
        return np.broadcast_to(x.mean(axis=(1, 2), keepdims=True, dtype=np.float32), x.shape)
    if fill == "blur":
        s = float(sigma) if sigma is not None else max(h, w) / 16.0
        if not s > 0:
            raise InvalidInput(f"fill: blur sigma must be > 0, got {sigma!r}")
        return blur(x, s)
    if fill in ("noise", "uniform"):
        rng = np.random.default_rng(seed)
        if ctx.preprocess is not None and c == 3:
            return ctx.preprocess.normalise(rng.integers(0, 256, (n, h, w, 3)).astype(np.float32))
        lo, hi = float(x.min()), float(x.max())
        return rng.uniform(lo, hi, x.shape).astype(np.float32)
    raise InvalidInput(
        f"fill: expected a number, an RGB triple, an array or one of {', '.join(FILLS)}; "
        f"got {fill!r}"
    )


class ImageProgress:
    """Turns rows of work into whole images done, for ``ctx.progress``."""

    def __init__(self, ctx: Context, rows_per_image: int) -> None:
        self.report: Callable[[int], None] | None = ctx.progress
        self.per_image = max(1, rows_per_image)
        self.rows = 0
        self.images = 0

    def advance(self, rows: int) -> None:
        self.rows += rows
        done = self.rows // self.per_image
        if self.report is not None and done > self.images:
            self.report(done - self.images)
        self.images = max(self.images, done)


def chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(total, start + size)


def _pair(value: Any, name: str, method: str) -> tuple[int, int]:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return positive_int(value[0], name, method), positive_int(value[1], name, method)
    v = positive_int(value, name, method)
    return v, v


# -- occlusion --------------------------------------------------------------------


def window_starts(length: int, window: int, stride: int) -> np.ndarray:
    """Start of each window along an axis; the last window always reaches the edge."""
    if window >= length:
        return np.zeros(1, dtype=np.int64)
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return np.asarray(starts, dtype=np.int64)


@register("occlusion")
class Occlusion(Method):
    """Occlusion (Zeiler & Fergus, 2014): slide a patch, record the score's drop.

    A pixel's value is the mean drop, score(x) - score(x with the patch), over
    the windows that cover it. ``window`` and ``stride`` are pixels (an int or
    (height, width); defaults: an eighth of the image side, half a window);
    ``fill`` is what the patch shows (see :func:`fill_values`, default 0 in
    model-input space). Windows start on the stride grid and one more is added
    at each far edge so that every pixel is covered.
    """

    forward_only = True
    uses_layer = False
    rectify = True  # a negative drop (occluding helps the class) is not evidence for it

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        return ("window", "stride", "fill", "batch_size", "seed")

    def run(self, ctx: Context) -> RawResult:
        n, h, w, _ = ctx.inputs.shape
        bs = forward_batch_of(self, ctx)
        wh, ww = _pair(self.param("window", max(1, min(h, w) // 8)), "window", self.name)
        default_stride = (max(1, wh // 2), max(1, ww // 2))
        sh, sw = _pair(self.param("stride", default_stride), "stride", self.name)
        wh, ww = min(wh, h), min(ww, w)
        fill = fill_values(ctx, self.param("fill", "zeros"), seed=self.param("seed", 0))
        logits, targets = predict_targets(ctx, bs)
        base = target_scores(logits, targets, ctx.score)

        ys, xs = window_starts(h, wh, sh), window_starts(w, ww, sw)
        pos_y = np.repeat(ys, len(xs))
        pos_x = np.tile(xs, len(ys))
        positions = len(pos_y)
        rows_h, rows_w = np.arange(h), np.arange(w)
        in_y = (rows_h >= pos_y[:, None]) & (rows_h < pos_y[:, None] + wh)  # (P, H)
        in_x = (rows_w >= pos_x[:, None]) & (rows_w < pos_x[:, None] + ww)  # (P, W)
        counts = in_y.T.astype(np.float32) @ in_x.astype(np.float32)  # windows covering a pixel

        maps = np.zeros((n, h, w), np.float32)
        progress = ImageProgress(ctx, positions)
        for start, stop in chunks(n * positions, bs):
            rows = np.arange(start, stop)
            img, pos = np.divmod(rows, positions)
            mask = in_y[pos][:, :, None] & in_x[pos][:, None, :]  # (B, H, W)
            batch = np.where(mask[..., None], fill[img], ctx.inputs[img])
            drop = base[img] - target_scores(predict(ctx, batch, bs), targets[img], ctx.score)
            for i in np.unique(img):
                sel = img == i
                weighted = in_x[pos[sel]] * drop[sel, None].astype(np.float32)
                maps[i] += in_y[pos[sel]].T.astype(np.float32) @ weighted
            progress.advance(stop - start)
        maps /= np.maximum(counts, 1.0)
        return RawResult(maps=maps, logits=logits, targets=targets)


# -- RISE -------------------------------------------------------------------------


def rise_masks(
    grid: np.ndarray, shifts: np.ndarray, size: tuple[int, int], cell: tuple[int, int]
) -> np.ndarray:
    """Smooth masks (B, H, W) from binary grids (B, gh, gw), as in the RISE paper.

    Each grid is bilinearly enlarged to (gh + 1) x (gw + 1) cells and cropped
    at a random shift within one cell, so the mask edges fall anywhere.
    """
    _, gh, gw = grid.shape
    h, w = size
    rows = _bilinear_matrix((gh + 1) * cell[0], gh)  # (UH, gh)
    cols = _bilinear_matrix((gw + 1) * cell[1], gw)  # (UW, gw)
    r = rows[shifts[:, 0, None] + np.arange(h)]  # (B, H, gh)
    c = cols[shifts[:, 1, None] + np.arange(w)]  # (B, W, gw)
    return np.einsum("bhi,bij,bwj->bhw", r, grid.astype(np.float32), c, optimize=True)


@register("rise")
class RISE(Method):
    """RISE (Petsiuk et al., 2018): the score-weighted average of random smooth masks.

    ``masks`` random binary grids of cells ``cell_size`` pixels wide (default
    a seventh of the image side), each cell on with probability ``p``, are
    enlarged bilinearly and shifted; the map is sum_i s_i M_i / (masks * p)
    where s_i is the score with the image shown through M_i (elsewhere
    ``fill``, default 0 in model-input space, as the paper's x * M).
    ``center=True`` (default) subtracts the mean score from s_i first, which
    removes a term proportional to the masks' uneven coverage and leaves only
    the covariance of score and mask; that matters for logits, whose mean is
    far from zero. All images share the same masks, drawn from ``seed``.
    """

    forward_only = True
    uses_layer = False
    rectify = False  # centred or logit-weighted sums may be negative everywhere

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        return ("masks", "cell_size", "p", "fill", "center", "batch_size", "seed")

    def run(self, ctx: Context) -> RawResult:
        n, h, w, _ = ctx.inputs.shape
        bs = forward_batch_of(self, ctx)
        count = positive_int(self.param("masks", 1000), "masks", self.name)
        cell = positive_int(
            self.param("cell_size", max(1, -(-min(h, w) // 7))), "cell_size", self.name
        )
        p = unit_float(self.param("p", 0.5), "p", self.name)
        seed = self.param("seed", 0)
        fill = fill_values(ctx, self.param("fill", "zeros"), seed=seed)
        gh, gw = -(-h // cell), -(-w // cell)
        rng = np.random.default_rng(seed)
        grids = rng.random((count, gh, gw)) < p
        shifts = np.stack([rng.integers(0, cell, count), rng.integers(0, cell, count)], axis=1)

        logits, targets = predict_targets(ctx, bs)
        weighted = np.zeros((n, h, w), np.float64)  # sum_i s_i M_i
        coverage = np.zeros((h, w), np.float64)  # sum_i M_i
        totals = np.zeros(n, np.float64)  # sum_i s_i
        progress = ImageProgress(ctx, 1)
        for i in range(n):
            for start, stop in chunks(count, bs):  # masks are rebuilt per image: B x H x W each
                m = rise_masks(grids[start:stop], shifts[start:stop], (h, w), (cell, cell))
                shown = fill[i] + m[..., None] * (ctx.inputs[i] - fill[i])
                out = predict(ctx, shown, bs)
                s = target_scores(out, np.full(len(m), targets[i]), ctx.score)
                weighted[i] += np.tensordot(s, m, axes=1)
                totals[i] += s.sum()
                if i == 0:
                    coverage += m.sum(axis=0)
            progress.advance(1)
        if self.param("center", True):  # sum_i (s_i - mean s) M_i
            weighted -= (totals / count)[:, None, None] * coverage
        maps = (weighted / (count * p)).astype(np.float32)
        return RawResult(maps=maps, logits=logits, targets=targets)


# -- Score-CAM and Ablation-CAM ----------------------------------------------------


def top_channels(activations: np.ndarray, count: int | None, method: str) -> np.ndarray:
    """(N, C') indices of the channels with the largest mean activation (all when None)."""
    n, c = activations.shape[:2]
    if count is None:
        return np.broadcast_to(np.arange(c), (n, c))
    k = min(positive_int(count, "channels", method), c)
    means = activations.reshape(n, c, -1).mean(axis=2)
    return np.argsort(-means, axis=1, kind="stable")[:, :k]


class _PerturbedCAM(Method):
    """A CAM whose channel weights come from forward passes, not gradients."""

    weightings: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        return ("channels", "batch_size", "seed")

    def run(self, ctx: Context) -> RawResult:
        if ctx.layer is None:
            raise UnsupportedModel(f"{self.name}: needs a layer with a spatial feature map")
        cap = ctx.backend.capture(
            ctx.inputs, layer=ctx.layer, targets=ctx.targets, gradients=False, score=ctx.score
        )
        if cap.activations is None:  # pragma: no cover - a backend bug
            raise UnsupportedModel(f"{self.name}: the backend returned no activations")
        acts = cap.activations
        chosen = top_channels(acts, self.param("channels", None), self.name)
        weights = np.zeros(acts.shape[:2], np.float32)
        chosen_weights = self.channel_weights(ctx, acts, chosen, cap.logits, cap.targets)
        np.put_along_axis(weights, chosen, chosen_weights.astype(np.float32), axis=1)
        maps = np.einsum("nc,nchw->nhw", weights, acts, optimize=True)
        return RawResult(
            maps=maps, logits=cap.logits, targets=cap.targets, extras={"channel_weights": weights}
        )

    def channel_weights(
        self,
        ctx: Context,
        acts: np.ndarray,
        chosen: np.ndarray,
        logits: np.ndarray,
        targets: np.ndarray,
    ) -> np.ndarray:
        raise NotImplementedError


@register("scorecam", "score-cam")
class ScoreCAM(_PerturbedCAM):
    """Score-CAM (Wang et al., 2020): weigh each feature map by the score it earns alone.

    Each channel, upsampled to the input and min-max scaled to [0, 1], masks
    the image (x * M + fill * (1 - M); fill 0 by default, as the paper's
    x * M); the target score of that masked image is the channel's raw weight.
    ``weighting``: ``"softmax"`` over channels (default, as pytorch-grad-cam),
    ``"raw"`` (the score itself; the paper's code with ``score="probability"``)
    or ``"increase"`` (score minus the score of the all-fill image, the paper's
    CIC). ``channels=N`` scores only the N channels with the largest mean
    activation (the others weigh 0). Constant channels give an all-zero mask;
    those share one forward pass, which leaves the result unchanged.
    """

    forward_only = True

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        return (*super().param_names(), "weighting", "fill")

    def channel_weights(
        self,
        ctx: Context,
        acts: np.ndarray,
        chosen: np.ndarray,
        logits: np.ndarray,
        targets: np.ndarray,
    ) -> np.ndarray:
        weighting = self.param("weighting", "softmax")
        if weighting not in ("softmax", "raw", "increase"):
            raise InvalidInput(
                f"{self.name}: weighting must be 'softmax', 'raw' or 'increase', got {weighting!r}"
            )
        n, h, w, _ = ctx.inputs.shape
        bs = forward_batch_of(self, ctx)
        fill = fill_values(ctx, self.param("fill", "zeros"), seed=self.param("seed", 0))
        picked = np.take_along_axis(acts, chosen[:, :, None, None], axis=1)  # (N, C', h, w)
        flat = picked.reshape(n, picked.shape[1], -1)
        lo, hi = flat.min(axis=2), flat.max(axis=2)
        varying = hi > lo
        empty = target_scores(predict(ctx, fill, bs), targets, ctx.score)
        scores = np.repeat(empty[:, None], picked.shape[1], axis=1)
        progress = ImageProgress(ctx, 1)
        for i in range(n):
            idx = np.flatnonzero(varying[i])
            for start, stop in chunks(len(idx), bs):
                sel = idx[start:stop]
                up = upsample(picked[i, sel], (h, w)).reshape(len(sel), -1)
                low = up.min(axis=1, keepdims=True)  # scaled after upsampling, as the paper
                span = up.max(axis=1, keepdims=True) - low
                m = np.where(span > 0, (up - low) / np.where(span > 0, span, 1), 0)
                m = m.reshape(len(sel), h, w)
                shown = fill[i] + m[..., None] * (ctx.inputs[i] - fill[i])
                out = predict(ctx, shown, bs)
                scores[i, sel] = target_scores(out, np.full(len(sel), targets[i]), ctx.score)
            progress.advance(1)
        if weighting == "softmax":
            z = np.exp(scores - scores.max(axis=1, keepdims=True))
            return z / z.sum(axis=1, keepdims=True)
        if weighting == "increase":
            return scores - empty[:, None]
        return scores


@register("ablationcam", "ablation-cam")
class AblationCAM(_PerturbedCAM):
    """Ablation-CAM (Desai & Ramaswamy, 2020): weight = relative score drop without the channel.

    w_k = (y - y_k) / y, where y_k is the target score with channel k of the
    layer set to zero. The zeroing happens inside the forward pass through
    ``backend.predict_with_layer_edit`` (the torch backend runs the network
    before the layer once per image and batch, not once per channel).
    ``channels=N`` ablates only the N channels with the largest mean
    activation (the others weigh 0). All-zero channels (dead ReLUs, often
    a third or more of a late layer) weigh 0 exactly and cost no pass.
    """

    def channel_weights(
        self,
        ctx: Context,
        acts: np.ndarray,
        chosen: np.ndarray,
        logits: np.ndarray,
        targets: np.ndarray,
    ) -> np.ndarray:
        n, c = acts.shape[:2]
        bs = batch_size_of(self, ctx)
        base = target_scores(logits, targets, ctx.score)
        weights = np.zeros(chosen.shape, np.float64)
        progress = ImageProgress(ctx, 1)
        alive = np.abs(acts).reshape(n, c, -1).max(axis=2) > 0
        for i in range(n):
            # zeroing an all-zero channel changes nothing: its weight is 0 without a pass
            live = np.flatnonzero(alive[i, chosen[i]])
            if len(live):
                scales = np.ones((1, len(live), c), np.float32)
                scales[0, np.arange(len(live)), chosen[i, live]] = 0.0
                out = ctx.backend.predict_with_layer_edit(
                    ctx.inputs[i : i + 1], layer=str(ctx.layer), scales=scales, batch_size=bs
                )[0]
                ablated = target_scores(out, np.full(len(out), targets[i]), ctx.score)
                y = base[i]
                safe = y if abs(y) > 1e-12 else (1e-12 if y >= 0 else -1e-12)
                weights[i, live] = (y - ablated) / safe
            progress.advance(1)
        return weights
