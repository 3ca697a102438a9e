"""The Keras sub-process runner and the checks shared by the Keras test files.

The Keras backend (tensorflow / torch / jax) is fixed per process by
``KERAS_BACKEND`` before ``import keras``. So the Keras test files never run
in the main pytest process: ``test_keras_backends.py`` runs them in one
subprocess per installed backend. This also keeps TensorFlow out of the
main process, where importing it before torch's triton (pulled in by
torchvision.ops / torch._dynamo) crashes the interpreter with TF 2.21.

To run one file here directly:
``SEEWHY_KERAS_INPROCESS=1 KERAS_BACKEND=torch pytest tests/test_keras_backend.py``.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}  # name -> module
INPROCESS_ENV = "SEEWHY_KERAS_INPROCESS"  # set in the per-backend subprocesses


def keras_or_skip() -> Any:
    """Keras, inside a per-backend subprocess; elsewhere the whole module is skipped."""
    import pytest

    if not os.environ.get(INPROCESS_ENV):
        pytest.skip(
            "Keras tests run in one subprocess per Keras backend (test_keras_backends.py)",
            allow_module_level=True,
        )
    return pytest.importorskip(
        "keras", reason="the Keras tests need keras (pip install seewhy[keras])"
    )


def keras_test_files() -> list[str]:
    """Every ``tests/test_keras_*.py`` but the runner, relative to the root, sorted.

    Sorted so each backend's sub-run takes the files in the same order on every machine.
    """
    runner = "test_keras_backends.py"
    found = (ROOT / "tests").glob("test_keras_*.py")
    return sorted(f"tests/{path.name}" for path in found if path.name != runner)


def current_backend() -> str:
    import keras

    return str(keras.backend.backend())


def installed_backends() -> list[str]:
    """Keras backends whose framework is installed (none without keras)."""
    if importlib.util.find_spec("keras") is None:
        return []
    return [name for name, module in BACKENDS.items() if importlib.util.find_spec(module)]


def _command(backend: str, files: list[str]) -> tuple[list[str], dict[str, str]]:
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        INPROCESS_ENV: "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *files], env


def _sub_run(backend: str, files: list[str], timeout: float) -> str | None:
    """One sub-run; None when it passed, else the tail of its output."""
    cmd, env = _command(backend, files)
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    _LIVE.append(proc)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return f"timed out after {timeout:.0f} s:\n{out[-4000:]}"
    finally:
        _LIVE.remove(proc)
    if proc.returncode in (0, 5):  # 5: nothing collected (all skipped by marks)
        return None
    return out[-4000:]


# Sub-runs started early (see start_on_backend), by (backend, files); one at a time.
_STARTED: dict[tuple[str, tuple[str, ...]], concurrent.futures.Future[str | None]] = {}
_QUEUE = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="keras-sub")
_LIVE: list[subprocess.Popen[str]] = []


@atexit.register
def _stop_sub_runs() -> None:
    """An interrupted session leaves no sub-run behind."""
    for future in _STARTED.values():
        future.cancel()
    for proc in list(_LIVE):
        proc.kill()


def start_on_backend(backend: str, files: list[str], timeout: float = 600) -> None:
    """Queue the sub-run now, so it runs beside the main process's tests.

    The main process runs single-threaded tests and a sub-run is one more
    process, so on a small CPU the Keras files then cost little extra wall
    time; ``conftest.py`` starts the selected ones when collection finishes.
    """
    key = (backend, tuple(files))
    if key not in _STARTED:
        _STARTED[key] = _QUEUE.submit(_sub_run, backend, files, timeout)


def run_on_backend(backend: str, files: list[str], timeout: float = 600) -> None:
    """Run the given test files with ``KERAS_BACKEND=backend``; fail with their output."""
    start_on_backend(backend, files, timeout)
    failed = _STARTED[(backend, tuple(files))].result()
    if failed is not None:
        raise AssertionError(f"KERAS_BACKEND={backend} sub-run failed:\n{failed}")


def keras_files_of(item: Any) -> list[str] | None:
    """The files a collected test item runs in a Keras sub-run (``keras_files`` on its function)."""
    files = getattr(getattr(item, "function", None), "keras_files", None)
    return list(files) if files else None


# -- data and tensors (the Keras test models are in models.py) ---------------------


def images(n: int = 3, size: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype(np.float32)


def to_numpy(keras: Any, t: Any) -> np.ndarray:
    """float64 numpy of a tensor or variable of any Keras backend (no deprecated paths)."""
    t = getattr(t, "value", t)
    if hasattr(t, "detach"):
        t = t.detach().cpu().numpy()
    elif hasattr(t, "numpy"):
        t = t.numpy()
    return np.asarray(t, dtype=np.float64)


# -- state of a model, to prove it is left as it was ----------------------------------


def all_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(all_layers(layer))
    return out


def snapshot(keras: Any, model: Any) -> dict[str, Any]:
    """Everything seewhy promises not to change."""
    layers = all_layers(model)
    return {
        "weights": [to_numpy(keras, w) for w in model.weights],
        "trainable": [layer.trainable for layer in layers] + [model.trainable],
        "activation": [getattr(layer, "activation", None) for layer in layers],
        "count": len(layers),
        "attributes": [sorted(vars(layer)) for layer in layers] + [sorted(vars(model))],
        "nodes": [len(getattr(layer, "_inbound_nodes", ())) for layer in layers],
    }


def assert_same_state(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert len(before["weights"]) == len(after["weights"])
    for a, b in zip(before["weights"], after["weights"], strict=True):
        np.testing.assert_array_equal(a, b)
    for key in ("trainable", "activation", "count", "attributes", "nodes"):
        assert before[key] == after[key], key


#: Scripts registered by main-process test files (:func:`keras_script`), run together.
_SCRIPTS: dict[str, tuple[str, str | None]] = {}

# Runs each script as ``__main__`` with its own argv, in turn, in one interpreter; its last
# stdout line (JSON) or its traceback is its entry in the one JSON line printed at the end.
_DRIVER = r"""
import contextlib, io, json, sys, traceback
jobs = json.loads(sys.stdin.read())
done = {}
for name, (source, argument) in jobs.items():
    sys.argv = ["-c", argument]
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(source, name, "exec"), {"__name__": "__main__"})
        done[name] = {"result": json.loads(printed.getvalue().strip().splitlines()[-1])}
    except BaseException:
        done[name] = {"error": traceback.format_exc()[-3000:]}
