"""Tiny Keras models and checks shared by the Keras test files.

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


def current_backend() -> str:
    import keras

    return str(keras.backend.backend())


def installed_backends() -> list[str]:
    """Keras backends whose framework is installed (none without keras)."""
    if importlib.util.find_spec("keras") is None:
        return []
    return [name for name, module in BACKENDS.items() if importlib.util.find_spec(module)]


def run_on_backend(backend: str, files: list[str], timeout: float = 600) -> None:
    """Run the given test files with ``KERAS_BACKEND=backend``; fail with their output."""
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        INPROCESS_ENV: "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *files]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode not in (0, 5):  # 5: nothing collected (all skipped by marks)
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise AssertionError(f"KERAS_BACKEND={backend} sub-run failed:\n{tail}")


# -- models -------------------------------------------------------------------------


def conv_stack(keras: Any, prefix: str = "", data_format: str = "channels_last") -> list[Any]:
    """conv-relu-conv-relu, the feature extractor of every tiny model here."""
    layers = keras.layers
    return [
        layers.Conv2D(4, 3, padding="same", data_format=data_format, name=f"{prefix}conv1"),
        layers.ReLU(name=f"{prefix}relu1"),
        layers.Conv2D(6, 3, strides=2, data_format=data_format, name=f"{prefix}conv2"),
        layers.Activation("relu", name=f"{prefix}act"),
    ]


def gap_model(keras: Any, classes: int = 5, seed: int = 0) -> Any:
    """Functional: conv stack, global average pooling, Dense with softmax."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12, 12, 3), name="image")
    x = inputs
    for layer in conv_stack(keras):
        x = layer(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, out, name="gap_model")


def flatten_model(keras: Any, classes: int = 5, seed: int = 1) -> Any:
    """Sequential: conv stack, Flatten, Dense with softmax.

    Through Flatten the gradient differs position by position, so HiResCAM,
    LayerCAM and Grad-CAM++ give different maps; it equals the Dense kernel
    column, reshaped, which makes an exact reference.
    """
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            *conv_stack(keras),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(classes, activation="softmax", name="head"),
        ],
        name="flatten_model",
    )


def nested_model(keras: Any, classes: int = 5, seed: int = 2) -> Any:
    """A functional base inside a Sequential, as with a keras.applications base."""
    keras.utils.set_random_seed(seed)
    base_in = keras.Input((12, 12, 3))
    x = base_in
    for layer in conv_stack(keras):
        x = layer(x)
    base = keras.Model(base_in, x, name="base")
    return keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            base,
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(classes, activation="softmax", name="head"),
        ],
        name="nested_model",
    )


def subclassed_model(keras: Any, classes: int = 5, seed: int = 3) -> Any:
    """A subclassed model: no graph to walk (the best-effort path)."""
    keras.utils.set_random_seed(seed)

    class Net(keras.Model):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__(name="subclassed")
            self.conv1, self.relu1, self.conv2, self.act = conv_stack(keras)
            self.gap = keras.layers.GlobalAveragePooling2D(name="gap")
            self.head = keras.layers.Dense(classes, activation="softmax", name="head")

        def call(self, x: Any) -> Any:
            x = self.act(self.conv2(self.relu1(self.conv1(x))))
            return self.head(self.gap(x))

    model = Net()
    model(np.zeros((1, 12, 12, 3), np.float32))
    return model


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
