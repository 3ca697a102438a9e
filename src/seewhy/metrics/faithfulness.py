"""Faithfulness: does the model's score follow what the map calls important?

* Deletion and insertion (Petsiuk et al., RISE, 2018): remove (or reveal) the
  pixels in the map's order, ``steps`` at a time, and follow the target's
  softmax probability; the area under the curve is the score (deletion: lower
  is better, insertion: higher is better).
* Average Drop and Increase in Confidence (Chattopadhyay et al., Grad-CAM++,
  2018): the image multiplied by the map should keep the target's confidence.
* ROAD (Rong et al., 2022): remove the most (MoRF) or least (LeRF) relevant
  pixels and fill them by noisy linear imputation, so the filling itself
  leaks no shape of the mask to the model.

Every perturbed input of a call is built in numpy and sent to the backend in
large batches (``backend.predict``), so the cost is the forward passes and
little more. Nothing here imports a framework.

All perturbations act on the model's inputs (normalised, NHWC). Because the
usual preprocessing is an affine map per channel, a blur or a mix there equals
the same operation on the picture; ``"zeros"`` means the zero *input*, which
for mean/std normalisation is the data set's mean colour (RISE's choice), and
``"black"`` is the black picture pushed through the model's preprocessing.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backends import Backend, backend_for
from ..backends.base import Precision, check_precision
from ..errors import InvalidInput
from ..explanation import Explanation
from ..methods.prefetch import Ahead
from ..preprocess import Preprocess

__all__ = [
    "ConfidenceChange",
    "Curve",
    "RoadResult",
    "average_drop",
    "deletion",
    "increase_in_confidence",
    "insertion",
    "noisy_linear_impute",
    "road",
]

Baseline = str | float | np.ndarray


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Case:
    """What a faithfulness metric works on, resolved once."""

    backend: Backend
    inputs: np.ndarray  # (N, H, W, C) float32
    maps: np.ndarray  # (N, H, W) float32 at the input's size
    targets: np.ndarray | None  # (N,) int64, None for each image's top-1
    preprocess: Preprocess
    expected_logits: np.ndarray | None  # the explanation's logits when inputs were rebuilt
    precision: Precision = "float32"
    batch_size: int = 16  # images per forward pass

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits for ``x``, ``batch_size`` images per forward pass, at the case's precision."""
        return self.backend.predict(x, batch_size=self.batch_size, precision=self.precision)


def resolve_case(
    model: Any,
    explanation: Explanation | np.ndarray,
    *,
    images: Any = None,
    targets: Any = None,
    preprocess: Preprocess | None = None,
    precision: str = "float32",
    batch_size: int | None = None,
    name: str = "metric",
) -> Case:
    """Model, maps, inputs and targets from the forms the public functions accept.

    ``explanation`` is an :class:`Explanation` or maps (N, H, W) / (H, W).
    ``images`` are the images that were explained, in any form ``explain``
    accepts; with an Explanation they may be left out, and the inputs are then
    rebuilt from ``explanation.images`` with the model's preprocessing (exact
    for pictures; pass ``images`` when you explained preprocessed tensors).
    ``batch_size`` None lets the backend choose (``preferred_batch_size``).
    """
    from ..api import model_spec, resolve_targets
    from ..io import prepare
    from ..maps import upsample

    precision_ = check_precision(precision)
    backend = backend_for(model)
    spec = model_spec(model, preprocess=preprocess)
    expected = None
    if isinstance(explanation, Explanation):
        maps = np.asarray(explanation.maps, dtype=np.float32)
        if targets is None:
            targets = explanation.targets
        if images is None:
            inputs = np.asarray(spec.preprocess.normalise(explanation.images), dtype=np.float32)
            expected = np.asarray(explanation.logits, dtype=np.float32)
    else:
        maps = _as_maps(explanation, f"{name}: explanation")
        if images is None:
            raise InvalidInput(
                f"{name}: images: expected the explained images when maps are given as an array"
            )
    if images is not None:
        batch, _ = prepare(
            images, spec.preprocess, channels_first=backend.channels_first, strict=True
        )
        inputs = batch.inputs
    if len(maps) != len(inputs):
        raise InvalidInput(
            f"{name}: expected one map per image ({len(inputs)} images), got {len(maps)} maps"
        )
    size = (inputs.shape[1], inputs.shape[2])
    if maps.shape[1:] != size:
        maps = upsample(maps, size)
    maps = np.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0)
    chosen = resolve_targets(targets, len(inputs), spec)
    per_pass = (
        backend.preferred_batch_size(inputs, precision_)
        if batch_size is None
        else _positive_int(batch_size, "batch_size")
    )
    return Case(backend, inputs, maps, chosen, spec.preprocess, expected, precision_, per_pass)


