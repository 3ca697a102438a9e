"""Issue 13.1 (the formats besides .pt2 pickles) and 13.11 (loading errors), as the attack.

Each hostile file carries a payload that creates a marker folder when its
code runs. Without the trust flag seewhy must refuse the file with a
one-line error and the marker must never appear; where the format can run
code at all, loading it trusted shows the file really is hostile.
(Pickles inside ``.pt2`` archives: tests/test_loading.py; their graphs: here; their names,
layout and what torch reads of them: tests/test_pt2_archives.py.)
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import pytest

import seewhy
from keras_helpers import keras_script, keras_script_result
from models import resnet18, tiny_cnn
from seewhy.cli import main
from seewhy.errors import InvalidInput, SeewhyError, UntrustedModel

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]


class _RunsCode:
    """Unpickling it creates the folder ``path``: proof that code from the file ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (self.path,)


def _one_line(error: BaseException) -> str:
    message = str(error)
    assert message and "\n" not in message, message
    return message


# -- pickled models and state dicts -------------------------------------------------


@pytest.mark.parametrize(
    "form", ["torch.save", "torch.save in a state dict", "pickle protocol 0", "pickle protocol 5"]
)
@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
def test_model_file_whose_pickle_runs_code_is_refused(
    tmp_path: Path, form: str, suffix: str
) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / f"evil{suffix}"
    payload = _RunsCode(marker)
    if form == "torch.save":
        torch.save(payload, path)
    elif form == "torch.save in a state dict":
        torch.save({"0.weight": torch.zeros(8, 3, 3, 3), "0.bias": payload}, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=int(form[-1])))
    with pytest.raises(UntrustedModel) as refused:
        seewhy.load_model(str(path))
    assert "trust" in _one_line(refused.value)
    assert not marker.exists()


@pytest.mark.parametrize("form", ["torch.save", "pickle", "torchscript"])
def test_weights_file_that_runs_code_is_refused_even_when_trusted(
    tmp_path: Path, form: str
) -> None:
    pytest.importorskip("torchvision")
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    if form == "torch.save":
        torch.save({"conv1.weight": _RunsCode(marker)}, path)
    elif form == "pickle":
        path.write_bytes(pickle.dumps({"conv1.weight": _RunsCode(marker)}))
    else:
        _evil_torchscript(path, marker)
    for trust in (False, True):  # --trust-model is about the model file, never --weights
        with pytest.raises(InvalidInput, match="weights-only") as refused:
            seewhy.load_model("torchvision:resnet18", weights=str(path), trust=trust)
        _one_line(refused.value)
    assert not marker.exists()


