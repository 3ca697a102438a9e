"""Perturbation methods: change the input (or a layer), watch the score move.

Occlusion, RISE, Score-CAM and Ablation-CAM. None of them needs a gradient,
so they work on any model the backend can run forward. Every prediction goes
through ``backend.predict(x, batch_size=...)`` (or, for Ablation-CAM,
``backend.predict_with_layer_edit``), and perturbed batches are built chunk by
chunk, so memory stays at one batch whatever the number of samples.

Each method takes ``copies_per_pass`` (perturbed copies per forward pass;
default: the explainer's ``batch_size`` when it was given, else the backend's
``preferred_batch_size``; Ablation-CAM: the explainer's) and, where it draws
anything at random, ``seed``; the same seed gives the same map. Occlusion,
RISE and Score-CAM only predict, so they may run in reduced precision
(``Context.precision``). What a hidden pixel shows (``fill``) has one meaning
for every method and metric: see :mod:`seewhy._kit.fills`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .._kit.batching import ImageProgress, chunks
from .._kit.checks import flag, one_of, optional_positive_int, positive_int, unit_float
from .._kit.fills import check_fill, fill_values
from .._kit.scores import softmax
from ..backends.base import Capture
from ..backends.capabilities import Layers, Predicts
from ..backends.requirements import need_layers
from ..errors import UnsupportedModel
from ..maps import bilinear_matrix, upsample
from ..registry import register
from .base import Context, Method, RawResult, check_copies

__all__ = ["RISE", "AblationCAM", "Occlusion", "ScoreCAM"]


def _pair(value: Any, name: str, where: str) -> tuple[int, int]:
    """An int or (height, width) pair of positive ints."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return positive_int(value[0], name, where=where), positive_int(value[1], name, where=where)
    v = positive_int(value, name, where=where)
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

    map(p) = mean over the windows W that cover p of score(x) - score(x with W
    filled). ``window`` and ``stride`` are pixels (an int or (height, width);
    defaults: an eighth of the image's shorter side, half a window); ``fill``
    is what the patch shows (see :mod:`seewhy._kit.fills`, default 0 in
    model-input space). Windows start on the stride grid and one more is added
    at each far edge so that every pixel is covered.

    Parameters
    ----------
    window : int, (int, int) or None
        Patch size in pixels, N or (H, W) (None: an eighth of the shorter side).
    stride : int, (int, int) or None
        Step between patches in pixels (None: half a window).
    fill : str, float or array
        What the patch shows (default 0 in model-input space).
    copies_per_pass : int or None
        Occluded copies per forward pass (None: the explainer's or the backend's).
    seed : int
        Seed of a noise fill.

    Examples
    --------
    >>> seewhy.explain(model, images, "occlusion", window=16, stride=8, fill="blur")
    """

    forward_only = True
    requires = frozenset({Predicts})
    rectify = True  # a negative drop (occluding helps the class) is not evidence for it

    def __init__(
        self,
        *,
        window: int | tuple[int, int] | None = None,
        stride: int | tuple[int, int] | None = None,
        fill: Any = "zeros",
        copies_per_pass: int | None = None,
        seed: int = 0,
    ) -> None:
        for name, value in (("window", window), ("stride", stride)):
            if value is not None:
                _pair(value, name, self.name)
        self.window = window
        self.stride = stride
        self.fill = check_fill(fill, f"{self.name}: fill")
        self.copies_per_pass = check_copies(copies_per_pass, self.name)
        self.seed = positive_int(seed, "seed", where=self.name, minimum=0)

    def run(self, ctx: Context) -> RawResult:
        n, h, w, _ = ctx.inputs.shape
        bs = ctx.forward_copies(self.copies_per_pass)
        window = self.window if self.window is not None else max(1, min(h, w) // 8)
        wh, ww = _pair(window, "window", self.name)
        stride = self.stride if self.stride is not None else (max(1, wh // 2), max(1, ww // 2))
        sh, sw = _pair(stride, "stride", self.name)
        wh, ww = min(wh, h), min(ww, w)
        where = f"{self.name}: fill"
        fill = fill_values(ctx.inputs, self.fill, ctx.preprocess, seed=self.seed, where=where)
        logits, targets = ctx.logits_and_targets(bs)
        base = ctx.scores(logits, targets)

        ys, xs = window_starts(h, wh, sh), window_starts(w, ww, sw)
        pos_y = np.repeat(ys, len(xs))
        pos_x = np.tile(xs, len(ys))
        positions = len(pos_y)
        rows_h, rows_w = np.arange(h), np.arange(w)
        in_y = (rows_h >= pos_y[:, None]) & (rows_h < pos_y[:, None] + wh)  # (P, H)
        in_x = (rows_w >= pos_x[:, None]) & (rows_w < pos_x[:, None] + ww)  # (P, W)
        counts = in_y.T.astype(np.float32) @ in_x.astype(np.float32)  # windows covering a pixel

        maps = np.zeros((n, h, w), np.float32)
        progress = ImageProgress(ctx.progress, positions)
        for start, stop in chunks(n * positions, bs):
            rows = np.arange(start, stop)
            img, pos = np.divmod(rows, positions)
            mask = in_y[pos][:, :, None] & in_x[pos][:, None, :]  # (B, H, W)
            batch = np.where(mask[..., None], fill[img], ctx.inputs[img])
            drop = base[img] - ctx.scores(ctx.predict(batch, bs), targets[img])
            for i in np.unique(img):
                sel = img == i
                weighted = in_x[pos[sel]] * drop[sel, None].astype(np.float32)
                maps[i] += in_y[pos[sel]].T.astype(np.float32) @ weighted
            progress.advance(stop - start)
        maps /= np.maximum(counts, 1.0)
        chosen = {"window": (wh, ww), "stride": (sh, sw)}
        settings = {key: value for key, value in chosen.items() if getattr(self, key) is None}
        return RawResult(maps=maps, logits=logits, targets=targets, settings=settings)


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
    rows = bilinear_matrix((gh + 1) * cell[0], gh)  # (UH, gh)
    cols = bilinear_matrix((gw + 1) * cell[1], gw)  # (UW, gw)
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

    Parameters
    ----------
    masks : int
        Random masks scored.
    cell_size : int or None
        Width of a mask's cells in pixels (None: a seventh of the image side).
    p : float
        Chance that a cell is on.
    fill : str, float or array
        What masked pixels show (default 0 in model-input space).
    center : bool
        Subtract the mean score first (removes the masks' uneven coverage).
    copies_per_pass : int or None
        Masked copies per forward pass (None: the explainer's or the backend's).
    seed : int
        Seed of the masks.

    Examples
    --------
    >>> seewhy.explain(model, images, "rise", masks=2000, p=0.5, seed=1)
    """

    forward_only = True
    requires = frozenset({Predicts})
    rectify = False  # centred or logit-weighted sums may be negative everywhere

    def __init__(
        self,
        *,
        masks: int = 1000,
        cell_size: int | None = None,
        p: float = 0.5,
        fill: Any = "zeros",
        center: bool = True,
        copies_per_pass: int | None = None,
        seed: int = 0,
    ) -> None:
        self.masks = positive_int(masks, "masks", where=self.name)
        self.cell_size = optional_positive_int(cell_size, "cell_size", where=self.name)
        self.p = unit_float(p, "p", where=self.name)
        self.fill = check_fill(fill, f"{self.name}: fill")
        self.center = flag(center, "center", where=self.name)
        self.copies_per_pass = check_copies(copies_per_pass, self.name)
        self.seed = positive_int(seed, "seed", where=self.name, minimum=0)

    def run(self, ctx: Context) -> RawResult:
        n, h, w, _ = ctx.inputs.shape
        bs = ctx.forward_copies(self.copies_per_pass)
        count, p, seed = self.masks, self.p, self.seed
        cell = self.cell_size if self.cell_size is not None else max(1, -(-min(h, w) // 7))
        where = f"{self.name}: fill"
        fill = fill_values(ctx.inputs, self.fill, ctx.preprocess, seed=seed, where=where)
        gh, gw = -(-h // cell), -(-w // cell)
        rng = np.random.default_rng(seed)
        grids = rng.random((count, gh, gw)) < p
        shifts = np.stack([rng.integers(0, cell, count), rng.integers(0, cell, count)], axis=1)

        logits, targets = ctx.logits_and_targets(bs)
        weighted = np.zeros((n, h, w), np.float64)  # sum_i s_i M_i
        coverage = np.zeros((h, w), np.float64)  # sum_i M_i
        totals = np.zeros(n, np.float64)  # sum_i s_i
        progress = ImageProgress(ctx.progress, 1)
        for i in range(n):
            for start, stop in chunks(count, bs):  # masks are rebuilt per image: B x H x W each
                m = rise_masks(grids[start:stop], shifts[start:stop], (h, w), (cell, cell))
                shown = fill[i] + m[..., None] * (ctx.inputs[i] - fill[i])
                out = ctx.predict(shown, bs)
                s = ctx.scores(out, np.full(len(m), targets[i]))
                weighted[i] += np.tensordot(s, m, axes=1)
                totals[i] += s.sum()
                if i == 0:
                    coverage += m.sum(axis=0)
            progress.advance(1)
        if self.center:  # sum_i (s_i - mean s) M_i
            weighted -= (totals / count)[:, None, None] * coverage
        maps = (weighted / (count * p)).astype(np.float32)
        settings = {"cell_size": cell} if self.cell_size is None else {}
        return RawResult(maps=maps, logits=logits, targets=targets, settings=settings)


# -- Score-CAM and Ablation-CAM ----------------------------------------------------


def top_channels(activations: np.ndarray, count: int | None) -> np.ndarray:
    """(N, C') indices of the channels with the largest mean activation (all when None)."""
    n, c = activations.shape[:2]
    if count is None:
        return np.broadcast_to(np.arange(c), (n, c))
    means = activations.reshape(n, c, -1).mean(axis=2)
    return np.argsort(-means, axis=1, kind="stable")[:, : min(count, c)]


class _PerturbedCAM(Method):
    """A CAM whose channel weights come from forward passes, not gradients.

    Parameters
    ----------
    channels : int or None
        Weigh only the N channels of largest mean activation (None: all).
    copies_per_pass : int or None
        Masked or ablated copies per pass (None: the explainer's batch_size or the backend's).
    """

    requires = frozenset({Predicts, Layers})

    def __init__(self, *, channels: int | None = None, copies_per_pass: int | None = None) -> None:
        self.channels = optional_positive_int(channels, "channels", where=self.name)
        self.copies_per_pass = check_copies(copies_per_pass, self.name)

    def run(self, ctx: Context) -> RawResult:
        if ctx.layer is None:
            raise UnsupportedModel(f"{self.name}: needs a layer with a spatial feature map")
        cap = need_layers(ctx.backend, f"method: {self.name}").capture(
            ctx.inputs, layer=ctx.layer, targets=ctx.targets, gradients=False, score=ctx.score
        )
        if cap.activations is None:  # pragma: no cover - a backend bug
            raise UnsupportedModel(f"{self.name}: the backend returned no activations")
        acts = cap.activations
        chosen = top_channels(acts, self.channels)
        weights = np.zeros(acts.shape[:2], np.float32)
        chosen_weights = self.channel_weights(ctx, acts, chosen, cap)
        np.put_along_axis(weights, chosen, chosen_weights.astype(np.float32), axis=1)
        maps = np.einsum("nc,nchw->nhw", weights, acts, optimize=True)
        return RawResult(
            maps=maps, logits=cap.logits, targets=cap.targets, extras={"channel_weights": weights}
        )

    def channel_weights(
        self, ctx: Context, acts: np.ndarray, chosen: np.ndarray, cap: Capture
    ) -> np.ndarray:
        """(N, C') weight of each chosen channel (``cap``: the layer's capture)."""
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

    map = sum_k w_k A_k, w = softmax_k(score(x * M_k + fill * (1 - M_k))).

    Parameters
    ----------
    weighting : str
        Channel weights: softmax over channels, raw scores, or increase over the all-fill image.
    fill : str, float or array
        What the masked-out pixels show (default 0 in model-input space).
    seed : int
        Seed of a noise fill.
    channels : int or None
        Score only the N channels of largest mean activation (None: all).
    copies_per_pass : int or None
        Masked copies per forward pass (None: the explainer's or the backend's).

    Examples
    --------
    >>> seewhy.explain(model, images, "scorecam", channels=64, weighting="raw")
    """

    forward_only = True
    weightings: ClassVar[tuple[str, ...]] = ("softmax", "raw", "increase")

    def __init__(
        self,
        *,
        channels: int | None = None,
        weighting: str = "softmax",
        fill: Any = "zeros",
        copies_per_pass: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(channels=channels, copies_per_pass=copies_per_pass)
        self.weighting = one_of(weighting, self.weightings, "weighting", where=self.name)
        self.fill = check_fill(fill, f"{self.name}: fill")
        self.seed = positive_int(seed, "seed", where=self.name, minimum=0)

    def channel_weights(
        self, ctx: Context, acts: np.ndarray, chosen: np.ndarray, cap: Capture
    ) -> np.ndarray:
        n, h, w, _ = ctx.inputs.shape
        targets = cap.targets
        bs = ctx.forward_copies(self.copies_per_pass)
        where = f"{self.name}: fill"
        fill = fill_values(ctx.inputs, self.fill, ctx.preprocess, seed=self.seed, where=where)
        picked = np.take_along_axis(acts, chosen[:, :, None, None], axis=1)  # (N, C', h, w)
        flat = picked.reshape(n, picked.shape[1], -1)
        lo, hi = flat.min(axis=2), flat.max(axis=2)
        varying = hi > lo
        empty = ctx.scores(ctx.predict(fill, bs), targets)
        scores = np.repeat(empty[:, None], picked.shape[1], axis=1)
        progress = ImageProgress(ctx.progress, 1)
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
                out = ctx.predict(shown, bs)
                scores[i, sel] = ctx.scores(out, np.full(len(sel), targets[i]))
            progress.advance(1)
        if self.weighting == "softmax":
            return softmax(scores)
        if self.weighting == "increase":
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
    ``copies_per_pass``: ablated copies per pass (default: the explainer's
    ``batch_size``).

    Parameters
    ----------
    channels : int or None
        Ablate only the N channels of largest mean activation (None: all).
    copies_per_pass : int or None
        Ablated copies per pass (None: the explainer's batch_size).

    Examples
    --------
    >>> seewhy.explain(model, images, "ablationcam", channels=128)
    """

    def channel_weights(
        self, ctx: Context, acts: np.ndarray, chosen: np.ndarray, cap: Capture
    ) -> np.ndarray:
        n, c = acts.shape[:2]
        bs = ctx.gradient_copies(self.copies_per_pass)
        targets = cap.targets
        base = ctx.scores(cap.logits, targets)
        weights = np.zeros(chosen.shape, np.float64)
        progress = ImageProgress(ctx.progress, 1)
        alive = np.abs(acts).reshape(n, c, -1).max(axis=2) > 0
        for i in range(n):
            # zeroing an all-zero channel changes nothing: its weight is 0 without a pass
            live = np.flatnonzero(alive[i, chosen[i]])
            if len(live):
                scales = np.ones((1, len(live), c), np.float32)
                scales[0, np.arange(len(live)), chosen[i, live]] = 0.0
                out = need_layers(ctx.backend, f"method: {self.name}").predict_with_layer_edit(
                    ctx.inputs[i : i + 1], layer=str(ctx.layer), scales=scales, batch_size=bs
                )[0]
                ablated = ctx.scores(out, np.full(len(out), targets[i]))
                y = base[i]
                safe = y if abs(y) > 1e-12 else (1e-12 if y >= 0 else -1e-12)
                weights[i, live] = (y - ablated) / safe
            progress.advance(1)
        return weights
