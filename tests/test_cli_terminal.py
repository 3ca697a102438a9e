"""What reaches the user's terminal (issue 23, points 6 and 9).

Written as the attack: a model whose class names retitle the window
(``ESC ] 0 ; pwned BEL``), clear the screen (``ESC [ 2 J``) or flip the text
(U+202E), a picture whose file name does the same, a layer named so. Nothing
the command line prints, nor ``repr`` of an Explanation, may carry ESC, BEL,
the one-byte CSI (0x9b) or a bidi override; the names still show, escaped.
And every error is one line, whatever the exception's message looks like.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import seewhy
from numpy_backend import NumpyBackend, closed_form_model
from seewhy.cli import evaluate as evaluate_cli
from seewhy.cli import explain as explain_cli
from seewhy.cli import layers as layers_cli
from seewhy.cli import main, run
from seewhy.errors import ConstantMapWarning, InvalidInput
from seewhy.terminal import one_line, printable

TITLE, CLEAR, FLIP, CSI = "\x1b]0;pwned\x07", "\x1b[2J", "\u202e", "\x9b31m"
HOSTILE_LABELS = (f"cat{TITLE}", f"dog{CLEAR}", f"{FLIP}gpj.exe", f"owl{CSI}")
#: a picture's name that retitles, clears and flips
HOSTILE_NAME = f"x{TITLE}{CLEAR}{FLIP}gnp.png"
FORBIDDEN = ("\x1b", "\x07", "\x9b", "\u202e", "\u2066", "\u200f")


def _clean(text: str) -> None:
    found = [hex(ord(c)) for c in FORBIDDEN if c in text]
    assert not found, f"{found} reached the terminal in {text!r}"


def _model() -> Any:
    backend = NumpyBackend(closed_form_model())
    backend.seewhy_spec = seewhy.ModelSpec(
        name="closed-form", preprocess=seewhy.Preprocess(size=(8, 8)), labels=HOSTILE_LABELS
    )
    return backend


def _picture(path: Path, seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, (12, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A picture with a hostile name, a broken one too, and the closed-form model."""
    try:
        good = _picture(tmp_path / HOSTILE_NAME, 1)
    except OSError:
        pytest.skip("this file system refuses control characters in names")
    bad = tmp_path / f"broken{CLEAR}.png"
    bad.write_bytes(b"not a picture")
    for module in (explain_cli, evaluate_cli):
        monkeypatch.setattr(module, "load_model", lambda args: _model())
    return {"good": good, "bad": bad}


def test_printable_escapes_controls_and_bidi_and_keeps_the_rest() -> None:
    text = f"é 猫 👍 a\\b{TITLE}{CLEAR}{FLIP}\u2066\u200e\u061c\x7f\x85\n\t\udce9"
    shown = printable(text)
    assert shown == (
        "é 猫 👍 a\\b\\x1b]0;pwned\\x07\\x1b[2J\\u202e\\u2066\\u200e\\u061c\\x7f\\x85\\x0a\\x09"
        "\\udce9"
    )
    assert shown.encode("utf-8")  # a name that is not UTF-8 prints too
    assert one_line(f"first\n  second\r\n{CLEAR}third") == "first second \\x1b[2Jthird"


def test_explain_prints_hostile_labels_and_names_escaped(
    hostile: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(hostile["good"]), str(hostile["bad"]), "--top-k", "4", "--json", "-"]
    code = main(["explain", *args, "--out", str(tmp_path / "out")])
    assert code == 3, "the broken picture is reported, the other explained"
    captured = capsys.readouterr()
    _clean(captured.out + captured.err)
    assert "cat\\x1b]0;pwned\\x07" in captured.out and "\\u202egpj.exe" in captured.out
    assert "x\\x1b]0;pwned" in captured.out, "the picture's name, escaped"
    assert "broken\\x1b[2J.png" in captured.err and "skipped" in captured.err
    record = json.loads(captured.out[captured.out.index("{") :])
    assert {p["label"] for p in record["images"][0]["predictions"]} == set(HOSTILE_LABELS)


def test_evaluate_prints_escaped_json(
    hostile: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(hostile["good"]), "--method", "gradcam", "--metrics", "average_drop"]
    assert main(["evaluate", *args]) == 0
    captured = capsys.readouterr()
    _clean(captured.out + captured.err)
    assert json.loads(captured.out)["methods"]["gradcam"]["target_labels"][0] in HOSTILE_LABELS


