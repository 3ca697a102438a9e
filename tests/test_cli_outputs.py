"""Every file a command writes goes through one output plan (issue 23, point 2).

Written as the accident: ``--grid`` or ``--json`` named like one of the run's
pictures, like its model, like a panel or like each other, through a link or
in another letter case. Each time the user's files stay byte-identical, the
run stops in one line before the model loads, and nothing at all is written.
Re-running a command into the same place overwrites only what seewhy wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import seewhy
from numpy_backend import NumpyBackend, closed_form_model
from seewhy.cli import evaluate as evaluate_cli
from seewhy.cli import explain as explain_cli
from seewhy.cli import main
from seewhy.cli import sanity as sanity_cli
from seewhy.cli.outputs import OutputPlan, written_by_seewhy


def _model() -> Any:
    backend = NumpyBackend(closed_form_model())
    backend.seewhy_spec = seewhy.ModelSpec(
        name="closed-form", preprocess=seewhy.Preprocess(size=(8, 8)), labels=("a", "b", "c", "d")
    )
    return backend


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every command loads the closed-form model; the list says whether any did."""
    loaded: list[str] = []

    def load(args: Any) -> Any:
        loaded.append(args.model)
        return _model()

    for module in (explain_cli, evaluate_cli, sanity_cli):
        monkeypatch.setattr(module, "load_model", load)
    return loaded


