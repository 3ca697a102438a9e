"""ultralytics YOLO on the command line and in the audit (issue 27, point 5).

``--model yolo:FILE.pt`` is an ultralytics checkpoint, a pickle: refused in one line without
``--trust-model``; with it, ``--target box:...`` explains that box. The audit explains each
image's most confident detection and flags a map whose energy falls mostly outside its box.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

if importlib.util.find_spec("ultralytics") is None:  # not imported here: see tiny_yolo
    pytest.skip(
        "ultralytics is not installed (pip install 'seewhy[detect]')", allow_module_level=True
    )
torch = pytest.importorskip("torch")

import seewhy  # noqa: E402
from models import tiny_yolo, ultralytics_offline, yolo_photo  # noqa: E402
from seewhy.audit.flags import box_energy, detection_box  # noqa: E402
from seewhy.cli import main  # noqa: E402

ultralytics_offline()


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny YOLOv8n checkpoint saved by ultralytics itself, and two photos in a folder."""
    root = tmp_path_factory.mktemp("yolo")
    yolo = tiny_yolo("yolov8n.yaml", imgsz=64)
    yolo.ckpt = {"train_args": {"imgsz": 64, "task": "detect"}}  # as a trained one carries
    yolo.save(str(root / "tiny.pt"))  # ultralytics' own writer (weights in float16)
    (root / "photos").mkdir()
    Image.fromarray(yolo_photo(40, 72)).save(root / "photos" / "a.png")
    Image.fromarray(yolo_photo(56, 48, seed=5)).save(root / "photos" / "b.png")
    return root


def test_checkpoint_refused_without_trust_in_one_line(
    place: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = str(place / "photos" / "a.png")
    code = main(["explain", photo, "--model", f"yolo:{place / 'tiny.pt'}", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "Traceback" not in err
    assert len(err.splitlines()) == 1 and "--trust-model" in err and "pickle" in err
    assert not list(tmp_path.iterdir())


def test_trusted_checkpoint_explains_a_box(
    place: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--target box:... on the loaded YOLO: the recorded score is the Box's score on the model
    the API loads from the same file (the file read by ultralytics, not changed)."""
    before = (place / "tiny.pt").read_bytes()
    photo = str(place / "photos" / "a.png")
    report = tmp_path / "run.json"
    model = f"yolo:{place / 'tiny.pt'}"
    argv = ["explain", photo, "--model", model, "--trust-model", "--target", "box:8,16,40,48:1"]
    code = main([*argv, "--out", str(tmp_path / "out"), "--json", str(report), "--quiet"])
    assert code == 0, capsys.readouterr().err
    (image,) = json.loads(report.read_text())["images"]
    assert image["target_spec"] == {"kind": "box", "xyxy": [8.0, 16.0, 40.0, 48.0], "label": 1}
    loaded = seewhy.load_model(model, trust=True)
    saved = tiny_yolo("yolov8n.yaml", imgsz=64).model.half().float().state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in loaded.model.state_dict().items())
    assert seewhy.model_spec(loaded).preprocess.size == (64, 64)  # imgsz from its args
    assert Image.open(image["outputs"]["gradcam"]).size[1] == 40  # drawn on the 72x40 photo
    assert (place / "tiny.pt").read_bytes() == before


def test_audit_flags_detections_explained_from_outside_their_box(
    place: Path, tmp_path: Path
) -> None:
    """Each image's top detection is explained (one map per image); 'off-box' is set exactly
    where less than half the map's energy lies inside that detection's box."""
    yolo = tiny_yolo("yolov8n.yaml", imgsz=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = seewhy.audit.audit(place / "photos", yolo, out=tmp_path / "audit")
    assert result.summary["explained"] == 2
    rows = list(csv.DictReader((tmp_path / "audit" / "results.csv").open(encoding="utf-8")))
    ids, maps = seewhy.audit.load_maps(str(tmp_path / "audit"))
    energies = []
    for record in rows:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            e = seewhy.explain(yolo, record["path"])
        box = detection_box(e.params["target"], 0)  # the most confident detection
        assert box is not None
        row = int(np.flatnonzero(ids == int(record["index"]))[0])
        energies.append(box_energy(maps[row].astype(np.float32), box))
        assert ("off-box" in record["flags"]) == (energies[-1] < 0.5), (record, energies)
    assert result.summary["flags"]["off-box"] == sum(e < 0.5 for e in energies)


def test_box_energy_is_the_share_inside_the_box() -> None:
    heat = np.zeros((10, 20), np.float32)
    heat[2:4, 5:10] = 1.0
    heat[8, 18] = 10.0
    assert box_energy(heat, (5, 2, 10, 4)) == pytest.approx(10 / 20)
    assert box_energy(heat, (-5, -5, 40, 40)) == pytest.approx(1.0)  # clipped to the map
    assert math.isnan(box_energy(heat, (30, 30, 40, 40)))
    assert math.isnan(box_energy(np.zeros((4, 4)), (0, 0, 2, 2)))