def test_repr_of_an_explanation_is_escaped(hostile: dict[str, Path]) -> None:
    ex = seewhy.explain(_model(), [str(hostile["good"])], "gradcam", top_k=4)
    shown = repr(ex)
    _clean(shown)
    assert ex.target_labels[0] in HOSTILE_LABELS
    assert printable(ex.target_labels[0]) in shown


def test_layer_names_are_escaped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential()
    model.add_module(f"conv{TITLE}", torch.nn.Conv2d(3, 4, 3))
    model.add_module(f"act{CLEAR}{FLIP}", torch.nn.ReLU())
    model.add_module("pool", torch.nn.AdaptiveAvgPool2d(1))
    model.add_module("flat", torch.nn.Flatten())
    model.add_module("fc", torch.nn.Linear(4, 3))
    model.seewhy_spec = seewhy.ModelSpec(name="t", preprocess=seewhy.Preprocess(size=(16, 16)))
    monkeypatch.setattr(layers_cli, "load_model", lambda args: model)
    assert main(["layers"]) == 0
    captured = capsys.readouterr()
    _clean(captured.out + captured.err)
    assert "act\\x1b[2J\\u202e" in captured.out


def test_warnings_and_notes_are_one_printable_line(capsys: pytest.CaptureFixture[str]) -> None:
    def command(args: argparse.Namespace) -> int:
        warnings.warn(f"the map of {CLEAR}cat\nis flat", ConstantMapWarning, stacklevel=1)
        warnings.warn(f"class {TITLE} looks odd\nsecond line", UserWarning, stacklevel=1)
        return 0

    with warnings.catch_warnings(record=True) as shown:  # what Python would print
        warnings.simplefilter("always")
        assert run(command, argparse.Namespace()) == 0
    err = capsys.readouterr().err
    _clean(err)
    assert err == "seewhy: note: the map of \\x1b[2Jcat is flat\n"
    (other,) = shown
    assert other.category is UserWarning
    assert str(other.message) == "class \\x1b]0;pwned\\x07 looks odd second line"


class _Unreadable(Exception):
    """A framework's exception whose message fails to build."""

    def __str__(self) -> str:
        raise RuntimeError("no message\nat all")


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError(f"first line\nsecond line\n  File 'x.py', line 3\n{CLEAR}done"),
        InvalidInput(f"labels: {TITLE}\nmore"),
        ValueError(""),
        _Unreadable(),
    ],
    ids=["framework", "seewhy", "empty", "unreadable"],
)
def test_every_error_is_one_printable_line(
    error: Exception, capsys: pytest.CaptureFixture[str]
) -> None:
    def command(args: argparse.Namespace) -> int:
        raise error

    assert run(command, argparse.Namespace()) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("seewhy: error: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    _clean(captured.err)
    if error.args and error.args[0]:
        assert one_line(error.args[0]) in lines[0]
    assert type(error).__name__ in lines[0] or isinstance(error, InvalidInput)


def test_a_typo_quoting_a_hostile_name_is_escaped() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "seewhy.cli", "explain", "x.png", f"--p{TITLE}"],  # unknown
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    _clean(done.stderr)
    assert "--p\\x1b]0;pwned\\x07" in done.stderr


# --------------------------------------------------------------------------- end to end


def test_an_onnx_file_with_hostile_class_names(tmp_path: Path) -> None:
    """The attack as filed: class names in an ONNX file's metadata, a file name, a real process."""
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from models import tiny_cnn

    path = tmp_path / "hostile.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation note
        torch.onnx.export(
            tiny_cnn(4, seed=0, inplace=False),
            torch.zeros(1, 3, 32, 32),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
        )
    graph = onnx.load(path)
    onnx.helper.set_model_props(graph, {"labels": json.dumps(list(HOSTILE_LABELS))})
    onnx.save(graph, path)
    try:
        picture = _picture(tmp_path / HOSTILE_NAME, 2)
    except OSError:
        pytest.skip("this file system refuses control characters in names")
    args = ["explain", str(picture), "--model", str(path), "--method", "occlusion", "--top-k", "4"]
    done = subprocess.run(
        [sys.executable, "-m", "seewhy.cli", *args, "--providers", "CPUExecutionProvider"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    _clean(done.stdout + done.stderr)
    assert "cat\\x1b]0;pwned\\x07" in done.stdout, "the label is shown, escaped"