def _picture(path: Path, seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, (12, 12, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _tree(root: Path) -> dict[str, str]:
    """Every file and folder below ``root``: path -> sha256 (folders: "dir")."""
    return {
        str(p.relative_to(root)): "dir"
        if p.is_dir()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    _picture(folder / "a.png", 1)
    _picture(folder / "b.png", 2)
    (tmp_path / "model.onnx").write_bytes(b"the user's model")
    return folder


def _refused(code: int, capsys: pytest.CaptureFixture[str], *words: str) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, captured.err
    assert lines[0].startswith("seewhy: error: ") and "Traceback" not in captured.err
    assert all(word in lines[0] for word in words), lines[0]
    return lines[0]


# name -> (extra arguments given tmp_path, words the one line must hold)
_EXPLAIN_COLLISIONS: dict[str, tuple[Callable[[Path], list[str]], tuple[str, ...]]] = {
    "grid on a picture": (lambda t: ["--grid", str(t / "photos" / "a.png")], ("--grid", "input")),
    "json on a picture": (lambda t: ["--json", str(t / "photos" / "b.png")], ("--json", "input")),
    "json on the model": (lambda t: ["--json", str(t / "model.onnx")], ("--json", "input")),
    "grid on a picture in another case": (
        lambda t: ["--grid", str(t / "photos" / "A.PNG")],
        ("--grid", "input"),
    ),
    "grid on a picture through ..": (
        lambda t: ["--grid", str(t / "out" / ".." / "photos" / "a.png")],
        ("--grid", "input"),
    ),
    "grid and json one file": (
        lambda t: ["--grid", str(t / "same.png"), "--json", str(t / "same.png")],
        ("--json", "also --grid"),
    ),
    "grid on a panel": (
        lambda t: ["--grid", str(t / "out" / "a.seewhy.png")],
        ("--grid", "also the panel of"),
    ),
    "json on a panel": (
        lambda t: ["--json", str(t / "out" / "b.seewhy.png")],
        ("--json", "also the panel of"),
    ),
    "json on a folder": (lambda t: ["--json", str(t / "photos")], ("--json", "folder")),
    "grid with no picture ending": (lambda t: ["--grid", str(t / "grid.pgn")], ("--grid", ".png")),
}


@pytest.mark.parametrize("case", sorted(_EXPLAIN_COLLISIONS))
def test_explain_never_writes_over_its_inputs_or_itself(
    case: str, tmp_path: Path, photos: Path, loads: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    extra, words = _EXPLAIN_COLLISIONS[case]
    before = _tree(tmp_path)
    args = [str(photos), "--model", str(tmp_path / "model.onnx"), "--out", str(tmp_path / "out")]
    code = main(["explain", *args, *extra(tmp_path), "--force"])  # --force does not help
    _refused(code, capsys, *words)
    assert _tree(tmp_path) == before, "nothing changed, nothing was written"
    assert loads == [], "refused before the model was loaded"


def test_a_link_to_a_picture_is_the_picture(
    tmp_path: Path, photos: Path, loads: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    hard, soft = tmp_path / "hard.json", tmp_path / "soft.png"
    try:
        os.link(photos / "a.png", hard)
        soft.symlink_to(photos / "b.png")
    except OSError:
        pytest.skip("this file system has no links")
    before = _tree(tmp_path)
    for option, path in (("--json", hard), ("--grid", soft)):
        code = main(["explain", str(photos), "--out", str(tmp_path / "o"), option, str(path)])
        _refused(code, capsys, option, "input", "a.png" if path == hard else "b.png")
    assert _tree(tmp_path) == before and loads == []


def test_a_file_seewhy_did_not_write_needs_force(
    tmp_path: Path, photos: Path, loads: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    mine = {
        "--json": tmp_path / "notes.json",
        "--grid": tmp_path / "holiday.png",
        "--out": out / "a.seewhy.png",  # a panel's name, written by someone else
    }
    mine["--json"].write_text('{"my": "notes"}')
    _picture(mine["--grid"], 7)
    _picture(mine["--out"], 8)
    before = _tree(tmp_path)
    named = ["--json", str(mine["--json"]), "--grid", str(mine["--grid"])]
    code = main(["explain", str(photos), "--out", str(out), *named, "--quiet"])
    _refused(code, capsys, "a.seewhy.png", "and 2 more", "--force")
    assert _tree(tmp_path) == before and loads == []

    assert main(["explain", str(photos), "--out", str(out), *named, "--quiet", "--force"]) == 0
    assert all(written_by_seewhy(p) for p in mine.values()), "overwritten, now seewhy's"
    assert json.loads(mine["--json"].read_text())["written_by"].startswith("seewhy ")


def test_running_again_overwrites_only_its_own_files(
    tmp_path: Path, photos: Path, loads: list[str]
) -> None:
    out, report, grid = tmp_path / "out", tmp_path / "r.json", tmp_path / "grid.png"
    args = ["explain", str(photos), "--out", str(out), "--json", str(report), "--grid", str(grid)]
    assert main([*args, "--quiet", "--method", "gradcam,saliency"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}.{m}.seewhy.png" for stem in "ab" for m in ("gradcam", "saliency")
    )
    for path in [*out.iterdir(), report, grid]:
        assert written_by_seewhy(path), path
    pictures = {p: hashlib.sha256(p.read_bytes()).digest() for p in photos.iterdir()}
    assert main([*args, "--quiet", "--method", "gradcam,saliency"]) == 0, "no --force needed"
    assert {p: hashlib.sha256(p.read_bytes()).digest() for p in photos.iterdir()} == pictures
    assert len(loads) == 2


def test_evaluate_and_sanity_plan_their_files_too(
    tmp_path: Path, photos: Path, loads: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    before = _tree(tmp_path)
    picture, plot = str(photos / "a.png"), str(tmp_path / "plot.png")
    refusals = [
        (["evaluate", str(photos), "--json", picture], ("--json", "input")),
        (["sanity", str(photos), "--out", picture], ("--out", "input")),
        (["sanity", str(photos), "--out", plot, "--json", plot], ("--json", "also the plot")),
        (["sanity", str(photos), "--out", str(tmp_path / "plot.xyz")], ("--out", ".png")),
        (
            ["sanity", str(photos), "--out", plot, "--json", str(tmp_path / "model.onnx")],
            ("input",),
        ),
    ]
    for args, words in refusals:
        _refused(main([*args, "--model", str(tmp_path / "model.onnx")]), capsys, *words)
    assert _tree(tmp_path) == before and loads == []


def test_sanity_marks_its_plot_and_json_and_may_run_again(tmp_path: Path, photos: Path) -> None:
    pytest.importorskip("torch", reason="sanity runs the bundled model, a PyTorch one")
    plot, numbers = tmp_path / "s.png", tmp_path / "s.json"
    args = ["sanity", str(photos / "a.png"), "--steps", "2", "--out", str(plot)]
    for _ in range(2):
        assert main([*args, "--json", str(numbers)]) == 0
    assert written_by_seewhy(plot) and written_by_seewhy(numbers)
    assert Image.open(plot).format == "PNG"


def test_the_refusal_comes_before_the_model_in_a_real_process(tmp_path: Path, photos: Path) -> None:
    """No model is given a chance: the default model would take seconds to load."""
    picture = photos / "a.png"
    digest = hashlib.sha256(picture.read_bytes()).hexdigest()
    run = subprocess.run(
        [sys.executable, "-m", "seewhy.cli", "explain", str(photos), "--grid", str(picture)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "--grid" in run.stderr
    assert hashlib.sha256(picture.read_bytes()).hexdigest() == digest
    assert not any(tmp_path.glob("*.seewhy.png")), "no panel was written either"


def test_a_file_created_meanwhile_is_left_alone(tmp_path: Path) -> None:
    plan = OutputPlan([])
    path = plan.claim(tmp_path / "late.json", "--json", option="--json")
    path.write_text("someone else's")  # appears after the plan, before the write
    with pytest.raises(seewhy.InvalidInput, match="appeared"):
        plan.open(path)
    assert path.read_text() == "someone else's"


def test_only_seewhys_own_marks_count(tmp_path: Path) -> None:
    plain = _picture(tmp_path / "plain.png", 1)
    fake = tmp_path / "fake.json"
    fake.write_text('{"model": "x"}')
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert not any(written_by_seewhy(p) for p in (plain, fake, empty, tmp_path / "none"))


@pytest.mark.parametrize(
    ("demo", "written"),
    [("shortcut", "scores.png"), ("segmentation", "regions.png")],
)
def test_a_demo_never_writes_over_a_report_folder_it_did_not_make(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], demo: str, written: str
) -> None:
    """The user's own ``index.html`` (and picture) in ``--out`` stop the demo before training."""
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("<!doctype html><p>the user's own page</p>\n")
    _picture(out / written, 3)
    before = _tree(tmp_path)
    code = main(["demo", demo, "--out", str(out), "--quick"])
    err = capsys.readouterr().err
    assert code == 1 and "training" not in err, err
    assert err.count("\n") == 1 and "--force" in err and "did not write" in err, err
    assert _tree(tmp_path) == before
