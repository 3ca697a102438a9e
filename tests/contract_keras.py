"""The method contract (``contract.py``) on a Keras model, for the Keras backend of this process.

Not collected by a plain ``pytest`` run (the name has no ``test_`` prefix):
``test_contract.py`` runs this file in one sub-process per installed Keras
backend, so every method is checked on TensorFlow, torch and JAX with one
Keras import each. To run it here:
``SEEWHY_KERAS_INPROCESS=1 KERAS_BACKEND=jax pytest tests/contract_keras.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

import seewhy
from contract import (
    BAD_CLASS,
    METHODS,
    SETTINGS,
    TORCH_ONLY_METHODS,
    TRANSFORMER_METHODS,
    check_batch_is_its_images,
    check_params_recorded,
    raises_and_leaves,
)
from keras_helpers import (
    all_layers,
    assert_same_state,
    current_backend,
    images,
    keras_or_skip,
    snapshot,
)
from models import gap_model, keras_tiny_vit, raising_keras_model
from seewhy.errors import SeewhyError

keras = keras_or_skip()


def state(model: Any) -> dict[str, Any]:
    """keras_helpers.snapshot, and on the torch backend also hooks, ``.grad`` and torch modes."""
    out = snapshot(keras, model)
    if current_backend() == "torch":
        import torch

        layers = [model, *all_layers(model)]
        out["torch"] = {
            "modes": (torch._C._len_torch_function_stack(), torch._C._len_torch_dispatch_stack()),
            "grad_enabled": torch.is_grad_enabled(),
            "grads": [w.path for w in model.weights if getattr(w.value, "grad", None) is not None],
            "hooks": {
                k: sum(len(v) for n, v in vars(m).items() if "hook" in n and isinstance(v, dict))
                for k, m in enumerate(layers)
            },
        }
    return out


def same_state(before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    assert_same_state(dict(before), dict(after))
    assert before.get("torch") == after.get("torch")


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return images(2, 12, seed=5)


@pytest.mark.parametrize("method", sorted(set(METHODS) - TORCH_ONLY_METHODS))
def test_contract(method: str, x: np.ndarray) -> None:
    """Success, bad target, a raising model, batch = images, then the recorded settings."""
    settings = SETTINGS[method]
    vit = method in TRANSFORMER_METHODS  # attention methods get a tiny Keras ViT
    model = keras_tiny_vit(keras, size=12, patch=4, dim=8) if vit else gap_model(keras)
    before = state(model)
    e = seewhy.explain(model, x, method, **settings)
    same_state(before, state(model))
    assert e.maps.shape == (2, 12, 12) and np.isfinite(e.maps).all()

    raises_and_leaves(
        lambda: state(model),
        same_state,
        lambda: seewhy.explain(model, x, method, target=BAD_CLASS, **settings),
        SeewhyError,
    )

    raising = (
        keras_tiny_vit(keras, size=12, patch=4, dim=8, tripwire=True)
        if vit
        else raising_keras_model(keras)
    )
    raising.get_layer("tripwire").armed = True
    raises_and_leaves(
        lambda: state(raising),
        same_state,
        lambda: seewhy.explain(raising, x, method, **settings),
        (RuntimeError, SeewhyError),
    )

    check_batch_is_its_images(lambda *a, **k: seewhy.explain(model, *a, **k), x, method, batch=e)
    check_params_recorded(method, e)


def test_the_raising_model_runs_while_disarmed(x: np.ndarray) -> None:
    """The tripwire alone changes nothing: the raising case fails for the right reason."""
    e = seewhy.explain(raising_keras_model(keras), x, "gradcam")
    assert e.maps.shape == (2, 12, 12)


@pytest.mark.parametrize("method", sorted(TORCH_ONLY_METHODS))
def test_torch_only_methods_are_refused_in_one_line(method: str, x: np.ndarray) -> None:
    """A Keras ViT asked for LeGrad: one line naming what is missing and what works."""
    model = keras_tiny_vit(keras, size=12, patch=4, dim=8)
    before = state(model)
    with pytest.raises(seewhy.errors.UnsupportedModel) as info:
        seewhy.explain(model, x, method)
    message = str(info.value)
    assert "\n" not in message and f"method: {method} needs" in message
    assert "attention-rollout" in message.split("methods that work with it:")[-1]
    same_state(before, state(model))
