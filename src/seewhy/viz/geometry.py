"""Maps taken from the model's input back onto the user's photo.

The model saw a box of the photo (:class:`seewhy.inputs.Photo`) resized to
its input size; each photo pixel whose centre lies in that box samples the
map at the matching input position (bilinear for maps, nearest for labels),
and pixels outside the box (cropped away) get no value.
"""

from __future__ import annotations

import numpy as np

from ..inputs import Photo

__all__ = ["labels_onto_photo", "onto_photo"]


def _positions(
    out_len: int, in_len: int, start: float, stop: float
) -> tuple[np.ndarray, np.ndarray]:
    """Input positions of the photo's pixel centres along one axis, and which lie in the box."""
    centres = np.arange(out_len, dtype=np.float64) + 0.5
    span = max(stop - start, 1e-12)
    position = (centres - start) * (in_len / span) - 0.5
    inside = (centres >= start) & (centres <= stop)
    return position, inside


def _bilinear(
    out_len: int, in_len: int, start: float, stop: float
) -> tuple[np.ndarray, np.ndarray]:
    """(out_len, in_len) interpolation weights of one axis, and the inside flags."""
    position, inside = _positions(out_len, in_len, start, stop)
    position = np.clip(position, 0.0, in_len - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, in_len - 1)
    frac = (position - low).astype(np.float32)
    weights = np.zeros((out_len, in_len), np.float32)
    rows = np.arange(out_len)
    np.add.at(weights, (rows, low), 1.0 - frac)
    np.add.at(weights, (rows, high), frac)
    return weights, inside


def onto_photo(values: np.ndarray, photo: Photo) -> tuple[np.ndarray, np.ndarray]:
    """A map at the model's input size drawn onto ``photo``: (values (H, W), inside (H, W)).

    Outside the box the model saw, values are 0 and ``inside`` is False.

    Parameters
    ----------
    values : numpy.ndarray
        (h, w) map at the model's input size.
    photo : Photo
        The picture as given and the box of it the model saw.

    Returns
    -------
    tuple of numpy.ndarray
        The values at the photo's size, and where the model saw the photo.
    """
    height, width = photo.picture.shape[:2]
    top, left, bottom, right = photo.box
    rows, row_in = _bilinear(height, values.shape[0], top, bottom)
    cols, col_in = _bilinear(width, values.shape[1], left, right)
    clean = np.nan_to_num(values.astype(np.float32), nan=0.0)
    out = rows @ clean @ cols.T
    inside = row_in[:, None] & col_in[None, :]
    return np.where(inside, out, np.float32(0.0)).astype(np.float32), inside


def labels_onto_photo(labels: np.ndarray, photo: Photo) -> tuple[np.ndarray, np.ndarray]:
    """A label image (superpixels) at the input size onto ``photo``, nearest neighbour.

    Outside the box the label is -1 and ``inside`` is False.
    """
    height, width = photo.picture.shape[:2]
    top, left, bottom, right = photo.box
    row_pos, row_in = _positions(height, labels.shape[0], top, bottom)
    col_pos, col_in = _positions(width, labels.shape[1], left, right)
    r = np.clip(np.floor(row_pos + 0.5), 0, labels.shape[0] - 1).astype(np.intp)
    c = np.clip(np.floor(col_pos + 0.5), 0, labels.shape[1] - 1).astype(np.intp)
    inside = row_in[:, None] & col_in[None, :]
    out = np.where(inside, labels[r[:, None], c[None, :]], -1)
    return out.astype(np.int64), inside
