"""Model loading: safe by default, clear about what a file holds."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

import seewhy
from models import resnet18, tiny_cnn
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
    pytest.importorskip("torchvision")
    path = tmp_path / "r18.pt"
    reference = resnet18()
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
    with pytest.raises(UntrustedModel, match="TorchScript"):  # its code can write files
        seewhy.load_model(str(path))
    model = seewhy.load_model(str(path), trust=True)
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


class _RunsCode:
    """Unpickling it creates the folder ``path``: proof that code from the file ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (self.path,)


def _evil_pt2(folder: Path, marker: Path, form: str, *, keep_clean: bool = False) -> Path:
    """A real exported tiny model whose sample-inputs member runs code when unpickled."""
    clean = folder / "clean.pt2"
    program = torch.export.export(tiny_cnn(), (torch.zeros(1, 3, 24, 24),))
    torch.export.save(program, str(clean))
    if form == "torch.save":
        buffer = folder / "evil.pt"
        torch.save(_RunsCode(marker), buffer)
        payload = buffer.read_bytes()
    else:
        payload = pickle.dumps(_RunsCode(marker), protocol=0 if form == "protocol 0" else 5)
    path = folder / "evil.pt2"
    with zipfile.ZipFile(clean) as src, zipfile.ZipFile(path, "w") as dst:
        names = [n for n in src.namelist() if "/sample_inputs/" in n]
        assert names, "the export has no sample-inputs member to replace"
        for info in src.infolist():
            if keep_clean and info.filename in names:  # a second entry of the same name
                dst.writestr(info, src.read(info))
            dst.writestr(info, payload if info.filename in names else src.read(info))
    return path


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch's, if trusted
@pytest.mark.parametrize("form", ["pickle", "protocol 0", "torch.save"])
def test_pt2_whose_member_runs_code_is_refused_unless_trusted(tmp_path: Path, form: str) -> None:
    marker = tmp_path / "code-ran"
    path = _evil_pt2(tmp_path, marker, form)
    with pytest.raises(UntrustedModel) as refused:
        seewhy.load_model(str(path))
    message = str(refused.value)
    assert "\n" not in message and "sample_inputs" in message and "trust" in message
    assert not marker.exists()
    # the file is really evil: trusted, torch.export.load's own fallback runs its pickle
    with pytest.raises(InvalidInput, match=r"torch\.export"):
        seewhy.load_model(str(path), trust=True)
    assert marker.exists()


def test_pt2_with_compiled_code_is_refused_and_a_clean_one_is_not(tmp_path: Path) -> None:
    from seewhy.backends.torch.archives import unsafe_member

    clean = tmp_path / "clean.pt2"
    torch.export.save(torch.export.export(tiny_cnn(), (torch.zeros(1, 3, 24, 24),)), str(clean))
    with zipfile.ZipFile(clean) as archive:
        assert unsafe_member(archive) is None
    path = tmp_path / "compiled.pt2"
    path.write_bytes(clean.read_bytes())
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("clean/data/aotinductor/model/model.so", b"\x7fELF")
    with pytest.raises(UntrustedModel, match="native code"):
        seewhy.load_model(str(path))


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")
def test_pt2_check_reads_every_entry_of_a_duplicated_name(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = _evil_pt2(tmp_path, marker, "pickle", keep_clean=True)
    with pytest.raises(UntrustedModel, match="sample_inputs"):
        seewhy.load_model(str(path))
    assert not marker.exists()
