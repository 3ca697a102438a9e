"""Issue 13.4, as the accident: several threads explain one model at the same time.

(Issue 23.7, a thread training the model while another explains it, is in
``test_training_while_explaining.py``.)

Before the per-model lock, hooks fired on the other thread's pass (15 of 16
Grad-CAM calls failed), the eval-mode save/restore raced (14 of 16 saliency
maps wrong) and the model was left in eval mode with its BatchNorm
statistics moved. Each thread must get what a sequential run gives, and the
model must be exactly as it was afterwards.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import seewhy
from keras_helpers import keras_script, keras_script_result
from models import bn_dropout_cnn
from seewhy.backends import backend_for
from seewhy.backends.model_lock import model_lock

torch = pytest.importorskip("torch")
nn = torch.nn

METHODS = ("gradcam", "saliency", "guided-backprop", "ablation-cam")
ROOT = Path(__file__).resolve().parents[1]


def mid_training_cnn() -> Any:
    """:func:`models.bn_dropout_cnn` in train mode, but for one BatchNorm in eval mode."""
    model = bn_dropout_cnn()
    model[1].eval()  # one module in its own mode: every flag must come back as it was
    return model


def snapshot(model: Any) -> dict[str, Any]:
    """Everything a pass could leave changed: flags, weights, BN statistics, hooks, grads."""
    hooks = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return {
        "training": [(name, m.training) for name, m in model.named_modules()],
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "hooks": [(name, [len(getattr(m, h)) for h in hooks]) for name, m in model.named_modules()],
        "grads": [p.grad is None for p in model.parameters()],
    }


def assert_unchanged(model: Any, before: dict[str, Any]) -> None:
    after = snapshot(model)
    assert after["training"] == before["training"]
    assert after["hooks"] == before["hooks"]
    assert after["grads"] == before["grads"]
    assert after["state"].keys() == before["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key


def images(n: int = 3, size: int = 20) -> np.ndarray:
    return np.random.default_rng(7).normal(size=(n, 3, size, size)).astype(np.float32)


def test_sixteen_threads_on_one_torch_model_give_the_sequential_maps() -> None:
    model = mid_training_cnn()
    x = images()
    before = snapshot(model)
    expected = {m: seewhy.explain(model, x, m).maps for m in METHODS}
    assert_unchanged(model, before)
    jobs = [method for _ in range(4) for method in METHODS]  # 16 threads
    start = threading.Barrier(len(jobs))

    def run(method: str) -> list[np.ndarray]:
        start.wait()  # all at once: the passes overlap
        return [seewhy.explain(model, x, method).maps for _ in range(2)]

    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(run, jobs))
    for method, maps in zip(jobs, results, strict=True):
        for got in maps:
            np.testing.assert_allclose(got, expected[method], rtol=1e-5, atol=1e-6)
    assert_unchanged(model, before)


def test_one_lock_per_model_shared_by_every_backend_over_it() -> None:
    model, other = mid_training_cnn(), mid_training_cnn()
    assert model_lock(model) is model_lock(model)
    assert model_lock(model) is not model_lock(other)
    first, second = backend_for(model), backend_for(model)
    assert first is not second and model_lock(first.model) is model_lock(second.model)


class _Gate(nn.Module):
    """Identity that, once armed, holds the first forward of a non-main thread until released."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def forward(self, x: Any) -> Any:
        if self.armed and threading.current_thread() is not threading.main_thread():
            self.armed = False
            self.entered.set()
            self.release.wait(timeout=10)
        return x


