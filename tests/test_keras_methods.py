"""Every registered method on a Keras model equals the same method on a PyTorch twin.

The twin has the Keras model's weights, so the two backends must agree map for
map: the methods are written once, in numpy, and each backend only runs the
model. Runs once per Keras backend, each in its own process (see
test_keras_backends.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from keras_helpers import assert_same_state, images, keras_or_skip, snapshot, to_numpy

keras = keras_or_skip()
torch = pytest.importorskip("torch", reason="the PyTorch twin needs torch")
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

import seewhy  # noqa: E402

SIZE = 14
GRID = (np.arange(SIZE)[:, None] // 5) * 3 + np.arange(SIZE)[None] // 5  # 9 superpixels

#: Settings that keep each method to a few passes; the same for both backends.
PARAMS: dict[str, dict[str, Any]] = {
    "smoothgrad": {"samples": 6},
    "integrated-gradients": {"steps": 8},
    "occlusion": {"window": 4, "stride": 3},
    "rise": {"masks": 40, "cell_size": 4},
    "lime": {"samples": 60, "segmentation": GRID},
    "kernelshap": {"samples": 60, "segmentation": GRID},
}


def _keras_model() -> Any:
    keras.utils.set_random_seed(5)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, name="conv2")(x)
    x = keras.layers.ReLU(max_value=6.0, name="act")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x))


def _torch_twin(model: Any) -> Any:
    nn = torch.nn

    def conv(name: str, stride: int) -> Any:
        kernel, bias = (to_numpy(keras, w) for w in model.get_layer(name).weights)
        layer = nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[0], stride=stride)
        layer.weight.data = torch.tensor(kernel.transpose(3, 2, 0, 1), dtype=torch.float32)
        layer.bias.data = torch.tensor(bias, dtype=torch.float32)
        return layer

    kernel, bias = (to_numpy(keras, w) for w in model.get_layer("head").weights)
    head = nn.Linear(kernel.shape[0], kernel.shape[1])
    head.weight.data = torch.tensor(kernel.T, dtype=torch.float32)
    head.bias.data = torch.tensor(bias, dtype=torch.float32)
    return nn.Sequential(
        conv("conv1", 1), nn.ReLU(), conv("conv2", 2), nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), head,
    ).eval()  # fmt: skip


def _canonical(name: str) -> str:
    from seewhy.registry import get

    return str(get(name).name)


@pytest.fixture(scope="module")
def twins() -> tuple[Any, Any]:
    model = _keras_model()
    return model, _torch_twin(model)


def test_the_twins_agree(twins: tuple[Any, Any]) -> None:
    x = images(3, size=SIZE)
    ours = seewhy.predict(twins[0], x, top_k=4)
    theirs = seewhy.predict(twins[1], x, top_k=4)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose([p.logit for p in a], [p.logit for p in b], atol=1e-4)


# The attention methods need a transformer: tests/test_keras_transformers.py checks them.
CNN_METHODS = [
    m
    for m in seewhy.methods()
    if not getattr(seewhy.registry.get(m), "reads_attention", False)
    and m != "answer-attention"  # a generative VLM's answers only: tests/test_answer_attention.py
    and m != "query-attention"  # a DETR's decoder queries only: tests/test_hf_detectors.py
    and m != "legrad"  # transformers, on torch only: Keras refuses it (tests/contract_keras.py)
    and m not in ("fullgrad", "shapleycam", "lrp", "attnlrp")  # torch only (contract_keras)
]


@pytest.mark.parametrize("method", sorted(CNN_METHODS))
def test_method_on_keras_equals_the_pytorch_twin(method: str, twins: tuple[Any, Any]) -> None:
    model, twin = twins
    x = images(2, size=SIZE, seed=1)
    targets = [1, 3]
    params = PARAMS.get(_canonical(method), {})
    cam = seewhy.registry.get(method).uses_layer
    before = snapshot(keras, model)
    ek = seewhy.explain(model, x, method, target=targets, layer="act" if cam else None, **params)
    et = seewhy.explain(twin, x, method, target=targets, layer="3" if cam else None, **params)
    np.testing.assert_array_equal(ek.targets, et.targets)
    assert ek.maps.shape == et.maps.shape == (2, SIZE, SIZE)
    assert np.ptp(ek.maps) > 0, "an empty map agrees with anything"
    np.testing.assert_allclose(ek.maps, et.maps, atol=2e-3)
    for key, value in ek.extras.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            scale = max(1.0, float(np.abs(et.extras[key]).max()))
            np.testing.assert_allclose(value, et.extras[key], atol=2e-3 * scale, err_msg=key)
    assert_same_state(before, snapshot(keras, model))
