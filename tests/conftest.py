"""Shared fixtures over the test models in ``models.py`` (the one place they live).

Torch is optional here: without it the torch fixtures skip their tests, files
that need torch skip at import with the reason, and the numpy-only tests (the
numpy backend's method math, black boxes, explain's checks) still run;
``test_torchless.py`` runs those with torch blocked in every suite run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import models

try:  # first, as before: TensorFlow imported ahead of torch can crash (keras_helpers)
    import torch
except ImportError:
    torch = None
_HAS_TORCH = torch is not None


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on small shared CPUs, two threads make tiny models many times slower."""
    if not _HAS_TORCH:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _torch_threads_left_as_they_were(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test whose code changed torch's thread count fails (and the count is put back).

    seewhy must leave the process's settings as it found them: numba's first use once
    set torch's threads to every core, which slowed every later test and changed users'
    own settings. This catches the next library that does the same.
    """
    if not _HAS_TORCH:
        yield
        return
    from PIL import Image

    before = torch.get_num_threads()
    functions = (torch.save, Image.open)  # ultralytics replaces both when it is imported
    yield
    after = torch.get_num_threads()
    if after != before:
        torch.set_num_threads(before)
        pytest.fail(f"{request.node.nodeid} left torch on {after} threads, not {before}")
    if (torch.save, Image.open) != functions:
        torch.save, Image.open = functions
        pytest.fail(f"{request.node.nodeid} left torch.save or PIL.Image.open replaced")


def _torch_or_skip() -> None:
    if not _HAS_TORCH:
        pytest.skip("the PyTorch tests need torch (pip install seewhy[torch])")


@pytest.fixture
def model() -> Any:
    """:func:`models.tiny_cnn`: 5 classes, a 12x12 map for 24x24 inputs, eval mode."""
    _torch_or_skip()
    return models.tiny_cnn()


@pytest.fixture
def batch() -> np.ndarray:
    """Four preprocessed images, NCHW float32 (as a torch user would pass them)."""
    return np.random.default_rng(0).normal(size=(4, 3, 24, 24)).astype(np.float32)


@pytest.fixture
def audit_net() -> Any:
    """:func:`models.audit_model`: two classes, a 32x32 spec, as the audit tests use it."""
    _torch_or_skip()
    return models.audit_model()


@pytest.fixture(scope="session")
def trained_stripes() -> Any:
    """The CNN trained on the stripes set (cached; never change it), accuracy checked."""
    _torch_or_skip()
    net, accuracy = models.trained_torch_cnn()
    assert accuracy > 0.95
    return net


@pytest.fixture
def numpy_backend() -> Any:
    """A framework-free backend over the closed-form model of ``numpy_backend.py``."""
    from numpy_backend import NumpyBackend, closed_form_model

    return NumpyBackend(closed_form_model())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keras sub-run items last: the main process waits on them only after its own tests."""
    from keras_helpers import keras_files_of

    items.sort(key=lambda item: keras_files_of(item) is not None)  # stable: order kept


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the selected Keras sub-runs in the background as soon as the tests are known.

    Each Keras sub-run is a process of its own (keras_helpers); queued now, they
    run one at a time beside the main process's single-threaded tests instead
    of after them, and each Keras test item only waits for its own result.
    """
    from keras_helpers import keras_files_of, start_on_backend

    for item in session.items:
        files = keras_files_of(item)
        callspec = getattr(item, "callspec", None)
        if files and callspec is not None and callspec.params.get("backend") != "none":
            start_on_backend(callspec.params["backend"], files)