def test_a_pass_hook_leaves_the_users_own_forward_in_another_thread_alone() -> None:
    torch.manual_seed(0)
    gate = _Gate()
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), gate, nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3),
    ).eval()  # fmt: skip
    backend = backend_for(model)
    x = np.random.default_rng(1).normal(size=(1, 20, 20, 3)).astype(np.float32)
    scales = np.zeros((4, 6), np.float32)
    scales[np.arange(4), np.arange(4)] = 1.0
    expected = backend.predict_with_layer_edit(x, layer="2", scales=scales)
    inputs = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        plain = model(inputs)
    gate.armed = True
    with ThreadPoolExecutor(1) as pool:
        edited = pool.submit(backend.predict_with_layer_edit, x, layer="2", scales=scales)
        assert gate.entered.wait(timeout=10)
        with torch.no_grad():  # the user's own call, while the edit hook is registered
            mine = model(inputs)
        gate.release.set()
        np.testing.assert_allclose(edited.result(timeout=30), expected, rtol=1e-5, atol=1e-6)
    assert mine.shape == plain.shape
    torch.testing.assert_close(mine, plain)
    assert not any(len(m._forward_hooks) for m in model.modules())


def test_while_a_pass_is_mid_forward_another_thread_sees_the_model_as_it_left_it() -> None:
    """Issue 23.7: a pass runs on the model's twin, so a thread looking at (or training)
    the model meanwhile sees its own modes and hooks, not eval mode and seewhy's hooks."""
    torch.manual_seed(0)
    gate = _Gate()
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), gate, nn.ReLU(), nn.Dropout(0.5),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(6, 3),
    ).train()  # fmt: skip
    model[1].eval()  # one module in its own mode
    x = images(1)
    before = snapshot(model)
    for method in ("gradcam", "guided-backprop", "ablation-cam"):
        gate.entered.clear()
        gate.release.clear()
        gate.armed = True
        with ThreadPoolExecutor(1) as pool:
            explained = pool.submit(seewhy.explain, model, x, method, layer="5")
            assert gate.entered.wait(timeout=30), method
            try:
                assert_unchanged(model, before)  # mid-pass, seen from this thread
            finally:
                gate.release.set()
            assert explained.result(timeout=60).maps.shape == (1, 20, 20)
    assert_unchanged(model, before)


_KERAS_SCRIPT = r"""
import json, sys, threading
from concurrent.futures import ThreadPoolExecutor
import numpy as np
sys.path.insert(0, sys.argv[1])
import keras
from keras.src import backend as keras_backend
import seewhy
from models import gap_model

methods = ("gradcam", "saliency", "guided-backprop", "ablation-cam")
model, other = gap_model(keras, seed=0), gap_model(keras, seed=4)
weights = [w.copy() for w in model.get_weights()]
relu = (keras_backend.nn.relu, keras_backend.nn.relu6)
x = np.random.default_rng(0).uniform(0, 1, size=(2, 12, 12, 3)).astype(np.float32)
expected = {m: seewhy.explain(model, x, m).maps for m in methods}
plain_other = seewhy.explain(other, x, "saliency").maps
jobs = [(model, m) for _ in range(3) for m in methods] + [(other, "saliency")] * 4
start = threading.Barrier(len(jobs))
def run(job):
    start.wait()
    return [seewhy.explain(job[0], x, job[1]).maps for _ in range(2)]
with ThreadPoolExecutor(len(jobs)) as pool:
    results = list(pool.map(run, jobs))
worst = 0.0
for (net, method), maps in zip(jobs, results):
    want = plain_other if net is other else expected[method]
    for got in maps:
        worst = max(worst, float(np.abs(got - want).max()))
print(json.dumps({
    "worst": worst,
    "threads": len(jobs),
    "weights_same": all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights())),
    "relu_restored": (keras_backend.nn.relu, keras_backend.nn.relu6) == relu,
}))
"""


keras_script("twelve-threads", _KERAS_SCRIPT, str(ROOT / "tests"))


def test_keras_model_explained_from_twelve_threads_on_the_torch_backend(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    report = keras_script_result("twelve-threads", tmp_path_factory)
    assert report["threads"] >= 8
    assert report["worst"] < 1e-5
    assert report["weights_same"] and report["relu_restored"]
