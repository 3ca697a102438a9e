"""Run every Keras test file once per installed Keras backend, each in its own process.

A process can use one Keras backend only (``KERAS_BACKEND`` is read at
``import keras``), and TensorFlow must stay out of the main test process
(see keras_helpers). Each sub-run's output is shown when it fails.

The files are found, not listed: a Keras file skips itself in the main
process (``keras_or_skip``), so one missing from a hand-kept list would
never run anywhere and nothing would say so.
"""

from __future__ import annotations

import pytest

from keras_helpers import ROOT, installed_backends, keras_test_files, run_on_backend

KERAS_FILES = keras_test_files()


@pytest.mark.parametrize(
    "backend",
    installed_backends()
    or [pytest.param("none", marks=pytest.mark.skip(reason="keras is not installed"))],
)
def test_keras_suite_on_backend(backend: str) -> None:
    run_on_backend(backend, KERAS_FILES)


test_keras_suite_on_backend.keras_files = KERAS_FILES  # type: ignore[attr-defined]


def _skips_outside_a_sub_run(path: str) -> bool:
    return "keras_or_skip(" in (ROOT / path).read_text(encoding="utf-8")


def test_every_file_that_waits_for_a_sub_run_gets_one() -> None:
    """A test file that skips itself in the main process (``keras_or_skip``) is one the
    sub-runs take, whatever its name; and every file they take does skip there (else its
    Keras import would bring TensorFlow into the main process)."""
    collected = [*(ROOT / "tests").glob("test_*.py"), *(ROOT / "tests").glob("*_test.py")]
    waiting = {
        f"tests/{path.name}"
        for path in collected
        if path.name != "test_keras_backends.py" and _skips_outside_a_sub_run(f"tests/{path.name}")
    }
    assert waiting, "no Keras test file found: the discovery looks in the wrong place"
    assert sorted(waiting) == KERAS_FILES, (
        "Keras test files must be named tests/test_keras_*.py and call keras_or_skip(); "
        f"never run: {sorted(waiting - set(KERAS_FILES))}, "
        f"run but not skipped in the main process: {sorted(set(KERAS_FILES) - waiting)}"
    )
    assert "tests/test_keras_backends.py" not in KERAS_FILES  # the runner never runs itself
