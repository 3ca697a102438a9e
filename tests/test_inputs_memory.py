"""Memory, written as the accident: a 9 KB picture must not need gigabytes.

Issue 13.5: under resize-then-crop a 1x6000 PNG became a 1,536,000x256
intermediate (+1.5 GiB) and a 1x60000 one would need ~16 GB; grey and 16-bit
pictures went through float64 as a whole; ``explain()`` prepared every input
before running. Peaks are measured in a child process (the peak resident set,
``VmHWM``, reset before each picture), with an address-space cap so that a
regression fails with MemoryError instead of swapping the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import seewhy
from seewhy.inputs import Batch, BatchStream, load_image, prepare, resize_for_model
from seewhy.inputs import batches as batches_module
from seewhy.inputs.arrays import array_to_rgb

# Run in a child: cap the address space at (what the imports use + 1 GiB), prepare
# the picture once, print how far the peak resident set rose above the resident set
# just before, in MiB (Linux: writing 5 to clear_refs restarts the peak).
_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    from PIL import Image
    from seewhy.inputs import load_image, prepare, resize_for_model
    from seewhy import Preprocess

    def status_kib(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise LookupError(field)

    def vm_kib():
        return status_kib("VmSize")

    cap = (vm_kib() + (1 << 20)) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    pre = Preprocess(size=(224, 224), resize=256)
    warm = np.zeros((8, 8, 3), np.uint8)
    prepare([warm], pre)  # PIL's resampling code and numpy's paths loaded before measuring
    growth = {}
    for path in sys.argv[1:]:
        with open("/proc/self/clear_refs", "w") as reset:  # the peak (VmHWM) restarts from now
            reset.write("5")
        before = status_kib("VmRSS")
        batch, failures = prepare([path], pre)
        assert not failures and batch.inputs.shape == (1, 224, 224, 3), failures
        after = status_kib("VmHWM")
        growth[path] = (after - before) / 1024.0
    print(json.dumps(growth))
    """
)


def _peak_growth(paths: list[Path]) -> dict[str, float]:
    """MiB the peak resident set grew by while preparing each path, each in a fresh process."""
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux's /proc/self/clear_refs to restart the peak resident set")
    growth: dict[str, float] = {}
    for path in paths:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        assert done.returncode == 0, done.stderr[-2000:]
        growth.update(json.loads(done.stdout.splitlines()[-1]))
    return growth


@pytest.fixture(scope="module")
def strips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """1-pixel-high and 1-pixel-wide PNGs of 6000 and 60000 pixels (a few KB each)."""
    folder = tmp_path_factory.mktemp("strips")
    rng = np.random.default_rng(0)
    out = {}
    for name, shape in {
        "wide6000": (1, 6000),
        "wide60000": (1, 60000),
        "tall60000": (60000, 1),
    }.items():
        path = folder / f"{name}.png"
        Image.fromarray(rng.integers(0, 255, (*shape, 3), dtype=np.uint8)).save(path)
        out[name] = path
    return out


def test_extreme_aspect_ratios_stay_under_200_mib(strips: dict[str, Path]) -> None:
    # Before: 256 x 15,360,000 x 3 bytes (11 GiB) for the 1x60000 strip.
    growth = _peak_growth(list(strips.values()))
    assert all(mib < 200 for mib in growth.values()), growth


def test_grey_and_16_bit_pictures_cost_no_more_than_rgb(tmp_path: Path) -> None:
    # Before: a grey picture went through float64 (x3 channels), ~4x the RGB peak.
    size = 3000
    ramp = np.linspace(0, 1, size * size).reshape(size, size)
    paths = {
        "rgb": (tmp_path / "rgb.png", (ramp[..., None] * [255, 128, 64]).astype(np.uint8)),
        "grey": (tmp_path / "grey.png", (ramp * 255).astype(np.uint8)),
        "grey16": (tmp_path / "grey16.png", (ramp * 65535).astype(np.uint16)),
    }
    for path, pixels in paths.values():
        Image.fromarray(pixels).save(path)
    growth = _peak_growth([p for p, _ in paths.values()])
    rgb, grey, grey16 = (growth[str(paths[k][0])] for k in ("rgb", "grey", "grey16"))
    assert grey <= rgb + 16 and grey16 <= rgb + 64, growth
    assert max(growth.values()) < 200, growth


