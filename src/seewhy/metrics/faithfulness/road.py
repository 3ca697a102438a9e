"""ROAD, remove and debias (Rong et al., 2022), and its noisy linear imputation.

Remove the most (MoRF) or least (LeRF) relevant pixels and fill them by
noisy linear imputation, so the filling itself leaks no shape of the mask to
the model. The imputed images are made in a background thread while the
model predicts the previous batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..._kit.blas import one_blas_thread
from ..._kit.checks import finite_float
from ..._kit.prefetch import Ahead
from ...errors import InvalidInput
from ...explanation import Explanation
from ...preprocess import Preprocess
from ..registry import TEXT_SIDE, Direction, Need, metric
from .cases import Case, resolve_case
from .curves import pixel_ranks

__all__ = ["Hole", "RoadResult", "impute_system", "noisy_linear_impute", "road", "solve_hole"]

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

    Parameters
    ----------
    image : numpy.ndarray
        (H, W, C) the picture, any value range.
    removed : numpy.ndarray
        (H, W) bool, True where a pixel is removed and imputed.
    noise : float
        The added noise's standard deviation, as a share of each channel's
        own; 0 imputes without noise.
    rng : numpy.random.Generator, optional
        Where the noise comes from; None draws from a generator seeded 0, so
        the same call gives the same picture.

    Returns
    -------
    numpy.ndarray
        (H, W, C) float32: ``image`` with its removed pixels imputed.

    Raises
    ------
    InvalidInput
        ``removed`` is not an (H, W) mask for the image.
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

    Attributes
    ----------
    fractions : numpy.ndarray
        (P,) the shares of pixels removed.
    morf : numpy.ndarray
        (N, P) target probability with the most relevant pixels removed.
    lerf : numpy.ndarray
        (N, P) target probability with the least relevant pixels removed.
    original : numpy.ndarray
        (N,) target probability on the unchanged images.
    targets : numpy.ndarray
        (N,) the class scored per image (-1 when the target is not a class).
    params : Mapping
        The settings the curves were made with (noise, seed, precision, target).
    """

    fractions: np.ndarray  # (P,)
    morf: np.ndarray  # (N, P)
    lerf: np.ndarray  # (N, P)
    original: np.ndarray  # (N,)
    targets: np.ndarray  # (N,) classes (-1: the target has none; params["target"] says what)
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


@metric(
    "road",
    direction=Direction.HIGHER,
    needs=frozenset({Need.PREDICTIONS}),
    settings=TEXT_SIDE,
    headline="gap",
)
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
    tokenizer: Any = None,
    processor: Any = None,
) -> RoadResult:
    """ROAD, remove and debias (Rong et al., 2022), without retraining.

    For each fraction the most (MoRF) and least (LeRF) relevant pixels are
    removed and filled by :func:`noisy_linear_impute`: one sparse solve per
    image, fraction and order, all colour channels at once. The imputed
    images are made ``batch_size`` at a time in a background thread while
    the model predicts the previous batch, so the solves and the forward
    passes overlap and memory stays at two batches. ``precision`` as in
    :func:`~seewhy.metrics.deletion`.

    Parameters
    ----------
    model, explanation, images, targets, batch_size, preprocess, precision
        As in :func:`~seewhy.metrics.deletion`.
    tokenizer, processor : object, optional
        As in :func:`~seewhy.metrics.deletion`.
    fractions : sequence of float
        The shares of pixels removed, each strictly between 0 and 1.
    noise : float
        The imputation's noise (see :func:`noisy_linear_impute`).
    seed : int
        Seeds the noise, so a run can be repeated exactly.

    Returns
    -------
    RoadResult
        The MoRF and LeRF curves; ``gap`` sums them up (higher is better).

    Raises
    ------
    InvalidInput
        A fraction outside (0, 1), a negative noise, or maps that do not match
        the images.
    """
    with one_blas_thread():  # numpy's BLAS on one thread (see _kit/blas.py)
        fr = np.asarray(list(fractions), dtype=np.float64)
        if fr.ndim != 1 or len(fr) == 0 or np.any((fr <= 0) | (fr >= 1)):
            raise InvalidInput(
                f"fractions: expected numbers strictly between 0 and 1, got {fractions}"
            )
        noise = finite_float(noise, "noise", where="road", minimum=0.0)
        case = resolve_case(
            "road",
            model,
            explanation,
            images,
            targets,
            preprocess,
            precision,
            batch_size,
            tokenizer=tokenizer,
            processor=processor,
        )
        n = len(case.maps)
        probs = np.empty((n, 2, len(fr)), dtype=np.float64)
        batches = _road_batches(case, fr, noise=noise, seed=seed)
        with Ahead(batches) as ahead:  # the first batch is imputed during the clean pass
            logits0 = case.predict(case.inputs)
            case.check_rebuilt(logits0)
            targets_ = case.scored_targets(logits0)
            for (rows, orders, steps), batch in ahead:
                logits = case.predict(batch)
                probs[rows, orders, steps] = case.scores(logits, targets_[rows], "probability")
        original = case.scores(logits0, targets_, "probability")
        params = {"noise": noise, "seed": seed, "precision": case.precision, **case.recorded()}
        return RoadResult(fr, probs[:, 0], probs[:, 1], original, case.reported(targets_), params)


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
