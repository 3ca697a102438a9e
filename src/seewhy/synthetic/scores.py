"""Per-image scores of "does the map look at the object", against a set's exact ground truth.

Plain arrays, one value per image, for tests and quick checks; the
:mod:`seewhy.metrics` localisation scores are the documented metrics.
"""

from __future__ import annotations

import numpy as np

__all__ = ["box_share", "mass_inside", "peak_inside"]


def mass_inside(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(N,) share of each map's (non-negative) mass on the object: the energy pointing game.

    Parameters
    ----------
    maps : numpy.ndarray
        (N, H, W) non-negative maps.
    masks : numpy.ndarray
        (N, H, W) bool, the objects' pixels.
    """
    from ..metrics import energy_pointing_game

    return energy_pointing_game(np.asarray(maps), masks=np.asarray(masks, dtype=bool)).values


def box_share(masks: np.ndarray) -> np.ndarray:
    """(N,) share of the picture's area the object covers (the chance level of mass_inside).

    Parameters
    ----------
    masks : numpy.ndarray
        (N, H, W) bool, the objects' pixels.
    """
    return np.asarray(masks, dtype=np.float64).reshape(len(masks), -1).mean(axis=1)


def peak_inside(maps: np.ndarray, boxes: np.ndarray, *, margin: int = 1) -> np.ndarray:
    """(N,) bool: the map's maximum lies in the object's box ``(x0, y0, x1, y1)``, grown by
    ``margin`` pixels (the first maximum counts, unlike the tie rule of the pointing game).

    Parameters
    ----------
    maps : numpy.ndarray
        (N, H, W) maps.
    boxes : numpy.ndarray
        (N, 4) boxes ``(x0, y0, x1, y1)``, exclusive ends.
    margin : int
        Pixels the box is grown by on each side.
    """
    n, _, w = maps.shape
    flat = np.asarray(maps).reshape(n, -1).argmax(axis=1)
    r, c = np.divmod(flat, w)
    x0, y0, x1, y1 = (np.asarray(boxes)[:, k] for k in range(4))
    return (r >= y0 - margin) & (r < y1 + margin) & (c >= x0 - margin) & (c < x1 + margin)
