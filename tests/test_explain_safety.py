"""``seewhy explain`` and the API under hostile or careless input (issue 13: 3, 7, 11).

Written as the accident: two pictures called ``1`` must not share one panel
file, the user's files stay byte-identical, a model's NaN is not "class 0",
and a bad argument is one line naming it, never a raw TypeError.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import seewhy
from numpy_backend import NumpyBackend, closed_form_model
from seewhy import NOT_FINITE, InvalidInput, NonFiniteScoresWarning
from seewhy.cli import explain as explain_cli
from seewhy.cli import main

# Inputs whose first value is above this get NaN logits, below the other +inf.
_NAN_ABOVE, _INF_BELOW = 2.2, -5.0


class _Poisoned(NumpyBackend):
    """The closed-form model, with NaN or infinite logits for marked inputs."""

    def _poison(self, x: np.ndarray, logits: np.ndarray) -> np.ndarray:
        out = np.array(logits, dtype=np.float32, copy=True)
        out[x[:, 0, 0, 0] > _NAN_ABOVE] = np.nan
        out[x[:, 0, 0, 0] < _INF_BELOW, 0] = np.inf
        return out

    def predict(self, x: np.ndarray, **kw: Any) -> np.ndarray:
        return self._poison(x, super().predict(x, **kw))

    def capture(self, x: np.ndarray, **kw: Any) -> Any:
        cap = super().capture(x, **kw)
        return replace(cap, logits=self._poison(x, cap.logits))

    def input_gradients(self, x: np.ndarray, **kw: Any) -> Any:
        cap = super().input_gradients(x, **kw)
        return replace(cap, logits=self._poison(x, cap.logits))


def _model(poisoned: bool = False, size: tuple[int, int] = (8, 8)) -> Any:
    backend = (_Poisoned if poisoned else NumpyBackend)(closed_form_model())
    backend.seewhy_spec = seewhy.ModelSpec(
        name="closed-form", preprocess=seewhy.Preprocess(size=size), labels=("a", "b", "c", "d")
    )
    return backend


def _picture(path: Path, seed: int, *, white_corner: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 240, (12, 12, 3), dtype=np.uint8)
    if white_corner:
        pixels[:4, :4] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def cli_model(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``seewhy explain`` runs on the closed-form model (no weights to load)."""
    model = _model(poisoned=True)
    monkeypatch.setattr(explain_cli, "load_model", lambda args: model)
    return model


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _explain(*args: str) -> int:
    return main(["explain", *args, "--quiet"])


# -- point 3: outputs never collide ----------------------------------------------------


def test_three_pictures_called_1_get_three_panels(tmp_path: Path, cli_model: Any) -> None:
    sources = [
        _picture(tmp_path / "cat" / "1.jpg", 1),
        _picture(tmp_path / "dog" / "1.jpg", 2),
        _picture(tmp_path / "1.png", 3),
    ]
    out, report = tmp_path / "out", tmp_path / "r.json"
    assert _explain(*map(str, sources), "--out", str(out), "--json", str(report)) == 0
    records = json.loads(report.read_text())["images"]
    written = [Path(r["outputs"]["gradcam"]) for r in records]
    assert [r["source"] for r in records] == list(map(str, sources))
    assert len(set(written)) == 3 and all(p.is_file() for p in written)
    assert sorted(p.name for p in out.iterdir()) == [
        "1-2.seewhy.png",
        "1-3.seewhy.png",
        "1.seewhy.png",
    ]
    contents = {p.read_bytes() for p in written}
    assert len(contents) == 3, "each panel shows its own picture"


def test_a_folder_walk_keeps_its_sub_folders(tmp_path: Path, cli_model: Any) -> None:
    data = tmp_path / "data"
    for name in ("cat/1.jpg", "dog/1.jpg", "dog/deep/1.jpg", "1.png"):
        _picture(data / name, len(name))
    out = tmp_path / "out"
    code = _explain(str(data), "--recursive", "--out", str(out), "--method", "gradcam,saliency")
    assert code == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == sorted(
        f"{folder}1.{m}.seewhy.png"
        for folder in ("", "cat/", "dog/", "dog/deep/")
        for m in ("gradcam", "saliency")
    )


