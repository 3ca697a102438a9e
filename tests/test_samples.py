"""Sample photos: shapes, the cached PNG files, and helpful errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seewhy import samples
from seewhy.errors import InvalidInput


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEEWHY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_names_include_the_documented_photos() -> None:
    assert {"chelsea", "coffee", "rocket", "astronaut"} <= set(samples.names())
    assert samples.names() == sorted(samples.names())


@pytest.mark.parametrize("name", samples.names())
def test_load_gives_rgb_uint8(name: str) -> None:
    img = samples.load(name)
    assert img.dtype == np.uint8
    assert img.ndim == 3 and img.shape[2] == 3
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert img.flags.c_contiguous


def test_load_returns_fresh_arrays() -> None:
    a = samples.load("chelsea")
    a[:] = 0
    assert samples.load("chelsea").any()


def test_greyscale_becomes_three_equal_channels() -> None:
    img = samples.load("camera")
    assert np.array_equal(img[..., 0], img[..., 1])
    assert np.array_equal(img[..., 0], img[..., 2])


def test_rgba_and_bool_are_converted() -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque pixel keeps its colour
    rgb = samples._as_rgb_uint8(rgba)
    assert rgb.shape == (4, 4, 3)
    assert tuple(rgb[0, 0]) == (10, 20, 30)
    assert tuple(rgb[1, 1]) == (255, 255, 255)  # transparent pixel -> white
    mask = samples._as_rgb_uint8(np.eye(3, dtype=bool))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}


def test_path_writes_png_once(_private_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = samples.path("coffee")
    assert p.parent == _private_cache / "samples"
    assert p.suffix == ".png" and p.is_file()
    with Image.open(p) as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), samples.load("coffee"))
    assert [f.name for f in p.parent.iterdir()] == ["coffee.png"]  # no temp files left

    def _fail(name: str) -> np.ndarray:
        raise AssertionError("path() should reuse the cached file")

    monkeypatch.setattr(samples, "load", _fail)
    assert samples.path("coffee") == p


def test_unknown_name_lists_available() -> None:
    with pytest.raises(InvalidInput, match=r"unknown sample 'kitten'.*chelsea"):
        samples.load("kitten")
    with pytest.raises(InvalidInput, match="available: "):
        samples.path("kitten")
