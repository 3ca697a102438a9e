"""A tiny segmenter for the shapes set: per-pixel background or shape class, in torch.

Why: the segmentation demo needs a model whose ``Region`` explanation can be
checked against the truth, trained in seconds on a CPU. The set's masks give
every pixel's class (0 is background, ``1 + label`` the shape), so a few
epochs of per-pixel cross-entropy suffice. It returns a dict with ``"out"``,
as torchvision's segmentation models do.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..errors import BackendError
from ..preprocess import ModelSpec
from .data import ShapesData
from .training import Schedule, torch_inputs, train_new_torch_model

__all__ = ["pixel_labels", "predict_pixels", "train_torch_segmenter"]


def pixel_labels(data: ShapesData) -> np.ndarray:
    """(N, H, W) int64: 0 on the background, 1 + the picture's label on its object.

    Parameters
    ----------
    data : ShapesData
        Pictures with their masks and labels.
    """
    return np.where(data.masks, data.labels[:, None, None] + 1, 0).astype(np.int64)


@functools.lru_cache(maxsize=1)
def _segmenter_class() -> type:
    """The segmenter's class, defined on first use so this module needs no torch."""
    import torch
    from torch import nn

    class TinySegmenter(nn.Module):
        """Conv blocks at full, half and quarter resolution, then back up: logits per pixel.

        ``encoder`` ends at a quarter of the input size (16 x 16 at 64 px),
        which sees a whole shape; ``head`` brings it back to the input size
        with the full-size features added in.
        """

        def __init__(self, classes: int, width: int = 10) -> None:
            super().__init__()

            def block(a: int, b: int) -> nn.Module:
                return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU())

            self.stem = block(3, width)
            self.encoder = nn.Sequential(
                nn.MaxPool2d(2),
                block(width, 2 * width),
                nn.MaxPool2d(2),
                block(2 * width, 2 * width),
                block(2 * width, 2 * width),
            )
            self.up = nn.Upsample(scale_factor=4, mode="bilinear", align_corners=False)
            self.head = nn.Sequential(block(3 * width, width), nn.Conv2d(width, classes, 1))

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            near = self.stem(x)
            far = self.up(self.encoder(near))
            return {"out": self.head(torch.cat([near, far], dim=1))}

    return TinySegmenter


def train_torch_segmenter(
    data: ShapesData,
    *,
    epochs: int = 6,
    batch_size: int = 32,
    lr: float = 1e-2,
    width: int = 10,
    seed: int = 0,
) -> Any:
    """Train the tiny segmenter on ``data``'s masks; returned in eval mode with a spec.

    Its classes are ``("background", *data.classes)``. About 10 s for 800
    pictures of 64 px on one CPU core. The global RNG is left alone.

    Parameters
    ----------
    data : ShapesData
        The pictures and masks to learn.
    epochs : int
        Passes over the data.
    batch_size : int
        Pictures per optimiser step.
    lr : float
        The one-cycle schedule's peak learning rate.
    width : int
        Channels at full resolution (twice that below).
    seed : int
        Seeds the weights and the shuffling.
    """
    try:
        import torch
        from torch import nn
    except ImportError as exc:
        raise BackendError(
            f"train_torch_segmenter needs PyTorch ({exc}); pip install torch"
        ) from exc
    schedule = Schedule.checked(
        "train_torch_segmenter", epochs=epochs, batch_size=batch_size, lr=lr, seed=seed
    )
    classes = ("background", *data.classes)
    loss_fn = nn.CrossEntropyLoss()
    return train_new_torch_model(
        lambda: _segmenter_class()(len(classes), width),
        data,
        pixel_labels(data),
        lambda out, want: loss_fn(out["out"], want),
        lambda parameters: torch.optim.Adam(parameters, lr=lr),
        schedule,
        ModelSpec(name="synthetic_segmenter", preprocess=data.preprocess, labels=classes),
    )


def predict_pixels(model: Any, data: ShapesData, batch_size: int = 64) -> np.ndarray:
    """(N, H, W) int64: the segmenter's class for each pixel of ``data``.

    Parameters
    ----------
    model : torch.nn.Module
        A segmenter from :func:`train_torch_segmenter`.
    data : ShapesData
        The pictures.
    batch_size : int
        Pictures per forward pass.
    """
    import torch

    x = torch_inputs(data)
    with torch.no_grad():
        chunks = [
            model(x[i : i + batch_size])["out"].argmax(1) for i in range(0, len(x), batch_size)
        ]
    return torch.cat(chunks).numpy().astype(np.int64)
