"""The LIME view: the top superpixels with their boundaries, as LIME users expect.

LIME's own pictures (``get_image_and_mask`` with ``mark_boundaries``) show
the few superpixels that most raise the class score, outlined, rather than
every superpixel's weight as a heat field. Here the chosen superpixels keep
their colours, the rest of the photo is dimmed, positive ones are outlined
in yellow and, when asked, the most negative ones are tinted and outlined red.
"""

from __future__ import annotations

import numpy as np

from .._kit.checks import bad_argument, flag, positive_int

__all__ = ["NEGATIVE_COLOUR", "POSITIVE_COLOUR", "chosen_superpixels", "superpixel_view"]

POSITIVE_COLOUR = (255, 255, 0)  # skimage's mark_boundaries default
NEGATIVE_COLOUR = (255, 0, 0)
_TINT = 0.45  # how much of the red goes into a negative superpixel


def chosen_superpixels(
    weights: np.ndarray, top: int, *, negative: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) superpixel ids: the ``top`` largest weights above 0, and below."""
    w = np.asarray(weights, dtype=np.float64)
    order = np.argsort(-w, kind="stable")
    positive = order[w[order] > 0][:top]
    negatives = order[::-1][w[order[::-1]] < 0][:top] if negative else order[:0]
    return positive, negatives


def _edges(labels: np.ndarray, selected: np.ndarray, thickness: int) -> np.ndarray:
    """Pixels on a boundary between two labels where one side is ``selected``, thickened."""
    edge = np.zeros(labels.shape, bool)
    edge[:-1] |= (labels[:-1] != labels[1:]) & (selected[:-1] | selected[1:])
    edge[:, :-1] |= (labels[:, :-1] != labels[:, 1:]) & (selected[:, :-1] | selected[:, 1:])
    for _ in range(thickness - 1):
        grown = edge.copy()
        grown[1:] |= edge[:-1]
        grown[:-1] |= edge[1:]
        grown[:, 1:] |= edge[:, :-1]
        grown[:, :-1] |= edge[:, 1:]
        edge = grown
    return edge


def superpixel_view(
    picture: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    *,
    top: int = 5,
    negative: bool = False,
    dim: float = 0.5,
) -> np.ndarray:
    """The photo with its ``top`` superpixels outlined, the rest at ``dim`` brightness.

    ``labels`` (H, W) int gives each pixel's superpixel (-1: none, e.g. cropped
    away), ``weights`` each superpixel's weight. With ``negative`` the ``top``
    most negative superpixels are tinted and outlined red too. Boundaries are
    about 1 px per 400 px of the long side, so they stay visible on large photos.

    Parameters
    ----------
    picture : numpy.ndarray
        (H, W, 3) uint8.
    labels : numpy.ndarray
        (H, W) int, each pixel's superpixel (-1: none).
    weights : numpy.ndarray
        Each superpixel's weight, by label.
    top : int
        How many superpixels to show.
    negative : bool
        Also tint and outline the ``top`` most negative ones, in red.
    dim : float
        Brightness of the superpixels not shown, in [0, 1].

    Returns
    -------
    numpy.ndarray
        (H, W, 3) uint8.
    """
    top = positive_int(top, "top")
    negative = flag(negative, "negative")
    if isinstance(dim, bool) or not isinstance(dim, (int, float)) or not 0.0 <= dim <= 1.0:
        raise bad_argument("dim", "a number in [0, 1]", dim)
    if labels.shape != picture.shape[:2]:
        raise bad_argument("labels", f"a label image of shape {picture.shape[:2]}", labels.shape)
    positive, negatives = chosen_superpixels(weights, top, negative=negative)
    valid = labels >= 0
    pos = valid & np.isin(labels, positive)
    neg = valid & np.isin(labels, negatives)
    out = picture.astype(np.float32)
    out[~(pos | neg)] *= np.float32(dim)
    red = np.asarray(NEGATIVE_COLOUR, np.float32)
    out[neg] = (1.0 - _TINT) * out[neg] + _TINT * red
    thickness = max(1, round(max(labels.shape) / 400))
    out[_edges(labels, neg, thickness)] = red
    out[_edges(labels, pos, thickness)] = np.asarray(POSITIVE_COLOUR, np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
