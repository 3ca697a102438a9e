"""The method contract (``contract.py``) on torch, and its Keras run, one sub-process a backend.

For every registered method: the model is byte-for-byte and flag-for-flag
as before after a success, a bad target and a model that raises (no hook,
no function or dispatch mode, no ``.grad``, no changed ``training`` or
``requires_grad`` is left); a batch gives its images' maps; every setting is
recorded in ``Explanation.params``.
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
    TRANSFORMER_METHODS,
    check_batch_is_its_images,
    check_params_recorded,
    check_table_covers_the_registry,
    raises_and_leaves,
)
from keras_helpers import installed_backends, run_on_backend
from models import contract_vit, raising_model, tiny_cnn
from seewhy.errors import SeewhyError

torch = pytest.importorskip("torch")


def torch_state(model: Any) -> dict[str, Any]:
    """Everything seewhy promises not to change on a torch model, and torch's global state."""
    module_api = torch.nn.modules.module
    modules = dict(model.named_modules())
    return {  # the modes first: a mode left on the stack would intercept the reads below
        "function_modes": torch._C._len_torch_function_stack(),
        "dispatch_modes": torch._C._len_torch_dispatch_stack(),
        "grad_enabled": torch.is_grad_enabled(),
        "bytes": {k: v.detach().cpu().numpy().tobytes() for k, v in model.state_dict().items()},
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "grads": [k for k, p in model.named_parameters() if p.grad is not None],
        "training": {k: m.training for k, m in modules.items()},
        "modules": [(k, type(m).__name__, id(m)) for k, m in modules.items()],
        "attributes": {k: sorted(vars(m)) for k, m in modules.items()},
        "hooks": {
            k: {name: len(v) for name, v in vars(m).items() if "hook" in name and _hooks(v)}
            for k, m in modules.items()
        },
        "global_hooks": {
            name: len(getattr(module_api, name))
            for name in dir(module_api)
            if name.startswith("_global_") and isinstance(getattr(module_api, name), dict)
        },
    }


def _hooks(value: Any) -> bool:
    """A non-empty hook registry (a dict of handles; some ``*hook*`` attributes are flags)."""
    return isinstance(value, dict) and len(value) > 0


def assert_same_torch_state(before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    for key in before:
        assert before[key] == after[key], key


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    """Three preprocessed images, NCHW float32 (tiny_cnn gives an 8x8 map for them)."""
    return np.random.default_rng(7).normal(size=(3, 3, 16, 16)).astype(np.float32)


def _net(method: str) -> Any:
    """The contract's model for ``method``: the tiny CNN, or a tiny ViT for attention methods."""
    return contract_vit() if method in TRANSFORMER_METHODS else tiny_cnn()


def test_the_table_covers_every_registered_method() -> None:
    check_table_covers_the_registry()


@pytest.mark.parametrize("method", METHODS)
def test_model_untouched_after_success(method: str, x: np.ndarray) -> None:
    net = _net(method)
    before = torch_state(net)
    e = seewhy.explain(net, x, method, **SETTINGS[method])
    assert_same_torch_state(before, torch_state(net))
    assert e.maps.shape == (3, 16, 16) and np.isfinite(e.maps).all()


@pytest.mark.parametrize("method", METHODS)
def test_model_untouched_after_a_bad_target(method: str, x: np.ndarray) -> None:
    net = _net(method)
    raises_and_leaves(
        lambda: torch_state(net),
        assert_same_torch_state,
        lambda: seewhy.explain(net, x, method, target=BAD_CLASS, **SETTINGS[method]),
        SeewhyError,
    )


@pytest.mark.parametrize("method", METHODS)
def test_model_untouched_after_the_model_raises(method: str, x: np.ndarray) -> None:
    """Raising on the first forward pass, and from the second on (inside the method's passes)."""
    net = raising_model(_net(method))
    net.fail_after = 0
    run = lambda: seewhy.explain(net, x, method, **SETTINGS[method])  # noqa: E731
    raises_and_leaves(
        lambda: torch_state(net), assert_same_torch_state, run, (RuntimeError, SeewhyError)
    )
    net.fail_after, net.calls = 1, 0  # may not raise: some methods run the model once
    before = torch_state(net)
    try:
        run()
    except (RuntimeError, SeewhyError):
        pass
    assert_same_torch_state(before, torch_state(net))


@pytest.mark.parametrize("method", METHODS)
def test_a_batch_gives_the_maps_of_its_images(method: str, x: np.ndarray) -> None:
    net = _net(method)
    check_batch_is_its_images(lambda *a, **k: seewhy.explain(net, *a, **k), x, method)


@pytest.mark.parametrize("method", METHODS)
def test_every_setting_is_recorded(method: str, x: np.ndarray) -> None:
    e = seewhy.explain(_net(method), x[:1], method, **SETTINGS[method])
    check_params_recorded(method, e)


@pytest.mark.parametrize(
    "backend",
    installed_backends()
    or [pytest.param("none", marks=pytest.mark.skip(reason="keras is not installed"))],
)
def test_contract_on_keras_backend(backend: str) -> None:
    """contract_keras.py runs every method in one sub-process per Keras backend."""
    run_on_backend(backend, ["tests/contract_keras.py"])


test_contract_on_keras_backend.keras_files = ["tests/contract_keras.py"]  # type: ignore[attr-defined]
