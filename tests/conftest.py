"""Shared fixtures: tiny models the tests build in milliseconds."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="the PyTorch tests need torch (pip install seewhy[torch])"
)
nn = torch.nn


def tiny_cnn(classes: int = 5, seed: int = 0) -> torch.nn.Module:
    """conv-relu-conv-relu, global average pooling, linear: a CAM-compatible head."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 16, 3, padding=1, stride=2),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, classes),
    ).eval()


@pytest.fixture
def model() -> torch.nn.Module:
    return tiny_cnn()


@pytest.fixture
def batch() -> np.ndarray:
    """Four preprocessed images, NCHW float32 (as a torch user would pass them)."""
    return np.random.default_rng(0).normal(size=(4, 3, 24, 24)).astype(np.float32)
