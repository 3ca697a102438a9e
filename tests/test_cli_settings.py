"""``--set NAME=VALUE`` and ``seewhy methods NAME``: a method's settings reach it from the shell.

The model is a :class:`seewhy.BlackBox` that counts the inputs it is shown,
handed to the command through ``seewhy.load_model``: what the method did is
observed, not read back from what the command says it did.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import seewhy
from seewhy.cli import _parser, main
from seewhy.cli.methods import _documented, setting_lines
from seewhy.cli.options import _EXPLAINER_OPTIONS

SIZE = 32


class Counted:
    """A black box of three classes scored from the mean colour; ``rows`` counts its inputs."""

    def __init__(self) -> None:
        self.rows = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.rows += len(batch)
        colour = batch.mean(axis=(1, 2))  # (N, 3)
        return np.stack([colour[:, 0] - colour[:, 2], colour[:, 1], -colour[:, 0]], axis=1)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counted:
    """The model every command of the test loads, whatever ``--model`` names."""
    fn = Counted()
    box = seewhy.BlackBox(fn, classes=3, size=(SIZE, SIZE), name="counted")
    monkeypatch.setattr(seewhy, "load_model", lambda *args, **kwargs: box)
    return fn


@pytest.fixture
def picture(tmp_path: Path) -> str:
    rng = np.random.default_rng(0)
    path = tmp_path / "picture.png"
    Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(path)
    return str(path)


def _explain(picture: str, tmp_path: Path, *args: str) -> dict[str, Any]:
    record = tmp_path / "record.json"
    common = ["--out", str(tmp_path / "panels"), "--json", str(record), "--quiet"]
    assert main(["explain", picture, *args, *common]) == 0
    data: dict[str, Any] = json.loads(record.read_text(encoding="utf-8"))
    return data


def _refused(*args: str, cwd: Path) -> str:
    """The command's one stderr line; it must fail without a traceback."""
    run = subprocess.run(
        [sys.executable, "-m", "seewhy.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode != 0 and len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    return lines[0]


def test_lime_scores_as_many_copies_as_set(counted: Counted, picture: str, tmp_path: Path) -> None:
    record = _explain(picture, tmp_path, "--method", "lime", "--set", "samples=50")
    assert 50 <= counted.rows <= 52, "50 perturbed copies and the image itself"
    assert record["settings"]["lime"]["samples"] == 50
    counted.rows = 0
    _explain(picture, tmp_path, "--method", "lime")
    assert counted.rows >= 1000, "without --set, LIME's own default"


def test_values_are_typed_from_the_signature(
    counted: Counted, picture: str, tmp_path: Path
) -> None:
    sets = ["window=8,4", "stride=4", "fill=0.25", "copies_per_pass=none"]
    args = ["--method", "occlusion", *(f"--set={s}" for s in sets)]
    settings = _explain(picture, tmp_path, *args)["settings"]["occlusion"]
    assert settings["window"] == [8, 4] and settings["stride"] == 4
    assert settings["fill"] == 0.25 and settings["copies_per_pass"] is None
    lime = ["--method", "lime", "--set", "samples=20", "--set", "positive_only=no"]
    assert _explain(picture, tmp_path, *lime)["settings"]["lime"]["positive_only"] is False


def test_a_setting_goes_to_each_chosen_method_that_takes_it(
    counted: Counted, picture: str, tmp_path: Path
) -> None:
    args = ["--method", "lime,rise", "--set", "seed=7", "--set", "samples=20", "--set", "masks=30"]
    settings = _explain(picture, tmp_path, *args)["settings"]
    assert settings["lime"]["seed"] == settings["rise"]["seed"] == 7
    assert settings["lime"]["samples"] == 20 and settings["rise"]["masks"] == 30
    assert 20 + 30 <= counted.rows <= 20 + 30 + 4


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ("samples=abc", "--set: samples of lime: expected an integer, got 'abc'"),
        ("sample=50", "did you mean 'samples'"),
        ("guided=true", "it is a setting of gradcam, not of lime"),
        ("samples=-3", "lime: samples: expected a positive integer, got -3"),
        ("samples", "expected NAME=VALUE"),
    ],
)
def test_a_bad_setting_is_one_line_before_the_model_loads(
    setting: str, said: str, tmp_path: Path
) -> None:
    # the model named does not exist: an error about it would mean it was loaded first
    args = ["explain", "sample:chelsea", "--method", "lime", "--set", setting]
    line = _refused(*args, "--model", str(tmp_path / "missing.pt"), cwd=tmp_path)
    assert said in line and "missing.pt" not in line


def test_a_setting_no_chosen_method_takes_names_who_takes_it(tmp_path: Path) -> None:
    args = ["explain", "sample:chelsea", "--method", "gradcam,layercam", "--set", "masks=5"]
    line = _refused(*args, "--out", str(tmp_path), cwd=tmp_path)
    assert "'masks'" in line and "rise" in line


def test_evaluate_explains_with_the_settings(
    counted: Counted, picture: str, tmp_path: Path
) -> None:
    out = tmp_path / "metrics.json"
    args = ["evaluate", picture, "--method", "occlusion", "--set", "window=16", "--set", "seed=3"]
    assert main([*args, "--metrics", "deletion", "--steps", "2", "--json", str(out)]) == 0
    settings = json.loads(out.read_text(encoding="utf-8"))["methods"]["occlusion"]["settings"]
    assert settings["window"] == 16 and settings["seed"] == 3


