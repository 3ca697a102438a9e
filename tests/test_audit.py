"""seewhy audit: data walking, flags, outputs, bad files, resume after SIGKILL, the CLI."""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import seewhy
from models import tiny_cnn
from seewhy.audit import Store, audit, collect
from seewhy.audit.dataset import load_boxes, match_classes
from seewhy.audit.flags import border_energy, object_energy, object_mask, suspicion
from seewhy.cli.audit import add_audit_arguments, audit_command
from seewhy.errors import BackendError, InvalidInput

torch = pytest.importorskip("torch")

LABELS = ("cat", "dog", "bird")
SPEC = seewhy.ModelSpec(name="tiny", preprocess=seewhy.Preprocess(size=(64, 64)), labels=LABELS)


def tiny_model(seed: int = 0) -> Any:
    """A CAM-ready conv net that carries its spec (input size, labels)."""
    model = tiny_cnn(len(LABELS), seed, widths=(8, 8), inplace=False)
    model.seewhy_spec = SPEC
    return model


def _photo(name: str, size: tuple[int, int], seed: int) -> Image.Image:
    rgb = seewhy.samples.load(name)
    rng = np.random.default_rng(seed)
    h, w = rgb.shape[:2]
    top, left = int(rng.integers(0, h // 4)), int(rng.integers(0, w // 4))
    return Image.fromarray(rgb[top : top + 3 * h // 4, left : left + 3 * w // 4]).resize(size)


def make_classes(root: Path, per_class: int = 2) -> Path:
    """root/{cat,dog,bird}/*.png from the bundled photos, plus one broken file."""
    names = ("chelsea", "coffee", "rocket", "astronaut")
    for c, label in enumerate(LABELS):
        folder = root / label
        folder.mkdir(parents=True)
        for k in range(per_class):
            _photo(names[(c + k) % 4], (72, 64), seed=10 * c + k).save(folder / f"{label}{k}.png")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


@pytest.fixture
def classes(tmp_path: Path) -> Path:
    return make_classes(tmp_path / "data")


# --------------------------------------------------------------------------- data


def test_class_folders_match_labels_by_name_number_or_order(tmp_path: Path) -> None:
    assert match_classes(["Cat", "dog_", "2"], LABELS) == (
        {"Cat": 0, "dog_": 1, "2": 2},
        "index and name",
    )
    assert match_classes(["a", "b", "c"], LABELS) == ({"a": 0, "b": 1, "c": 2}, "folder order")
    mapping, rule = match_classes(["cat", "zebra"], LABELS)
    assert mapping == {"cat": 0, "zebra": None} and rule == "name"
    data = make_classes(tmp_path / "d", per_class=1)
    ds = collect(data, labels=LABELS)
    assert ds.layout == "folders" and ds.class_rule == "name"
    assert [(i.name, i.true_index) for i in ds.items] == [
        ("bird/bird0.png", 2),
        ("cat/cat0.png", 0),
        ("dog/broken.png", 1),
        ("dog/dog0.png", 1),
    ]
    flat = collect(data, labels=LABELS, labels_from="none")
    assert flat.layout == "files" and not flat.has_truth and len(flat.items) == 4


def test_list_file_and_boxes(tmp_path: Path) -> None:
    data = make_classes(tmp_path / "d", per_class=1)
    listing = tmp_path / "list.csv"
    listing.write_text("path,label\nd/cat/cat0.png,cat\nd/dog/dog0.png,1\nd/bird/bird0.png,\n")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"cat0.png": [0, 0, 36, 32], "d/dog/dog0.png": [[0.5, 0, 1, 1]]}))
    ds = collect(listing, labels=LABELS, boxes=boxes)
    assert ds.layout == "list"
    assert [(i.true_label, i.true_index) for i in ds.items] == [
        ("cat", 0),
        ("dog", 1),
        (None, None),
    ]
    assert ds.items[0].boxes == ((0.0, 0.0, 36.0, 32.0),)
    assert ds.items[1].boxes == ((0.5, 0.0, 1.0, 1.0),)
    assert Path(ds.items[0].path) == data / "cat" / "cat0.png"
    table = tmp_path / "boxes.csv"
    table.write_text("file,xmin,ymin,xmax,ymax\na.png,1,2,3,4\na.png,5,6,7,8\n")
    assert load_boxes(table) == {"a.png": [(1, 2, 3, 4), (5, 6, 7, 8)]}
    table.write_text("file,x0\na.png,1\n")
    with pytest.raises(InvalidInput, match="x0, y0, x1, y1"):
        load_boxes(table)


def test_energies_and_object_mask_follow_the_preprocessing() -> None:
    map_ = np.zeros((10, 10))
    map_[4:6, 4:6] = 1.0
    inside = np.zeros((10, 10), bool)
    inside[3:7, 3:7] = True
    assert object_energy(map_, inside) == 1.0
    assert border_energy(map_) == 0.0
    assert border_energy(np.ones((10, 10))) == pytest.approx(0.36)
    assert np.isnan(object_energy(np.zeros((10, 10)), inside))
    # the left half of a 200x100 picture, centre-cropped to 100x100: the left half of the crop
    pre = seewhy.Preprocess(size=(100, 100), resize=100)
    mask = object_mask((100, 200), pre, boxes=[(0, 0, 100, 100)])
    assert mask is not None and mask.shape == (100, 100)
    assert mask[:, :48].all() and not mask[:, 52:].any()
    assert suspicion(
        wrong=True, confidence=0.9, object_energies=[0.2], border_energies=[0.3]
    ) == pytest.approx(2.7)


# --------------------------------------------------------------------------- runs


def test_audit_writes_report_tables_and_maps(classes: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    seen: list[tuple[int, int]] = []
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"cat/cat0.png": [0, 0, 72, 64], "bird0.png": [0, 0, 8, 8]}))
    result = audit(
        classes,
        tiny_model(),
        out=out,
        methods=["gradcam", "grad-cam", "layercam"],
        batch_size=3,
        object_boxes=boxes,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen[0] == (0, 7) and seen[-1] == (7, 7)
    s = result.summary
    assert (s["images"], s["explained"], s["failed"], s["with_truth"]) == (7, 6, 1, 6)
    assert result.failed == 1 and result.batches == 3
    rows = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    assert [r["name"] for r in rows] == [
        "bird/bird0.png",
        "bird/bird1.png",
        "cat/cat0.png",
        "cat/cat1.png",
        "dog/broken.png",
        "dog/dog0.png",
        "dog/dog1.png",
    ]
    broken = rows[4]
    assert broken["status"] == "error" and "dog/broken.png" in broken["reason"]
    assert broken["flags"] == "unreadable"
    cat = rows[2]
    assert float(cat["gradcam_object_energy"]) == pytest.approx(1.0)  # the box is everything
    bird = rows[0]
    assert float(bird["gradcam_object_energy"]) < 0.5 and "off-object" in bird["flags"]
    assert rows[1]["gradcam_object_energy"] == ""  # no box, no score
    for r in rows:
        if r["status"] == "ok":
            assert (r["correct"] == "True") == (r["pred_label"] == r["true_label"])
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(out / "results.parquet")
    assert table.num_rows == 7 and table.column("index").to_pylist() == list(range(7))
    ids, maps = seewhy.audit.load_maps(str(out), method=1)
    assert ids.tolist() == [0, 1, 2, 3, 5, 6] and maps.shape == (6, 64, 64)
    direct = seewhy.explain(tiny_model(), str(classes / "cat" / "cat0.png"), "layercam")
    np.testing.assert_allclose(maps[2], direct.maps[0], atol=1e-3)
    for i in (0, 1, 2, 3, 5, 6):
        for suffix in ("jpg", "m0.jpg", "m1.jpg"):
            assert (out / "images" / f"{i:07d}.{suffix}").is_file()
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "Content-Security-Policy" in html and "broken.png" in html
    # the SVG namespace is a name, never fetched; any other URL would be a request
    links = html.replace('"http://www.w3.org/2000/svg"', "")
    assert "<script src" not in html and "http://" not in links and "https://" not in links
    summary = json.loads((out / "summary.json").read_text())
    assert summary["meta"]["methods"] == ["gradcam", "layercam"]
    assert not list(out.rglob(".*.tmp"))


def test_rerun_resumes_and_other_settings_are_refused(classes: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    first = audit(classes, tiny_model(), out=out, batch_size=4)
    assert first.resumed_batches == 0
    again = audit(classes, tiny_model(), out=out, batch_size=4)
    assert again.resumed_batches == 2 and again.summary == first.summary
    with pytest.raises(InvalidInput, match="--overwrite"):
        audit(classes, tiny_model(), out=out, batch_size=2)
    fresh = audit(classes, tiny_model(), out=out, batch_size=2, overwrite=True)
    assert fresh.resumed_batches == 0 and fresh.batches == 4


KILLABLE = textwrap.dedent(
    """
    import sys, time
    import torch
    import seewhy
    from seewhy.audit import audit

    class Slow(torch.nn.Module):
        def forward(self, x):
            time.sleep(float(sys.argv[3]))
            return x

    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(
        Slow(), nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(8, 3),
    ).eval()
    model.seewhy_spec = seewhy.ModelSpec(
        name="tiny", preprocess=seewhy.Preprocess(size=(64, 64)), labels=("cat", "dog", "bird")
    )
    r = audit(sys.argv[1], model, out=sys.argv[2], batch_size=2,
              methods=["gradcam", "layercam"], title="t")
    print("resumed", r.resumed_batches)
    """
)


def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    data = make_classes(tmp_path / "data", per_class=4)  # 13 files: 7 batches of 2
    script = tmp_path / "run.py"
    script.write_text(KILLABLE)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def start(out: Path, delay: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(script), str(data), str(out), delay],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    reference = start(clean, "0")
    victim = start(killed, "0.2")
    deadline = time.monotonic() + 60
    while len(list((killed / "shards").glob("*.json"))) < 2:
        assert victim.poll() is None, victim.communicate()[1]
        assert time.monotonic() < deadline, "the run never wrote two batches"
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    done_before = len(list((killed / "shards").glob("*.json")))
    assert 2 <= done_before < 7
    assert not (killed / "index.html").exists()
    resumed = start(killed, "0")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert int(out.split()[-1]) >= done_before
    _, ref_err = reference.communicate(timeout=120)
    assert reference.returncode == 0, ref_err
    for name in ("results.csv", "index.html"):
        assert (killed / name).read_bytes() == (clean / name).read_bytes(), name
    for method in (0, 1):
        a, b = Store(clean).maps(method), Store(killed).maps(method)
        assert a[0].tolist() == b[0].tolist()
        np.testing.assert_array_equal(a[1], b[1])
    assert sorted(p.name for p in (killed / "images").iterdir()) == sorted(
        p.name for p in (clean / "images").iterdir()
    )
    assert not list(killed.rglob(".*.tmp"))


# --------------------------------------------------------------------------- command line


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_audit_arguments(parser)
    return parser.parse_args(argv)


def test_command_reports_partial_success(
    classes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_file = tmp_path / "tiny.pth"
    torch.save(tiny_model(), model_file)
    out = tmp_path / "cli"
    args = _parse(
        [
            str(classes),
            "--model",
            str(model_file),
            "--trust-model",
            "--out",
            str(out),
            "--method",
            "gradcam",
            "--method",
            "eigencam,layercam",
            "--batch-size",
            "4",
            "--quiet",
        ]
    )
    assert audit_command(args) == 3  # one unreadable file
    assert capsys.readouterr().out == ""
    meta = json.loads((out / "summary.json").read_text())["meta"]
    assert meta["methods"] == ["gradcam", "eigencam", "layercam"]
    args = _parse(
        [
            str(classes),
            "--model",
            str(model_file),
            "--trust-model",
            "--out",
            str(out),
            "--method",
            "gradcam,eigencam,layercam",
            "--batch-size",
            "4",
        ]
    )
    assert audit_command(args) == 3
    printed = capsys.readouterr()
    assert "resumed: 2 of 2 batches were done" in printed.out
    assert "6 explained, 1 unreadable, accuracy" in printed.out
    assert f"report: {out / 'index.html'}" in printed.out


def test_command_errors_are_seewhy_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such file or folder"):
        audit_command(_parse([str(tmp_path / "nowhere"), "--quiet"]))
    with pytest.raises(seewhy.MethodNotFound):
        audit_command(_parse([str(tmp_path), "--method", "gradcan", "--quiet"]))


def test_ray_engine_without_ray_names_the_install(
    classes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(BackendError, match=r"pip install 'seewhy\[audit\]'"):
        audit(classes, tiny_model(), out=tmp_path / "x", engine="ray")


def test_import_loads_no_framework() -> None:
    code = (
        "import sys, seewhy, seewhy.audit, seewhy.report, seewhy.cli.audit\n"
        "from seewhy.audit import audit, collect\n"
        "heavy = [m for m in ('torch', 'ray', 'pyarrow', 'tensorflow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_audit_says_what_it_guessed_and_takes_a_size(classes: Path, tmp_path: Path) -> None:
    """A model that declares nothing: one note saying the guess (and that the audit resizes
    every picture to it, unlike explain); ``size=`` is what it is fed then, no longer a guess.
    The CLI's --size reaches the audit (it was parsed and dropped)."""
    bare = tiny_cnn(len(LABELS), 0, widths=(8, 8), inplace=False)
    with pytest.warns(seewhy.InputGuessWarning, match=r"size 224x224 \(every picture resized"):
        audit(classes, bare, out=tmp_path / "guessed", batch_size=8)
    with pytest.warns(seewhy.InputGuessWarning) as caught:  # mean/std are still a guess
        audit(classes, bare, out=tmp_path / "sized", batch_size=8, size=(32, 40))
    assert not [w for w in caught if "size" in str(w.message).split(";")[0]]
    config = json.loads((tmp_path / "sized" / "audit.json").read_text())["config"]
    assert "size=(32, 40)" in config["preprocess"]

    model_file = tmp_path / "bare.pth"
    torch.save(bare, model_file)
    argv = [str(classes), "--model", str(model_file), "--trust-model", "--size", "48"]
    args = _parse([*argv, "--out", str(tmp_path / "cli"), "--quiet"])
    with pytest.warns(seewhy.InputGuessWarning):  # the CLI turns it into a note line
        assert audit_command(args) == 3  # the broken file, reported
    config = json.loads((tmp_path / "cli" / "audit.json").read_text())["config"]
    assert "size=(48, 48)" in config["preprocess"]
    with pytest.raises(InvalidInput, match=r"size: expected \(height, width\), two positive"):
        audit(classes, bare, out=tmp_path / "bad", size=(0, 32))
