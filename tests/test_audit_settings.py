"""One settings path into the audit: ``audit(..., **settings)`` as ``explain`` takes them.

Each test is a mistake a user makes (a misspelt setting, a setting of a
method they did not choose, a rerun with another setting into the same
folder, the old keyword names) or a setting that must arrive where the
maps are made, on this machine and across a pickle to a worker.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import seewhy
from models import audit_model
from seewhy._kit import warn
from seewhy.audit import Store, audit
from seewhy.audit import worker as worker_module
from seewhy.audit.settings import audit_settings
from seewhy.audit.worker import BatchWorker
from seewhy.errors import InvalidInput

torch = pytest.importorskip("torch")

COARSE = {"window": (16, 16), "stride": (16, 16)}  # occlusion: a 2 x 2 grid of 16 px blocks
MISSING_MODEL = "no-such-model.pt"  # loading it would fail: settings must be refused first


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """data/{a,b}/{a,b}{0,1}.png: four 32 x 32 noise pictures in two class folders."""
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for k in range(2):
            pixels = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / label / f"{label}{k}.png")
    return tmp_path / "data"


def _files(data: Path) -> list[str]:
    return [str(p) for p in sorted(data.rglob("*.png"))]


def _manifest(out: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((out / "audit.json").read_text())["config"]
    return config


def test_a_method_setting_reaches_the_maps_of_the_methods_that_take_it(
    data: Path, tmp_path: Path
) -> None:
    model = audit_model()
    out = tmp_path / "out"
    audit(data, model, out=out, methods=["occlusion", "gradcam"], batch_size=3, **COARSE)
    ids, maps = Store(out).maps(0)  # occlusion's
    coarse = seewhy.explain(model, _files(data), "occlusion", **COARSE)
    usual = seewhy.explain(model, _files(data), "occlusion")
    assert ids.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(maps.astype(np.float32), coarse.maps, atol=2e-3)
    assert not np.allclose(maps.astype(np.float32), usual.maps, atol=2e-3)
    blocks = maps.reshape(4, 2, 16, 2, 16)  # each 16 px block is one occluded window: flat
    assert np.ptp(blocks, axis=(2, 4)).max() == 0
    _, gradcam = Store(out).maps(1)  # gradcam takes no window: explained as usual
    plain = seewhy.explain(model, _files(data), "gradcam")
    np.testing.assert_allclose(gradcam.astype(np.float32), plain.maps, atol=2e-3)
    config = _manifest(out)
    assert config["method_settings"] == {"occlusion": {"window": [16, 16], "stride": [16, 16]}}


def test_an_explainer_keyword_reaches_the_records(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = audit(data, audit_model(), out=out, methods=["gradcam", "layercam"], top_k=1)
    records = Store(result.out).records()
    assert len(records) == 4 and all(len(r["top"]) == 1 for r in records)
    usual = audit(data, audit_model(), out=tmp_path / "usual", methods=["gradcam"])
    assert all(len(r["top"]) == 2 for r in Store(usual.out).records())  # both labels
    assert _manifest(out)["top_k"] == 1
    named = audit(data, audit_model(), out=tmp_path / "named", labels=("cat", "dog"))
    assert {r["pred_label"] for r in Store(named.out).records()} <= {"cat", "dog"}
    assert _manifest(named.out)["explainer"] == {"labels": ["cat", "dog"]}


def test_settings_cross_a_pickle_to_the_worker_that_builds_the_explainers() -> None:
    """Ray actors and subprocesses get Settings by pickle: the setting must survive it."""
    own = ("data", "model", "out")
    settings = audit_settings(
        ["occlusion", "gradcam"], 2, (0.5, 0.5), "true", {**COARSE, "top_k": 1}, own=own
    )
    worker = BatchWorker(audit_model(), pickle.loads(pickle.dumps(settings)))
    occlusion, gradcam = worker.explainers
    assert occlusion.method.params["window"] == (16, 16) and occlusion.top_k == 1
    assert "window" not in gradcam.method.params and gradcam.top_k == 1
    assert occlusion.batch_size == gradcam.batch_size == 2


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"windw": (8, 8)}, r"^audit: unknown keyword 'windw'; did you mean 'window'\?$"),
        ({"top_kk": 1}, r"^audit: unknown keyword 'top_kk'; did you mean 'top_k'\?$"),
        ({"target_form": "true"}, r"did you mean 'target_from'\?$"),
        (
            {"samples": 50},
            r"^audit: unknown keyword 'samples'; it is a setting of kernelshap, lime, smoothgrad, "
            r"not of occlusion or gradcam$",
        ),
        ({"window": (0, 0)}, r"^occlusion: window: expected a positive integer, got 0$"),
    ],
)
def test_a_wrong_setting_is_one_line_before_the_model_loads_or_a_file_is_written(
    data: Path, tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    out = tmp_path / "out"
    with pytest.raises(InvalidInput, match=message) as caught:
        audit(data, MISSING_MODEL, out=out, methods=["occlusion", "gradcam"], **settings)
    assert "\n" not in str(caught.value)
    assert not out.exists()


def test_a_bad_explainer_value_is_refused_before_any_image_is_read(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[str] = []
    real = worker_module.load_image
    monkeypatch.setattr(worker_module, "load_image", lambda p: read.append(p) or real(p))
    out = tmp_path / "out"
    with pytest.raises(InvalidInput, match=r"^top_k: expected a positive integer, got 0$"):
        audit(data, audit_model(), out=out, top_k=0)
    with pytest.raises(InvalidInput, match=r"^score: "):
        audit(data, audit_model(), out=out, score="logits-ish")
    assert read == [] and not out.exists()


def test_a_rerun_with_another_setting_is_refused_not_resumed(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = audit(data, audit_model(), out=out, methods="occlusion", batch_size=2, **COARSE)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    spelt_out = {**COARSE, "score": "logit", "fill": "zeros"}  # the defaults, named
    again = audit(data, audit_model(), out=out, methods="occlusion", batch_size=2, **spelt_out)
    assert again.resumed_batches == first.batches == 2  # the same settings: resumed
    finer = {"window": (8, 8), "stride": (8, 8)}
    with pytest.raises(InvalidInput, match="holds an audit with other images or settings"):
        audit(data, audit_model(), out=out, methods="occlusion", batch_size=2, **finer)
    with pytest.raises(InvalidInput, match="holds an audit with other images or settings"):
        audit(data, audit_model(), out=out, methods="occlusion", batch_size=2, target_from="true")
    shards = [p for p in before if "shards" in p.parts]
    assert all(p.read_bytes() == before[p] for p in shards)  # the refused runs changed nothing
    redone = audit(
        data, audit_model(), out=out, methods="occlusion", batch_size=2, overwrite=True, **finer
    )
    assert redone.resumed_batches == 0
    blocks = Store(out).maps(0)[1].reshape(4, 4, 8, 4, 8)
    assert np.ptp(blocks, axis=(2, 4)).max() == 0  # 8 px blocks now
    assert _manifest(out)["method_settings"]["occlusion"]["window"] == [8, 8]


def test_the_old_keyword_names_still_work_and_warn_once(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warn, "_SHOWN", set())  # as in a fresh process
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a/a0.png": [0, 0, 16, 16]}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k in range(2):
            audit(data, audit_model(), out=tmp_path / f"old{k}", target="true", boxes=boxes)
    said = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert sorted(said) == [
        "audit: boxes= is deprecated and will be removed in the next release; "
        "use object_boxes= (the same values)",
        "audit: target= is deprecated and will be removed in the next release; "
        "use target_from= (the same values)",
    ]
    assert all(w.filename == __file__ for w in caught if w.category is DeprecationWarning)
    new = audit(data, audit_model(), out=tmp_path / "new", target_from="true", object_boxes=boxes)
    old_records = Store(tmp_path / "old0").records()
    assert old_records == Store(new.out).records()
    assert [r["target"] for r in old_records] == ["a", "a", "b", "b"]  # the true classes
    assert [r["has_object"] for r in old_records] == [True, False, False, False]


@pytest.mark.parametrize(
    ("old", "new"),
    [({"target": "true"}, {"target_from": "region"}), ({"boxes": "b.json"}, {"object_boxes": "c"})],
)
def test_an_old_and_a_new_name_together_are_refused(
    data: Path, tmp_path: Path, old: dict[str, Any], new: dict[str, Any]
) -> None:
    (name,), (new_name,) = old, new
    with pytest.raises(InvalidInput, match=rf"^audit: {name}= is the old name of {new_name}="):
        audit(data, MISSING_MODEL, out=tmp_path / "out", **old, **new)
    assert not (tmp_path / "out").exists()


def test_a_bad_value_is_named_as_the_caller_spelt_the_keyword(data: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"^target_from: expected one of predicted, true"):
        audit(data, MISSING_MODEL, out=tmp_path / "out", target_from="boxes")
    with pytest.raises(InvalidInput, match=r"^target: expected one of predicted, true"):
        audit(data, MISSING_MODEL, out=tmp_path / "out", target="boxes")


def test_masks_is_the_old_name_of_object_masks_only_for_a_path_and_stays_rises_setting(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warn, "_SHOWN", set())  # as in a fresh process
    masks = tmp_path / "masks"
    (masks / "a").mkdir(parents=True)
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(masks / "a" / "a0.png")
    with pytest.warns(DeprecationWarning, match=r"^audit: masks= is deprecated.*object_masks="):
        old = audit(data, audit_model(), out=tmp_path / "old", masks=masks)
    new = audit(data, audit_model(), out=tmp_path / "new", object_masks=masks)
    assert Store(old.out).records() == Store(new.out).records()
    assert [r["has_object"] for r in Store(new.out).records()] == [True, False, False, False]
    rise = audit(data, audit_model(), out=tmp_path / "rise", methods="rise", masks=40)
    assert _manifest(rise.out)["method_settings"]["rise"]["masks"] == 40