def _as_maps(value: Any, name: str) -> np.ndarray:
    from ..io import to_numpy

    arr = to_numpy(value, name=name)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.size == 0:
        raise InvalidInput(f"{name}: expected maps of shape (N, H, W) or (H, W), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
        raise InvalidInput(f"{name}: expected numeric maps, got dtype {arr.dtype}")
    return arr.astype(np.float32)


def _check_rebuilt(case: Case, logits: np.ndarray, name: str) -> None:
    """Warn when the rebuilt inputs do not give the explanation's logits back."""
    expected = case.expected_logits
    if expected is None or expected.shape != logits.shape:
        return
    scale = float(np.abs(expected).max())
    # reduced precision moves logits by up to ~1% of their range; float32 by rounding
    relative = 2e-3 if case.precision == "float32" else 5e-2
    if float(np.abs(expected - logits).max()) > relative * scale + 1e-5:
        warnings.warn(
            f"{name}: the inputs rebuilt from explanation.images do not reproduce the "
            "explanation's logits; pass images= (the images you explained)",
            stacklevel=3,
        )


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidInput(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of NHWC inputs over H and W only (reflecting borders)."""
    from scipy.ndimage import gaussian_filter

    if sigma <= 0:
        return x.copy()
    return np.asarray(
        gaussian_filter(x, sigma=(0.0, sigma, sigma, 0.0), mode="reflect", truncate=3.0),
        dtype=np.float32,
    )


def default_blur_sigma(height: int, width: int) -> float:
    """5 px at 224 px, scaled with the picture: a blur that leaves colours, not objects."""
    return 5.0 * min(height, width) / 224.0


def fill_values(
    x: np.ndarray,
    baseline: Baseline,
    preprocess: Preprocess,
    *,
    blur_sigma: float | None = None,
    name: str = "baseline",
) -> np.ndarray:
    """What removed pixels become: (N, H, W, C) float32, one value per input pixel.

    ``"zeros"`` the zero input, ``"black"`` a black picture after preprocessing,
    ``"mean"`` each image's mean colour, ``"blur"`` a blurred copy, a number a
    constant input value, or an array broadcastable to the inputs.
    """
    if isinstance(baseline, str):
        kind = baseline.lower()
        if kind == "zeros":
            return np.zeros_like(x)
        if kind == "black":
            black = np.asarray(preprocess.normalise(np.zeros((1, 1, 3), np.uint8)), np.float32)
            if x.shape[-1] != 3:
                black = np.zeros((1, 1, x.shape[-1]), np.float32)
            return np.broadcast_to(black, x.shape).astype(np.float32)
        if kind == "mean":
            return np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape).astype(np.float32)
        if kind == "blur":
            sigma = default_blur_sigma(x.shape[1], x.shape[2]) if blur_sigma is None else blur_sigma
            if not math.isfinite(sigma) or sigma < 0:
                raise InvalidInput(
                    f"blur_sigma: expected a non-negative number, got {blur_sigma!r}"
                )
            return blur(x, float(sigma))
        raise InvalidInput(
            f"{name}: expected 'zeros', 'black', 'mean', 'blur', a number or an array, "
            f"got {baseline!r}"
        )
    if isinstance(baseline, (int, float, np.floating, np.integer)) and not isinstance(
        baseline, bool
    ):
        return np.full_like(x, float(baseline))
    if isinstance(baseline, np.ndarray):
        try:
            return np.broadcast_to(baseline.astype(np.float32), x.shape).copy()
        except ValueError:
            raise InvalidInput(
                f"{name}: array of shape {baseline.shape} does not broadcast to the inputs "
                f"{x.shape}"
            ) from None
    raise InvalidInput(
        f"{name}: expected 'zeros', 'black', 'mean', 'blur', a number or an array, "
        f"got {type(baseline).__name__}"
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable for large logits)."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def _target_scores(logits: np.ndarray, targets: np.ndarray, score: str) -> np.ndarray:
    values = softmax(logits) if score == "probability" else logits.astype(np.float64)
    return values[np.arange(len(targets)), targets]


def _check_score(score: str) -> str:
    if score not in ("probability", "logit"):
        raise InvalidInput(f"score: expected 'probability' or 'logit', got {score!r}")
    return score


def _targets_from(case: Case, logits: np.ndarray) -> np.ndarray:
    if case.targets is not None:
        classes = logits.shape[1]
        bad = (case.targets < 0) | (case.targets >= classes)
        if bad.any():
            raise InvalidInput(
                f"target: class {int(case.targets[bad][0])} is outside the model's 0..{classes - 1}"
            )
        return case.targets
    return logits.argmax(axis=1).astype(np.int64)


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


# --------------------------------------------------------------------------- curves


@dataclass(frozen=True)
class Curve:
    """A deletion or insertion curve for each image.

    ``scores[i, k]`` is image ``i``'s target score after ``fractions[k]`` of its
    pixels were removed (deletion) or revealed (insertion); ``auc`` is the
    trapezoid area over fractions in [0, 1].
    """

    kind: str
    fractions: np.ndarray  # (S + 1,)
    scores: np.ndarray  # (N, S + 1)
    targets: np.ndarray  # (N,)
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def higher_is_better(self) -> bool:
        """Insertion: yes; deletion: no."""
        return self.kind == "insertion"

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


def trapezoid(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Area under ``y`` (..., K) over ``x`` (K,), by the trapezoid rule."""
    dx = np.diff(x)
    out: np.ndarray = ((y[..., 1:] + y[..., :-1]) * 0.5 * dx).sum(axis=-1)
    return out


def _curve(
    kind: str,
    model: Any,
    explanation: Explanation | np.ndarray,
    *,
    images: Any,
    targets: Any,
    steps: int,
    baseline: Baseline,
    blur_sigma: float | None,
    score: str,
    batch_size: int | None,
    preprocess: Preprocess | None,
    precision: str,
) -> Curve:
    steps = _positive_int(steps, "steps")
    score = _check_score(score)
    case = resolve_case(
        model,
        explanation,
        images=images,
        targets=targets,
        preprocess=preprocess,
        precision=precision,
        batch_size=batch_size,
        name=kind,
    )
    batch_size = case.batch_size
    x = case.inputs
    fill = fill_values(x, baseline, case.preprocess, blur_sigma=blur_sigma)
    n, h, w = case.maps.shape
    counts = (np.arange(steps + 1, dtype=np.int64) * (h * w)) // steps
    ranks = pixel_ranks(case.maps)

    logits0 = case.predict(x)
    _check_rebuilt(case, logits0, kind)
    targets_ = _targets_from(case, logits0)
    scores = np.empty((n, steps + 1), dtype=np.float64)
    # The unperturbed input is deletion's first step and insertion's last.
    done = 0 if kind == "deletion" else steps
    scores[:, done] = _target_scores(logits0, targets_, score)
    todo_k = np.array([k for k in range(steps + 1) if k != done], dtype=np.int64)
    pair_i = np.repeat(np.arange(n), len(todo_k))
    pair_k = np.tile(todo_k, n)
    # Deletion: the top pixels take the baseline's values; insertion: they are
    # revealed on the blurred start image.
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
        scores[ii, kk] = _target_scores(logits, targets_[ii], score)
    params: dict[str, Any] = {
        "steps": steps,
        "baseline": baseline if isinstance(baseline, (str, int, float)) else "array",
        "score": score,
        "precision": case.precision,
    }
    if isinstance(baseline, str) and baseline == "blur":
        params["blur_sigma"] = default_blur_sigma(h, w) if blur_sigma is None else float(blur_sigma)
    return Curve(kind, counts / float(h * w), scores, targets_, params)


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
) -> Curve:
    """Deletion curve (RISE): remove the most important pixels first.

    In ``steps`` equal steps the top-ranked pixels take the ``baseline``'s
    values (``"zeros"``: the zero input, i.e. the mean colour under mean/std
    normalisation, as in RISE; also ``"black"``, ``"mean"``, ``"blur"``, a
    number or an array). A faithful map makes the target's probability fall
    fast: lower ``mean_auc`` is better. Targets default to the explanation's.
    All images x steps inputs go through ``backend.predict`` ``batch_size`` at
    a time; by default the backend's choice (PyTorch on the CPU: the most that
    keep each activation under 32 MiB, 6 for Lite0 at 224 px; on a GPU 64;
    Keras 16).
    ``precision="bfloat16"`` (PyTorch) runs them in reduced precision: 1.5-2x
    faster on CPUs with AMX and on recent GPUs, scores within about 0.5%.
    """
    return _curve(
        "deletion",
        model,
        explanation,
        images=images,
        targets=targets,
        steps=steps,
        baseline=baseline,
        blur_sigma=blur_sigma,
        score=score,
        batch_size=batch_size,
        preprocess=preprocess,
        precision=precision,
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
) -> Curve:
    """Insertion curve (RISE): reveal the most important pixels first.

    Starts from a blurred copy of the image (Gaussian, ``blur_sigma`` pixels;
    default 5 px at 224 px, scaled with the image size, strong enough that the
    start carries little class evidence while keeping its colours, so revealed
    pixels do not create sharp edges the model could react to) and puts the
    original pixels back in map order. Higher ``mean_auc`` is better.
    """
    return _curve(
        "insertion",
        model,
        explanation,
        images=images,
        targets=targets,
        steps=steps,
        baseline=baseline,
        blur_sigma=blur_sigma,
        score=score,
        batch_size=batch_size,
        preprocess=preprocess,
        precision=precision,
    )


# --------------------------------------------------------------------------- confidence


@dataclass(frozen=True)
class ConfidenceChange:
    """Average Drop and Increase in Confidence (Grad-CAM++), in percent.

    ``original`` and ``masked`` are each image's target probability on the
    image and on the image multiplied by its map.
    """

    original: np.ndarray  # (N,)
    masked: np.ndarray  # (N,)
    targets: np.ndarray  # (N,)
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def drops(self) -> np.ndarray:
        """(N,) relative drop max(0, Y - O) / Y per image."""
        y = np.maximum(self.original, 1e-12)
        out: np.ndarray = np.maximum(self.original - self.masked, 0.0) / y
        return out

    @property
    def average_drop(self) -> float:
        """Mean relative drop of the target's confidence, % (lower is better)."""
        return float(100.0 * self.drops.mean())

    @property
    def increase_in_confidence(self) -> float:
        """Share of images whose confidence rose on the masked image, % (higher is better)."""
        return float(100.0 * np.mean(self.masked > self.original))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers."""
        return {
            "metric": "average_drop",
            "average_drop": round(self.average_drop, 6),
            "increase_in_confidence": round(self.increase_in_confidence, 6),
            "original": [round(float(v), 6) for v in self.original],
            "masked": [round(float(v), 6) for v in self.masked],
            "targets": [int(t) for t in self.targets],
            "params": dict(self.params),
        }


def average_drop(
    model: Any,
    explanation: Explanation | np.ndarray,
    *,
    images: Any = None,
    targets: Any = None,
    baseline: Baseline = "black",
    blur_sigma: float | None = None,
    batch_size: int | None = None,
    preprocess: Preprocess | None = None,
    precision: str = "float32",
) -> ConfidenceChange:
    """Average Drop and Increase in Confidence of the image shown through its map.

    The "explanation map" of the Grad-CAM++ paper is the image multiplied by
    the [0, 1] map, i.e. ``baseline + map * (image - baseline)`` with a black
    baseline; both numbers come from the same two passes. ``precision`` as in
    :func:`deletion`.
    """
    case = resolve_case(
        model,
        explanation,
        images=images,
        targets=targets,
        preprocess=preprocess,
        precision=precision,
        batch_size=batch_size,
        name="average_drop",
    )
    x = case.inputs
    fill = fill_values(x, baseline, case.preprocess, blur_sigma=blur_sigma)
    weight = np.clip(case.maps, 0.0, 1.0)[..., None]
    masked = (fill + weight * (x - fill)).astype(np.float32)
    logits = case.predict(np.concatenate([x, masked]))
    n = len(x)
    _check_rebuilt(case, logits[:n], "average_drop")
    targets_ = _targets_from(case, logits[:n])
    original = _target_scores(logits[:n], targets_, "probability")
    shown = _target_scores(logits[n:], targets_, "probability")
    params = {
        "baseline": baseline if isinstance(baseline, (str, int, float)) else "array",
        "precision": case.precision,
    }
    return ConfidenceChange(original, shown, targets_, params)


def increase_in_confidence(
    model: Any, explanation: Explanation | np.ndarray, **kwargs: Any
) -> ConfidenceChange:
    """Same passes as :func:`average_drop`; read ``.increase_in_confidence``."""
    return average_drop(model, explanation, **kwargs)


# --------------------------------------------------------------------------- ROAD

# 8-neighbourhood weights of ROAD's imputer: edges count twice as much as corners.
_NEIGHBOURS: tuple[tuple[int, int, float], ...] = (
    (-1, -1, 1 / 12),
    (-1, 0, 1 / 6),
    (-1, 1, 1 / 12),
    (0, -1, 1 / 6),
    (0, 1, 1 / 6),
    (1, -1, 1 / 12),
    (1, 0, 1 / 6),
    (1, 1, 1 / 12),
)


# Tiny pull of every removed pixel towards the image mean: keeps the system
# solvable when nothing around a region is known (all pixels removed).
_EPS = 1e-6


@dataclass(frozen=True)
class Hole:
    """ROAD's linear system for one removal mask, independent of the image.

    Row ``p`` says: removed pixel ``p`` times the weight of its in-image
    neighbours equals the weighted sum of those neighbours. ``matrix`` (m, m)
    couples the removed pixels; ``known`` (m, H*W) takes the known neighbours'
    values to the right-hand side. The matrix is symmetric positive definite.
    """

    ys: np.ndarray  # (m,) rows of the removed pixels
    xs: np.ndarray  # (m,) columns
    matrix: Any  # scipy.sparse csc (m, m)
    known: Any  # scipy.sparse csr (m, H * W)


def impute_system(removed: np.ndarray) -> Hole:
    """Build the sparse system of :func:`noisy_linear_impute` for an (H, W) mask."""
    from scipy.sparse import coo_matrix

    h, w = removed.shape
    ys, xs = np.nonzero(removed)
    m = len(ys)
    index = np.full((h, w), -1, dtype=np.int64)
    index[ys, xs] = np.arange(m)
    diag = np.full(m, _EPS)
    a_rows, a_cols, a_vals = [np.arange(m)], [np.arange(m)], [diag]
    k_rows, k_cols, k_vals = [], [], []
    for dy, dx, weight in _NEIGHBOURS:
        qy, qx = ys + dy, xs + dx
        inside = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
        p, qy, qx = np.nonzero(inside)[0], qy[inside], qx[inside]
        diag[p] += weight
        q = index[qy, qx]
        unknown = q >= 0
        a_rows.append(p[unknown])
        a_cols.append(q[unknown])
        a_vals.append(np.full(int(unknown.sum()), -weight))
        k_rows.append(p[~unknown])
        k_cols.append(qy[~unknown] * w + qx[~unknown])
        k_vals.append(np.full(int((~unknown).sum()), weight))
    matrix = coo_matrix(
        (np.concatenate(a_vals), (np.concatenate(a_rows), np.concatenate(a_cols))), shape=(m, m)
    ).tocsc()
    known = coo_matrix(
        (np.concatenate(k_vals), (np.concatenate(k_rows), np.concatenate(k_cols))),
        shape=(m, h * w),
    ).tocsr()
    return Hole(ys, xs, matrix, known)


def solve_hole(hole: Hole, image: np.ndarray) -> np.ndarray:
    """(m, C) noise-free values of the removed pixels of ``image`` (H, W, C).

    Factorised once in float32 with a fill-reducing symmetric ordering
    (about twice as fast as the general float64 LU), then one step of
    iterative refinement with float64 residuals brings the error back to
    float64 level: the noise ROAD adds is far larger than what remains.
    """
    from scipy.sparse.linalg import splu

    img = np.asarray(image, dtype=np.float64)
    c = img.shape[-1]
    flat = img.reshape(-1, c)
    removed = np.zeros(len(flat), dtype=bool)
    removed[hole.ys * img.shape[1] + hole.xs] = True
    kept = flat[~removed]
    mean = kept.mean(axis=0) if len(kept) else flat.mean(axis=0)
    rhs = hole.known @ flat + _EPS * mean
    lu = splu(
        hole.matrix.astype(np.float32),
        permc_spec="MMD_AT_PLUS_A",
        diag_pivot_thresh=0.0,
        options={"SymmetricMode": True},
    )
    x = lu.solve(rhs.astype(np.float32)).astype(np.float64)
    x += lu.solve((rhs - hole.matrix @ x).astype(np.float32))
    out: np.ndarray = x
    return out


def noisy_linear_impute(
    image: np.ndarray,
    removed: np.ndarray,
    *,
    noise: float = 0.01,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """ROAD's imputation: each removed pixel is the weighted mean of its 8 neighbours.

    Solves one sparse linear system for all removed pixels and channels at
    once (known neighbours go to the right-hand side; see
    :func:`impute_system`), then adds Gaussian noise of ``noise`` times each
    channel's standard deviation. ``image`` is (H, W, C), ``removed`` (H, W)
    bool. A tiny pull towards the image mean keeps the system solvable when
    a region has no known neighbour at all.
    """
    img = np.asarray(image, dtype=np.float64)
    removed = np.asarray(removed, dtype=bool)
    if img.ndim != 3 or removed.shape != img.shape[:2]:
        raise InvalidInput(
            f"removed: expected a (H, W) mask for an (H, W, C) image, got {removed.shape} "
            f"for {img.shape}"
        )
    if not removed.any():
        return img.astype(np.float32)
    hole = impute_system(removed)
    solution = solve_hole(hole, img)
    if noise > 0:
        generator = rng if rng is not None else np.random.default_rng(0)
        std = img.reshape(-1, img.shape[-1]).std(axis=0)
        solution = solution + generator.normal(0.0, 1.0, solution.shape) * (noise * std)
    out = img.copy()
    out[hole.ys, hole.xs] = solution
    return out.astype(np.float32)


@dataclass(frozen=True)
class RoadResult:
    """ROAD curves: target probability after removing a fraction of pixels.

    ``morf`` removes the most relevant first (should fall fast), ``lerf`` the
    least relevant first (should stay high); ``gap = mean(lerf - morf)`` sums
    both up, higher is better.
    """

    fractions: np.ndarray  # (P,)
    morf: np.ndarray  # (N, P)
    lerf: np.ndarray  # (N, P)
    original: np.ndarray  # (N,)
    targets: np.ndarray  # (N,)
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def morf_score(self) -> float:
        """Mean MoRF probability over fractions and images (lower is better)."""
        return float(self.morf.mean())

    @property
    def lerf_score(self) -> float:
        """Mean LeRF probability over fractions and images (higher is better)."""
        return float(self.lerf.mean())

    @property
    def gap(self) -> float:
        """LeRF minus MoRF: how much more the map's top pixels matter than its bottom ones."""
        return self.lerf_score - self.morf_score

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers (curves averaged over images)."""
        return {
            "metric": "road",
            "morf": round(self.morf_score, 6),
            "lerf": round(self.lerf_score, 6),
            "gap": round(self.gap, 6),
            "fractions": [round(float(f), 6) for f in self.fractions],
            "morf_curve": [round(float(v), 6) for v in self.morf.mean(axis=0)],
            "lerf_curve": [round(float(v), 6) for v in self.lerf.mean(axis=0)],
            "targets": [int(t) for t in self.targets],
            "params": dict(self.params),
        }


def road(
    model: Any,
    explanation: Explanation | np.ndarray,
    *,
    images: Any = None,
    targets: Any = None,
    fractions: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    noise: float = 0.01,
    seed: int = 0,
    batch_size: int | None = None,
    preprocess: Preprocess | None = None,
    precision: str = "float32",
) -> RoadResult:
    """ROAD, remove and debias (Rong et al., 2022), without retraining.

    For each fraction the most (MoRF) and least (LeRF) relevant pixels are
    removed and filled by :func:`noisy_linear_impute`: one sparse solve per
    image, fraction and order, all colour channels at once. The imputed
    images are made ``batch_size`` at a time in a background thread while
    the model predicts the previous batch, so the solves and the forward
    passes overlap and memory stays at two batches. ``precision`` as in
    :func:`deletion`.
    """
    fr = np.asarray(list(fractions), dtype=np.float64)
    if fr.ndim != 1 or len(fr) == 0 or np.any((fr <= 0) | (fr >= 1)):
        raise InvalidInput(f"fractions: expected numbers strictly between 0 and 1, got {fractions}")
    if not math.isfinite(noise) or noise < 0:
        raise InvalidInput(f"noise: expected a non-negative number, got {noise!r}")
    case = resolve_case(
        model,
        explanation,
        images=images,
        targets=targets,
        preprocess=preprocess,
        precision=precision,
        batch_size=batch_size,
        name="road",
    )
    n = len(case.maps)
    probs = np.empty((n, 2, len(fr)), dtype=np.float64)
    batches = _road_batches(case, fr, noise=noise, seed=seed)
    with Ahead(batches) as ahead:  # the first batch is imputed during the clean pass
        logits0 = case.predict(case.inputs)
        _check_rebuilt(case, logits0, "road")
        targets_ = _targets_from(case, logits0)
        for (rows, orders, steps), batch in ahead:
            logits = case.predict(batch)
            probs[rows, orders, steps] = _target_scores(logits, targets_[rows], "probability")
    original = _target_scores(logits0, targets_, "probability")
    params = {"noise": noise, "seed": seed, "precision": case.precision}
    return RoadResult(fr, probs[:, 0], probs[:, 1], original, targets_, params)


def road_mask(ranks: np.ndarray, fraction: float, order: int) -> np.ndarray:
    """(H, W) pixels removed at ``fraction``: the top-ranked (MoRF, order 0) or bottom (LeRF)."""
    total = ranks.size
    count = int(np.rint(fraction * total))
    return ranks < count if order == 0 else ranks >= total - count


def _road_batches(
    case: Case, fractions: np.ndarray, *, noise: float, seed: int
) -> Iterator[tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]]:
    """Imputed inputs ``batch_size`` at a time, with their (image, order, fraction) indices.

    Always in the same order (image, then fraction, then MoRF before LeRF),
    so the seeded noise is the same however the batches are cut.
    """
    x = case.inputs
    ranks = pixel_ranks(case.maps)
    jobs = np.array(
        [(i, order, j) for i in range(len(x)) for j in range(len(fractions)) for order in (0, 1)],
        dtype=np.int64,
    )
    rng = np.random.default_rng(seed)
    for start in range(0, len(jobs), case.batch_size):
        chunk = jobs[start : start + case.batch_size]
        batch = np.empty((len(chunk), *x.shape[1:]), dtype=np.float32)
        for k, (i, order, j) in enumerate(chunk):
            removed = road_mask(ranks[i], float(fractions[j]), int(order))
            batch[k] = noisy_linear_impute(x[i], removed, noise=noise, rng=rng)
        yield (chunk[:, 0], chunk[:, 1], chunk[:, 2]), batch
