"""The labelled pictures every synthetic set returns, with their exact ground truth."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..preprocess import Preprocess

__all__ = ["ShapesData", "preprocess_for"]


@dataclass(frozen=True, eq=False)
class ShapesData:
    """A labelled batch with its ground truth, all numpy.

    ``masks`` mark the object's pixels and ``boxes`` its bounding box as
    ``(x0, y0, x1, y1)`` with exclusive ends; ``shortcut_labels`` is the class
    each picture's shortcut names (-1 without one) and ``shortcut_masks`` where
    it is drawn.

    Attributes
    ----------
    images : numpy.ndarray
        (N, H, W, 3) uint8 pictures.
    labels : numpy.ndarray
        (N,) int64 classes.
    masks : numpy.ndarray
        (N, H, W) bool, the object's pixels.
    boxes : numpy.ndarray
        (N, 4) int64 ``(x0, y0, x1, y1)``, exclusive ends.
    shortcut_labels : numpy.ndarray
        (N,) int64, the class each shortcut names (-1: none).
    shortcut_masks : numpy.ndarray
        (N, H, W) bool, where the shortcut is drawn.
    classes : tuple of str
        The class names.
    shortcut : str or None
        The kind of shortcut planted.
    shortcut_rate : float or None
        How often the shortcut names the true label.
    """

    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64
    masks: np.ndarray  # (N, H, W) bool
    boxes: np.ndarray  # (N, 4) int64
    shortcut_labels: np.ndarray  # (N,) int64
    shortcut_masks: np.ndarray  # (N, H, W) bool
    classes: tuple[str, ...]
    shortcut: str | None = None
    shortcut_rate: float | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def size(self) -> int:
        """Side length of the square pictures."""
        return int(self.images.shape[1])

    @property
    def preprocess(self) -> Preprocess:
        """How these pictures become model inputs (the trainers use it)."""
        return preprocess_for(self.size)

    def inputs(self) -> np.ndarray:
        """Model inputs: float32 NHWC, normalised with :attr:`preprocess`."""
        return np.asarray(self.preprocess.normalise(self.images), dtype=np.float32)

    def subset(self, index: Any) -> ShapesData:
        """The items at ``index`` (a slice, an index array or a boolean mask)."""
        return replace(
            self,
            images=self.images[index],
            labels=self.labels[index],
            masks=self.masks[index],
            boxes=self.boxes[index],
            shortcut_labels=self.shortcut_labels[index],
            shortcut_masks=self.shortcut_masks[index],
        )

    def shuffled_labels(self, seed: int = 0) -> ShapesData:
        """The same pictures with labels permuted (for the data-randomisation sanity check)."""
        rng = np.random.default_rng(seed)
        return replace(self, labels=rng.permutation(self.labels))


def preprocess_for(size: int) -> Preprocess:
    """Inputs in about [-2, 2]: ``(x / 255 - 0.5) / 0.25``, no resizing needed.

    Parameters
    ----------
    size : int
        Side of the square pictures.
    """
    return Preprocess(
        size=(size, size), resize=None, mean=(0.5,) * 3, std=(0.25,) * 3, scale=1.0 / 255.0
    )
