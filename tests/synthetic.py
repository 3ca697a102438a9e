"""A tiny synthetic image set with known object positions, and a tiny CNN trained on it.

Why: explanation methods can only be tested for *where* they look when we
know where the evidence is. Each picture is a noisy, blotchy background with
one bright object (a square or a disc) filled with a stripe pattern; the class
is the pattern's orientation (horizontal, vertical, checker). Mean colour and
area are the same in distribution for every class, so a classifier has to
look at the object, and the object's mask and box are exact ground truth.

The data generator is numpy only (a Keras trainer can reuse it); the torch
trainer takes a few seconds on two CPU cores and is cached per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from seewhy.preprocess import Preprocess

__all__ = [
    "CLASSES",
    "PREPROCESS",
    "SIZE",
    "SyntheticSet",
    "box_share",
    "make_dataset",
    "mass_inside",
    "peak_inside",
    "trained_torch_cnn",
]

SIZE = 32
CLASSES = ("horizontal", "vertical", "checker")
# Pictures become inputs as (x / 255 - 0.5) / 0.25, roughly zero mean, unit spread.
PREPROCESS = Preprocess(size=(SIZE, SIZE), resize=None, mean=(0.5,) * 3, std=(0.25,) * 3)


@dataclass(frozen=True)
class SyntheticSet:
    """Pictures with their class and the exact place of the object."""

    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64, index into CLASSES
    masks: np.ndarray  # (N, H, W) bool, True on the object
    boxes: np.ndarray  # (N, 4) int64: top, left, bottom, right (exclusive)

    def inputs(self, preprocess: Preprocess = PREPROCESS) -> np.ndarray:
        """Model inputs (N, H, W, 3) float32."""
        return preprocess.normalise(self.images)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: Any) -> SyntheticSet:
        return SyntheticSet(
            self.images[index], self.labels[index], self.masks[index], self.boxes[index]
        )


def _smooth_noise(rng: np.random.Generator, n: int, size: int, cells: int) -> np.ndarray:
    """(n, size, size) blotchy noise in [0, 1]: a coarse random grid, bilinearly enlarged."""
    coarse = rng.random((n, cells + 1, cells + 1))
    pos = np.linspace(0, cells, size)
    lo = np.minimum(pos.astype(np.int64), cells - 1)
    frac = pos - lo
    rows = coarse[:, lo, :] * (1 - frac)[None, :, None] + coarse[:, lo + 1, :] * frac[None, :, None]
    return rows[:, :, lo] * (1 - frac)[None, None, :] + rows[:, :, lo + 1] * frac[None, None, :]


def _pattern(kind: int, yy: np.ndarray, xx: np.ndarray, phase: tuple[int, int]) -> np.ndarray:
    """0/1 stripes of period 4 on the grid (yy, xx): 0 horizontal, 1 vertical, 2 checker."""
    rows = ((yy + phase[0]) // 2) % 2
    cols = ((xx + phase[1]) // 2) % 2
    return np.asarray([rows, cols, rows ^ cols][kind], dtype=np.float64)


def make_dataset(n: int, *, size: int = SIZE, seed: int = 0) -> SyntheticSet:
    """``n`` pictures, classes balanced, everything drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % len(CLASSES)
    rng.shuffle(labels)
    background = 0.15 + 0.4 * _smooth_noise(rng, n, size, 4)[..., None] * rng.uniform(
        0.6, 1.0, (n, 1, 1, 3)
    )
    images = background + rng.normal(0.0, 0.04, (n, size, size, 3))
    masks = np.zeros((n, size, size), dtype=bool)
    boxes = np.zeros((n, 4), dtype=np.int64)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        side = int(rng.integers(size // 3, size // 3 + 5))
        top, left = (int(v) for v in rng.integers(1, size - side, 2))
        if rng.random() < 0.5:
            shape = (yy >= top) & (yy < top + side) & (xx >= left) & (xx < left + side)
        else:
            c = (side - 1) / 2.0
            shape = (yy - top - c) ** 2 + (xx - left - c) ** 2 <= (c + 0.5) ** 2
        phase = (int(rng.integers(0, 4)), int(rng.integers(0, 4)))
        pattern = _pattern(int(labels[i]), yy, xx, phase)
        colour = rng.uniform(0.75, 1.0, 3)
        obj = (0.55 + 0.45 * pattern)[..., None] * colour
        images[i][shape] = obj[shape]
        masks[i] = shape
        rows, cols = np.nonzero(shape)
        boxes[i] = (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
    pictures = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)
    return SyntheticSet(pictures, labels, masks, boxes)


# -- scores for "does the map look at the object" ---------------------------------


def mass_inside(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(N,) share of each map's (non-negative) mass that lies on the object."""
    m = np.maximum(np.asarray(maps, dtype=np.float64), 0.0)
    total = m.reshape(len(m), -1).sum(axis=1)
    inside = (m * masks).reshape(len(m), -1).sum(axis=1)
    return np.where(total > 0, inside / np.maximum(total, 1e-30), 0.0)


def box_share(masks: np.ndarray) -> np.ndarray:
    """(N,) share of the picture's area the object covers (the chance level of mass_inside)."""
    return np.asarray(masks, dtype=np.float64).reshape(len(masks), -1).mean(axis=1)


def peak_inside(maps: np.ndarray, boxes: np.ndarray, *, margin: int = 1) -> np.ndarray:
    """(N,) bool: the map's maximum lies in the object's box (grown by ``margin``)."""
    n, _, w = maps.shape
    flat = np.asarray(maps).reshape(n, -1).argmax(axis=1)
    r, c = np.divmod(flat, w)
    top, left, bottom, right = (boxes[:, k] for k in range(4))
    return (r >= top - margin) & (r < bottom + margin) & (c >= left - margin) & (c < right + margin)


# -- a tiny torch CNN ------------------------------------------------------------


def _torch_model_class() -> Any:
    import torch
    from torch import nn

    class TinyCNN(nn.Module):
        """Conv-ReLU stack with global average pooling: ``features`` ends in an 8x8 map."""

        def __init__(self, classes: int = len(CLASSES), width: int = 16) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Conv2d(width, 2 * width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Conv2d(2 * width, 2 * width, 3, padding=1),
                nn.ReLU(inplace=True),
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head = nn.Linear(2 * width, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.flatten(self.pool(self.features(x)), 1))

    return TinyCNN


def __getattr__(name: str) -> Any:  # TinyCNN without importing torch at module import
    if name == "TinyCNN":
        return _torch_model_class()
    raise AttributeError(name)


@lru_cache(maxsize=4)
def trained_torch_cnn(
    *, n: int = 1000, epochs: int = 4, seed: int = 0, width: int = 16
) -> tuple[Any, float]:
    """A TinyCNN trained on ``make_dataset(n, seed=seed)``, in eval mode, and its accuracy.

    Accuracy is measured on a separate set drawn from ``seed + 1000``. Cached:
    callers must not change the model (seewhy promises never to).
    """
    import torch
    from torch import nn

    torch.manual_seed(seed)
    data = make_dataset(n, seed=seed)
    x = torch.from_numpy(data.inputs()).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(data.labels)
    model = _torch_model_class()(width=width)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread is fastest, and cores are shared
    try:
        model.train()
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, 50):
                idx = order[start : start + 50]
                opt.zero_grad(set_to_none=True)
                loss_fn(model(x[idx]), y[idx]).backward()
                opt.step()
        model.eval()
        for p in model.parameters():
            p.grad = None
        test = make_dataset(600, seed=seed + 1000)
        with torch.no_grad():
            xt = torch.from_numpy(test.inputs()).permute(0, 3, 1, 2).contiguous()
            accuracy = float((model(xt).argmax(1).numpy() == test.labels).mean())
    finally:
        torch.set_num_threads(threads)
    return model, accuracy
