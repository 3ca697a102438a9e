"""Deletion and insertion (Petsiuk et al., RISE, 2018): curves of the target score.

Remove (or reveal) the pixels in the map's order, ``steps`` at a time, and
follow the target's score; the area under the curve is the result (deletion:
lower is better, insertion: higher is better). Both curves are one
computation that differs only in which image a step starts from and which one
it copies the top pixels from, so both run through :func:`_curve`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..._kit.blas import one_blas_thread
from ..._kit.checks import positive_int
from ..._kit.fills import default_blur_sigma
from ..._kit.scores import check_score
from ...explanation import Explanation
from ...preprocess import Preprocess
from ..registry import TEXT_SIDE, Direction, Need, metric
from ..registry import get as get_metric
from .cases import Baseline, Case, baseline_label, resolve_case

__all__ = ["Curve", "deletion", "insertion", "pixel_ranks", "trapezoid"]

CurveKind = Literal["deletion", "insertion"]


def pixel_ranks(maps: np.ndarray) -> np.ndarray:
    """(N, H, W) int32: 0 for each map's most important pixel, HW-1 for the least.

    Ties keep raster order (stable sort), so results are reproducible.
    """
    n = len(maps)
    flat = maps.reshape(n, -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    ranks = np.empty_like(order, dtype=np.int32)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1], dtype=np.int32)[None, :], axis=1)
    return ranks.reshape(maps.shape)


def trapezoid(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Area under ``y`` (..., K) over ``x`` (K,), by the trapezoid rule."""
    dx = np.diff(x)
    out: np.ndarray = ((y[..., 1:] + y[..., :-1]) * 0.5 * dx).sum(axis=-1)
    return out


@dataclass(frozen=True)
class Curve:
    """A deletion or insertion curve for each image.

    ``scores[i, k]`` is image ``i``'s target score after ``fractions[k]`` of its
    pixels were removed (deletion) or revealed (insertion); ``auc`` is the
    trapezoid area over fractions in [0, 1].

    Attributes
    ----------
    kind : str
        ``"deletion"`` or ``"insertion"``.
    fractions : numpy.ndarray
        (S + 1,) the share of pixels removed or revealed at each step, 0 to 1.
    scores : numpy.ndarray
        (N, S + 1) each image's target score at each step.
    targets : numpy.ndarray
        (N,) the class scored per image (-1 when the target is not a class;
        ``params["target"]`` says what it is).
    params : Mapping
        The settings the curve was made with (steps, baseline, score, precision).
    """

    kind: str
    fractions: np.ndarray  # (S + 1,)
    scores: np.ndarray  # (N, S + 1)
    targets: np.ndarray  # (N,) classes (-1: the target has none; params["target"] says what)
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def higher_is_better(self) -> bool:
        """Insertion: yes; deletion: no (as each declares in the metric registry)."""
        return get_metric(self.kind).direction is Direction.HIGHER

    @property
    def auc(self) -> np.ndarray:
        """(N,) area under each image's curve."""
        return trapezoid(self.scores, self.fractions)

    @property
    def mean_auc(self) -> float:
        """The score usually reported: the mean area over the images."""
        return float(self.auc.mean())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers (areas per image and the mean curve)."""
        return {
            "metric": self.kind,
            "mean_auc": round(self.mean_auc, 6),
            "higher_is_better": self.higher_is_better,
            "auc": [round(float(a), 6) for a in self.auc],
            "fractions": [round(float(f), 6) for f in self.fractions],
            "mean_curve": [round(float(s), 6) for s in self.scores.mean(axis=0)],
            "targets": [int(t) for t in self.targets],
            "params": dict(self.params),
        }

    def figure(self) -> Any:
        """A matplotlib Figure: each image's curve (thin) and the mean (thick)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5.0, 3.6), layout="constrained")
        ax = fig.add_subplot()
        for row in self.scores:
            ax.plot(self.fractions, row, color="0.7", linewidth=0.8)
        ax.plot(
            self.fractions,
            self.scores.mean(axis=0),
            color="C0",
            linewidth=2.0,
            label=f"mean (AUC {self.mean_auc:.3f})",
        )
        verb = "removed" if self.kind == "deletion" else "inserted"
        ax.set_xlabel(f"fraction of pixels {verb}")
        ax.set_ylabel(str(self.params.get("score", "probability")))
        ax.set_title(self.kind)
        ax.set_xlim(0.0, 1.0)
        ax.legend(loc="best")
        return fig


