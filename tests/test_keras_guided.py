"""Guided Backprop and Guided Grad-CAM on Keras 3 models, against the rule worked out by hand.

Runs once per Keras backend, each in its own process (see test_keras_backends.py).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from keras_helpers import (
    assert_same_state,
    current_backend,
    images,
    keras_or_skip,
    snapshot,
    to_numpy,
)
from models import gap_model

keras = keras_or_skip()
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

import seewhy  # noqa: E402
from seewhy.backends.keras.guided import guided_relu  # noqa: E402


def _input_grad(model: Any, x: np.ndarray, target: int) -> np.ndarray:
    """d logit_target / d x with the framework's own autodiff (no seewhy code)."""
    backend = current_backend()
    if backend == "tensorflow":
        import tensorflow as tf

        t = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(t)
            s = tf.reduce_sum(model(t)[:, target])
        return np.asarray(tape.gradient(s, t))
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda t: model(t)[:, target].sum())(x))
    import torch

    t = torch.tensor(x, requires_grad=True)
    (g,) = torch.autograd.grad(model(t)[:, target].sum(), t)
    return g.numpy()


def _guide(g: np.ndarray, z: np.ndarray, upper: float = np.inf) -> np.ndarray:
    """The guided rule at one ReLU: positive gradient through active units only."""
    return g * (g > 0) * ((z > 0) & (z < upper))


def test_guided_relu_matches_the_rule_by_hand() -> None:
    inp = keras.Input((4,))
    h1 = keras.layers.Dense(6, activation="relu")(inp)
    h2 = keras.layers.ReLU(max_value=6.0)(keras.layers.Dense(5)(h1))
    model = keras.Model(inp, keras.layers.Dense(3)(h2))
    rng = np.random.default_rng(0)
    weights = [rng.normal(scale=2.0, size=w.shape).astype("float32") for w in model.get_weights()]
    model.set_weights(weights)
    w1, b1, w2, b2, w3, _ = weights
    x = rng.normal(size=(8, 4)).astype("float32")
    plain = _input_grad(model, x, 1)
    with guided_relu() as count:
        guided = _input_grad(model, x, 1)
    assert count.hits == 2
    np.testing.assert_allclose(_input_grad(model, x, 1), plain)  # restored
    z1 = x @ w1 + b1
    z2 = np.maximum(z1, 0) @ w2 + b2
    g = _guide(np.broadcast_to(w3[:, 1], z2.shape), z2, 6.0) @ w2.T
    np.testing.assert_allclose(guided, _guide(g, z1) @ w1.T, atol=1e-4)
    assert not np.allclose(guided, plain, atol=1e-4)


def _conv_model() -> tuple[Any, list[np.ndarray]]:
    """conv 3x3 'same' + ReLU, Flatten, Dense: small enough to backprop in numpy loops."""
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    model = keras.Model(inp, keras.layers.Dense(3, name="head")(keras.layers.Flatten()(x)))
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=w.shape).astype("float32") for w in model.get_weights()]
    model.set_weights(weights)
    return model, weights


def _conv_guided_by_hand(x: np.ndarray, weights: list[np.ndarray], target: int) -> np.ndarray:
    kernel, bias, dense, _ = weights
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    z = np.zeros((n, h, w, kernel.shape[-1]))
    for i in range(h):
        for j in range(w):
            z[:, i, j] = np.einsum("nabc,abcd->nd", padded[:, i : i + 3, j : j + 3], kernel) + bias
    g = _guide(np.broadcast_to(dense[:, target].reshape(h, w, -1), z.shape), z)
    grad = np.zeros_like(padded, dtype=np.float64)
    for i in range(h):
        for j in range(w):
            grad[:, i : i + 3, j : j + 3] += np.einsum("abcd,nd->nabc", kernel, g[:, i, j])
    return grad[:, 1:-1, 1:-1]


def test_guided_backprop_through_the_api_matches_the_rule() -> None:
    model, weights = _conv_model()
    x = images(3, size=6)
    before = snapshot(keras, model)
    ex = seewhy.explain(model, x, method="guided-backprop", target=2)
    want = _conv_guided_by_hand(x, weights, 2)
    np.testing.assert_allclose(ex.extras["attributions"], want, rtol=1e-4, atol=1e-4)
    assert not np.allclose(ex.extras["attributions"], _input_grad(model, x, 2), atol=1e-3)
    assert_same_state(before, snapshot(keras, model))


def test_compiled_guided_pass_is_reused_without_a_warning() -> None:
    model, weights = _conv_model()
    x = images(2, size=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        for target in (0, 1, 0):  # the second call with target 0 is not traced again
            ex = seewhy.explain(model, x, method="guided-backprop", target=target)
            want = _conv_guided_by_hand(x, weights, target)
            np.testing.assert_allclose(ex.extras["attributions"], want, rtol=1e-4, atol=1e-4)
    plain = seewhy.explain(model, x, method="saliency", target=0)
    np.testing.assert_allclose(plain.extras["attributions"], _input_grad(model, x, 0), atol=1e-5)


def test_guided_backprop_warns_when_it_sees_no_relu() -> None:
    inp = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(2, 3, activation="tanh")(inp)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.warns(UserWarning, match="no Keras ReLU"):
        seewhy.explain(model, images(1, size=6), method="guided-backprop")


def test_guided_gradcam_is_guided_backprop_times_upsampled_gradcam() -> None:
    model = gap_model(keras)
    x = images(2)
    before = snapshot(keras, model)
    ggc = seewhy.explain(model, x, method="guided-gradcam", layer="conv2")
    gb = seewhy.explain(model, x, method="guided-backprop", target=ggc.targets)
    heat = ggc.extras["gradcam"]
    assert heat.shape == (2, 12, 12)
    np.testing.assert_allclose(
        ggc.extras["attributions"], gb.extras["attributions"] * heat[..., None], atol=1e-6
    )
    assert_same_state(before, snapshot(keras, model))


def test_relu_is_restored_after_an_exception() -> None:
    from keras.src import backend as keras_backend

    saved = (keras_backend.nn.relu, keras_backend.nn.relu6)
    with pytest.raises(ValueError, match="inside"), guided_relu():
        assert keras_backend.nn.relu is not saved[0]
        raise ValueError("inside")
    assert (keras_backend.nn.relu, keras_backend.nn.relu6) == saved
    model, _ = _conv_model()
    with pytest.raises(Exception, match=r"."):  # 7x7 images do not fit the Dense layer
        seewhy.explain(model, images(1, size=7), method="guided-backprop")
    assert (keras_backend.nn.relu, keras_backend.nn.relu6) == saved
    probe = to_numpy(keras, keras.activations.relu(np.array([-1.0, 2.0], np.float32)))
    np.testing.assert_array_equal(probe, [0.0, 2.0])
