"""ONNX Runtime models: read from the graph, the same maps as the PyTorch model they came from.

A tiny CNN is exported in the test with the legacy exporter (dynamic batch,
static batch 1, channels-last); occlusion, RISE and LIME on the ONNX session
must match the PyTorch model's maps, and gradient methods are refused in one
line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import seewhy
from models import tiny_cnn
from seewhy.backends import backend_for, unpack_model
from seewhy.backends.capabilities import Gradients, Layers, Weights
from seewhy.errors import BackendError, InvalidInput, UnsupportedModel

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

SIZE = (32, 32)
PRE = seewhy.Preprocess(size=SIZE)
CPU = ["CPUExecutionProvider"]


def _export(model: Any, path: Path, *, dynamic: bool = True, shape: tuple[int, ...] = ()) -> Path:
    example = torch.zeros(shape or (1, 3, *SIZE))
    axes = {"x": {0: "n"}, "logits": {0: "n"}} if dynamic else None
    with warnings.catch_warnings():  # the legacy exporter's deprecation note
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            example,
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes=axes,
        )
    return path


class _ChannelsLast(torch.nn.Module):
    """The CNN behind an (N, H, W, C) input, as a TensorFlow export would take."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Any) -> Any:
        return self.inner(x.permute(0, 3, 1, 2))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("onnx")
    model = tiny_cnn(5, seed=3, inplace=False)
    return {
        "model": model,
        "dynamic": _export(model, folder / "tiny.onnx"),
        "static": _export(model, folder / "static1.onnx", dynamic=False),
        "nhwc": _export(_ChannelsLast(model), folder / "nhwc.onnx", shape=(1, *SIZE, 3)),
    }


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """Two real photos at the model's size (LIME's superpixels need structure)."""
    names = ("chelsea", "coffee")
    return np.stack(
        [np.asarray(Image.fromarray(seewhy.samples.load(n)).resize(SIZE)) for n in names]
    )


def _session(path: Path) -> Any:
    return ort.InferenceSession(str(path), providers=CPU)


def _r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


# --------------------------------------------------------------------------- the graph


def test_the_graph_says_layout_size_channels_and_batch(exported: dict[str, Any]) -> None:
    backend = backend_for(_session(exported["dynamic"]))
    assert (backend.framework, backend.channels_first) == ("onnx", True)
    assert (backend.input_name, backend.static_batch, backend.classes) == ("x", None, 5)
    hints = backend.hints()
    assert (hints.size, hints.channels) == (SIZE, 3) and "x" in hints.source
    nhwc = backend_for(_session(exported["nhwc"]))
    assert nhwc.channels_first is False and nhwc.hints().size == SIZE
    x = PRE.normalise(np.random.default_rng(0).integers(0, 255, (3, *SIZE, 3), dtype=np.uint8))
    with torch.no_grad():
        expected = exported["model"](torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    for candidate in (backend, nhwc):
        np.testing.assert_allclose(candidate.predict(x, batch_size=2), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ('["cat", "dog", "owl", "ant", "bee"]', ("cat", "dog", "owl", "ant", "bee")),
        ("{0: 'cat', 1: 'dog', 2: 'owl', 3: 'ant', 4: 'bee'}", ("cat", "dog", "owl", "ant", "bee")),
        ("cat, dog", None),  # two names for five outputs: not the model's labels
    ],
)
def test_class_names_from_the_graph_metadata(
    exported: dict[str, Any], tmp_path: Path, photos: np.ndarray, written: str, read: Any
) -> None:
    graph = onnx.load(exported["dynamic"])
    onnx.helper.set_model_props(graph, {"names": written})
    onnx.save(graph, tmp_path / "named.onnx")
    session = _session(tmp_path / "named.onnx")
    assert backend_for(session).hints().labels == read
    if read is not None:
        ex = seewhy.explain(session, photos[:1], "occlusion", preprocess=PRE, window=16, stride=16)
        assert ex.target_labels[0] == read[int(ex.targets[0])]