def _curve_scores(
    case: Case,
    kind: CurveKind,
    fill: np.ndarray,
    counts: np.ndarray,
    score: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(scores (N, S + 1), targets (N,)): every image x step, ``case.batch_size`` per pass.

    Step ``k`` gives each image's top ``counts[k]`` pixels the ``fill``'s
    values (deletion) or the image's own on the ``fill`` (insertion).
    """
    x, batch_size = case.inputs, case.batch_size
    n, steps = len(x), len(counts) - 1
    ranks = pixel_ranks(case.maps)
    logits0 = case.predict(x)
    case.check_rebuilt(logits0, depth=3)  # deletion -> _curve -> _run_curve -> here
    targets = case.scored_targets(logits0)
    scores = np.empty((n, steps + 1), dtype=np.float64)
    # The unperturbed input is deletion's first step and insertion's last.
    done = 0 if kind == "deletion" else steps
    scores[:, done] = case.scores(logits0, targets, score)
    todo_k = np.array([k for k in range(steps + 1) if k != done], dtype=np.int64)
    pair_i = np.repeat(np.arange(n), len(todo_k))
    pair_k = np.tile(todo_k, n)
    start_from, put = (x, fill) if kind == "deletion" else (fill, x)
    buffer = np.empty((min(batch_size, len(pair_i)), *x.shape[1:]), dtype=np.float32)
    for start in range(0, len(pair_i), batch_size):
        ii = pair_i[start : start + batch_size]
        kk = pair_k[start : start + batch_size]
        batch = buffer[: len(ii)]
        # pairs are grouped by image: fill each image's run without gathering copies
        edges = np.flatnonzero(np.diff(ii)) + 1
        for lo, hi in zip(np.r_[0, edges], np.r_[edges, len(ii)], strict=True):
            i = ii[lo]
            chosen = ranks[i][None] < counts[kk[lo:hi]][:, None, None]
            batch[lo:hi] = start_from[i]
            np.copyto(batch[lo:hi], put[i], where=chosen[..., None])
        logits = case.predict(batch)
        scores[ii, kk] = case.scores(logits, targets[ii], score)
    return scores, targets


def _curve(
    kind: CurveKind,
    model: Any,
    explanation: Explanation | np.ndarray,
    inputs: tuple[Any, Any, Preprocess | None, str, int | None],
    steps: int,
    baseline: Baseline,
    blur_sigma: float | None,
    score: str,
    text: Mapping[str, Any],
) -> Curve:
    """Deletion or insertion, from the public arguments: run every step, record the settings.

    ``inputs`` are the public functions' ``images, targets, preprocess,
    precision, batch_size``, ``text`` their ``tokenizer`` and ``processor``;
    both curves resolve and run them here alone.
    """
    with one_blas_thread():  # numpy's BLAS on one thread (see _kit/blas.py)
        case = resolve_case(kind, model, explanation, *inputs, score, **text)
        return _run_curve(kind, case, steps, baseline, blur_sigma, score)


def _run_curve(
    kind: CurveKind,
    case: Case,
    steps: int,
    baseline: Baseline,
    blur_sigma: float | None,
    score: str,
) -> Curve:
    """Deletion or insertion of a resolved case."""
    steps = positive_int(steps, "steps", where=kind)
    score_ = check_score(score)
    fill = case.fill(baseline, blur_sigma)
    h, w = case.maps.shape[1:]
    counts = (np.arange(steps + 1, dtype=np.int64) * (h * w)) // steps
    scores, targets = _curve_scores(case, kind, fill, counts, score_)
    params: dict[str, Any] = {
        "steps": steps,
        "baseline": baseline_label(baseline),
        "score": score_,
        "precision": case.precision,
    }
    if isinstance(baseline, str) and baseline == "blur":
        params["blur_sigma"] = default_blur_sigma(h, w) if blur_sigma is None else float(blur_sigma)
    params.update(case.recorded())
    return Curve(kind, counts / float(h * w), scores, case.reported(targets), params)


@metric(
    "deletion",
    direction=Direction.LOWER,
    needs=frozenset({Need.PREDICTIONS}),
    settings=("steps", "baseline", *TEXT_SIDE),
    headline="mean_auc",
)
def deletion(
    model: Any,
    explanation: Explanation | np.ndarray,
    *,
    images: Any = None,
    targets: Any = None,
    steps: int = 50,
    baseline: Baseline = "zeros",
    blur_sigma: float | None = None,
    score: str = "probability",
    batch_size: int | None = None,
    preprocess: Preprocess | None = None,
    precision: str = "float32",
    tokenizer: Any = None,
    processor: Any = None,
) -> Curve:
    """Deletion curve (RISE): remove the most important pixels first.

    In ``steps`` equal steps the top-ranked pixels take the ``baseline``'s
    values (``"zeros"``: the zero input, i.e. the mean colour under mean/std
    normalisation, as in RISE; also any fill of ``seewhy._kit.fills``:
    ``"black"``, ``"mean"``, ``"blur"``, a number, an RGB triple or an array).
    A faithful map makes the target's probability fall fast: lower
    ``mean_auc`` is better. Targets default to the explanation's.
    All images x steps inputs go through ``backend.predict`` ``batch_size`` at
    a time; by default the backend's choice (PyTorch on the CPU: the most that
    keep each activation under 32 MiB, 6 for Lite0 at 224 px; on a GPU 64;
    Keras 16).
    ``precision="bfloat16"`` (PyTorch) runs them in reduced precision: 1.5-2x
    faster on CPUs with AMX and on recent GPUs, scores within about 0.5%.

    Parameters
    ----------
    model : object
        The model that was explained (any model :func:`seewhy.explain` takes);
        it is only asked for predictions.
    explanation : Explanation or numpy.ndarray
        The explanation, or bare maps (N, H, W) / (H, W), which then need ``images``.
    images : object, optional
        The explained images, in any form ``explain`` takes. Left out, they are
        rebuilt from the explanation's pictures with the model's preprocessing
        (pass them when you explained preprocessed tensors).
    targets : object, optional
        What to score: a class index or name, a :mod:`seewhy.targets` target, or
        one of these per image. Default: the explanation's own target, else each
        image's top class.
    steps : int
        How many equal steps remove the pixels (50: 2% of them per step).
    baseline : str, float, tuple or numpy.ndarray
        What removed pixels become (see above).
    blur_sigma : float, optional
        The blur's standard deviation in pixels when ``baseline="blur"``;
        None scales 5 px at 224 px with the shorter side.
    score : str
        ``"probability"`` (softmax, or sigmoid for independent labels) or ``"logit"``.
    batch_size : int, optional
        Images per forward pass; None lets the backend choose.
    preprocess : Preprocess, optional
        The model's input preparation, when seewhy cannot read it from the model.
    precision : str
        ``"float32"``, ``"bfloat16"`` or ``"float16"`` for the forward passes.
    tokenizer, processor : object, optional
        A vision-language model's own, as :func:`seewhy.explain` took them: its
        recorded Prompt or Answer is scored again with them.

    Returns
    -------
    Curve
        Each image's curve; ``mean_auc`` sums it up (lower is better).

    Raises
    ------
    InvalidInput
        A setting out of range, maps that do not match the images, or bare
        maps without ``images``.
    """
    inputs = (images, targets, preprocess, precision, batch_size)
    text = {"tokenizer": tokenizer, "processor": processor}
    return _curve("deletion", model, explanation, inputs, steps, baseline, blur_sigma, score, text)


@metric(
    "insertion",
    direction=Direction.HIGHER,
    needs=frozenset({Need.PREDICTIONS}),
    settings=("steps", *TEXT_SIDE),  # starts from the blur whatever evaluate's baseline
    headline="mean_auc",
)
def insertion(
    model: Any,
    explanation: Explanation | np.ndarray,
    *,
    images: Any = None,
    targets: Any = None,
    steps: int = 50,
    baseline: Baseline = "blur",
    blur_sigma: float | None = None,
    score: str = "probability",
    batch_size: int | None = None,
    preprocess: Preprocess | None = None,
    precision: str = "float32",
    tokenizer: Any = None,
    processor: Any = None,
) -> Curve:
    """Insertion curve (RISE): reveal the most important pixels first.

    Starts from a blurred copy of the image (``_kit.fills``' one blur:
    Gaussian, ``blur_sigma`` pixels, by default 5 px at 224 px scaled with
    the shorter side, strong enough that the start carries little class
    evidence while keeping its colours, so revealed pixels do not create
    sharp edges the model could react to) and puts the original pixels back
    in map order. Higher ``mean_auc`` is better.

    Parameters
    ----------
    model, explanation, images, targets, score, batch_size, preprocess, precision
        As in :func:`deletion`.
    tokenizer, processor : object, optional
        As in :func:`deletion`.
    steps : int
        How many equal steps reveal the pixels.
    baseline : str, float, tuple or numpy.ndarray
        The picture the curve starts from (``"blur"``; any fill :func:`deletion` takes).
    blur_sigma : float, optional
        The blur's standard deviation in pixels; None scales with the image.

    Returns
    -------
    Curve
        Each image's curve; ``mean_auc`` sums it up (higher is better).
    """
    inputs = (images, targets, preprocess, precision, batch_size)
    text = {"tokenizer": tokenizer, "processor": processor}
    return _curve("insertion", model, explanation, inputs, steps, baseline, blur_sigma, score, text)
