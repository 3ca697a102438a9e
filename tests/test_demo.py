"""The shortcut demo flags the shortcut model; Grad-CAM finds synthetic objects."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

import seewhy
from seewhy import synthetic
from seewhy.cli.outputs import written_by_seewhy
from seewhy.demo import run_shortcut_demo
from seewhy.errors import InvalidInput
from seewhy.metrics import pointing_game


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    # 1500 pictures x 8 epochs instead of the default 2000 x 10: 40 % less training, and every
    # claim below still holds with room (pointing 0.95, accuracies 0.93-1.0, energy 0.42 / 0.07
    # against chance 0.14, measured); 800 x 10 or 1000 x 6 do not
    return run_shortcut_demo(
        tmp_path_factory.mktemp("demo"), n_test=200, examples=4, n_train=1500, epochs=8
    )


def test_demo_flags_the_shortcut_model(demo):
    acc = demo.accuracy
    assert acc["shortcut"]["shortcut_holds"] > 0.95  # looks perfect while the shortcut holds
    assert acc["shortcut"]["shortcut_broken"] < 0.3  # and collapses when it breaks
    assert acc["clean"]["shortcut_broken"] > 0.8
    assert demo.flagged == {"clean": False, "shortcut": True}
    assert demo.energy["shortcut"] < demo.chance < demo.energy["clean"]


def test_demo_report_files(demo):
    html = Path(demo.report).read_text(encoding="utf-8")
    assert "shortcut suspected" in html and "examples.png" in html and "scores.png" in html
    for picture in demo.images:
        assert Path(picture).stat().st_size > 1000
    # marked as seewhy's, so running the demo again into the same folder needs no --force
    for written in (demo.report, *demo.images):
        assert written_by_seewhy(written), written
    summary = demo.to_dict()
    assert summary["flagged"]["shortcut"] is True and "models" not in summary


def test_gradcam_points_at_synthetic_objects(demo):
    """Target: the tiny CNN's Grad-CAM peak is on the object in >= 90% of test images."""
    test = synthetic.make_shapes(200, seed=123)
    ex = seewhy.explain(demo.models["clean"], test.images, "gradcam")
    assert pointing_game(ex, masks=test.masks).mean >= 0.9  # default 15 px @ 224 = 4 px here


def test_demo_validation(tmp_path):
    with pytest.raises(InvalidInput, match="framework"):
        run_shortcut_demo(tmp_path, framework="jax")
    with pytest.raises(InvalidInput, match="shortcut"):
        run_shortcut_demo(tmp_path, shortcut="logo")


@pytest.mark.parametrize("examples", [0, True, 7, 2.0])
def test_both_demos_refuse_an_examples_count_before_training_or_writing(tmp_path, examples):
    from seewhy.demo import run_segmentation_demo

    out = tmp_path / "report"
    for run in (run_shortcut_demo, run_segmentation_demo):
        with pytest.raises(InvalidInput, match=r"^examples: expected 1\.\.6, got"):
            run(out, n_test=6, examples=examples)
        assert not out.exists(), run.__name__  # refused before the folder is made