@pytest.mark.parametrize("method", ["occlusion", "rise", "lime"])
def test_same_maps_as_the_pytorch_model(
    exported: dict[str, Any], photos: np.ndarray, method: str
) -> None:
    settings = {"window": 8, "stride": 4} if method == "occlusion" else {}
    settings = {"masks": 200} if method == "rise" else settings
    blocks = (np.arange(32)[:, None] // 8) * 4 + np.arange(32)[None, :] // 8  # 16 superpixels
    settings = {"samples": 200, "segmentation": blocks} if method == "lime" else settings
    torch_map = seewhy.explain(exported["model"], photos, method, preprocess=PRE, **settings)
    onnx_map = seewhy.explain(
        _session(exported["dynamic"]), photos, method, preprocess=PRE, **settings
    )
    assert onnx_map.framework == "onnx"
    np.testing.assert_array_equal(onnx_map.targets, torch_map.targets)
    np.testing.assert_allclose(onnx_map.logits, torch_map.logits, atol=1e-5)
    for i in range(len(photos)):  # the maps before rectifying (LIME's weights are signed)
        assert np.ptp(torch_map.layer_maps[i]) > 0
        assert _r(onnx_map.layer_maps[i], torch_map.layer_maps[i]) >= 0.999


def test_static_batch_of_one_runs_one_at_a_time_with_a_note(
    exported: dict[str, Any], photos: np.ndarray
) -> None:
    session = _session(exported["static"])
    calls: list[int] = []
    run = session.run
    with pytest.warns(UserWarning, match="batch is fixed at 1"):
        backend = backend_for(session)
    backend.model = _Counting(session, calls)  # counts the runs, without touching the session
    assert backend.preferred_batch_size(np.zeros((4, *SIZE, 3), np.float32)) == 1
    x = PRE.normalise(photos)
    logits = backend.predict(np.concatenate([x, x[:1]]), batch_size=8)
    assert calls == [1, 1, 1] and session.run == run
    with torch.no_grad():
        expected = exported["model"](torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(logits[:2], expected, atol=1e-5)
    with pytest.warns(UserWarning, match="batch is fixed"):
        ex = seewhy.explain(
            session, photos, "occlusion", preprocess=PRE, window=16, stride=16, batch_size=4
        )
    assert ex.maps.shape == (2, *SIZE)


class _Counting:
    """A session stand-in that records the batch of every run and passes it on."""

    def __init__(self, session: Any, calls: list[int]) -> None:
        self.session, self.calls = session, calls

    def run(self, names: Any, feed: dict[str, np.ndarray]) -> Any:
        self.calls.append(len(next(iter(feed.values()))))
        return self.session.run(names, feed)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("method", ["gradcam", "saliency", "scorecam"])
def test_gradient_and_layer_methods_are_refused_in_one_line(
    exported: dict[str, Any], method: str
) -> None:
    with pytest.raises(UnsupportedModel) as info:
        seewhy.Explainer(_session(exported["dynamic"]), method, preprocess=PRE)
    message = str(info.value)
    assert "\n" not in message and method in message and "ONNX Runtime" in message
    for works in ("occlusion", "rise", "lime", "kernelshap", "deletion"):
        assert works in message


def test_the_members_that_need_layers_or_gradients_refuse(exported: dict[str, Any]) -> None:
    backend = backend_for(_session(exported["dynamic"]))
    x = np.zeros((1, *SIZE, 3), np.float32)
    assert not isinstance(backend, (Layers, Gradients, Weights))  # no member to call by mistake
    calls = [
        lambda: seewhy.layers(_session(exported["dynamic"]), preprocess=PRE),
        lambda: seewhy.metrics.randomization_steps(_session(exported["dynamic"])),
    ]
    for call in calls:
        with pytest.raises(UnsupportedModel, match=r"only runs the graph forward.*occlusion"):
            call()
    with pytest.raises(InvalidInput, match=r"precision.*float32"):
        backend.predict(x, precision="bfloat16")
    with pytest.raises(InvalidInput, match="32x32"):
        backend.predict(np.zeros((1, 16, 16, 3), np.float32))


def test_graphs_it_cannot_feed_are_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    def graph(inputs: list[Any], name: str) -> Any:
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])
        nodes = [helper.make_node("Identity", [inputs[0].name], ["y"])]
        model = helper.make_model(helper.make_graph(nodes, "g", inputs, [out]))
        onnx.save(model, tmp_path / name)
        return _session(tmp_path / name)

    two = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 3]) for n in ("image", "mask")]
    with pytest.raises(UnsupportedModel, match="takes 2 inputs \\(image, mask\\)"):
        backend_for(graph(two, "two.onnx"))
    flat = [helper.make_tensor_value_info("v", TensorProto.FLOAT, ["n", 3])]
    with pytest.raises(UnsupportedModel, match="seewhy feeds float images"):
        backend_for(graph(flat, "flat.onnx"))
    half = [helper.make_tensor_value_info("h", TensorProto.FLOAT16, ["n", 8, 8, 3])]
    nodes = [
        helper.make_node("Cast", ["h"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Flatten", ["f"], ["y"]),
    ]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 192])
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", half, [out])), tmp_path / "h.onnx")
    backend = backend_for(_session(tmp_path / "h.onnx"))  # float16, channels last
    assert (backend.channels_first, backend.hints().size, backend.classes) == (False, (8, 8), 192)
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 3)).astype(np.float32)
    expected = x.astype(np.float16).astype(np.float32).reshape(3, -1)
    np.testing.assert_array_equal(backend.predict(x, batch_size=2), expected)
    with pytest.raises(InvalidInput, match="no ONNX file"):
        seewhy.load_model(str(tmp_path / "missing.onnx"))
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    with pytest.raises(BackendError, match=r"cannot load junk\.onnx"):
        seewhy.load_model(str(tmp_path / "junk.onnx"))