def _resize_all_then_crop(rgb: np.ndarray, pre: seewhy.Preprocess) -> np.ndarray:
    """The old way: the whole picture resized (the big intermediate), then the centre cropped."""
    h, w = rgb.shape[:2]
    out_h, out_w = pre.size
    assert pre.resize is not None
    new_long = int(pre.resize * max(h, w) / min(h, w))
    new_h, new_w = (pre.resize, new_long) if h <= w else (new_long, pre.resize)
    if new_h < out_h or new_w < out_w:
        factor = max(out_h / h, out_w / w)
        new_h, new_w = max(out_h, round(h * factor)), max(out_w, round(w * factor))
    im = Image.fromarray(rgb).resize((new_w, new_h), Image.Resampling.BILINEAR)
    top, left = round((new_h - out_h) / 2.0), round((new_w - out_w) / 2.0)
    return np.asarray(im.crop((left, top, left + out_w, top + out_h)))


@pytest.mark.parametrize(
    ("shape", "pre"),
    [
        ((375, 500), seewhy.Preprocess(size=(224, 224), resize=256)),
        ((500, 375), seewhy.Preprocess(size=(224, 224), resize=256)),
        ((90, 3), seewhy.Preprocess(size=(24, 32), resize=20)),
        ((30, 60), seewhy.Preprocess(size=(32, 32), resize=16)),
        ((333, 77), seewhy.Preprocess(size=(40, 50), resize=33)),
    ],
)
def test_ordinary_pictures_are_resized_as_torchvision_does(
    shape: tuple[int, int], pre: seewhy.Preprocess
) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_for_model(rgb, pre), _resize_all_then_crop(rgb, pre))


@pytest.mark.parametrize("shape", [(1, 100), (2, 3000), (3000, 2), (7, 2000), (1200, 40)])
def test_strips_crop_first_within_one_grey_level(shape: tuple[int, int]) -> None:
    pre = seewhy.Preprocess(size=(224, 224), resize=256)
    rgb = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    new = resize_for_model(rgb, pre).astype(int)
    old = _resize_all_then_crop(rgb, pre).astype(int)
    assert new.shape == old.shape == (224, 224, 3)
    assert np.abs(new - old).max() <= 1


def _float64_reference(arr: np.ndarray) -> np.ndarray:
    """What array_to_rgb computed before, in float64 over the whole picture."""
    if arr.dtype == np.uint16:
        vals = arr.astype(np.float64) / 257.0
    elif np.issubdtype(arr.dtype, np.floating):
        vals = np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0
    else:
        vals = arr.astype(np.float64)
    if vals.shape[-1] in (2, 4):
        a = vals[..., -1:] / 255.0
        vals = vals[..., :-1] * a + 255.0 * (1.0 - a)
    if vals.shape[-1] == 1:
        vals = np.repeat(vals, 3, axis=-1)
    return np.clip(np.rint(vals), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("dtype", "channels"),
    [
        (np.uint8, 1),
        (np.uint8, 2),
        (np.uint8, 4),
        (np.uint16, 1),
        (np.uint16, 4),
        (np.float32, 1),
        (np.float64, 3),
        (np.int32, 1),
    ],
)
def test_block_conversion_gives_the_same_pixels(dtype: Any, channels: int) -> None:
    rng = np.random.default_rng(2)
    high = 65536 if dtype == np.uint16 else 256
    # 700 x 900 is more than one block of rows, so the blocks' seams are covered
    raw = rng.integers(0, high, (700, 900, channels))
    arr = (raw / 255.0).astype(dtype) if np.issubdtype(dtype, np.floating) else raw.astype(dtype)
    np.testing.assert_array_equal(array_to_rgb(arr, "x"), _float64_reference(arr))


def test_a_16_bit_grey_file_keeps_its_levels(tmp_path: Path) -> None:
    levels = np.array([[0, 128, 129, 385, 65535, 32896]], dtype=np.uint16)
    Image.fromarray(levels).save(tmp_path / "g16.png")
    rgb = load_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 0, 1, 1, 255, 128])


