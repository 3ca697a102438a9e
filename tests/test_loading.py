"""Model loading: safe by default, clear about what a file holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import seewhy
from conftest import tiny_cnn
from seewhy.errors import InvalidInput, UnsupportedModel, UntrustedModel

torch = pytest.importorskip("torch")


def test_pickled_model_is_refused_unless_trusted(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(tiny_cnn(), path)
    with pytest.raises(UntrustedModel, match="trust"):
        seewhy.load_model(str(path))
    model = seewhy.load_model(str(path), trust=True)
    assert isinstance(model, torch.nn.Module)


def test_state_dict_file_points_to_weights_flag(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(tiny_cnn().state_dict(), path)
    with pytest.raises(InvalidInput, match="--weights"):
        seewhy.load_model(str(path))


def test_torchvision_with_local_weights(tmp_path: Path) -> None:
    tv = pytest.importorskip("torchvision")
    path = tmp_path / "r18.pt"
    reference = tv.models.resnet18(weights=None)
    torch.save(reference.state_dict(), path)
    model = seewhy.load_model("torchvision:resnet18", weights=str(path))
    for key, value in reference.state_dict().items():
        assert torch.equal(value, model.state_dict()[key])
    ex = seewhy.explain(model, np.zeros((1, 3, 64, 64), np.float32))
    assert ex.layer == "layer4"
    with pytest.raises(InvalidInput, match="does not fit"):
        seewhy.load_model("torchvision:resnet34", weights=str(path))


def test_torchscript_file_loads_and_layer_methods_say_why_not(tmp_path: Path) -> None:
    path = tmp_path / "model.ts"
    torch.jit.script(tiny_cnn()).save(str(path))
    model = seewhy.load_model(str(path))
    x = np.zeros((1, 3, 24, 24), np.float32)
    assert len(seewhy.predict(model, x)[0]) == 5
    with pytest.raises(UnsupportedModel, match="TorchScript"):
        seewhy.explain(model, x, method="gradcam")


def test_unknown_bundled_name_suggests(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="efficientnet_lite0"):
        seewhy.load_model("efficientnet_lite")


def test_torch_export_file_predicts(tmp_path: Path) -> None:
    path = tmp_path / "model.pt2"
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(
        tiny_cnn(), (torch.zeros(2, 3, 24, 24),), dynamic_shapes=({0: batch},)
    )
    torch.export.save(program, str(path))
    model = seewhy.load_model(str(path))
    x = np.random.default_rng(0).normal(size=(3, 3, 24, 24)).astype(np.float32)
    expected = tiny_cnn()(torch.from_numpy(x)).argmax(1).tolist()
    assert [p[0].index for p in seewhy.predict(model, x)] == expected
    with pytest.raises(UnsupportedModel, match=r"torch\.export"):
        seewhy.explain(model, x, method="gradcam")
