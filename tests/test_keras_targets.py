"""Targets on Keras models, on each Keras backend: sigmoid heads, named outputs, callables.

Runs once per Keras backend in its own process (see test_keras_backends.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from keras_helpers import assert_same_state, images, keras_or_skip, snapshot, to_numpy

keras = keras_or_skip()
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

import seewhy  # noqa: E402
from models import keras_one_conv, keras_segmenter, keras_two_outputs  # noqa: E402
from seewhy.errors import InvalidInput  # noqa: E402
from seewhy.targets import MultiLabel, Output, Similarity  # noqa: E402

SIZE = 12
PLAIN = seewhy.Preprocess(size=(SIZE, SIZE), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _sigmoid_gap(units: int = 1, seed: int = 3, activation: Any = "sigmoid") -> Any:
    """A CAM model with a binary head: conv, GAP, Dense(units, sigmoid)."""
    return keras_one_conv(
        keras, (SIZE, SIZE, 3), filters=6, classes=units, seed=seed, head="head",
        activation="relu", padding="same", head_activation=activation,
    )  # fmt: skip


def _two_outputs(seed: int = 4) -> Any:
    return keras_two_outputs(keras, SIZE, seed)


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.abs(images(3, SIZE, seed=2))


def _pre_sigmoid(model: Any, x: np.ndarray) -> np.ndarray:
    head = model.get_layer("head")
    features = keras.Model(model.inputs, head.input)(x)
    kernel, bias = (to_numpy(keras, w) for w in head.weights)
    return to_numpy(keras, features) @ kernel + bias


def _mixed(model: Any) -> np.ndarray:
    """Images the binary model splits: three it calls class 0 (p < 0.5), three class 1.

    The head's bias is moved so that the pool's median logit is 0 (the model is changed
    here, before anything is explained).
    """
    rng = np.random.default_rng(7)
    pool = (rng.random((24, SIZE, SIZE, 3)) * rng.random((24, 1, 1, 3)) * 2).astype("float32")
    head = model.get_layer("head")
    kernel, bias = (to_numpy(keras, w) for w in head.weights)
    z = _pre_sigmoid(model, pool)[:, 0]
    head.set_weights([kernel, bias - np.median(z)])
    order = np.argsort(_pre_sigmoid(model, pool)[:, 0])
    return pool[np.concatenate([order[:3], order[-3:]])]


@pytest.mark.parametrize("activation", ["sigmoid", None], ids=["Dense(1, sigmoid)", "Dense(1)"])
def test_a_one_logit_head_draws_cam_for_both_classes(activation: Any) -> None:
    """The seed chapter's GAP + Dense(1, sigmoid): "cat" (p < 0.5) is class 0, scored -z;
    "dog" class 1, +z. CAM from the definition: class 0 weighs the features by -w."""
    model = _sigmoid_gap(activation=activation)
    x = _mixed(model)
    z = _pre_sigmoid(model, x)[:, 0]
    assert (z < 0).sum() == 3
    before = snapshot(keras, model)
    labels = ["cat", "dog"]
    cat = seewhy.explain(model, x, "cam", target=0, labels=labels, preprocess=PLAIN)
    dog = seewhy.explain(model, x, "cam", target=1, labels=labels, preprocess=PLAIN)
    default = seewhy.explain(model, x, "cam", labels=labels, preprocess=PLAIN)
    grad = seewhy.explain(model, x, "gradcam", target=0, preprocess=PLAIN)
    assert_same_state(before, snapshot(keras, model))
    features = to_numpy(keras, keras.Model(model.inputs, model.get_layer("conv").output)(x))
    w = to_numpy(keras, model.get_layer("head").weights[0])[:, 0]
    expected = np.einsum("nhwc,c->nhw", features, w)
    np.testing.assert_allclose(dog.layer_maps, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(cat.layer_maps, -expected, rtol=1e-4, atol=1e-6)
    assert np.ptp(cat.maps, axis=(1, 2)).min() > 0  # no blank map for the negative class
    np.testing.assert_allclose(cat.maps, grad.maps, atol=1e-4)  # CAM = Grad-CAM on GAP heads
    np.testing.assert_allclose(default.logits, np.stack([-z, z], 1), rtol=1e-4, atol=1e-5)
    assert default.params["head"] == "sigmoid"
    predicted = (z > 0).astype(int)
    assert default.targets.tolist() == predicted.tolist()
    p = 1 / (1 + np.exp(-z.astype(np.float64)))
    for i in range(len(x)):
        shown = {pr.label: pr.probability for pr in default.predictions[i]}
        assert shown["dog"] == pytest.approx(p[i], rel=1e-4)
        assert shown["cat"] == pytest.approx(1 - p[i], rel=1e-4)
        assert default.target_labels[i] == labels[predicted[i]]


def test_probability_on_a_one_output_model_is_its_sigmoid_not_a_zero_map(x: np.ndarray) -> None:
    model = _sigmoid_gap()
    prob = seewhy.explain(model, x, "saliency", score="probability", preprocess=PLAIN, target=1)
    logit = seewhy.explain(model, x, "saliency", preprocess=PLAIN, target=1)
    assert np.ptp(prob.extras["attributions"]) > 0
    z = logit.logits[:, 1]  # class 1 scores +z
    slope = (np.exp(-z) / (1 + np.exp(-z)) ** 2)[:, None, None, None]  # d sigmoid / d z
    np.testing.assert_allclose(
        prob.extras["attributions"], slope * logit.extras["attributions"], rtol=1e-3, atol=1e-6
    )


def test_multilabel_sums_the_labels_logits(x: np.ndarray) -> None:
    model = _sigmoid_gap(units=3)
    both = seewhy.explain(model, x, "saliency", target=MultiLabel([0, 2]), preprocess=PLAIN)
    one = [seewhy.explain(model, x, "saliency", target=t, preprocess=PLAIN) for t in (0, 2)]
    total = one[0].extras["attributions"] + one[1].extras["attributions"]
    np.testing.assert_allclose(both.extras["attributions"], total, rtol=1e-4, atol=1e-6)
    assert both.target_labels[0] == "class 0 + class 2"


def test_named_outputs_are_chosen_by_name_and_refused_without_a_choice(x: np.ndarray) -> None:
    model = _two_outputs()
    with pytest.raises(InvalidInput, match=r"2 outputs \(kind, size\).*output="):
        seewhy.explain(model, x, preprocess=PLAIN)
    ex = seewhy.explain(model, x, "saliency", output="size", preprocess=PLAIN)
    assert ex.logits.shape == (3, 2) and ex.params["output"] == "size"
    by_index = seewhy.explain(model, x, "saliency", output=1, preprocess=PLAIN)
    np.testing.assert_allclose(ex.extras["attributions"], by_index.extras["attributions"])


def test_a_callable_target_on_a_dict_output_chosen_by_its_key(x: np.ndarray) -> None:
    """Outputs named by the dict's keys, not their layers' ("cls" is layer "dense"): a callable
    scores the chosen output (it failed with "class 0 is outside the model's 0..-1")."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(h)
    cls, box = keras.layers.Dense(4)(pooled), keras.layers.Dense(2)(pooled)
    model = keras.Model(inputs, {"cls": cls, "box": box})
    out = {k: to_numpy(keras, v) for k, v in model(x).items()}
    for method in ("gradcam", "saliency", "occlusion"):
        ex = seewhy.explain(
            model, x, method, output="cls", target=lambda o: o[:, 1] - o[:, 3], preprocess=PLAIN
        )
        expected = out["cls"][:, 1] - out["cls"][:, 3]
        np.testing.assert_allclose(ex.extras["target_score"], expected, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(ex.logits, out["cls"], rtol=1e-4, atol=1e-6)
        by_class = seewhy.explain(model, x, method, output="box", target=1, preprocess=PLAIN)
        np.testing.assert_allclose(by_class.logits, out["box"], rtol=1e-4, atol=1e-6)
    with pytest.raises(InvalidInput, match=r"output: no output 'kind'; the model's are box, cls"):
        seewhy.explain(model, x, "saliency", output="kind", target=lambda o: o[:, 0])


def test_a_callable_with_keras_ops_equals_the_built_in_targets(x: np.ndarray) -> None:
    model = _two_outputs()
    ops = keras.ops
    reference = np.array([1.0, -2.0], np.float32)
    unit = reference / np.linalg.norm(reference)

    def cosine(out: Any) -> Any:
        norm = ops.sqrt(ops.sum(out * out, axis=1))
        return ops.sum(out * ops.convert_to_tensor(unit[None]), axis=1) / norm

    pairs = [(Output(1), lambda out: out[:, 1]), (Similarity(reference), cosine)]
    # passes of several batch sizes on one model: TensorFlow retraces them with an unknown
    # batch size, which every target must take
    runs = [("gradcam", x, pairs), ("ablationcam", x[:1], pairs[:1]), ("scorecam", x, pairs[:1])]
    for method, batch, chosen in runs:
        for built_in, function in chosen:
            kw: dict[str, Any] = {"output": "size", "preprocess": PLAIN, "layer": "conv"}
            a = seewhy.explain(model, batch, method, target=built_in, **kw)
            b = seewhy.explain(model, batch, method, target=function, **kw)
            np.testing.assert_allclose(a.maps, b.maps, atol=1e-5)
            np.testing.assert_allclose(
                a.extras["target_score"], b.extras["target_score"], rtol=1e-5
            )


def test_a_region_of_a_channels_last_segmenter_sums_its_class_over_the_mask(x: np.ndarray) -> None:
    from seewhy.targets import Region

    model = _segmenter()
    mask = np.zeros((SIZE, SIZE), bool)
    mask[2:7, 3:9] = True
    before = snapshot(keras, model)
    ex = seewhy.explain(model, x, "gradcam", layer="conv", target=Region(2, mask), preprocess=PLAIN)
    assert_same_state(before, snapshot(keras, model))
    out = to_numpy(keras, model(x))
    np.testing.assert_allclose(
        ex.extras["target_score"], out[..., 2][:, mask].sum(axis=1), rtol=1e-4
    )
    assert ex.maps.shape == (3, SIZE, SIZE) and np.ptp(ex.maps) > 0


def _segmenter() -> Any:
    return keras_segmenter(keras, SIZE, 3, seed=6)  # (N, H, W, 3)


def _baked(cls: int, mask: np.ndarray) -> Any:
    """The region's score as a callable with the mask baked in: a pass of its own."""
    plane = mask.astype("float32")[None]
    return lambda out: keras.ops.sum(out[:, cls] * keras.ops.convert_to_tensor(plane), axis=(1, 2))


@pytest.mark.filterwarnings("ignore::seewhy.errors.ConstantMapWarning")
def test_region_masks_are_inputs_of_one_compiled_pass(x: np.ndarray, monkeypatch: Any) -> None:
    from seewhy.backends import backend_for
    from seewhy.targets import Region

    model = _segmenter()
    engine = type(backend_for(model).engine)
    compiles: list[Any] = []
    original = engine.compile

    def counted(self: Any, *args: Any) -> Any:
        compiles.append(args[1])
        return original(self, *args)

    monkeypatch.setattr(engine, "compile", counted)
    rng = np.random.default_rng(5)
    masks = [rng.random((3, SIZE, SIZE)) > 0.6 for _ in range(3)]  # one per image, per batch
    maps = []
    for k, batch in enumerate(masks):
        targets = [Region(1 + (i + k) % 2, m) for i, m in enumerate(batch)]  # classes vary too
        ex = seewhy.explain(model, x, "gradcam", layer="conv", target=targets, preprocess=PLAIN)
        maps.append(ex.layer_maps)  # before the ReLU: every image's map is compared
        if k == 0:
            first = len(compiles)
    assert first >= 1 and len(compiles) == first  # batches 2 and 3 compiled nothing
    monkeypatch.undo()
    for k, (batch, got) in enumerate(zip(masks, maps, strict=True)):
        for i, m in enumerate(batch):
            alone = seewhy.explain(
                model,
                x[i : i + 1],
                "gradcam",
                layer="conv",
                target=_baked(1 + (i + k) % 2, m),
                preprocess=PLAIN,
            )
            np.testing.assert_allclose(got[i], alone.layer_maps[0], rtol=1e-4, atol=1e-6)


def test_a_region_mask_at_another_size_is_resized_inside_the_pass(x: np.ndarray) -> None:
    from seewhy.targets import Region

    model = _segmenter()
    small = np.zeros((SIZE // 2, SIZE // 2), bool)
    small[1:4, 2:5] = True
    ex = seewhy.explain(model, x, "saliency", target=Region(2, small), preprocess=PLAIN)
    full = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)
    out = to_numpy(keras, model(x))
    np.testing.assert_allclose(
        ex.extras["target_score"], out[..., 2][:, full].sum(axis=1), rtol=1e-4
    )


def test_a_region_class_past_the_outputs_is_refused_also_when_its_pass_is_compiled(
    x: np.ndarray,
) -> None:
    """The class is an input of the pass every mask of one shape shares: checked on the host."""
    from seewhy.targets import Region

    model = _segmenter()
    mask = np.zeros((SIZE, SIZE), bool)
    mask[2:7, 3:9] = True
    seewhy.explain(model, x, "gradcam", layer="conv", target=Region(1, mask), preprocess=PLAIN)
    for bad in (3, 7):  # the same pass, compiled already
        with pytest.raises(InvalidInput, match=f"Region: class {bad} is outside the model's 0..2"):
            seewhy.explain(
                model, x, "gradcam", layer="conv", target=Region(bad, mask), preprocess=PLAIN
            )