# -- explain() streams its inputs -----------------------------------------------------


class _Watch:
    """Counts inputs prepared, and the most that were prepared and not yet run."""

    def __init__(self) -> None:
        self.prepared = 0
        self.ran = 0
        self.most_waiting = 0


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch, numpy_backend: Any) -> tuple[Any, _Watch]:
    watch = _Watch()
    real_prepare = batches_module._prepare_item
    real_predict = numpy_backend.predict
    real_capture = numpy_backend.capture

    def prepare_item(*args: Any, **kwargs: Any) -> Any:
        watch.prepared += 1
        watch.most_waiting = max(watch.most_waiting, watch.prepared - watch.ran)
        return real_prepare(*args, **kwargs)

    def ran(x: np.ndarray) -> None:
        watch.ran = max(watch.ran, watch.prepared)

    def predict(x: np.ndarray, **kw: Any) -> np.ndarray:
        ran(x)
        return real_predict(x, **kw)

    def capture(x: np.ndarray, **kw: Any) -> Any:
        ran(x)
        return real_capture(x, **kw)

    monkeypatch.setattr(batches_module, "_prepare_item", prepare_item)
    monkeypatch.setattr(numpy_backend, "predict", predict)
    monkeypatch.setattr(numpy_backend, "capture", capture)
    return numpy_backend, watch


def _pictures(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (20, 20, 3), dtype=np.uint8) for _ in range(count)]


def test_explain_prepares_a_batch_at_a_time(watched: tuple[Any, _Watch]) -> None:
    backend, watch = watched
    pre = seewhy.Preprocess(size=(8, 8))
    pictures = _pictures(60)
    ex = seewhy.explain(backend, pictures, "gradcam", preprocess=pre, batch_size=8)
    assert len(ex) == 60 and watch.prepared == 60
    # Before: all 60 were prepared before the first pass.
    assert watch.most_waiting <= 8
    whole = seewhy.explain(backend, pictures, "gradcam", preprocess=pre, batch_size=64)
    np.testing.assert_allclose(ex.maps, whole.maps, atol=1e-6)
    np.testing.assert_array_equal(ex.images, whole.images)


def test_predict_prepares_a_batch_at_a_time(watched: tuple[Any, _Watch]) -> None:
    backend, watch = watched
    pre = seewhy.Preprocess(size=(8, 8))
    preds = seewhy.predict(backend, _pictures(40), preprocess=pre, batch_size=5, top_k=2)
    assert len(preds) == 40 and all(len(p) == 2 for p in preds)
    assert watch.most_waiting <= 5


def test_streamed_batches_keep_failures_in_place_and_targets_aligned(
    numpy_backend: Any,
) -> None:
    pre = seewhy.Preprocess(size=(8, 8))
    pictures: list[Any] = _pictures(7)
    pictures[2] = b"not an image"
    pictures[5] = np.zeros((0, 4, 3), np.uint8)
    targets = [0, 1, 2, 3, 0, 1, 2]
    with pytest.warns(seewhy.errors.SkippedInputWarning):
        ex = seewhy.explain(
            numpy_backend, pictures, "gradcam", preprocess=pre, batch_size=2, target=targets
        )
    assert ex.sources == ("<array 0>", "<array 1>", "<array 3>", "<array 4>", "<array 6>")
    assert ex.targets.tolist() == [0, 1, 3, 0, 2]
    assert {f.source for f in ex.failures} == {"<bytes 2>", "<array 5>"}


def test_a_stream_checks_every_batch_against_the_first_shape() -> None:
    pre = seewhy.Preprocess(size=(8, 8))
    items = [np.zeros((8, 8, 3), np.float32)[None], np.zeros((1, 6, 6, 3), np.float32)]
    groups = list(BatchStream(items, pre, size=1))
    first, second = groups
    assert isinstance(first[0], Batch) and second[0] is None
    assert "differs" in second[1][0].reason


def test_prepare_still_gives_one_batch() -> None:
    batch, failures = prepare(_pictures(3), seewhy.Preprocess(size=(8, 8)))
    assert batch.inputs.shape == (3, 8, 8, 3) and not failures
    assert batch.indices == (0, 1, 2)
