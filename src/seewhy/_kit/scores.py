"""Softmax and target scores in numpy, and the one check of a ``score`` argument."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ..errors import InvalidInput

__all__ = [
    "SCORES",
    "Score",
    "check_score",
    "check_targets",
    "probabilities",
    "sigmoid",
    "softmax",
    "target_scores",
    "two_classes",
]

Score = Literal["logit", "probability"]
SCORES: tuple[Score, ...] = ("logit", "probability")


def check_score(score: Any) -> Score:
    """The score name, or the one-line error that names the choices."""
    for name in SCORES:
        if score == name:
            return name
    raise InvalidInput(f"score: expected 'logit' or 'probability', got {score!r}")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable: the row maximum is subtracted first)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function in float64 (no overflow for large negative logits)."""
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def probabilities(logits: np.ndarray, sigmoid_head: bool = False) -> np.ndarray:
    """Class probabilities: each label's own sigmoid for a sigmoid or one-output head, else softmax.

    A softmax over one output is 1 whatever the logit, so a one-output model
    (a binary classifier) always reads as a sigmoid.
    """
    z = np.asarray(logits)
    one = z.ndim == 2 and z.shape[1] == 1
    return sigmoid(z) if sigmoid_head or one else softmax(z)


def two_classes(rows: np.ndarray) -> np.ndarray:
    """A one-logit head's rows (a (1, ...) weight or bias) as its two classes': (-row, +row).

    The numpy side of :func:`seewhy.targets.class_scores`, for the methods
    that read the classifier itself (CAM): class 0 scores -z, class 1 +z.
    Any other number of rows is returned as it is.
    """
    values = np.asarray(rows)
    return np.concatenate([-values, values]) if len(values) == 1 else values


def target_scores(
    logits: np.ndarray, targets: np.ndarray, score: Any, sigmoid_head: bool = False
) -> np.ndarray:
    """Score of each row's target class (float64): the logit, or the class's probability."""
    if check_score(score) == "probability":
        values = probabilities(logits, sigmoid_head)
    else:
        values = np.asarray(logits, float)
    return values[np.arange(len(values)), np.asarray(targets, dtype=np.int64)]


def check_targets(targets: Any, count: int, classes: int) -> np.ndarray:
    """(count,) int64 class indices inside 0..classes-1, or a one-line error."""
    t = np.asarray(targets)
    if t.shape != (count,):
        raise InvalidInput(f"target: expected one class per image, got shape {t.shape}")
    t = t.astype(np.int64)
    bad = t[(t < 0) | (t >= classes)]
    if bad.size:
        raise InvalidInput(f"target: class {int(bad[0])} is outside the model's 0..{classes - 1}")
    return t
