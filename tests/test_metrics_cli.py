"""The CLI commands `seewhy evaluate`, `seewhy sanity` and `seewhy demo shortcut`."""

from __future__ import annotations

import argparse
import json

import pytest

from seewhy import demo as demo_module
from seewhy.cli import demo as cli_demo
from seewhy.cli import evaluate as cli_evaluate
from seewhy.cli import sanity as cli_sanity
from seewhy.errors import InvalidInput


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seewhy")
    sub = p.add_subparsers(dest="command", required=True)
    cli_evaluate.add_evaluate_arguments(sub.add_parser("evaluate"))
    cli_sanity.add_sanity_arguments(sub.add_parser("sanity"))
    demo = sub.add_parser("demo").add_subparsers(dest="demo", required=True)
    cli_demo.add_demo_shortcut_arguments(demo.add_parser("shortcut"))
    return p


def test_evaluate_writes_json(tmp_path, capsys):
    pytest.importorskip("torch")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"sample:chelsea": [40, 20, 200, 200]}), encoding="utf-8")
    out = tmp_path / "metrics.json"
    args = parser().parse_args(
        [
            "evaluate",
            "sample:chelsea",
            "--steps",
            "4",
            "--json",
            str(out),
            "--boxes",
            str(boxes),
            "--metrics",
            "deletion,insertion,average-drop,pointing_game,energy_in_box,iou",
            "--precision",
            "bfloat16",
        ]
    )
    assert cli_evaluate.evaluate_command(args) == 0
    payload = json.loads(out.read_text(encoding="utf-8"))
    scores = payload["methods"]["gradcam"]["metrics"]
    assert set(scores) == {
        "deletion",
        "insertion",
        "average_drop",
        "pointing_game",
        "energy_in_box",
        "iou",
    }
    assert len(scores["deletion"]["fractions"]) == 5
    assert scores["deletion"]["params"]["precision"] == "bfloat16"
    assert scores["average_drop"]["params"]["precision"] == "bfloat16"
    assert "gradcam: deletion=" in capsys.readouterr().out


def test_evaluate_errors(tmp_path):
    args = parser().parse_args(["evaluate", "sample:chelsea", "--metrics", "iou"])
    pytest.importorskip("torch")
    with pytest.raises(InvalidInput, match="boxes"):
        cli_evaluate.evaluate_command(args)
    args = parser().parse_args(["evaluate", str(tmp_path)])
    with pytest.raises(InvalidInput, match="no image files"):
        cli_evaluate.evaluate_command(args)


@pytest.mark.parametrize(
    ("asked", "message"),
    [
        ("deletion,deletoin", "unknown metric 'deletoin'; did you mean deletion?"),
        ("insertion,iou,pointing-game", "--metrics: iou, pointing_game need --boxes FILE"),
    ],
)
def test_evaluate_refuses_metrics_before_the_model_loads(monkeypatch, asked, message):
    def no_model(args):
        raise AssertionError("the model was loaded for metrics that cannot run")

    monkeypatch.setattr(cli_evaluate, "load_model", no_model)
    args = parser().parse_args(["evaluate", "sample:chelsea", "--metrics", asked])
    with pytest.raises(InvalidInput) as caught:
        cli_evaluate.evaluate_command(args)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_sanity_writes_plot(tmp_path, capsys):
    pytest.importorskip("torch")
    plot = tmp_path / "sanity.png"
    numbers = tmp_path / "sanity.json"
    options = ["--steps", "2", "--randomized-target", "predicted"]
    args = parser().parse_args(
        ["sanity", "sample:chelsea", *options, "--out", str(plot), "--json", str(numbers)]
    )
    assert cli_sanity.sanity_command(args) == 0
    assert plot.stat().st_size > 1000
    result = json.loads(numbers.read_text(encoding="utf-8"))["results"][0]
    assert result["method"] == "gradcam" and len(result["steps"]) == 2
    assert result["params"]["randomized_target"] == "predicted"
    for key in ("spearman", "spearman_abs", "spearman_signed", "ssim", "hog"):
        assert len(result["steps"][1][f"{key}_per_image"]) == 1 and f"final_{key}" in result
    out = capsys.readouterr().out
    assert "final Spearman" in out and "HOG" in out and "no abs" in out


def test_demo_command_passes_options(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake(out_dir, **kwargs):
        seen.update(kwargs, out_dir=out_dir)
        return demo_module.DemoResult(
            out_dir=tmp_path,
            report=tmp_path / "index.html",
            images=(),
            framework="torch",
            accuracy={
                "clean": {"shortcut_holds": 0.9, "shortcut_broken": 0.9},
                "shortcut": {"shortcut_holds": 1.0, "shortcut_broken": 0.0},
            },
            energy={"clean": 0.4, "shortcut": 0.05},
            pointing={"clean": 0.9, "shortcut": 0.1},
            chance=0.14,
            flagged={"clean": False, "shortcut": True},
            seconds=1.0,
        )

    monkeypatch.setattr(demo_module, "run_shortcut_demo", fake)
    options = ["--quick", "--shortcut", "tint", "--framework", "keras"]
    args = parser().parse_args(["demo", "shortcut", "--out", str(tmp_path), *options])
    assert cli_demo.demo_shortcut_command(args) == 0
    assert seen["shortcut"] == "tint" and seen["n_train"] == 1200
    assert seen["framework"] == "keras"  # the Keras demo itself: test_keras_demo.py
    assert "shortcut suspected" in capsys.readouterr().out
