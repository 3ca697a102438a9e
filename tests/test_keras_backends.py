"""Run every Keras test file once per installed Keras backend, each in its own process.

A process can use one Keras backend only (``KERAS_BACKEND`` is read at
``import keras``), and TensorFlow must stay out of the main test process
(see keras_helpers). Each sub-run's output is shown when it fails.
"""

from __future__ import annotations

import pytest

from keras_helpers import installed_backends, run_on_backend

KERAS_FILES = [
    "tests/test_keras_backend.py",
    "tests/test_keras_zoo.py",
    "tests/test_keras_callback.py",
    "tests/test_keras_loading.py",
    "tests/test_keras_guided.py",
    "tests/test_keras_methods.py",
    "tests/test_keras_demo.py",
    "tests/test_keras_spec.py",
    "tests/test_keras_applications_pipeline.py",
    "tests/test_keras_targets.py",
    "tests/test_keras_transformers.py",
    "tests/test_keras_hub.py",
]


@pytest.mark.parametrize(
    "backend",
    installed_backends()
    or [pytest.param("none", marks=pytest.mark.skip(reason="keras is not installed"))],
)
def test_keras_suite_on_backend(backend: str) -> None:
    run_on_backend(backend, KERAS_FILES)


test_keras_suite_on_backend.keras_files = KERAS_FILES  # type: ignore[attr-defined]
