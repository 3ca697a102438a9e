"""Model loading: safe by default, clear about what a file holds."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import seewhy
from models import resnet18, tiny_cnn
from seewhy.errors import BackendError, InvalidInput, UnsupportedModel, UntrustedModel

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


# -- Hugging Face model folders and open_clip names (issue 26) -------------------------


def _clip_folder(folder: Path) -> Any:
    """A tiny CLIP saved as save_pretrained saves it (safetensors); the model, for comparing."""
    pytest.importorskip("transformers")
    from models import hf_dual_encoder

    model = hf_dual_encoder("clip")
    model.save_pretrained(folder)
    return model


def test_hf_folder_loads_its_class_from_the_config_and_reads_only_safetensors(
    tmp_path: Path,
) -> None:
    """The class is the config's; a stray pickle beside the safetensors is never opened."""
    marker = tmp_path / "code-ran"
    reference = _clip_folder(tmp_path / "clip")
    torch.save({"weight": _RunsCode(marker)}, tmp_path / "clip" / "pytorch_model.bin")
    model = seewhy.load_model(str(tmp_path / "clip"))
    assert type(model).__name__ == "CLIPModel" and not model.training
    for key, value in reference.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
    assert not marker.exists()


def test_hf_folder_with_pickled_weights_needs_trust_and_then_reads_only_tensors(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "clip"
    reference = _clip_folder(folder)
    (folder / "model.safetensors").unlink()
    torch.save(reference.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(UntrustedModel) as refused:
        seewhy.load_model(str(folder))
    said = str(refused.value)
    assert "pytorch_model.bin" in said and "pickle" in said and "\n" not in said
    trusted = seewhy.load_model(str(folder), trust=True)
    assert torch.equal(trusted.logit_scale, reference.logit_scale)
    marker = tmp_path / "code-ran"
    torch.save({"weight": _RunsCode(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(InvalidInput, match="could not load CLIPModel"):
        seewhy.load_model(str(folder), trust=True)  # trusted, still torch's weights-only rules
    assert not marker.exists()


def test_hf_folder_that_needs_its_own_code_is_refused_even_trusted(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    folder = tmp_path / "remote"
    folder.mkdir()
    marker = tmp_path / "code-ran"
    config = {
        "architectures": ["EvilVisionModel"],
        "auto_map": {"AutoModel": "modeling_evil.EvilVisionModel"},
        "model_type": "evil",
        "image_size": 32,
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text(f"import os\nos.mkdir({str(marker)!r})\n")
    (folder / "model.safetensors").write_bytes(b"")
    for trust in (False, True):
        with pytest.raises(UntrustedModel, match="never runs") as refused:
            seewhy.load_model(str(folder), trust=trust)
        assert "\n" not in str(refused.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("config", "error", "said"),
    [
        (None, InvalidInput, "has no config.json"),
        ({"model_type": "clip"}, InvalidInput, "names no 'architectures'"),
        ({"architectures": ["BertModel"], "vocab_size": 8}, UnsupportedModel, "does not see"),
        ({"architectures": ["NoSuchModel"]}, InvalidInput, "has no model class 'NoSuchModel'"),
        ({"architectures": ["CLIPModel"], "vision_config": {}}, InvalidInput, "model.safetensors"),
    ],
)
def test_a_folder_seewhy_cannot_open_is_one_line(
    tmp_path: Path, config: Any, error: type[Exception], said: str
) -> None:
    pytest.importorskip("transformers")
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(error) as refused:
        seewhy.load_model(str(tmp_path))
    assert said in str(refused.value) and "\n" not in str(refused.value)


def test_open_clip_name_with_a_training_checkpoint_as_weights(tmp_path: Path) -> None:
    """ViT-S-32-alt (open_clip's smallest ViT): random weights on purpose, saved as a training
    checkpoint (``state_dict`` of ``module.`` keys), read back into the named architecture."""
    pytest.importorskip("open_clip")
    torch.manual_seed(0)
    reference = seewhy.load_model("open_clip:ViT-S-32-alt:random")
    assert type(reference).__name__ == "CLIP" and not reference.training
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "epoch_1.pt")
    model = seewhy.load_model("open_clip:ViT-S-32-alt", weights=str(tmp_path / "epoch_1.pt"))
    for key, value in reference.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
    with pytest.raises(InvalidInput, match="names its weights twice"):
        seewhy.load_model("open_clip:ViT-S-32-alt:random", weights=str(tmp_path / "epoch_1.pt"))


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("open_clip:ViT-B-3", "no model 'ViT-B-3'; did you mean ViT-B-32"),
        (
            "open_clip:ViT-B-32",
            "a random CLIP explains nothing: name a pretrained tag (e.g. openai",
        ),
        ("open_clip:ViT-B-32", "open_clip:ViT-B-32:random builds it with random weights"),
        ("open_clip:ViT-B-32:nope", "no pretrained weights 'nope' for ViT-B-32 (e.g. openai"),
    ],
)
def test_an_open_clip_name_without_usable_weights_is_one_line(spec: str, said: str) -> None:
    pytest.importorskip("open_clip")
    with pytest.raises(InvalidInput) as refused:
        seewhy.load_model(spec)
    assert said in str(refused.value) and "\n" not in str(refused.value)


def test_offline_a_pretrained_tag_says_so_at_once_and_downloads_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HF_HUB_OFFLINE=1 (the usual "no downloads"): one line pointing at --weights, before
    open_clip or the hub is asked, so nothing is fetched or cached."""
    pytest.importorskip("open_clip")
    monkeypatch.setenv("HOME", str(tmp_path))  # open_clip's own cache is ~/.cache/clip
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackendError) as refused:
        seewhy.load_model("open_clip:ViT-B-32:openai")
    said = str(refused.value)
    assert "could not download the weights of open_clip:ViT-B-32:openai" in said
    assert "HF_HUB_OFFLINE" in said and "--weights FILE" in said and "\n" not in said
    assert list(tmp_path.iterdir()) == []