def test_cli_weights_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torchvision")
    path = tmp_path / "evil.pt"
    torch.save({"conv1.weight": _RunsCode(tmp_path / "code-ran")}, path)
    code = main(["layers", "--model", "torchvision:resnet18", "--weights", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "weights-only" in err
    assert "GLOBAL" in err and "mkdir" in err  # what was refused, not torch's advice
    assert not (tmp_path / "code-ran").exists()


def test_weights_that_do_not_fit_say_so_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("torchvision")
    path = tmp_path / "r18.pt"
    torch.save(resnet18().state_dict(), path)
    with pytest.raises(InvalidInput, match="does not fit") as refused:
        seewhy.load_model("torchvision:resnet34", weights=str(path))
    _one_line(refused.value)
    torch.save([1, 2, 3], path)
    with pytest.raises(InvalidInput, match="not a state dict") as refused:
        seewhy.load_model("torchvision:resnet18", weights=str(path))
    _one_line(refused.value)


@pytest.mark.parametrize("content", [b"", b"not a model at all\n" * 50, b"PK\x03\x04broken zip"])
def test_broken_model_files_give_one_line(tmp_path: Path, content: bytes) -> None:
    for suffix in (".pt", ".pt2"):
        path = tmp_path / f"broken{suffix}"
        path.write_bytes(content)
        with pytest.raises(SeewhyError) as refused:
            seewhy.load_model(str(path))
        _one_line(refused.value)


# -- TorchScript ----------------------------------------------------------------------


def _evil_torchscript(path: Path, marker: Path) -> None:
    """A TorchScript module whose ``__setstate__`` (run by ``torch.jit.load``) writes ``marker``.

    ``torch.save`` compiles to the ``aten::save`` operator: a file anywhere.
    """

    class Evil(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.where = str(marker)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))

        @torch.jit.export
        def __getstate__(self) -> tuple[str, bool]:
            return (self.where, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[str, bool]) -> None:
            self.where = state[0]
            self.training = state[1]
            torch.save(torch.zeros(1), state[0])

    torch.jit.script(Evil()).save(str(path))


def test_torchscript_file_that_runs_code_when_loaded_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.ts"
    _evil_torchscript(path, marker)
    assert not marker.exists()
    for name in ("evil.ts", "evil.pt", "evil.pth"):
        (tmp_path / name).write_bytes(path.read_bytes())
        with pytest.raises(UntrustedModel) as refused:
            seewhy.load_model(str(tmp_path / name))
        assert "trust" in _one_line(refused.value)
    assert not marker.exists()
    seewhy.load_model(str(path), trust=True)  # trusted, torch.jit.load runs it
    assert marker.exists()


def test_every_torchscript_file_needs_trust_also_a_plain_one(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.jit.script(tiny_cnn()).save(str(path))
    with pytest.raises(UntrustedModel, match="TorchScript") as refused:
        seewhy.load_model(str(path))
    _one_line(refused.value)
    assert isinstance(seewhy.load_model(str(path), trust=True), torch.jit.ScriptModule)


def test_torchscript_archive_with_a_hostile_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    clean = tmp_path / "clean.pt"
    torch.jit.script(tiny_cnn()).save(str(clean))
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(clean) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/constants.pkl"):
                data = pickle.dumps(_RunsCode(marker), protocol=2)
            dst.writestr(info, data)
    with pytest.raises(UntrustedModel) as refused:
        seewhy.load_model(str(path))
    assert "trust" in _one_line(refused.value)
    assert not marker.exists()


# -- torch.export graphs ----------------------------------------------------------------


def _pt2_with_node(folder: Path, node: dict[str, Any]) -> Path:
    """A real exported tiny model whose graph starts with ``node`` (``{x}``: its input).

    Each output of ``node`` is declared a float tensor of shape (1,).
    """
    clean = folder / "clean.pt2"
    torch.export.save(torch.export.export(tiny_cnn(), (torch.zeros(1, 3, 24, 24),)), str(clean))
    path = folder / "evil.pt2"
    with zipfile.ZipFile(clean) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("models/model.json"):
                program = json.loads(data)
                graph = program["graph_module"]["graph"]
                nodes, values = graph["nodes"], graph["tensor_values"]
                first = next(i["arg"] for i in nodes[0]["inputs"] if "as_tensor" in i["arg"])
                text = json.dumps(node).replace('"{x}"', json.dumps(first["as_tensor"]["name"]))
                nodes.insert(0, {**{k: None for k in nodes[0]}, "metadata": {}, **json.loads(text)})
                meta = next(iter(values.values()))
                for output in node["outputs"]:
                    one = {**meta, "sizes": [{"as_int": 1}], "strides": [{"as_int": 1}]}
                    values[output["as_tensor"]["name"]] = one
                data = json.dumps(program).encode()
            dst.writestr(info, data)
    return path


def _arg(name: str, arg: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "arg": arg, "kind": 1}


def test_pt2_whose_graph_writes_a_file_is_refused_unless_trusted(tmp_path: Path) -> None:
    """No pickle at all: ``aten::from_file(shared=True)`` creates any file, mapped for writing."""
    marker = tmp_path / "code-ran"
    node = {
        "target": "torch.ops.aten.from_file.default",
        "inputs": [
            _arg("filename", {"as_string": str(marker)}),
            _arg("shared", {"as_bool": True}),
            _arg("size", {"as_int": 1}),
        ],
        "outputs": [{"as_tensor": {"name": "evil_out"}}],
        "name": "evil",
    }
    path = _pt2_with_node(tmp_path, node)
    with pytest.raises(UntrustedModel) as refused:
        seewhy.load_model(str(path))
    message = _one_line(refused.value)
    assert "aten.from_file" in message and "files" in message and "trust" in message
    assert not marker.exists()
    model = seewhy.load_model(str(path), trust=True)  # the graph really creates the file
    model(torch.zeros(1, 3, 24, 24))
    assert marker.exists()


@pytest.mark.parametrize(
    "target", ["torch.serialization.os.system", "builtins.exec", "torch.ops.aten.save.default"]
)
def test_pt2_graph_that_calls_or_passes_a_non_operator_is_refused(
    tmp_path: Path, target: str
) -> None:
    node = {
        "target": "torch.ops.higher_order.wrap_with_set_grad_enabled",
        "inputs": [_arg("enable", {"as_bool": True}), _arg("fn", {"as_operator": target})],
        "outputs": [],
        "name": "evil",
    }
    with pytest.raises(UntrustedModel, match="trust") as refused:
        seewhy.load_model(str(_pt2_with_node(tmp_path, node)))
    _one_line(refused.value)
    node = {**node, "target": target, "inputs": [_arg("command", {"as_string": "true"})]}
    with pytest.raises(UntrustedModel, match="trust"):
        seewhy.load_model(str(_pt2_with_node(tmp_path, node)))


# -- Keras (.keras, .h5) in a subprocess on the torch Keras backend ----------------------

_KERAS_SCRIPT = r"""
import json, os, sys
from pathlib import Path
import keras
import seewhy
from seewhy.errors import SeewhyError, UntrustedModel

folder = Path(sys.argv[1])
results = {}

def lambda_model(marker):
    where = str(marker)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 3)(inputs)
    x = keras.layers.Lambda(lambda t: (__import__("os").makedirs(where, exist_ok=True), t)[1])(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))

def nested_lambda_model(marker):
    inner = lambda_model(marker)
    inputs = keras.Input((8, 8, 3))
    return keras.Model(inputs, inner(inputs))

def attempt(name, path, marker, trust=False):
    try:
        seewhy.load_model(str(path), trust=trust)
        outcome = "loaded"
    except UntrustedModel as exc:
        outcome = "refused:" + str(exc)
    except SeewhyError as exc:
        outcome = "error:" + str(exc)
    results[name] = {"outcome": outcome, "ran": marker.exists()}

for fmt in ("keras", "h5"):
    for build in (lambda_model, nested_lambda_model):
        marker = folder / f"ran-{fmt}-{build.__name__}"
        model = build(marker)
        path = folder / f"evil-{build.__name__}.{fmt}"
        model.save(str(path))
        if marker.exists():
            os.rmdir(marker)
        attempt(f"{fmt}/{build.__name__}", path, marker)
        upper = path.rename(path.with_suffix("." + fmt.upper()))
        attempt(f"{fmt}/{build.__name__}/upper", upper, marker)

# trusted, the lambda really runs (the file is hostile)
marker = folder / "ran-trusted"
path = folder / "trusted.keras"
lambda_model(marker).save(str(path))
if marker.exists():
    os.rmdir(marker)
model = seewhy.load_model(str(path), trust=True)
model.predict(__import__("numpy").zeros((1, 8, 8, 3), "float32"), verbose=0)
results["trusted"] = {"outcome": "loaded", "ran": marker.exists()}

# broken files and weights: one-line errors
broken = {"broken.keras": b"PK\x03\x04junk", "broken.h5": b"\x89HDF\r\n junk", "empty.keras": b""}
for name, data in broken.items():
    (folder / name).write_bytes(data)
    attempt(name, folder / name, folder / "never")
clean = folder / "clean.keras"
inputs = keras.Input((8, 8, 3))
pooled = keras.layers.GlobalAveragePooling2D()(inputs)
keras.Model(inputs, keras.layers.Dense(3)(pooled)).save(str(clean))
(folder / "junk.weights.h5").write_bytes(b"junk")
try:
    seewhy.load_model(str(clean), weights=str(folder / "junk.weights.h5"))
    results["weights"] = {"outcome": "loaded", "ran": False}
except SeewhyError as exc:
    results["weights"] = {"outcome": "error:" + str(exc), "ran": False}
print(json.dumps(results))
"""


keras_script("lambda-files", _KERAS_SCRIPT)


def test_keras_files_with_lambda_code_are_refused_and_errors_are_one_line(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    results: dict[str, Any] = keras_script_result("lambda-files", tmp_path_factory)
    assert results.pop("trusted") == {"outcome": "loaded", "ran": True}
    hostile = {k: v for k, v in results.items() if k.startswith(("keras/", "h5/"))}
    assert len(hostile) == 8
    for name, result in hostile.items():
        assert not result["ran"], name
        assert result["outcome"].startswith("refused:") and "Lambda" in result["outcome"], name
    for name, result in results.items():
        assert "\n" not in result["outcome"], (name, result["outcome"])
    assert results["weights"]["outcome"].startswith("error:weights:")