print(json.dumps(done))
"""


def keras_script(name: str, source: str, argument: str | None = None) -> None:
    """Register ``source`` (a Python program) to run with Keras on the torch backend.

    For main-process tests that need one Keras check of their own: the main
    process never imports Keras (it may bring TensorFlow in ahead of torch's
    triton). Every registered script runs in ONE fresh interpreter, so
    Keras and torch are imported once for all of them (about 8 s of CPU
    each time); :func:`keras_script_result` gives a test its script's
    outcome. ``argument`` is the script's ``sys.argv[1]``; None: a fresh
    empty folder of its own.
    """
    _SCRIPTS[name] = (source, argument)


_RESULTS: dict[str, Any] = {}


def keras_script_result(name: str, folders: Any) -> Any:
    """The JSON the registered script ``name`` printed last; its traceback fails the test.

    ``folders`` is pytest's ``tmp_path_factory``. The first call runs every
    script registered so far (:func:`keras_script`).
    """
    import json

    import pytest

    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed")
    if name not in _RESULTS:
        jobs = {
            key: (source, argument if argument is not None else str(folders.mktemp(key)))
            for key, (source, argument) in _SCRIPTS.items()
            if key not in _RESULTS
        }
        env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(ROOT / "src")}
        done = subprocess.run(
            [sys.executable, "-c", _DRIVER],
            input=json.dumps(jobs),
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        _RESULTS.update(json.loads(done.stdout.strip().splitlines()[-1]))
    outcome = _RESULTS[name]
    assert "error" not in outcome, outcome["error"]
    return outcome["result"]