def test_sanity_explains_with_the_settings(
    monkeypatch: pytest.MonkeyPatch, picture: str, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    from models import tiny_cnn, with_spec

    model = with_spec(tiny_cnn(3), (SIZE, SIZE), ["a", "b", "c"])
    monkeypatch.setattr(seewhy, "load_model", lambda *args, **kwargs: model)
    out = tmp_path / "sanity.json"
    args = ["sanity", picture, "--method", "gradcam", "--set", "guided=yes", "--steps", "2"]
    assert main([*args, "--out", str(tmp_path / "plot.png"), "--json", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))["results"][0]
    assert result["params"]["guided"] is True


def test_audit_explains_with_the_settings(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from models import tiny_cnn

    torch.save(tiny_cnn(3), tmp_path / "cnn.pt")
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(data / name)
    model = ["--model", str(tmp_path / "cnn.pt"), "--trust-model", "--size", str(SIZE)]
    report = tmp_path / "report"
    args = ["audit", str(data), *model, "--method", "occlusion", "--set", "window=16"]
    assert main([*args, "--workers", "1", "--out", str(report), "--quiet"]) == 0
    recorded = json.loads((report / "audit.json").read_text(encoding="utf-8"))
    assert _found(recorded, "window") == 16


def _found(data: Any, key: str) -> Any:
    """The first value of ``key`` anywhere in a JSON document (None when absent)."""
    if isinstance(data, dict):
        if key in data:
            return data[key]
        data = list(data.values())
    if isinstance(data, list):
        for item in data:
            value = _found(item, key)
            if value is not None:
                return value
    return None


def test_methods_name_lists_each_setting_with_its_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["methods", "lime"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.strip().startswith("samples "))
    assert "an integer" in line and "[default: 1000]" in line
    assert "Perturbed copies scored" in out
    needs = out[out.index("needs of a model:") : out.index("settings")].split()
    assert "Predicts:" in needs and "Gradients:" not in needs, "LIME only predicts"
    assert main(["methods", "gradcam++"]) == 0
    out = capsys.readouterr().out
    assert "eigen_smooth" in out and "Gradients:" in out and "Layers:" in out
    assert main(["methods", "fullgrad"]) == 0  # every CAM takes aug_smooth; FullGrad nothing
    assert "settings: none" in capsys.readouterr().out


def test_every_setting_of_every_method_has_its_line() -> None:
    missing = [
        f"{name}.{setting}"
        for name in seewhy.methods()
        for setting, _, _, said in setting_lines(seewhy.registry.get(name))
        if not said
    ]
    assert missing == [], "add them to the class docstring's Parameters section"


def test_a_section_after_the_settings_is_not_read_as_settings() -> None:
    """A plug-in's docstring goes on after its Parameters: the next section's lines are not
    settings, so an Examples line that looks like an entry does not replace a setting's line."""

    class Documented(seewhy.registry.get("lime")):  # type: ignore[misc]
        """LIME, documented the way a plug-in is.

        Parameters
        ----------
        samples : int
            Perturbed copies to score.

        Examples
        --------
        samples
            an example's text, not a setting's line
        """

    assert set(_documented(Documented)) <= set(seewhy.registry.get("lime").defaults())
    said = {name: line for name, _, _, line in setting_lines(Documented)}
    assert said["samples"] == "Perturbed copies to score."


def test_every_explainer_option_is_on_the_command_line() -> None:
    """A new Explainer option is a row in cli/options.py, or listed here as Python-only."""
    python_only = {"model", "method", "preprocess", "labels", "photos"}
    keywords = set(inspect.signature(seewhy.Explainer.__init__).parameters) - {"self", "params"}
    assert keywords - python_only == set(_EXPLAINER_OPTIONS)
    for command in ("explain", "evaluate", "sanity", "audit"):
        help_text = _parser()._subparsers._group_actions[0].choices[command].format_help()  # type: ignore[union-attr]
        flags = {flag for flag, _ in _EXPLAINER_OPTIONS.values()} | {"--set"}
        if command == "evaluate":
            flags.discard("--precision")  # the metrics' precision there, with its own help
        assert all(flag in help_text for flag in flags), command


def test_renamed_flags_still_work_and_say_so_once(
    counted: Counted, picture: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "panels"
    args = ["explain", picture, "--method", "occlusion", "--out", str(out), "--quiet"]
    assert main([*args, "--layout", "vertical", "--layout", "vertical"]) == 0
    err = capsys.readouterr().err
    assert err.count("--layout is deprecated") == 1 and "use --arrangement" in err
    width, height = Image.open(out / "picture.seewhy.png").size
    assert height > 2 * width, "stacked, as --arrangement vertical stacks them"
    parsed = _parser().parse_args(["audit", "data", "--target", "true", "--boxes", "b.json"])
    assert parsed.target_from == "true" and parsed.object_boxes == "b.json"
    err = capsys.readouterr().err
    assert "--target is deprecated" in err and "use --target-from" in err
    assert "--boxes is deprecated" in err and "use --object-boxes" in err
