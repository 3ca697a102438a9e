"""Decoding, validation and batching of images (seewhy.inputs)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from seewhy.errors import InvalidInput
from seewhy.inputs import (
    Batch,
    Failure,
    iter_image_files,
    load_image,
    prepare,
    resize_for_model,
)
from seewhy.preprocess import Preprocess

SMALL = Preprocess(size=(16, 16))


def _rgb(h: int = 20, w: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path: Path, array: np.ndarray, **kwargs: Any) -> Path:
    Image.fromarray(array).save(path, **kwargs)
    return path


# --------------------------------------------------------------------------- bad files


def _make_bad(kind: str, directory: Path) -> Path:
    """A file (or not) that load_image must refuse, named after its problem."""
    path = directory / f"{kind}.png"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, I am not a picture")
    elif kind == "truncated":
        good = _save(directory / "good.jpg", _rgb(64, 64), quality=95)
        path = directory / "truncated.jpg"
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return path


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("missing", "does not exist"),
        ("directory", "directory"),
        ("empty", "empty"),
        ("text", "not an image"),
        ("truncated", "truncated"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, kind: str, fragment: str) -> None:
    path = _make_bad(kind, tmp_path)
    with pytest.raises(InvalidInput) as info:
        load_image(path)
    message = str(info.value)
    assert path.name in message
    assert fragment in message
    assert "\n" not in message


def test_string_paths_work(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.png", _rgb())
    np.testing.assert_array_equal(load_image(str(path)), _rgb())


def test_zero_size_image() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        load_image(Image.new("RGB", (0, 5)))
    with pytest.raises(InvalidInput, match="empty"):
        load_image(np.zeros((0, 5, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    "shape",
    [(5,), (2, 2, 2, 2, 2), (5, 5, 7), (7, 5, 5)],
)
def test_wrong_array_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(InvalidInput, match=r"shape"):
        load_image(np.zeros(shape, dtype=np.uint8))


def test_nan_in_float_array() -> None:
    arr = np.full((4, 4, 3), 0.5)
    arr[1, 2, 0] = np.nan
    with pytest.raises(InvalidInput, match="NaN"):
        load_image(arr)


def test_float_out_of_range() -> None:
    with pytest.raises(InvalidInput, match=r"\[0, 1\] or \[0, 255\]"):
        load_image(np.full((4, 4, 3), -2.0))


def test_unsupported_type() -> None:
    with pytest.raises(InvalidInput, match="dict"):
        load_image({"a": 1})


# --------------------------------------------------------------------------- conversions


def test_grayscale_file_and_array(tmp_path: Path) -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    path = _save(tmp_path / "g.png", grey)
    for source in (path, grey, Image.fromarray(grey)):
        out = load_image(source)
        assert out.shape == (3, 4, 3) and out.dtype == np.uint8
        for c in range(3):
            np.testing.assert_array_equal(out[..., c], grey)


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    rgba = np.array([[[255, 0, 0, 0], [255, 0, 0, 255], [0, 0, 0, 128]]], dtype=np.uint8)
    path = _save(tmp_path / "t.png", rgba)
    out = load_image(path)
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 1], [255, 0, 0])
    np.testing.assert_array_equal(out[0, 2], [127, 127, 127])
    np.testing.assert_array_equal(load_image(rgba), out)


def test_la_composited_on_white() -> None:
    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], dtype=np.uint8), mode="LA")
    out = load_image(la)
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 1], [0, 0, 0])


def test_sixteen_bit_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    path = _save(tmp_path / "deep.png", values)
    assert Image.open(path).mode.startswith("I")
    out = load_image(path)
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])
    np.testing.assert_array_equal(load_image(values)[0, :, 1], [0, 1, 128, 255])


def test_mode_i_image() -> None:
    im = Image.fromarray(np.array([[0, 65535]], dtype=np.int32), mode="I")
    np.testing.assert_array_equal(load_image(im)[0, :, 0], [0, 255])


def test_palette_with_transparency(tmp_path: Path) -> None:
    im = Image.new("P", (2, 1))
    im.putpalette([255, 0, 0, 0, 0, 255])
    im.putpixel((0, 0), 0)
    im.putpixel((1, 0), 1)
    path = tmp_path / "p.png"
    im.save(path, transparency=0)
    out = load_image(path)
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])  # transparent red -> white
    np.testing.assert_array_equal(out[0, 1], [0, 0, 255])


def test_palette_without_transparency(tmp_path: Path) -> None:
    path = tmp_path / "p.gif"
    Image.fromarray(np.full((2, 2, 3), (10, 200, 30), dtype=np.uint8)).convert(
        "P", palette=Image.Palette.ADAPTIVE
    ).save(path)
    out = load_image(path)
    assert out.shape == (2, 2, 3)
    np.testing.assert_allclose(out[0, 0], [10, 200, 30], atol=2)


def test_cmyk(tmp_path: Path) -> None:
    im = Image.new("CMYK", (2, 1))
    im.putpixel((0, 0), (0, 0, 0, 0))
    im.putpixel((1, 0), (0, 255, 255, 0))
    path = tmp_path / "c.tif"
    im.save(path)
    out = load_image(path)
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 1], [255, 0, 0])


def test_float_arrays() -> None:
    unit = np.array([[[0.0, 0.5, 1.0]]])
    np.testing.assert_array_equal(load_image(unit)[0, 0], [0, 128, 255])
    bytes_range = np.array([[[0.0, 100.0, 255.0]]], dtype=np.float32)
    np.testing.assert_array_equal(load_image(bytes_range)[0, 0], [0, 100, 255])


def test_channels_first_uint8_picture() -> None:
    rgb = _rgb(8, 10)
    np.testing.assert_array_equal(load_image(np.moveaxis(rgb, -1, 0)), rgb)


def test_exif_orientation_applied(tmp_path: Path) -> None:
    wide = np.zeros((2, 4, 3), dtype=np.uint8)
    wide[0, 0] = 255  # top-left marker
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "phone.png"
    Image.fromarray(wide).save(path, exif=exif)
    out = load_image(path)
    assert out.shape == (4, 2, 3)
    assert out[0, 1].min() == 255  # marker moved to the top-right


def test_bytes_source(tmp_path: Path) -> None:
    path = _save(tmp_path / "a.png", _rgb())
    np.testing.assert_array_equal(load_image(path.read_bytes()), _rgb())


# --------------------------------------------------------------------------- samples


def test_sample_prefix_uses_samples_module(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("seewhy.samples")
    seen: list[str] = []

    def load(name: str) -> np.ndarray:
        seen.append(name)
        return _rgb(5, 6)

    fake.load = load  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "seewhy.samples", fake)
    np.testing.assert_array_equal(load_image("sample:kitten"), _rgb(5, 6))
    assert seen == ["kitten"]
    batch, failures = prepare("sample:kitten", SMALL)
    assert batch.sources == ("sample:kitten",) and not failures


def test_sample_prefix_real_module() -> None:
    samples = pytest.importorskip("seewhy.samples", reason="seewhy.samples not written yet")
    names = samples.names() if hasattr(samples, "names") else ["chelsea"]
    out = load_image(f"sample:{names[0]}")
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    with pytest.raises(InvalidInput, match="no-such-sample"):
        load_image("sample:no-such-sample")


# --------------------------------------------------------------------------- geometry


def test_resize_without_crop_stretches() -> None:
    out = resize_for_model(_rgb(20, 30), Preprocess(size=(12, 8)))
    assert out.shape == (12, 8, 3) and out.dtype == np.uint8


def test_resize_then_centre_crop_geometry() -> None:
    pic = np.zeros((100, 200, 3), dtype=np.uint8)
    pic[:, 95:105] = (255, 0, 0)  # a stripe in the middle
    pre = Preprocess(size=(40, 40), resize=50)
    out = resize_for_model(pic, pre)
    assert out.shape == (40, 40, 3)
    # shorter side 100 -> 50 gives 50 x 100; the centre 40 x 40 starts at (5, 30)
    expected = np.asarray(
        Image.fromarray(pic).resize((100, 50), Image.Resampling.BILINEAR).crop((30, 5, 70, 45))
    )
    np.testing.assert_array_equal(out, expected)
    red_columns = np.flatnonzero(out[20, :, 0] > 128)
    assert abs(red_columns.mean() - 19.5) <= 1.0


def test_resize_smaller_than_crop_still_fills_crop() -> None:
    out = resize_for_model(_rgb(30, 60), Preprocess(size=(32, 32), resize=16))
    assert out.shape == (32, 32, 3)


def test_resize_rejects_non_uint8() -> None:
    with pytest.raises(InvalidInput, match="rgb"):
        resize_for_model(np.zeros((4, 4, 3), dtype=np.float32), SMALL)


# --------------------------------------------------------------------------- batches


def test_batch_keeps_good_items_and_reports_bad_ones(tmp_path: Path) -> None:
    good1 = _save(tmp_path / "good1.png", _rgb(seed=1))
    good2 = _save(tmp_path / "good2.jpg", _rgb(seed=2))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("not a picture")
    missing = tmp_path / "missing.png"
    batch, failures = prepare([empty, good1, text, good2, missing], SMALL)
    assert isinstance(batch, Batch)
    assert batch.inputs.shape == (2, 16, 16, 3) and batch.inputs.dtype == np.float32
    assert batch.images.shape == (2, 16, 16, 3) and batch.images.dtype == np.uint8
    assert batch.sources == (str(good1), str(good2))
    assert batch.indices == (1, 3)
    assert [f.source for f in failures] == [str(empty), str(text), str(missing)]
    assert all(isinstance(f, Failure) for f in failures)
    for f, name in zip(failures, ["empty.png", "text.png", "missing.png"], strict=True):
        assert name in f.reason and "\n" not in f.reason
    expected = SMALL.normalise(resize_for_model(_rgb(seed=1), SMALL))
    np.testing.assert_allclose(batch.inputs[0], expected, rtol=1e-6)


def test_strict_raises_on_first_bad(tmp_path: Path) -> None:
    good = _save(tmp_path / "good.png", _rgb())
    with pytest.raises(InvalidInput, match=r"nothere\.png"):
        prepare([good, tmp_path / "nothere.png"], SMALL, strict=True)


def test_nothing_valid_names_first_problem(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"first\.png.*1 more"):
        prepare([tmp_path / "first.png", tmp_path / "second.png"], SMALL)


def test_empty_sequence() -> None:
    with pytest.raises(InvalidInput, match="at least one"):
        prepare([], SMALL)


def test_mixed_sources_in_memory() -> None:
    pics = [_rgb(seed=3), Image.fromarray(_rgb(seed=4)), _rgb(seed=5).astype(np.float64) / 255]
    batch, failures = prepare(pics, SMALL)
    assert not failures
    assert batch.sources == ("<array 0>", "<PIL 1>", "<array 2>")
    np.testing.assert_array_equal(batch.images[0], resize_for_model(_rgb(seed=3), SMALL))


def test_uint8_batch_is_raw_pictures() -> None:
    pics = np.stack([_rgb(seed=6), _rgb(seed=7)])
    batch, _ = prepare(pics, SMALL)
    assert batch.inputs.shape == (2, 16, 16, 3)
    assert batch.sources == ("<array 0>", "<array 1>")
    np.testing.assert_array_equal(batch.images[1], resize_for_model(_rgb(seed=7), SMALL))


def _normalised_nchw(n: int = 2, size: int = 12) -> tuple[np.ndarray, np.ndarray]:
    pics = np.stack([_rgb(size, size, seed=10 + i) for i in range(n)])
    x = SMALL.normalise(pics)  # NHWC float32
    return pics, np.ascontiguousarray(np.moveaxis(x, -1, 1))


@pytest.mark.parametrize("channels_first", [True, False])
def test_preprocessed_nchw_passes_through(channels_first: bool) -> None:
    pics, nchw = _normalised_nchw()
    batch, failures = prepare(nchw, SMALL, channels_first=channels_first)
    assert not failures
    # not resized to SMALL.size, not normalised again: only transposed
    np.testing.assert_array_equal(batch.inputs, np.moveaxis(nchw, 1, -1))
    np.testing.assert_array_equal(batch.images, pics)  # shown via pre.denormalise


def test_preprocessed_nhwc_kept() -> None:
    _, nchw = _normalised_nchw()
    nhwc = np.moveaxis(nchw, 1, -1).copy()
    batch, _ = prepare(nhwc, SMALL, channels_first=True)  # shape says channels-last
    np.testing.assert_array_equal(batch.inputs, nhwc)


def test_preprocessed_single_chw_with_channels_first() -> None:
    pics, nchw = _normalised_nchw(1)
    batch, _ = prepare(nchw[0], SMALL, channels_first=True)
    np.testing.assert_array_equal(batch.inputs[0], np.moveaxis(nchw[0], 0, -1))
    np.testing.assert_array_equal(batch.images[0], pics[0])


def test_preprocessed_other_normalisation_falls_back_to_min_max() -> None:
    x = np.random.default_rng(0).normal(0, 50, (1, 8, 8, 3)).astype(np.float32)
    batch, _ = prepare(x, SMALL)
    assert batch.images.min() == 0 and batch.images.max() == 255
    np.testing.assert_array_equal(batch.inputs, x)


def test_preprocessed_one_channel_shows_grey() -> None:
    x = np.random.default_rng(1).random((2, 1, 6, 6)).astype(np.float32)
    batch, _ = prepare(x, SMALL, channels_first=True)
    assert batch.inputs.shape == (2, 6, 6, 1)
    assert batch.images.shape == (2, 6, 6, 3)
    np.testing.assert_array_equal(batch.images[..., 0], batch.images[..., 2])


def test_preprocessed_nan_is_a_failure() -> None:
    x = np.zeros((3, 4, 4, 3), dtype=np.float32)
    x[1, 0, 0, 0] = np.nan
    batch, failures = prepare(x, SMALL)
    assert batch.sources == ("<array 0>", "<array 2>")
    assert [f.source for f in failures] == ["<array 1>"]
    assert "NaN" in failures[0].reason


def test_mismatched_preprocessed_size_is_a_failure(tmp_path: Path) -> None:
    good = _save(tmp_path / "good.png", _rgb())
    odd = np.zeros((3, 8, 8), dtype=np.float32)
    batch, failures = prepare([good, odd], SMALL, channels_first=True)
    assert batch.sources == (str(good),)
    assert failures[0].source == "<array 1>" and "differs" in failures[0].reason


class _FakeTensor:
    """Quacks like a torch tensor that needs grad, on some device."""

    def __init__(self, value: np.ndarray) -> None:
        self.value = value
        self.calls: list[str] = []

    def detach(self) -> _FakeTensor:
        self.calls.append("detach")
        return self

    def cpu(self) -> _FakeTensor:
        self.calls.append("cpu")
        return self

    def numpy(self) -> np.ndarray:
        self.calls.append("numpy")
        return self.value


def test_duck_typed_tensor() -> None:
    _, nchw = _normalised_nchw()
    tensor = _FakeTensor(nchw)
    batch, _ = prepare(tensor, SMALL, channels_first=True)
    assert tensor.calls == ["detach", "cpu", "numpy"]
    np.testing.assert_array_equal(batch.inputs, np.moveaxis(nchw, 1, -1))


def test_real_torch_tensor() -> None:
    torch = pytest.importorskip("torch")
    _, nchw = _normalised_nchw()
    tensor = torch.from_numpy(nchw).requires_grad_(True)
    batch, _ = prepare(tensor, SMALL, channels_first=True)
    np.testing.assert_array_equal(batch.inputs, np.moveaxis(nchw, 1, -1))
    pics = torch.from_numpy(np.stack([_rgb(seed=1)]))  # uint8 NHWC: raw pictures
    batch, _ = prepare(pics, SMALL)
    assert batch.inputs.shape == (1, 16, 16, 3)


def test_list_of_batches_is_flattened() -> None:
    _, nchw = _normalised_nchw(2)
    batch, _ = prepare([nchw, nchw[:1]], SMALL, channels_first=True)
    assert batch.sources == ("<array 0[0]>", "<array 0[1]>", "<array 1[0]>")


# --------------------------------------------------------------------------- files


def test_iter_image_files(tmp_path: Path) -> None:
    for name in ["b.png", "a.JPG", "c.webp", "notes.txt", ".hidden.png"]:
        (tmp_path / name).write_bytes(b"x")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "d.tiff").write_bytes(b"x")
    odd = tmp_path / "weird.dat"
    odd.write_bytes(b"x")

    flat = iter_image_files([tmp_path])
    assert [p.name for p in flat] == ["a.JPG", "b.png", "c.webp"]
    deep = iter_image_files([str(tmp_path)], recursive=True)
    assert [p.name for p in deep] == ["a.JPG", "b.png", "c.webp", "d.tiff"]
    explicit = iter_image_files([odd, tmp_path, tmp_path / "b.png", tmp_path / "gone.png"])
    assert [p.name for p in explicit] == ["weird.dat", "a.JPG", "b.png", "c.webp", "gone.png"]
