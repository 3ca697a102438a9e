"""The Ray engine gives the same audit as the local one (a local Ray with 2 CPUs).

The local Ray also declares one GPU, real or not: Ray hands it out by count,
so the test sees a real actor being given GPU 0 on any machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import seewhy
from models import tiny_cnn, with_spec
from seewhy.audit import Store, audit

torch = pytest.importorskip("torch")
ray = pytest.importorskip("ray", reason="the Ray engine test needs ray[data]")
pytest.importorskip("ray.data", reason="the Ray engine test needs ray[data]")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _model() -> Any:
    model = tiny_cnn(2, 1, widths=(8, 8), inplace=False)
    return with_spec(model, (48, 48), ("cat", "coffee"))


@pytest.fixture(scope="module")
def local_ray() -> Any:
    if not ray.is_initialized():
        ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_matches_local(tmp_path: Path, local_ray: Any) -> None:
    for label, sample in (("cat", "chelsea"), ("coffee", "coffee")):
        folder = tmp_path / "data" / label
        folder.mkdir(parents=True)
        rgb = seewhy.samples.load(sample)
        for k in range(3):
            crop = rgb[k * 20 :, k * 30 :]
            Image.fromarray(crop).resize((60, 50)).save(folder / f"{sample}{k}.jpg")
    (tmp_path / "data" / "cat" / "bad.jpg").write_bytes(b"")
    kwargs: dict[str, Any] = {"methods": ["gradcam", "layercam"], "batch_size": 2, "title": "t"}
    kwargs.update(top_k=1, guided=True)  # settings cross to the actors: an Explainer's, gradcam's
    local = audit(tmp_path / "data", _model(), out=tmp_path / "local", **kwargs)
    done: list[int] = []
    remote = audit(
        tmp_path / "data",
        _model(),
        out=tmp_path / "ray",
        engine="ray",
        workers=2,
        device="cpu",  # no GPU per actor, although the cluster declares one
        progress=lambda d, t: done.append(d),
        **kwargs,
    )
    assert done[-1] == 7 and remote.summary == local.summary
    assert all(len(r["top"]) == 1 for r in Store(tmp_path / "ray").records() if r["top"])
    guided = seewhy.explain(_model(), str(tmp_path / "data" / "cat" / "chelsea0.jpg"), guided=True)
    ray_map = Store(tmp_path / "ray").maps(0)[1][0].astype(np.float32)  # chelsea0 is item 1
    np.testing.assert_allclose(ray_map, guided.maps[0], atol=2e-3)
    for name in ("results.csv", "index.html"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    for method in (0, 1):
        a, b = Store(tmp_path / "local").maps(method), Store(tmp_path / "ray").maps(method)
        assert a[0].tolist() == b[0].tolist() == [1, 2, 3, 4, 5, 6]  # bad.jpg is item 0
        np.testing.assert_allclose(a[1].astype(np.float32), b[1].astype(np.float32), atol=2e-3)


def test_ray_actor_given_a_gpu_runs_there(tmp_path: Path, local_ray: Any) -> None:
    """By default an actor asks for the cluster's GPU and moves its model onto it.

    Where torch sees no CUDA device the actor must say so, in one line, rather
    than crash on ``.to("cuda")`` or quietly run on the CPU.
    """
    folder = tmp_path / "data"
    folder.mkdir()
    Image.fromarray(seewhy.samples.load("coffee")).resize((60, 50)).save(folder / "a.jpg")
    run: dict[str, Any] = {"methods": ["gradcam"], "title": "t", "engine": "ray"}
    if torch.cuda.is_available():
        result = audit(folder, _model(), out=tmp_path / "gpu", **run)
        local = audit(folder, _model(), out=tmp_path / "cpu", title="t", methods=["gradcam"])
        assert result.summary == local.summary
        return
    with pytest.raises(seewhy.BackendError) as caught:
        audit(folder, _model(), out=tmp_path / "gpu", **run)
    message = str(caught.value)
    assert message.startswith("Ray audit failed: Ray gave this actor GPU 0")
    assert "CUDA_VISIBLE_DEVICES='0'" in message and "\n" not in message
