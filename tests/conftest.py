"""Shared fixtures: tiny models the tests build in milliseconds."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="the PyTorch tests need torch (pip install seewhy[torch])"
)
nn = torch.nn


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on small shared CPUs, two threads make tiny models many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_cnn(
    classes: int = 5,
    seed: int = 0,
    *,
    widths: tuple[int, int] = (8, 16),
    stride: int = 2,
    inplace: bool = True,
    dtype: torch.dtype = torch.float32,
) -> torch.nn.Module:
    """conv-relu-conv-relu, global average pooling, linear: a CAM-compatible head.

    The second convolution has ``stride``; float64 (``dtype``) suits checks
    against finite differences and plain loops.
    """
    torch.manual_seed(seed)
    first, second = widths
    return (
        nn.Sequential(
            nn.Conv2d(3, first, 3, padding=1),
            nn.ReLU(inplace=inplace),
            nn.Conv2d(first, second, 3, padding=1, stride=stride),
            nn.ReLU(inplace=inplace),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(second, classes),
        )
        .to(dtype)
        .eval()
    )


def one_conv(width: int, classes: int, seed: int = 0) -> torch.nn.Module:
    """conv-relu, global average pooling, linear, in eval mode: ``width`` sets the activation."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, classes),
    ).eval()


def audit_model(
    size: tuple[int, int] | None = (32, 32), labels: tuple[str, ...] = ("a", "b")
) -> torch.nn.Module:
    """conv-relu, GAP, linear to two classes, in eval mode: the audit tests' model.

    ``size`` (H, W) and ``labels`` go into its ``seewhy_spec``; ``size=None``
    leaves the spec out (a plain module, as a user's saved file would be).
    """
    import seewhy

    model = one_conv(4, len(labels))
    if size is not None:
        model.seewhy_spec = seewhy.ModelSpec(
            name="tiny", preprocess=seewhy.Preprocess(size=size), labels=labels
        )
    return model


@pytest.fixture
def model() -> torch.nn.Module:
    return tiny_cnn()


@pytest.fixture
def batch() -> np.ndarray:
    """Four preprocessed images, NCHW float32 (as a torch user would pass them)."""
    return np.random.default_rng(0).normal(size=(4, 3, 24, 24)).astype(np.float32)
