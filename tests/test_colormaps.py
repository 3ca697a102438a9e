"""Colormaps: matplotlib names, and OpenCV's exact JET and VIRIDIS computed without OpenCV."""

from __future__ import annotations

import numpy as np
import pytest

from seewhy import viz
from seewhy.errors import InvalidInput

RAMP = np.arange(256, dtype=np.uint8)[None, :]


def _opencv(name: str) -> np.ndarray:
    cv2 = pytest.importorskip("cv2")
    code = {"cv2:jet": cv2.COLORMAP_JET, "cv2:viridis": cv2.COLORMAP_VIRIDIS}[name]
    bgr = cv2.applyColorMap(RAMP, code)
    return np.ascontiguousarray(bgr[0, :, ::-1])  # OpenCV answers in BGR


@pytest.mark.parametrize("name", viz.OPENCV_COLORMAPS)
def test_opencv_tables_are_exact(name: str) -> None:
    reference = _opencv(name)
    np.testing.assert_array_equal(viz.colormap_table(name), reference)


@pytest.mark.parametrize("name", viz.OPENCV_COLORMAPS)
def test_colorize_of_a_byte_picture_matches_apply_color_map(name: str) -> None:
    cv2 = pytest.importorskip("cv2")
    picture = np.random.default_rng(0).integers(0, 256, (17, 23), dtype=np.uint8)
    code = {"cv2:jet": cv2.COLORMAP_JET, "cv2:viridis": cv2.COLORMAP_VIRIDIS}[name]
    expected = cv2.applyColorMap(picture, code)[:, :, ::-1]
    np.testing.assert_array_equal(viz.colorize(picture / 255.0, name), expected)


def test_matplotlib_jet_is_not_opencv_jet() -> None:
    """Why the cv2 tables exist: matplotlib's jet is far from OpenCV's."""
    gap = np.abs(viz.colormap_table("jet").astype(int) - viz.colormap_table("cv2:jet").astype(int))
    assert gap.max() > 20


def test_matplotlib_names_still_work() -> None:
    import matplotlib

    table = viz.colormap_table("magma")
    expected = np.asarray(matplotlib.colormaps["magma"](np.linspace(0, 1, 256), bytes=True))[:, :3]
    np.testing.assert_array_equal(table, expected)
    assert not table.flags.writeable


def test_opencv_typo_is_named_in_one_line() -> None:
    with pytest.raises(InvalidInput, match="cv2:jet") as info:
        viz.colorize(np.zeros((2, 2)), "cv2:jte")
    assert "\n" not in str(info.value)


def test_unknown_name_hints_at_the_opencv_tables() -> None:
    with pytest.raises(InvalidInput, match="cv2:viridis"):
        viz.colorize(np.zeros((2, 2)), "qqqqqqqqqqqq")


def test_cmap_must_be_a_name() -> None:
    with pytest.raises(InvalidInput, match="cmap: expected"):
        viz.colorize(np.zeros((2, 2)), 3)  # type: ignore[arg-type]