def test_writing_into_the_picture_folder_overwrites_no_picture(
    tmp_path: Path, cli_model: Any
) -> None:
    photos = tmp_path / "photos"
    _picture(photos / "a.png", 1)
    _picture(photos / "a.seewhy.png", 2)  # the user's own picture, with seewhy's ending
    _picture(photos / "A.jpg", 3)  # the same name on a case-insensitive disk
    (photos / "notes.txt").write_text("mine")
    before = _snapshot(photos)
    report = tmp_path / "r.json"
    assert _explain(str(photos), "--out", str(photos), "--json", str(report)) == 0
    after = _snapshot(photos)
    assert {k: after[k] for k in before} == before, "no file of the user's changed"
    outputs = [r["outputs"]["gradcam"] for r in json.loads(report.read_text())["images"]]
    assert len(set(outputs)) == 3 and not set(outputs) & {str(photos / k) for k in before}


def test_plan_never_leaves_out_and_fits_long_names(tmp_path: Path) -> None:
    long_stem = "x" * 250
    found = ["sample:../../escape", f"{tmp_path}/{long_stem}.jpg", "../up/1.jpg", "1.jpg"]
    out = tmp_path / "out"
    plan = explain_cli.output_plan(found, found, ["gradcam", "layercam"], out)
    paths = [p for source in found for p in plan[source].values()]
    assert len({str(p).casefold() for p in paths}) == len(paths) == 8
    for p in paths:
        assert p.resolve().parent == out.resolve()
        assert len(os.fsencode(p.name)) <= 255


def test_a_file_name_that_is_not_utf8_is_explained(tmp_path: Path, cli_model: Any) -> None:
    name = os.fsdecode(b"caf\xe9.png")
    try:
        source = _picture(tmp_path / name, 4)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    report = tmp_path / "r.json"
    code = main(["explain", str(source), "--out", str(tmp_path / "o"), "--json", str(report)])
    assert code == 0
    (record,) = json.loads(report.read_text())["images"]
    assert Path(record["outputs"]["gradcam"]).is_file()


# -- point 7: NaN scores are not class 0 ----------------------------------------------


def _marked_batch() -> np.ndarray:
    x = np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
    x[1, 0, 0, 0] = 7.0  # NaN logits
    x[2, 0, 0, 0] = -9.0  # one +inf logit
    return x


def _strict(payload: Any) -> Any:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-strict JSON token {token}")

    return json.loads(json.dumps(payload, allow_nan=False), parse_constant=refuse)


def test_nan_logits_are_marked_not_finite_and_warned_once() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ex = seewhy.explain(_model(poisoned=True), _marked_batch(), "gradcam", top_k=3)
    named = [w for w in caught if issubclass(w.category, NonFiniteScoresWarning)]
    assert len(named) == 1
    assert "<array 1>" in str(named[0].message) and "<array 2>" in str(named[0].message)
    assert "<array 0>" not in str(named[0].message)
    assert ex.scores_finite.tolist() == [True, False, False, True]
    for i in (1, 2):
        (only,) = ex.predictions[i]
        assert only.index == NOT_FINITE and not only.finite and np.isnan(only.probability)
        assert "not finite" in ex.label(i)
    assert all(len(ex.predictions[i]) == 3 and ex.predictions[i][0].finite for i in (0, 3))
    assert all(isinstance(p.index, int) for preds in ex.predictions for p in preds)
    summary = _strict(ex.to_dict())
    assert [im["scores_finite"] for im in summary["images"]] == [True, False, False, True]
    assert summary["images"][1]["predictions"] == []


def test_predict_marks_nan_logits_too() -> None:
    with pytest.warns(NonFiniteScoresWarning, match="<array 1>"):
        preds = seewhy.predict(_model(poisoned=True), _marked_batch(), top_k=2)
    assert [p[0].index for p in preds][1:3] == [NOT_FINITE, NOT_FINITE]
    assert preds[0][0].index != NOT_FINITE


