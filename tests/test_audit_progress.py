"""The audit's progress bar: images per second and the time left, also for slow models."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seewhy.cli.audit import _Bar, add_audit_arguments, audit_command

torch = pytest.importorskip("torch")
tqdm_std = pytest.importorskip("tqdm.std")

from models import audit_model  # noqa: E402


def test_bar_shows_images_per_second_and_time_left(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(tqdm_std, "time", lambda: clock[0])
    bar = _Bar(quiet=False)
    bar(2, 12)  # a resumed run: 2 images were done before
    for done in (4, 6):
        clock[0] += 8.0  # 2 images in 8 s: slower than one a second
        bar(done, 12)
    bar.close()
    last = capsys.readouterr().err.rstrip().split("\r")[-1]
    # this run's rate (4 images in 16 s), never tqdm's "s/img", and 6 images left at that rate
    assert "6/12 images" in last and "0.25 img/s" in last, last
    assert "00:16 elapsed, 00:24 left" in last, last


def test_quiet_bar_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    bar = _Bar(quiet=True)
    bar(0, 3)
    bar(3, 3)
    bar.close()
    assert capsys.readouterr().err == ""


def test_audit_command_draws_the_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(data / f"{k}.png")
    model = audit_model(size=None)
    model_file = tmp_path / "m.pth"
    torch.save(model, model_file)
    parser = argparse.ArgumentParser()
    add_audit_arguments(parser)
    argv = [str(data), "--model", str(model_file), "--trust-model", "--batch-size", "2"]
    args = parser.parse_args([*argv, "--out", str(tmp_path / "o")])
    assert audit_command(args) == 0
    err = capsys.readouterr().err
    final = err.rstrip().split("\r")[-1]
    assert re.search(r"3/3 images \[\d\d:\d\d elapsed, \d\d:\d\d left, +[\d.]+ img/s\]", final), err
