"""The Keras backend on tiny models, checked against formulas worked out by hand.

Runs once per Keras backend, each in its own process (see test_keras_backends.py).
"""

from __future__ import annotations

import gc
import weakref
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
from models import (
    flatten_model,
    gap_model,
    keras_one_conv,
    nested_model,
    subclassed_model,
)

keras = keras_or_skip()
# Keras' own numpy conversions warn under numpy 2 (not seewhy's code paths).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

import seewhy  # noqa: E402
from seewhy.backends import backend_for  # noqa: E402
from seewhy.backends.keras import KerasBackend  # noqa: E402
from seewhy.errors import InvalidInput, LayerNotFound, UnsupportedModel  # noqa: E402
from seewhy.methods import cam  # noqa: E402
from seewhy.methods.base import Context  # noqa: E402


def _features(model: Any, x: np.ndarray, layer: str) -> np.ndarray:
    """A layer's output by a separate Keras model over the same tensors (not our walk)."""
    return to_numpy(keras, keras.Model(model.inputs[0], model.get_layer(layer).output)(x))


def _head(model: Any) -> tuple[np.ndarray, np.ndarray]:
    head = model.get_layer("head")
    return to_numpy(keras, head.kernel), to_numpy(keras, head.bias)


# -- reference maps: the papers' formulas, one loop at a time -------------------------


