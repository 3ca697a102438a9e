"""Colormaps, overlays and panels (seewhy.viz)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seewhy import viz
from seewhy.errors import InvalidInput

H, W = 40, 60


def _picture(value: int = 200) -> np.ndarray:
    return np.full((H, W, 3), value, dtype=np.uint8)


def _blob(h: int = H, w: int = W) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-(((yy - h / 2) / (h / 4)) ** 2 + ((xx - w / 2) / (w / 4)) ** 2))


# --------------------------------------------------------------------------- colorize


@pytest.mark.parametrize("name", ["viridis", "jet", "inferno", "gray_r"])
def test_colorize_endpoints_match_matplotlib(name: str) -> None:
    import matplotlib

    cmap = matplotlib.colormaps[name]
    out = viz.colorize(np.array([[0.0, 1.0]]), name)
    assert out.shape == (1, 2, 3) and out.dtype == np.uint8
    for i, value in enumerate((0.0, 1.0)):
        expected = np.asarray(cmap(value)[:3]) * 255
        np.testing.assert_allclose(out[0, i], expected, atol=1)


def test_colorize_clips_and_ignores_nan() -> None:
    out = viz.colorize(np.array([[-3.0, np.nan, 0.0, 7.0, 1.0]]))
    np.testing.assert_array_equal(out[0, 0], out[0, 2])  # below 0 -> 0
    np.testing.assert_array_equal(out[0, 1], out[0, 2])  # NaN -> 0
    np.testing.assert_array_equal(out[0, 3], out[0, 4])  # above 1 -> 1


def test_colorize_rejects_wrong_shape() -> None:
    with pytest.raises(InvalidInput, match="2-D"):
        viz.colorize(np.zeros((2, 3, 4)))


def test_bad_cmap_suggests_near_match() -> None:
    with pytest.raises(InvalidInput, match="viridis") as info:
        viz.colorize(np.zeros((2, 2)), "virdis")
    assert "virdis" in str(info.value) and "\n" not in str(info.value)


def test_bad_cmap_without_near_match() -> None:
    with pytest.raises(InvalidInput, match="cmap"):
        viz.colorize(np.zeros((2, 2)), "qqqqqqqqqqqq")


# --------------------------------------------------------------------------- overlay


def test_zero_map_overlay_is_not_red() -> None:
    out = viz.overlay(_picture(128), np.zeros((H, W)))
    r, g, b = out[0, 0].astype(int)
    assert not (r > g + 40 and r > b + 40)


def test_nan_map_does_not_crash() -> None:
    heat = _blob()
    heat[5:10, 5:10] = np.nan
    out = viz.overlay(_picture(), heat)
    assert out.shape == (H, W, 3)
    viz.panel(_picture(), heat, label="x")


def test_overlay_alpha_extremes() -> None:
    pic = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    heat = _blob()
    np.testing.assert_array_equal(viz.overlay(pic, heat, alpha=1.0), pic)
    np.testing.assert_array_equal(viz.overlay(pic, heat, alpha=0.0), viz.colorize(heat))
    half = viz.overlay(pic, heat, alpha=0.5).astype(float)
    expected = 0.5 * pic + 0.5 * viz.colorize(heat)
    assert np.abs(half - expected).max() <= 0.5 + 1e-9


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_overlay_rejects_bad_alpha(alpha: float) -> None:
    with pytest.raises(InvalidInput, match="alpha"):
        viz.overlay(_picture(), _blob(), alpha=alpha)


def test_overlay_resizes_small_map() -> None:
    out = viz.overlay(_picture(), _blob(7, 7), alpha=0.0)
    assert out.shape == (H, W, 3)
    centre, corner = out[H // 2, W // 2].astype(int), out[0, 0].astype(int)
    assert centre.sum() > corner.sum()  # viridis: high is bright yellow, low dark purple


# --------------------------------------------------------------------------- attributions


def test_signed_to_rgb_centres_on_grey() -> None:
    x = np.random.default_rng(0).normal(0, 3, (H, W, 3))
    out = viz.signed_to_rgb(x)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert abs(float(np.median(out)) - 127.5) < 3
    grey = viz.signed_to_rgb(np.zeros((H, W)))
    assert grey.shape == (H, W, 3) and np.all(grey == 128)


def test_unsigned_to_rgb_scales_magnitude() -> None:
    x = np.zeros((H, W))
    x[0, 0] = -5.0
    x[1:, :] = 1.0
    out = viz.unsigned_to_rgb(x)
    assert out.shape == (H, W, 3)
    assert out[0, 0, 0] == 255 and out[5, 5, 0] == 255 and out[0, 1, 0] == 0
    assert np.all(viz.unsigned_to_rgb(np.zeros((4, 4))) == 0)


def test_diverging_zero_at_centre() -> None:
    import matplotlib

    out = viz.diverging(np.array([[-2.0, 0.0, 2.0]]))
    bwr = matplotlib.colormaps["bwr"]
    np.testing.assert_allclose(out[0, 0], np.asarray(bwr(0.0)[:3]) * 255, atol=1)
    np.testing.assert_allclose(out[0, 1], [255, 255, 255], atol=2)
    np.testing.assert_allclose(out[0, 2], np.asarray(bwr(1.0)[:3]) * 255, atol=1)


# --------------------------------------------------------------------------- panel


def test_panel_size_horizontal_and_vertical() -> None:
    horizontal = viz.panel(_picture(), _blob())
    assert isinstance(horizontal, Image.Image)
    assert horizontal.size == (3 * W + 2 * 4, H)
    vertical = viz.panel(_picture(), _blob(), arrangement="vertical")
    assert vertical.size == (W, 3 * H + 2 * 4)
    gap = np.asarray(horizontal)[:, W : W + 4]
    assert np.all(gap == 255)


def test_panel_label_box_is_black_and_white() -> None:
    size = 200
    pic = np.full((size, size, 3), 120, dtype=np.uint8)
    heat = np.zeros((size, size))
    plain = np.asarray(viz.panel(pic, heat))
    labelled = np.asarray(viz.panel(pic, heat, label="tabby cat: 87.3%"))
    x0 = 2 * (size + 4)  # the overlay part
    changed = np.any(labelled != plain, axis=2)
    assert not changed[:, :x0].any()  # only the overlay carries the label
    rows, cols = np.nonzero(changed[:, x0:])
    assert rows.min() < 10 and cols.min() < 10  # top-left
    box = labelled[rows.min() : rows.max() + 1, x0 + cols.min() : x0 + cols.max() + 1]
    dark = np.all(box <= 20, axis=2).mean()
    light = np.all(box >= 235, axis=2).mean()
    assert dark > 0.5 and light > 0.03
    # antialiased text edges are grey, but nothing of the (purple) heatmap shows through
    assert np.all(box[..., 0] == box[..., 1]) and np.all(box[..., 1] == box[..., 2])


def test_panel_label_scales_and_fits() -> None:
    heights = []
    for size in (100, 400):
        pic = np.full((size, size, 3), 120, dtype=np.uint8)
        out = np.asarray(viz.panel(pic, np.zeros((size, size)), label="Egyptian cat: 12.0%"))
        over = out[:, 2 * (size + 4) :]
        rows = np.nonzero(np.all(over <= 20, axis=2).any(axis=1))[0]
        heights.append(rows.max() - rows.min())
    assert heights[1] > 2 * heights[0]
    long_label = "a very long label " * 20
    narrow = np.asarray(viz.panel(_picture(), _blob(), label=long_label))
    assert narrow.shape == (H, 3 * W + 8, 3)  # truncated, never widens the panel


def test_panel_rejects_bad_arrangement() -> None:
    with pytest.raises(InvalidInput, match="panel: arrangement: expected one of horizontal"):
        viz.panel(_picture(), _blob(), arrangement="diagonal")


def test_layout_is_the_old_name_of_arrangement_and_warns_once() -> None:
    """``layout`` means a layer tensor's layout in seewhy; the panel's word is ``arrangement``."""
    from seewhy._kit import warn

    warn._SHOWN.clear()  # another test may have used the old name in this process
    with pytest.warns(
        DeprecationWarning, match="panel: layout= is deprecated.*arrangement="
    ) as seen:
        old = viz.panel(_picture(), _blob(), layout="vertical")
        again = viz.panel(_picture(), _blob(), layout="vertical")
    assert len([w for w in seen if w.category is DeprecationWarning]) == 1
    new = viz.panel(_picture(), _blob(), arrangement="vertical")
    assert np.array_equal(np.asarray(old), np.asarray(new))
    assert np.array_equal(np.asarray(again), np.asarray(new))
    with pytest.raises(InvalidInput, match="pass only arrangement="):
        viz.panel(_picture(), _blob(), arrangement="vertical", layout="horizontal")


def test_chelsea_panel_renders(tmp_path: Path) -> None:
    data = pytest.importorskip("skimage.data")
    cat = data.chelsea()
    yy, xx = np.mgrid[0 : cat.shape[0], 0 : cat.shape[1]]
    heat = np.exp(-(((yy - 120) / 60.0) ** 2 + ((xx - 200) / 70.0) ** 2))
    out = viz.panel(cat, heat[::16, ::16], label="Egyptian cat: 87.3%")
    out.save(tmp_path / "panel.png")
    assert out.size == (3 * cat.shape[1] + 8, cat.shape[0])


# --------------------------------------------------------------------------- figure


def test_figure_grid(tmp_path: Path) -> None:
    pics = np.stack([_picture(), _picture(50)])
    maps = [_blob(), _blob(5, 5)]  # maps at any resolution
    fig = viz.figure(pics, maps, labels=["cat: 50.0%", "dog: 20.0%"])
    axes = fig.get_axes()
    assert len(axes) == 6
    assert axes[0].get_title() == "cat: 50.0%" and axes[1].get_title() == "heatmap"
    fig.savefig(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_figure_length_mismatch() -> None:
    with pytest.raises(InvalidInput, match="maps"):
        viz.figure([_picture()], [_blob(), _blob()])


# --------------------------------------------------------------------------- imports


def test_import_does_not_load_matplotlib() -> None:
    src = Path(viz.__file__).resolve().parents[2]  # viz is a package: src/seewhy/viz/
    code = (
        "import sys, seewhy.viz, seewhy.inputs; "
        "bad = [m for m in ('matplotlib', 'torch', 'tensorflow', 'keras', 'jax') "
        "if m in sys.modules]; print(','.join(bad))"
    )
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == ""
