"""How alike two saliency maps are: the sanity check's similarity measures.

As in Adebayo et al. (2018), per image: Spearman rank correlation with and
without absolute values, SSIM, and the Pearson correlation of HOG features
(see :data:`SANITY_MEASURES`). Each measure is defined for constant maps too
(two blank maps are alike, a blank map and a drawn one are not), so a
method whose maps stay blank is never mistaken for one whose maps changed.
"""

from __future__ import annotations

import numpy as np

from ...errors import InvalidInput
from ...explanation import Explanation

__all__ = [
    "SANITY_MEASURES",
    "compare",
    "hog_features",
    "hog_similarity",
    "paper_maps",
    "spearman",
    "ssim",
]

#: The similarity measures a :class:`~seewhy.metrics.SanityResult` holds, with their plot titles.
SANITY_MEASURES: dict[str, str] = {
    "spearman": "rank correlation (maps as shown)",
    "spearman_abs": "rank correlation (abs)",
    "spearman_signed": "rank correlation (no abs)",
    "ssim": "SSIM",
    "hog": "HOG similarity",
}


def spearman(a: np.ndarray, b: np.ndarray, *, absolute: bool = False) -> float:
    """Spearman rank correlation of two maps (ties get average ranks).

    ``absolute=True`` ranks ``|a|`` and ``|b|``: the paper's variant "with
    absolute values", where strong negative evidence counts as important too.
    A constant map has no ranking, so its correlation with a map that has
    one is 0; two constant maps do not differ at all and score 1 (as in
    :func:`hog_similarity`), so a method whose maps stay blank is not
    mistaken for one whose maps changed.

    Parameters
    ----------
    a, b : numpy.ndarray
        The two maps, of the same shape.
    absolute : bool
        Rank the absolute values.

    Returns
    -------
    float
        The correlation, -1 to 1.
    """
    from scipy.stats import rankdata

    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if absolute:
        x, y = np.abs(x), np.abs(y)
    return _pearson(rankdata(x), rankdata(y))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two flat vectors; constant ones: 1 if both are, else 0.

    Two constant maps do not differ at all; a constant map shares no
    structure with one that has some.
    """
    x = x - x.mean()
    y = y - y.mean()
    sx, sy = float((x * x).sum()), float((y * y).sum())
    if sx == 0.0 or sy == 0.0:
        return 1.0 if sx == sy else 0.0
    return float((x * y).sum() / np.sqrt(sx * sy))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two maps with values in [0, 1] (scikit-image).

    The window shrinks to fit a small map (7 px, odd, at least 3); a map too
    small for any window is compared by correlation instead.

    Parameters
    ----------
    a, b : numpy.ndarray
        The two maps, of the same shape.

    Returns
    -------
    float
        The SSIM, 1 for identical maps.
    """
    from skimage.metrics import structural_similarity

    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    side = min(x.shape)
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        return float(np.corrcoef(x.ravel(), y.ravel())[0, 1]) if x.size > 1 else 1.0
    value = structural_similarity(x, y, data_range=1.0, win_size=win)  # type: ignore[no-untyped-call]
    return float(value)


def hog_features(m: np.ndarray, *, cell: int | None = None) -> np.ndarray:
    """Histogram of oriented gradients of one (H, W) map, as one flat vector.

    ``cell`` pixels per cell default to the map's short side / 28 (8 px at
    224, scikit-image's default there), at least 2, so maps of any size get
    the same grid; blocks are 3x3 cells (fewer on a tiny map).
    """
    from skimage.feature import hog

    x = np.asarray(m, dtype=np.float64)
    if x.ndim != 2:
        raise InvalidInput(f"map: expected a 2-D map, got shape {x.shape}")
    side = min(x.shape)
    size = max(2, side // 28) if cell is None else int(cell)
    if size < 1 or side < size:
        raise InvalidInput(f"cell: expected 1..{side} pixels for a {x.shape} map, got {cell}")
    block = max(1, min(3, side // size))
    features = hog(x, orientations=9, pixels_per_cell=(size, size), cells_per_block=(block, block))
    return np.asarray(features, dtype=np.float64)


def hog_similarity(a: np.ndarray, b: np.ndarray, *, cell: int | None = None) -> float:
    """Pearson correlation of the two maps' HOG features (the paper's edge-structure measure).

    HOG sees only where the edges are and how they run, not the values, so
    two maps that draw the same outlines score high even when their ranks
    differ. A map without any edge (constant) has no HOG features: two such
    maps score 1 (nothing differs), one such map against any other 0.

    Parameters
    ----------
    a, b : numpy.ndarray
        The two maps, of the same shape.
    cell : int, optional
        Pixels per HOG cell; None takes the short side / 28 (8 px at 224), at least 2.

    Returns
    -------
    float
        The correlation, -1 to 1.

    Raises
    ------
    InvalidInput
        Maps that are not 2-D or not of one shape, or a cell larger than the map.
    """
    fa = hog_features(a, cell=cell)
    fb = hog_features(b, cell=cell)
    if fa.shape != fb.shape:
        raise InvalidInput(f"maps: expected the same shape, got {np.shape(a)} and {np.shape(b)}")
    return float(np.clip(_pearson(fa, fb), -1.0, 1.0))


def paper_maps(explanation: Explanation) -> tuple[np.ndarray, np.ndarray]:
    """(absolute, signed) (N, H, W) maps for the paper's two rank correlations.

    Pixel methods: the sum over colour channels of |attribution| and of the
    attribution (the paper's grayscale and diverging maps). Other methods:
    their raw map before rectification and scaling, upsampled, and its
    absolute value.

    Parameters
    ----------
    explanation : Explanation
        The explanation whose maps are compared.

    Returns
    -------
    tuple of (numpy.ndarray, numpy.ndarray)
        The absolute and the signed maps, (N, H, W) each.
    """
    from ...maps import upsample

    attributions = explanation.extras.get("attributions")
    if attributions is not None and np.ndim(attributions) == 4:
        a = np.nan_to_num(np.asarray(attributions, dtype=np.float32))
        return np.abs(a).sum(axis=-1), a.sum(axis=-1)
    raw = np.nan_to_num(np.asarray(explanation.layer_maps, dtype=np.float32))
    if raw.ndim == 3:
        raw = upsample(raw, explanation.maps.shape[1:])
    else:  # an unusual raw map: fall back to the maps as shown
        raw = np.asarray(explanation.maps, dtype=np.float32)
    return np.abs(raw), raw


def compare(
    original: Explanation,
    other: Explanation,
    original_paper: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Every measure of :data:`SANITY_MEASURES` between two explanations, (N,) each.

    ``original_paper`` is :func:`paper_maps` of ``original``, when the caller
    compares it with many steps and has it already.
    """
    a_abs, a_signed = paper_maps(original) if original_paper is None else original_paper
    b_abs, b_signed = paper_maps(other)
    pairs = list(zip(original.maps, other.maps, strict=True))
    return {
        "spearman": np.array([spearman(a, b) for a, b in pairs]),
        "spearman_abs": np.array([spearman(a, b) for a, b in zip(a_abs, b_abs, strict=True)]),
        "spearman_signed": np.array(
            [spearman(a, b) for a, b in zip(a_signed, b_signed, strict=True)]
        ),
        "ssim": np.array([ssim(a, b) for a, b in pairs]),
        "hog": np.array([hog_similarity(a, b) for a, b in pairs]),
    }