# --------------------------------------------------------------------------- files, CLI, audit


def test_a_path_loads_without_trust_and_the_file_is_untouched(
    exported: dict[str, Any], photos: np.ndarray
) -> None:
    path = exported["dynamic"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    session = seewhy.load_model(str(path))
    assert isinstance(session, ort.InferenceSession)
    assert session.get_providers()[-1] == "CPUExecutionProvider"
    assert "AzureExecutionProvider" not in session.get_providers()
    chosen = seewhy.load_model(str(path), providers=CPU)
    assert chosen.get_providers() == CPU
    with pytest.raises(InvalidInput, match=r"'Bogus' is not in this onnxruntime; available: "):
        seewhy.load_model(str(path), providers=["Bogus"])
    with pytest.raises(InvalidInput, match="holds its own weights"):
        seewhy.load_model(str(path), weights="w.pt")
    by_path = seewhy.explain(str(path), photos, "occlusion", preprocess=PRE, window=16, stride=8)
    by_session = seewhy.explain(session, photos, "occlusion", preprocess=PRE, window=16, stride=8)
    np.testing.assert_allclose(by_path.maps, by_session.maps)
    assert by_path.model_name == by_session.model_name == path.stem  # not "InferenceSession"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_packed_for_another_process_and_back(exported: dict[str, Any]) -> None:
    backend = backend_for(_session(exported["dynamic"]))
    packed = pickle.loads(pickle.dumps(backend.pack(pickle)))
    again = unpack_model(packed)
    x = np.random.default_rng(1).normal(size=(2, *SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(backend_for(again).predict(x), backend.predict(x), atol=1e-6)
    assert backend.place("cuda:0") is backend.model


def test_weights_kept_beside_the_graph_travel_with_it(
    exported: dict[str, Any], tmp_path: Path
) -> None:
    """A graph saved with external data: the packed bytes carry the weights, so another
    process needs no file (here the weights file is gone before unpacking)."""
    onnx = pytest.importorskip("onnx")
    graph = onnx.load(str(exported["dynamic"]))
    path = tmp_path / "external.onnx"
    onnx.save_model(
        graph, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0
    )
    assert (tmp_path / "weights.bin").stat().st_size > 1000
    backend = backend_for(_session(path))
    packed = pickle.loads(pickle.dumps(backend.pack(pickle)))
    (tmp_path / "weights.bin").unlink()
    again = unpack_model(packed)
    x = np.random.default_rng(2).normal(size=(2, *SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(backend_for(again).predict(x), backend.predict(x), atol=1e-6)


def test_cli_evaluate_on_an_onnx_file(exported: dict[str, Any], tmp_path: Path) -> None:
    from seewhy.cli import evaluate as cli_evaluate

    parser = argparse.ArgumentParser(prog="seewhy")
    cli_evaluate.add_evaluate_arguments(parser.add_subparsers().add_parser("evaluate"))
    out = tmp_path / "metrics.json"
    args = parser.parse_args(
        ["evaluate", "sample:chelsea", "--model", str(exported["dynamic"]), "--method",
         "occlusion", "--steps", "4", "--json", str(out), "--providers", "CPUExecutionProvider"]
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what the spec guessed (ImageNet normalisation)
        assert cli_evaluate.evaluate_command(args) == 0
    scores = json.loads(out.read_text(encoding="utf-8"))["methods"]["occlusion"]["metrics"]
    assert {"deletion", "insertion", "average_drop"} <= set(scores)
    assert len(scores["deletion"]["fractions"]) == 5


def test_audit_on_an_onnx_file(exported: dict[str, Any], tmp_path: Path) -> None:
    from seewhy.audit import audit

    data = tmp_path / "data"
    data.mkdir()
    for k, name in enumerate(("chelsea", "coffee", "rocket")):
        Image.fromarray(seewhy.samples.load(name)).resize((40, 36)).save(data / f"{k}.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = audit(
            data, str(exported["dynamic"]), out=tmp_path / "report", methods=["occlusion"],
            batch_size=2,
        )  # fmt: skip
    assert result.summary["explained"] == 3 and result.failed == 0
    assert result.report.is_file()
