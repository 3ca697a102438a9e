"""Backend capabilities: each backend has what it declares and no more, every method is run
or refused in one line by what it requires, and nothing outside ``backends/`` probes a backend.

The fake backends here are the "add a backend" checklist of ARCHITECTURE.md in
executable form: a class that only predicts gets the predicting methods, and
every other method, metric and check names what it lacks.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import seewhy
from seewhy import metrics, registry
from seewhy.backends import backend_for
from seewhy.backends.capabilities import (
    Attention,
    Devices,
    Gradients,
    Heads,
    Hints,
    LayerReadout,
    Layers,
    Predicts,
    Weights,
)
from seewhy.backends.extra_gradients import BiasGradients, LayerCurvature
from seewhy.backends.hints import ModelHints
from seewhy.backends.relevance import Relevance
from seewhy.backends.requirements import capabilities_of, methods_for, require
from seewhy.errors import UnsupportedModel
from seewhy.targets import Region

SRC = Path(__file__).resolve().parents[1] / "src" / "seewhy"
EVERY = (Predicts, Hints, Layers, Gradients, Attention, LayerReadout, Heads, Weights, Devices)
EVERY += (BiasGradients, LayerCurvature)  # FullGrad's and ShapleyCAM's (torch only)
EVERY += (Relevance,)  # LRP's and AttnLRP's (torch only)
PREDICT_ONLY = (Predicts, Hints, Devices)
SIZE = (16, 16)
PRE = seewhy.Preprocess(size=SIZE)
BLOCKS = (np.arange(16)[:, None] // 4) * 4 + np.arange(16)[None, :] // 4  # 16 superpixels
# small settings so that every method that runs, runs in well under a second here
QUICK: dict[str, dict[str, Any]] = {
    "occlusion": {"window": 8, "stride": 8},
    "rise": {"masks": 16},
    "lime": {"samples": 32, "segmentation": BLOCKS},
    "kernelshap": {"samples": 32, "segmentation": BLOCKS},
}


def brightness(batch: np.ndarray) -> np.ndarray:
    """Two classes: the mean pixel and minus it."""
    mean = batch.mean(axis=(1, 2, 3))
    return np.stack([mean, -mean], axis=1)


class ScoresOnly:
    """A plug-in backend with nothing but :class:`Predicts`, declared by shape alone."""

    framework = "blackbox"
    channels_first = False

    def __init__(self) -> None:
        self.model = brightness
        self.calls = 0

    def predict(
        self, x: np.ndarray, *, batch_size: int | None = None, precision: str = "float32"
    ) -> np.ndarray:
        self.calls += 1
        return brightness(np.asarray(x, np.float32)).astype(np.float32)

    def preferred_batch_size(self, x: np.ndarray, precision: str = "float32") -> int:
        return 8


class SaysItsInput(ScoresOnly):
    """:class:`ScoresOnly` with :class:`Hints`: records how it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[bool] = []

    def hints(self, *, try_sizes: bool = True) -> ModelHints:
        self.asked.append(try_sizes)
        return ModelHints(size=SIZE, channels=3, labels=("bright", "dark"), source="fake")


def _images(count: int = 1) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (count, *SIZE, 3), dtype=np.uint8)