def test_the_command_writes_strict_json_for_a_nan_image(
    tmp_path: Path, cli_model: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _picture(tmp_path / "good.png", 1)
    bad = _picture(tmp_path / "bad.png", 2, white_corner=True)
    report = tmp_path / "r.json"
    args = [str(good), str(bad), "--out", str(tmp_path / "o"), "--json", str(report)]
    assert main(["explain", *args]) == 0
    captured = capsys.readouterr()
    assert "NaN or infinite scores for 1 image(s)" in captured.err and str(bad) in captured.err
    assert "scores not finite" in captured.out
    data = _strict(json.loads(report.read_text()))
    by_source = {r["source"]: r for r in data["images"]}
    assert by_source[str(bad)]["scores_finite"] is False
    assert by_source[str(bad)]["predictions"] == []
    assert len(by_source[str(good)]["predictions"]) == 4
    assert Path(by_source[str(bad)]["outputs"]["gradcam"]).is_file()


def test_to_dict_holds_no_nan_from_settings() -> None:
    ex = seewhy.explain(_model(), _marked_batch()[:1], "gradcam")
    ex = replace(ex, params={"odd": float("nan"), "arr": np.array([np.inf, 1.0])})
    assert _strict(ex.to_dict())["params"] == {"odd": None, "arr": [None, 1.0]}


# -- point 11: arguments --------------------------------------------------------------


def _one_line(exc: pytest.ExceptionInfo[BaseException], word: str) -> None:
    text = str(exc.value)
    assert "\n" not in text and word in text, text


@pytest.mark.parametrize(
    "target",
    [
        3.5,
        2.0,
        np.float64(1.0),
        np.bool_(True),
        True,
        2**70,
        "99999999999999999999999",
        np.array(1.5),
        [0, 3.5, 1, 2],
        [0, np.bool_(False), 1, 2],
        [0, 1, 2, 2**70],
        {1, 2},
        object(),
    ],
    ids=repr,
)
def test_a_bad_target_is_one_line_naming_it(target: Any) -> None:
    with pytest.raises(InvalidInput) as exc:
        seewhy.explain(_model(), _marked_batch()[[0, 3, 0, 3]], "gradcam", target=target)
    _one_line(exc, "target")


def test_good_targets_still_work() -> None:
    x = _marked_batch()[[0, 3]]
    for target in (np.int64(2), np.array(2), [2, 2], np.array([2, 2]), "c", "2"):
        assert seewhy.explain(_model(), x, "gradcam", target=target).targets.tolist() == [2, 2]


@pytest.mark.parametrize(
    "layer", [3, 3.0, b"features", [3], [], ["features", "features"]], ids=repr
)
def test_a_layer_that_is_not_a_name_is_one_line(layer: Any) -> None:
    with pytest.raises(InvalidInput) as exc:
        seewhy.Explainer(_model(), "gradcam", layer=layer)
    _one_line(exc, "layer")


@pytest.mark.parametrize("top_k", [0, -1, 2.5, True, "3", None])
def test_top_k_below_one_is_an_error_not_clamped(top_k: Any) -> None:
    for call in (
        lambda: seewhy.Explainer(_model(), "gradcam", top_k=top_k),
        lambda: seewhy.explain(_model(), _marked_batch()[:1], "gradcam", top_k=top_k),
        lambda: seewhy.predict(_model(), _marked_batch()[:1], top_k=top_k),
    ):
        with pytest.raises(InvalidInput) as exc:
            call()
        _one_line(exc, "top_k")


def test_top_k_above_the_classes_gives_every_class() -> None:
    ex = seewhy.explain(_model(), _marked_batch()[:1], "gradcam", top_k=50)
    assert len(ex.predictions[0]) == 4


def _settings() -> list[tuple[str, str]]:
    return [(m, p) for m in seewhy.methods() for p in seewhy.registry.get(m).param_names()]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=repr)
@pytest.mark.parametrize(("method", "setting"), _settings())
def test_no_setting_takes_a_non_finite_number(method: str, setting: str, bad: float) -> None:
    # smoothgrad noise=nan used to give an all-zero map without a word
    with pytest.raises(InvalidInput) as exc:
        seewhy.registry.get(method)(**{setting: bad})
    _one_line(exc, setting)


@pytest.mark.parametrize(
    ("method", "setting", "value"),
    [
        ("occlusion", "fill", (0.0, float("nan"), 0.0)),
        ("occlusion", "window", (4, float("nan"))),
        ("rise", "fill", np.float32("nan")),
        ("smoothgrad", "noise", np.float64("nan")),
    ],
)
def test_non_finite_numbers_inside_settings_are_refused(
    method: str, setting: str, value: Any
) -> None:
    with pytest.raises(InvalidInput) as exc:
        seewhy.registry.get(method)(**{setting: value})
    _one_line(exc, setting)


def test_bad_labels_and_preprocess_are_one_line() -> None:
    for kwargs, word in (
        ({"labels": 5}, "labels"),
        ({"labels": "abcd"}, "labels"),
        ({"labels": [1, 2]}, "labels"),
        ({"preprocess": (224, 224)}, "preprocess"),
    ):
        with pytest.raises(InvalidInput) as exc:
            seewhy.Explainer(_model(), "gradcam", **kwargs)
        _one_line(exc, word)


def test_the_command_refuses_top_k_zero_in_one_line(
    tmp_path: Path, cli_model: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _picture(tmp_path / "a.png", 1)
    assert main(["explain", str(source), "--top-k", "0", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "top_k" in err