def _reference(name: str, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    n, c, h, w = a.shape
    out = np.zeros((n, h, w))
    for i in range(n):
        if name in ("hirescam", "layercam"):
            for y in range(h):
                for x in range(w):
                    for k in range(c):
                        grad = max(g[i, k, y, x], 0.0) if name == "layercam" else g[i, k, y, x]
                        out[i, y, x] += grad * a[i, k, y, x]
            continue
        for k in range(c):
            total_a = sum(a[i, k, y, x] for y in range(h) for x in range(w))
            if name == "gradcam":
                weight = sum(g[i, k, y, x] for y in range(h) for x in range(w)) / (h * w)
            elif name == "xgradcam":
                weight = sum(
                    a[i, k, y, x] / (total_a + 1e-7) * g[i, k, y, x]
                    for y in range(h)
                    for x in range(w)
                )
            elif name == "gradcam++":
                weight = 0.0
                for y in range(h):
                    for x in range(w):
                        gg = g[i, k, y, x]
                        den = 2 * gg**2 + total_a * gg**3
                        weight += (gg**2 / den if den != 0 else 0.0) * max(gg, 0.0)
            else:
                raise AssertionError(name)
            out[i] += weight * a[i, k]
    return out


def _run(method: cam.CAM, model: Any, x: np.ndarray, layer: str, targets: Any) -> np.ndarray:
    ctx = Context(backend=KerasBackend(model), inputs=x, targets=targets, layer=layer)
    return method.run(ctx).maps


@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam"])
def test_cam_methods_equal_the_paper_formula(name: str) -> None:
    model = flatten_model(keras)
    x = images(3)
    targets = np.array([0, 3, 4])
    a = _features(model, x, "act").transpose(0, 3, 1, 2)  # NCHW
    kernel, _ = _head(model)
    _, c, h, w = a.shape
    # d logit_t / d act = the Dense kernel column of t, un-flattened (Flatten is row-major HWC)
    g = np.stack([kernel[:, t].reshape(h, w, c).transpose(2, 0, 1) for t in targets])
    method = {
        "gradcam": cam.GradCAM,
        "gradcam++": cam.GradCAMPlusPlus,
        "xgradcam": cam.XGradCAM,
        "hirescam": cam.HiResCAM,
        "layercam": cam.LayerCAM,
    }[name]()
    np.testing.assert_allclose(
        _run(method, model, x, "act", targets), _reference(name, a, g), rtol=1e-4, atol=1e-6
    )


def test_keras_backend_has_every_capability_but_the_torch_only_ones() -> None:
    from seewhy import registry
    from seewhy.backends.capabilities import LayerReadout
    from seewhy.backends.extra_gradients import BiasGradients, LayerCurvature
    from seewhy.backends.relevance import Relevance
    from seewhy.backends.requirements import capabilities_of, methods_for

    backend = backend_for(gap_model(keras))
    assert len(capabilities_of(backend)) == 8  # Predicts ... Devices: every one there is
    # LeGrad's per-block head scores, LRP's rules, FullGrad's biases, ShapleyCAM's curvature
    torch_capabilities = (LayerReadout, Relevance, BiasGradients, LayerCurvature)
    assert not any(isinstance(backend, c) for c in torch_capabilities)
    assert backend.detections(np.zeros((1, 8, 8, 3), np.float32)) is None  # not a detector
    torch_only = [m for m in seewhy.methods() if set(torch_capabilities) & registry.get(m).requires]
    assert sorted(torch_only) == ["attnlrp", "fullgrad", "legrad", "lrp", "shapleycam"]
    assert methods_for(backend) == [m for m in seewhy.methods() if m not in torch_only]


def test_cam_and_eigencam_equal_their_formulas() -> None:
    model = gap_model(keras)
    x = images(3)
    a = _features(model, x, "act").transpose(0, 3, 1, 2)
    kernel, bias = _head(model)
    logits = a.mean(axis=(2, 3)) @ kernel + bias
    top = logits.argmax(1)
    expected = np.einsum("nc,nchw->nhw", kernel[:, top].T, a)
    np.testing.assert_allclose(_run(cam.ClassCAM(), model, x, "act", None), expected, rtol=1e-4)
    eigen = _run(cam.EigenCAM(), model, x, "act", None)
    for i in range(len(x)):
        flat = a[i].reshape(a.shape[1], -1).T
        _, vecs = np.linalg.eigh(np.cov(flat, rowvar=False))
        corr = np.corrcoef(flat @ vecs[:, -1], eigen[i].ravel())[0, 1]
        assert abs(corr) == pytest.approx(1.0, abs=1e-4)


def test_guided_gradcam_gates_the_gradients() -> None:
    model = gap_model(keras)
    x = images(2)
    b = KerasBackend(model)
    capture = b.capture(x, layer="conv2", targets=np.array([1, 2]), gradients=True)
    a, g = capture.activations, capture.gradients
    assert a is not None and g is not None
    expected = np.einsum("nc,nchw->nhw", (g * ((a > 0) & (g > 0))).mean(axis=(2, 3)), a)
    got = _run(cam.GradCAM(guided=True), model, x, "conv2", np.array([1, 2]))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


# -- scores, gradients, batches --------------------------------------------------------


@pytest.mark.parametrize("build", [gap_model, nested_model, subclassed_model])
def test_softmax_head_scores_are_logits(build: Any) -> None:
    model = build(keras)
    x = images(3)
    b = KerasBackend(model)
    layer = b.resolve_layer(None, x)
    head = model.head if build is subclassed_model else model.get_layer("head")
    kernel, bias = to_numpy(keras, head.kernel), to_numpy(keras, head.bias)
    capture = b.capture(x, layer=layer, targets=None, gradients=True)
    assert capture.activations is not None and capture.gradients is not None
    expected = capture.activations.astype(np.float64).mean(axis=(2, 3)) @ kernel + bias
    np.testing.assert_allclose(capture.logits, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b.predict(x), capture.logits, rtol=1e-5, atol=1e-6)
    probs = to_numpy(keras, model(x))  # the model itself still ends in softmax
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    # d logit_t / d A = kernel[:, t] / (h w) at every position
    h, w = capture.activations.shape[2:]
    g = kernel[:, capture.targets].T[:, :, None, None] / (h * w)
    np.testing.assert_allclose(
        capture.gradients, np.broadcast_to(g, capture.gradients.shape), atol=1e-7
    )
    np.testing.assert_array_equal(capture.targets, expected.argmax(1))


def test_probability_score_applies_softmax() -> None:
    model = gap_model(keras)
    x = images(2)
    b = KerasBackend(model)
    capture = b.capture(
        x, layer="act", targets=np.array([1, 3]), gradients=True, score="probability"
    )
    assert capture.activations is not None and capture.gradients is not None
    kernel, bias = _head(model)
    logits = capture.activations.astype(np.float64).mean(axis=(2, 3)) @ kernel + bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    h, w = capture.activations.shape[2:]
    for i, t in enumerate([1, 3]):
        dp = p[i, t] * (kernel[:, t] - kernel @ p[i])  # d softmax_t / d pooled features
        np.testing.assert_allclose(
            capture.gradients[i, :, 0, 0], dp / (h * w), rtol=1e-4, atol=1e-9
        )
    with pytest.raises(InvalidInput, match="score"):
        b.capture(x, layer="act", targets=None, gradients=True, score="prob")  # type: ignore[arg-type]


def test_batch_of_n_equals_n_singles() -> None:
    model = flatten_model(keras)
    x = images(4)
    b = KerasBackend(model)
    targets = np.array([0, 1, 2, 3])
    batch = b.capture(x, layer="act", targets=targets, gradients=True)
    for i in range(len(x)):
        one = b.capture(x[i : i + 1], layer="act", targets=targets[i : i + 1], gradients=True)
        assert batch.activations is not None and one.activations is not None
        assert batch.gradients is not None and one.gradients is not None
        np.testing.assert_allclose(batch.activations[i], one.activations[0], atol=1e-6)
        np.testing.assert_allclose(batch.gradients[i], one.gradients[0], atol=1e-7)
        np.testing.assert_allclose(batch.logits[i], one.logits[0], atol=1e-5)


def test_input_gradients_match_finite_differences() -> None:
    # linear in the input (no activation), so a finite difference is exact
    model = keras_one_conv(keras, (6, 6, 3), filters=3, classes=4, seed=4, head="head")
    x = images(2, size=6)
    b = KerasBackend(model)
    capture = b.input_gradients(x, targets=np.array([1, 2]))
    assert capture.gradients is not None and capture.gradients.shape == x.shape
    step = np.zeros_like(x)
    step[:, 2, 3, 1] = 1.0
    diff = (b.predict(x + step) - b.predict(x - step)) / 2.0
    np.testing.assert_allclose(capture.gradients[:, 2, 3, 1], diff[[0, 1], [1, 2]], atol=1e-4)


def test_channels_first_model_returns_nchw() -> None:
    keras.utils.set_random_seed(5)
    inputs = keras.Input((3, 12, 12))
    x = keras.layers.Conv2D(4, 3, data_format="channels_first", name="conv")(inputs)
    x = keras.layers.ReLU(name="act")(x)
    x = keras.layers.GlobalAveragePooling2D(data_format="channels_first")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    b = KerasBackend(model)
    assert b.channels_first
    x_nhwc = images(2)
    capture = b.capture(x_nhwc, layer="act", targets=None, gradients=True)
    expected = _features(model, x_nhwc.transpose(0, 3, 1, 2), "act")  # already NCHW
    assert capture.activations is not None
    np.testing.assert_allclose(capture.activations, expected, rtol=1e-5, atol=1e-6)
    assert b.layers(x_nhwc)[-1].shape == (4, 10, 10)


def test_explain_end_to_end() -> None:
    model = nested_model(keras)
    x = images(3)
    ex = seewhy.explain(model, x, method="gradcam")
    assert ex.framework == "keras"
    assert ex.layer == "base/act"
    assert ex.maps.shape == (3, 12, 12)
    assert np.isfinite(ex.maps).all()
    assert isinstance(backend_for(model), KerasBackend)


def test_layer_edit_scales_channels() -> None:
    model = gap_model(keras)
    x = images(2)
    b = KerasBackend(model)
    a = b.capture(x, layer="act", targets=None, gradients=False).activations
    assert a is not None
    scales = np.random.default_rng(3).uniform(0, 2, size=(2, 5, a.shape[1])).astype(np.float32)
    kernel, bias = _head(model)
    expected = np.einsum("nc,nec->nec", a.mean(axis=(2, 3)), scales) @ kernel + bias
    got = b.predict_with_layer_edit(x, layer="act", scales=scales, batch_size=2)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    ones = b.predict_with_layer_edit(x, layer="act", scales=np.ones((1, a.shape[1]), np.float32))
    np.testing.assert_allclose(ones[:, 0], b.predict(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(InvalidInput, match="scales"):
        b.predict_with_layer_edit(x, layer="act", scales=np.ones((3, 4), np.float32))


def test_layer_edit_with_a_skip_connection_across_the_layer() -> None:
    keras.utils.set_random_seed(8)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    y = keras.layers.Conv2D(4, 3, padding="same", name="branch")(x)
    x = keras.layers.Add(name="add")([x, y])  # the skip began before "branch"
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    b = KerasBackend(model)
    x_in = images(2)
    scales = np.random.default_rng(4).uniform(0, 2, size=(2, 3, 4)).astype(np.float32)
    got = b.predict_with_layer_edit(x_in, layer="branch", scales=scales)
    stem = _features(model, x_in, "stem")
    branch = _features(model, x_in, "branch")
    kernel, bias = _head(model)
    for i in range(2):
        for e in range(3):
            pooled = (stem[i] + branch[i] * scales[i, e]).mean(axis=(0, 1))
            np.testing.assert_allclose(got[i, e], pooled @ kernel + bias, rtol=1e-4, atol=1e-5)


# -- layers ------------------------------------------------------------------------------


def test_layers_and_default_inside_nested_models() -> None:
    model = nested_model(keras)
    b = KerasBackend(model)
    x = images(1)
    names = [info.name for info in b.layers(x)]
    assert names == ["base/conv1", "base/relu1", "base/conv2", "base/act"]
    assert b.resolve_layer(None, x) == "base/act"
    assert b.resolve_layer("conv2", x) == "base/conv2"  # a unique bare name
    assert b.resolve_layer("base", x) == "base/act"  # a nested model: its last map
    with pytest.raises(LayerNotFound, match="did you mean: base/conv1"):
        b.resolve_layer("base/conv_1", x)
    with pytest.raises(LayerNotFound, match="no 4-D feature map"):
        b.resolve_layer("gap", x)


def test_no_spatial_layer_is_a_clear_error() -> None:
    model = keras.Sequential(
        [keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    with pytest.raises(LayerNotFound, match="no layer with a 4-D output"):
        KerasBackend(model).resolve_layer(None, np.zeros((1, 2, 2, 1), np.float32))


def test_bad_inputs_and_targets() -> None:
    b = KerasBackend(gap_model(keras))
    with pytest.raises(InvalidInput, match="inputs"):
        b.predict(np.zeros((12, 12, 3), np.float32))
    with pytest.raises(InvalidInput, match=r"outside the model's 0\.\.4"):
        b.capture(images(2), layer="act", targets=np.array([0, 5]), gradients=True)
    with pytest.raises(InvalidInput, match="one class per image"):
        b.capture(images(2), layer="act", targets=np.array([0]), gradients=True)
    with pytest.raises(InvalidInput, match="precision: bfloat16 is for PyTorch models"):
        b.predict(images(2), precision="bfloat16")
    with pytest.raises(InvalidInput, match="precision: expected one of"):
        b.predict(images(2), precision="half")


def test_unbuilt_model_is_refused() -> None:
    model = keras.Sequential([keras.layers.Conv2D(2, 3), keras.layers.GlobalAveragePooling2D()])
    with pytest.raises(UnsupportedModel, match="not built"):
        KerasBackend(model)


def test_final_linear_is_the_last_dense() -> None:
    model = nested_model(keras)
    head = KerasBackend(model).final_linear()
    assert head is not None
    kernel, bias = _head(model)
    np.testing.assert_array_equal(head[0], kernel.T.astype(np.float32))
    np.testing.assert_array_equal(head[1], bias.astype(np.float32))


# -- the user's model is left as it was --------------------------------------------------


class _Fails(keras.layers.Layer):  # type: ignore[misc,name-defined]
    """Identity, except that it raises while ``armed`` (to fail mid-pass).

    Compiled passes run Python only when they trace, so the failing call
    also uses a new input size.
    """

    armed = False

    def call(self, x: Any) -> Any:
        if _Fails.armed:
            raise RuntimeError("boom")
        return x


def _failing_models() -> list[Any]:
    keras.utils.set_random_seed(6)
    functional_in = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(functional_in)
    x = _Fails(name="fails")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    functional = keras.Model(functional_in, keras.layers.Dense(3, activation="softmax")(x))

    class Net(keras.Model):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3, name="conv")
            self.fails = _Fails(name="fails")
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.head = keras.layers.Dense(3, activation="softmax")

        def call(self, x: Any) -> Any:
            return self.head(self.pool(self.fails(self.conv(x))))

    sub = Net()
    sub(images(1))
    return [functional, sub]


@pytest.mark.parametrize("index", [0, 1], ids=["functional", "subclassed"])
def test_model_unchanged_after_success_and_after_an_exception(index: int) -> None:
    model = _failing_models()[index]
    model.layers[0].trainable = False  # a frozen layer must stay frozen
    before = snapshot(keras, model)
    b = KerasBackend(model)
    b.capture(images(2), layer="conv", targets=None, gradients=True)
    b.input_gradients(images(2), targets=None)
    assert_same_state(before, snapshot(keras, model))
    b.layers(images(1, size=13))  # traced before, so the compiled pass itself fails
    _Fails.armed = True
    try:
        with pytest.raises(RuntimeError, match="boom"):
            b.capture(images(3, size=13), layer="conv", targets=None, gradients=True)
    finally:
        _Fails.armed = False
    assert_same_state(before, snapshot(keras, model))
    assert not model.layers[0].trainable


def test_nested_and_sequential_models_unchanged() -> None:
    for model in (nested_model(keras), flatten_model(keras), subclassed_model(keras)):
        before = snapshot(keras, model)
        for name in ("gradcam", "gradcam++", "eigencam"):
            seewhy.explain(model, images(2), method=name)
        assert_same_state(before, snapshot(keras, model))


def test_caches_do_not_keep_the_model_alive() -> None:
    model = gap_model(keras)
    KerasBackend(model).capture(images(2), layer="act", targets=None, gradients=True)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


# -- Keras 2 (tf_keras), best effort ------------------------------------------------------


def test_tf_keras_models_best_effort() -> None:
    if current_backend() != "tensorflow":
        pytest.skip("tf_keras models need Keras 3 on TensorFlow")
    k2 = pytest.importorskip("tf_keras", reason="tf_keras is not installed")
    k2.utils.set_random_seed(7)
    inputs = k2.Input((12, 12, 3))
    x = k2.layers.Conv2D(4, 3, name="conv")(inputs)
    x = k2.layers.Activation("relu", name="act")(x)
    base = k2.Model(inputs, x, name="base")
    model = k2.Sequential(
        [
            k2.Input((12, 12, 3)),
            base,
            k2.layers.GlobalAveragePooling2D(),
            k2.layers.Dense(3, activation="softmax"),
        ]
    )
    before = [w.copy() for w in model.get_weights()]
    b = backend_for(model)
    x_in = images(2)
    assert b.resolve_layer(None, x_in) == "base/act"
    capture = b.capture(x_in, layer="base/act", targets=None, gradients=True)
    assert capture.activations is not None
    kernel, bias = model.layers[-1].get_weights()
    expected = capture.activations.mean(axis=(2, 3)) @ kernel + bias  # logits, not softmax
    np.testing.assert_allclose(capture.logits, expected, rtol=1e-5, atol=1e-6)
    for a, w in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, w)


def test_protocol_members_for_sanity_checks_and_the_audit() -> None:
    import pickle

    from seewhy.backends import Backend, unpack_model

    model = gap_model(keras)
    before = snapshot(keras, model)
    b = KerasBackend(model)
    assert isinstance(b, Backend) and b.model is model
    assert b.place("cpu") is model and b.place(None) is model  # Keras places itself
    assert unpack_model(b.pack(pickle)) is model  # Ray's cloudpickle carries it as it is
    names = [name for name, _ in b.parameter_layers(images(1))]
    assert names == ["conv1", "conv2", "head"]
    x = images(2)
    clone = b.copy_model()
    assert clone is not model
    np.testing.assert_allclose(KerasBackend(clone).predict(x), b.predict(x), atol=1e-6)
    KerasBackend(clone).randomize_layers(["head"], lambda v: v + 1.0)
    assert not np.allclose(KerasBackend(clone).predict(x), b.predict(x))
    with pytest.raises(LayerNotFound):
        KerasBackend(clone).randomize_layers(["nope"], lambda v: v)
    assert_same_state(before, snapshot(keras, model))
