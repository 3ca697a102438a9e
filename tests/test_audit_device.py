"""The audit's GPU wiring, checked without a GPU: device choice, Ray actor options, placement.

``torch.cuda.is_available`` and Ray's GPU ids are faked, and ``Module.to`` is
recorded instead of run, so every test here runs on a CPU-only machine and
still fails when a choice or a hand-over is wrong.
"""

from __future__ import annotations

import json
import pickle
import sys
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from seewhy.audit import Store, audit
from seewhy.audit.device import (
    actor_device,
    actors_for,
    check_device,
    gpus_for_actors,
    local_device,
    placed_backend,
)
from seewhy.audit.worker import BatchResult
from seewhy.backends import PackedModel, backend_for, unpack_model
from seewhy.errors import BackendError, InvalidInput

torch = pytest.importorskip("torch")

from models import audit_model  # noqa: E402


@pytest.fixture
def gpu_here(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Pretend torch sees a GPU; ``Module.to`` records the device and stays on the CPU."""
    moves: list[str] = []

    def to(self: Any, *args: Any, **kwargs: Any) -> Any:
        moves.append(str(args[0] if args else kwargs.get("device")))
        return self

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.nn.Module, "to", to)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return moves


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(5):
        pixels = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{k}.png")
    return folder


# --------------------------------------------------------------------------- choices


def test_device_names_are_checked() -> None:
    for ok in ("auto", "cpu", "cuda", "cuda:3"):
        assert check_device(ok) == ok
    for bad in ("gpu", "cuda:", "cuda:x", "CPU", "mps"):
        with pytest.raises(InvalidInput, match="auto, cpu, cuda or cuda:N"):
            check_device(bad)


def test_local_device_uses_a_visible_gpu_for_models_it_loaded(gpu_here: list[str]) -> None:
    assert local_device("auto", owned=True, env={}) == "cuda"
    assert local_device("auto", owned=False, env={}) is None  # the caller's object stays put
    assert local_device("auto", owned=True, env={"CUDA_VISIBLE_DEVICES": ""}) == "cpu"
    assert local_device("auto", owned=True, env={"CUDA_VISIBLE_DEVICES": "-1"}) == "cpu"
    assert local_device("cuda:1", owned=False, env={"CUDA_VISIBLE_DEVICES": "0,1"}) == "cuda:1"
    assert local_device("cpu", owned=True, env={}) == "cpu"


def test_local_device_refuses_cuda_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert local_device("auto", owned=True, env={}) == "cpu"
    with pytest.raises(InvalidInput, match="sees no CUDA GPU"):
        local_device("cuda", owned=True, env={})


def test_actor_device_follows_the_gpus_ray_assigned() -> None:
    assert actor_device([], cuda_available=True, visible="0") == "cpu"
    # Ray narrows CUDA_VISIBLE_DEVICES to the actor's GPU: it is cuda:0 there
    assert actor_device([3], cuda_available=True, visible="3") == "cuda:0"
    assert actor_device(["3"], cuda_available=True, visible="1, 3") == "cuda:1"
    assert actor_device([2], cuda_available=True, visible=None) == "cuda:2"
    assert actor_device(["GPU-uuid"], cuda_available=True, visible="GPU-uuid") == "cuda:0"
    with pytest.raises(BackendError, match=r"GPU 1 .*--gpus-per-worker 0"):
        actor_device([1], cuda_available=False, visible="1")


def test_gpus_and_actors_per_pool() -> None:
    assert gpus_for_actors(None, "auto", cluster_gpus=0) == 0
    assert gpus_for_actors(None, "auto", cluster_gpus=4) == 1
    assert gpus_for_actors(None, "cpu", cluster_gpus=4) == 0
    assert gpus_for_actors(None, "cuda", cluster_gpus=0) == 1
    assert gpus_for_actors(0.5, "cpu", cluster_gpus=4) == 0.5
    assert actors_for(None, 0.0, 4, batches=10) == 2
    assert actors_for(None, 1.0, 4, batches=10) == 4  # one actor per GPU
    assert actors_for(None, 0.5, 3, batches=10) == 6
    assert actors_for(None, 1.0, 4, batches=3) == 3  # never more actors than batches
    assert actors_for(7, 1.0, 4, batches=10) == 7


def test_only_torch_modules_move(gpu_here: list[str]) -> None:
    model = audit_model()
    backend = placed_backend(model)
    assert backend is not None and placed_backend(object()) is None
    assert backend.place(None) is model and gpu_here == []
    assert backend.place("cuda:0") is model
    assert gpu_here == ["cuda:0"]


def test_packed_model_loads_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    model = audit_model()
    packed = backend_for(model).pack(pickle)
    assert isinstance(packed, PackedModel) and unpack_model("name") == "name"
    seen: list[Any] = []
    real_load = torch.load

    def load(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("map_location"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    copy = unpack_model(pickle.loads(pickle.dumps(packed)))
    assert seen == ["cpu"]  # a model saved on cuda:N is rebuilt on the CPU
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(copy(x), model(x)) and copy.seewhy_spec == model.seewhy_spec


# --------------------------------------------------------------------------- local engine


def test_local_engine_moves_the_model_it_was_told_to(
    images: Path, tmp_path: Path, gpu_here: list[str]
) -> None:
    audit(images, audit_model(), out=tmp_path / "a", title="t")
    assert gpu_here == []  # a model object stays where the caller put it
    audit(images, audit_model(), out=tmp_path / "b", title="t", device="cuda")
    assert gpu_here == ["cuda"]
    model_file = tmp_path / "m.pth"
    torch.save(audit_model(), model_file)
    gpu_here.clear()
    result = audit(images, str(model_file), out=tmp_path / "c", trust=True, title="t")
    assert gpu_here == ["cuda"]  # loaded here, a GPU is visible: auto uses it
    assert result.summary["explained"] == 5
    with pytest.raises(InvalidInput, match="device"):
        audit(images, audit_model(), out=tmp_path / "d", device="gpu")
    with pytest.raises(InvalidInput, match="gpus_per_worker"):
        audit(images, audit_model(), out=tmp_path / "d", gpus_per_worker=-1)


# --------------------------------------------------------------------------- Ray engine


class _Strategy:
    def __init__(self, size: int) -> None:
        self.size = size


class _Dataset:
    """Ray Data's two calls the engine makes, run in this process, one actor."""

    def __init__(self, rows: list[dict[str, Any]], calls: dict[str, Any]) -> None:
        self.rows, self.calls = rows, calls

    def map_batches(self, fn: Any, **options: Any) -> _Dataset:
        self.calls.update(options, fn=fn)
        return self

    def iter_rows(self) -> Iterator[Mapping[str, Any]]:
        options = pickle.loads(pickle.dumps(self.calls["fn_constructor_kwargs"]))
        actor = self.calls["fn"](**options)  # unpickled, as Ray hands it to an actor
        self.calls["actor"] = actor
        for row in self.rows:
            out = actor(
                {"batch": np.array([row["batch"]]), "items": np.array([row["items"]], object)}
            )
            yield {"batch": out["batch"][0], "payload": out["payload"][0]}


def _fake_ray(calls: dict[str, Any], gpu_ids: list[int], cluster_gpus: float) -> Any:
    ray = types.ModuleType("ray")
    context = types.SimpleNamespace(
        enable_progress_bars=True, enable_operator_progress_bars=True, enable_auto_log_stats=True
    )
    ray.data = types.SimpleNamespace(  # type: ignore[attr-defined]
        ActorPoolStrategy=_Strategy,
        DataContext=types.SimpleNamespace(get_current=lambda: context),
        from_items=lambda rows, override_num_blocks: _Dataset(rows, calls),
    )
    ray.is_initialized = lambda: True  # type: ignore[attr-defined]
    ray.cluster_resources = lambda: {"CPU": 8.0, "GPU": cluster_gpus}  # type: ignore[attr-defined]
    ray.get_gpu_ids = lambda: gpu_ids  # type: ignore[attr-defined]
    ray.cloudpickle = pickle  # type: ignore[attr-defined]
    return ray


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Installs a fake ``ray`` for one run; returns a function (gpu ids, cluster GPUs) -> calls."""

    def install(gpu_ids: list[int], cluster_gpus: float) -> dict[str, Any]:
        calls: dict[str, Any] = {}
        ray = _fake_ray(calls, gpu_ids, cluster_gpus)
        monkeypatch.setitem(sys.modules, "ray", ray)
        monkeypatch.setitem(sys.modules, "ray.data", ray.data)
        return calls

    return install


def _results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text())["records"] for p in sorted((out / "shards").glob("*.json"))]


def test_ray_actors_get_gpus_and_put_the_model_there(
    images: Path,
    tmp_path: Path,
    gpu_here: list[str],
    fake_ray: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = audit(images, audit_model(), out=tmp_path / "local", batch_size=2, title="t")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # as Ray sets it for the actor's GPU 1
    calls = fake_ray(gpu_ids=[1], cluster_gpus=2.0)
    sent: list[BatchResult] = []
    real_write = Store.write

    def write(self: Store, result: BatchResult) -> None:
        sent.append(result)
        real_write(self, result)

    monkeypatch.setattr(Store, "write", write)
    remote = audit(
        images, audit_model(), out=tmp_path / "ray", batch_size=2, title="t", engine="ray"
    )
    assert calls["num_gpus"] == 1.0 and calls["num_cpus"] == 1
    assert calls["compute"].size == 2  # one actor per GPU of the cluster
    assert isinstance(calls["fn_constructor_kwargs"]["model_object"], PackedModel)
    assert calls["actor"].device == "cuda:0" and gpu_here == ["cuda:0"]
    assert len(sent) == 3
    for result in sent:  # what crosses back to the driver: numpy and plain data only
        assert result.explanations is None
        assert all(type(a) is np.ndarray for a in result.arrays.values())
        assert all(isinstance(v, bytes) for v in result.images.values())
    assert remote.summary == local.summary
    assert _results(tmp_path / "ray") == _results(tmp_path / "local")


def test_ray_actors_stay_on_the_cpu_when_asked(
    images: Path, tmp_path: Path, gpu_here: list[str], fake_ray: Any
) -> None:
    calls = fake_ray(gpu_ids=[], cluster_gpus=2.0)
    audit(images, audit_model(), out=tmp_path / "a", batch_size=2, engine="ray", device="cpu")
    assert calls["num_gpus"] == 0.0 and calls["compute"].size == 2
    assert calls["actor"].device == "cpu" and gpu_here == ["cpu"]
    calls = fake_ray(gpu_ids=[0], cluster_gpus=1.0)
    audit(
        images,
        audit_model(),
        out=tmp_path / "b",
        batch_size=2,
        engine="ray",
        gpus_per_worker=0.25,
        workers=3,
    )
    assert calls["num_gpus"] == 0.25 and calls["compute"].size == 3


def test_ray_actor_loads_a_named_model_itself(
    images: Path, tmp_path: Path, gpu_here: list[str], fake_ray: Any
) -> None:
    model_file = tmp_path / "m.pth"
    torch.save(audit_model(), model_file)
    calls = fake_ray(gpu_ids=[0], cluster_gpus=1.0)
    audit(images, str(model_file), out=tmp_path / "r", trust=True, engine="ray", title="t")
    kwargs = calls["fn_constructor_kwargs"]
    assert kwargs["model_source"] == str(model_file) and kwargs["model_object"] is None
    assert kwargs["load_args"] == {"framework": "torch", "weights": None, "trust": True}
    # the driver keeps its copy on the CPU (it only reads the spec); the actor moves its own
    assert gpu_here == ["cuda:0"] and calls["compute"].size == 1