def _onnx_session(tmp_path: Path) -> Any:
    """A tiny graph built with onnx.helper (no exporter): flatten, one matrix, 3 scores."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(1).normal(size=(3 * SIZE[0] * SIZE[1], 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, *SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------- what each has


def test_torch_backend_has_every_capability(model: Any) -> None:
    assert set(capabilities_of(backend_for(model))) == set(EVERY)


def test_predict_only_backends_have_only_what_they_declare(tmp_path: Path) -> None:
    backends = [backend_for(brightness), backend_for(seewhy.BlackBox(brightness, size=SIZE))]
    backends.append(backend_for(_onnx_session(tmp_path)))
    for backend in backends:
        assert set(capabilities_of(backend)) == set(PREDICT_ONLY), backend.framework
        for member in ("layers", "capture", "input_gradients", "copy_model", "with_head"):
            assert not hasattr(backend, member)  # no refusing stub to call by mistake


def test_a_plug_in_backend_is_read_by_its_shape() -> None:
    assert capabilities_of(ScoresOnly()) == (Predicts,)
    assert set(capabilities_of(SaysItsInput())) == {Predicts, Hints}
    from numpy_backend import NumpyBackend, closed_form_model

    has = set(capabilities_of(NumpyBackend(closed_form_model())))
    assert has == {Predicts, Layers, Gradients, Weights, Devices}


# --------------------------------------------------------------------------- every method


@pytest.mark.parametrize("kind", ["blackbox", "onnx"])
def test_every_method_runs_or_is_refused_by_what_it_requires(kind: str, tmp_path: Path) -> None:
    model = brightness if kind == "blackbox" else _onnx_session(tmp_path)
    backend = backend_for(model)
    working = methods_for(backend)
    ran, refused = [], []
    for name in registry.names():
        method = registry.get(name)
        try:
            explainer = seewhy.Explainer(model, name, preprocess=PRE, **QUICK.get(name, {}))
        except UnsupportedModel as exc:
            message = str(exc)
            assert "\n" not in message and message.startswith(f"method: {name} needs ")
            assert ("layers" in message) == (method.uses_layer and not isinstance(backend, Layers))
            if method.needs_gradients:
                assert "gradients of its scores" in message
            if method.reads_attention:
                assert "a transformer's attention" in message
            assert f"methods that work with it: {', '.join(working)}" in message
            refused.append(name)
            continue
        ex = explainer.explain(_images(2))
        assert ex.maps.shape[0] == 2 and np.isfinite(ex.maps).all()
        ran.append(name)
    assert ran == working and set(ran) | set(refused) == set(registry.names())
    # the methods the flags called "only predicts" before requires existed: the same set
    assert ran == [
        n
        for n in registry.names()
        if registry.get(n).forward_only and not registry.get(n).uses_layer
    ]
    assert "occlusion" in ran and "gradcam" in refused


def test_a_backend_that_only_predicts_gets_the_predicting_methods_only() -> None:
    fake = ScoresOnly()
    ex = seewhy.explain(fake, _images(), "occlusion", preprocess=PRE, window=8, stride=8)
    assert fake.calls > 0 and ex.maps.shape == (1, *SIZE)
    assert methods_for(fake) == methods_for(backend_for(brightness))
    refusals = {
        "gradcam": lambda: seewhy.Explainer(fake, "gradcam", preprocess=PRE),
        "saliency": lambda: seewhy.Explainer(fake, "saliency", preprocess=PRE),
        "layers": lambda: seewhy.layers(fake, preprocess=PRE),
        "sanity": lambda: metrics.sanity_check(fake, _images(), "occlusion", preprocess=PRE),
        "layout": lambda: seewhy.Explainer(fake, "occlusion", preprocess=PRE, layout="NCHW"),
    }
    for what, call in refusals.items():
        with pytest.raises(UnsupportedModel) as info:
            call()
        message = str(info.value)
        assert "\n" not in message, what
        assert "the blackbox backend does not offer it" in message, what  # no reason: framework
        assert "methods that work with it: kernelshap, lime, occlusion, rise" in message, what
    with pytest.raises(
        UnsupportedModel, match="targets other than classes need a PyTorch or Keras"
    ):
        region = Region(0, np.ones(SIZE))
        seewhy.explain(fake, _images(), "occlusion", preprocess=PRE, target=region)


def test_require_names_every_missing_capability_of_a_layered_backend(numpy_backend: Any) -> None:
    for name in ("gradcam", "scorecam", "ablationcam", "saliency", "cam"):
        require(numpy_backend, registry.get(name))  # it has layers, gradients and weights
    with pytest.raises(UnsupportedModel) as info:
        require(numpy_backend, registry.get("generic-attention"))
    message = str(info.value)
    assert message.startswith("method: generic-attention needs a transformer's attention;")
    assert "gradients" not in message.split(";")[0]  # it has gradients: not named as missing
    assert "the numpy backend does not offer it" in message
    assert "gradcam" in message and "attention-rollout" not in message.split(";")[-1]


# --------------------------------------------------------------------------- the model's own


def test_hints_are_asked_through_the_capability_with_the_try_flag() -> None:
    fake = SaysItsInput()
    spec = seewhy.model_spec(fake)
    assert spec.preprocess.size == SIZE and spec.labels == ("bright", "dark")
    seewhy.Explainer(fake, "occlusion")
    assert fake.asked == [False, True]  # looked up alone: nothing tried; explaining: may try


def test_layout_is_a_view_and_the_users_backend_is_unchanged(model: Any) -> None:
    mine = backend_for(model)
    explainer = seewhy.Explainer(mine, "gradcam", layer="2", layout="NCHW")
    assert explainer.backend is not mine and explainer.backend.layout_choice is not None
    assert mine.layout_choice is None  # the backend the user handed over is not written to
    assert explainer.layout == "NCHW"


def test_model_hints_keeps_its_old_import() -> None:
    from seewhy.spec import ModelHints as FromSpec

    assert FromSpec is ModelHints


# --------------------------------------------------------------------------- the rule


def _probes(source: str, name: str) -> list[str]:
    """getattr/hasattr calls whose first argument is a backend (``backend``, ``x.backend``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id not in ("getattr", "hasattr") or not node.args:
            continue
        first = node.args[0]
        named = first.id if isinstance(first, ast.Name) else getattr(first, "attr", "")
        if "backend" in named.lower():
            found.append(f"{name}:{node.lineno}")
    return found


def test_nothing_outside_the_backends_probes_a_backend() -> None:
    sources = [p for p in SRC.rglob("*.py") if "backends" not in p.relative_to(SRC).parts]
    assert len(sources) > 50
    hits = [hit for p in sources for hit in _probes(p.read_text(), str(p.relative_to(SRC)))]
    assert hits == []


def test_the_probe_scan_finds_a_probe() -> None:
    planted = (
        "def f(ctx, backend):\n    getattr(ctx.backend, 'a')\n    return hasattr(backend, 'b')\n"
    )
    assert _probes(planted, "planted.py") == ["planted.py:2", "planted.py:3"]
