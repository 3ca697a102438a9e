"""Attention rollout and generic attention written slowly from the papers (numpy only).

Shared by tests/test_attention.py (PyTorch) and tests/test_keras_transformers.py
(every Keras backend, where timm and torchvision must not be imported).
"""

from __future__ import annotations

import numpy as np

Readout = tuple[tuple[int, float], ...]
CLASS_TOKEN: Readout = ((0, 1.0),)


def read_row(r: np.ndarray, prefix: int, readout: Readout, patches: float) -> np.ndarray:
    """The relevance the head's tokens get: the readout tokens' rows of R, weighted, plus
    ``patches`` times the mean of the patch tokens' rows; over the patch tokens."""
    row = sum((w * r[token] for token, w in readout), np.zeros(r.shape[1]))
    if patches:
        row = row + patches * r[prefix:].mean(axis=0)
    return row[prefix:]


def rollout_reference(
    attentions: list[np.ndarray],
    prefix: int,
    fusion: str = "mean",
    discard: float = 0.0,
    start: int = 0,
    readout: Readout = CLASS_TOKEN,
    patches: float = 0.0,
) -> np.ndarray:
    """Abnar & Zuidema (2020): per image, R = prod_l norm(0.5 A_l + 0.5 I); the row of the
    tokens the head reads (the class token's, for most)."""
    n, _, t, _ = attentions[0].shape
    maps = []
    for i in range(n):
        r = np.eye(t)
        for a in attentions[start:]:
            fused = {"mean": a[i].mean(0), "max": a[i].max(0), "min": a[i].min(0)}[fusion]
            fused = fused.astype(np.float64).copy()
            if discard:
                cut = int(t * t * discard)
                order = np.argsort(fused.ravel(), kind="stable")[:cut]
                own = fused[0, 0]
                fused.ravel()[order] = 0.0
                fused[0, 0] = own
            step = 0.5 * fused + 0.5 * np.eye(t)
            step = step / step.sum(axis=1, keepdims=True)
            r = step @ r
        maps.append(read_row(r, prefix, readout, patches))
    return np.array(maps)


def gae_reference(
    attentions: list[np.ndarray],
    grads: list[np.ndarray],
    prefix: int,
    readout: Readout = CLASS_TOKEN,
    patches: float = 0.0,
) -> np.ndarray:
    """Chefer, Gur & Wolf (2021): R = I; R += mean_h (grad * A)^+ R per block; the head's row."""
    n, heads, t, _ = attentions[0].shape
    maps = []
    for i in range(n):
        r = np.eye(t)
        for a, g in zip(attentions, grads, strict=True):
            cam = np.zeros((t, t))
            for h in range(heads):
                cam += np.maximum(g[i, h] * a[i, h], 0.0)
            r = r + (cam / heads) @ r
        maps.append(read_row(r, prefix, readout, patches))
    return np.array(maps)
