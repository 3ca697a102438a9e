"""The synthetic sets (shapes, stripes): ground truth, determinism, shortcuts, map scores."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from seewhy import synthetic
from seewhy.errors import InvalidInput


@pytest.fixture(scope="module")
def data() -> synthetic.ShapesData:
    return synthetic.make_shapes(40, size=48, seed=3)


def test_shapes_and_ground_truth(data):
    n, s = 40, 48
    assert data.images.shape == (n, s, s, 3) and data.images.dtype == np.uint8
    assert data.masks.shape == (n, s, s) and data.masks.dtype == bool
    assert data.labels.shape == (n,) and data.labels.dtype == np.int64
    assert data.classes == ("disc", "square", "triangle", "cross")
    assert np.bincount(data.labels).tolist() == [10, 10, 10, 10]  # balanced
    assert len(data) == n and data.size == s
    for i in range(n):
        x0, y0, x1, y1 = data.boxes[i]
        ys, xs = np.nonzero(data.masks[i])
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
        assert 0.03 < data.masks[i].mean() < 0.4
    assert (data.shortcut_labels == -1).all() and not data.shortcut_masks.any()
    x = data.inputs()
    assert x.dtype == np.float32 and x.shape == (n, s, s, 3) and -2.1 <= x.min() < x.max() <= 2.1


def test_deterministic_and_shortcut_changes_only_the_patch(data):
    again = synthetic.make_shapes(40, size=48, seed=3)
    assert np.array_equal(again.images, data.images)
    other = synthetic.make_shapes(40, size=48, seed=4)
    assert not np.array_equal(other.images, data.images)
    patched = synthetic.make_shapes(40, size=48, seed=3, shortcut="patch")
    assert np.array_equal(patched.labels, data.labels)
    assert np.array_equal(patched.masks, data.masks)
    patch = patched.shortcut_masks[0]
    assert patch.any() and not (patch & patched.masks).any()  # object clear of the patch
    same = ~patched.shortcut_masks
    assert np.array_equal(patched.images[same], data.images[same])
    assert np.array_equal(patched.shortcut_labels, patched.labels)  # rate 1.0


def test_shortcut_rates():
    lying = synthetic.make_shapes(60, size=32, seed=0, shortcut="patch", shortcut_rate=0.0)
    assert (lying.shortcut_labels != lying.labels).all()
    assert ((lying.shortcut_labels >= 0) & (lying.shortcut_labels < 4)).all()
    half = synthetic.make_shapes(
        400, size=32, seed=0, shortcut="tint", shortcut_rate=0.5, clutter=0
    )
    agree = float(np.mean(half.shortcut_labels == half.labels))
    assert 0.4 < agree < 0.6
    assert np.array_equal(half.shortcut_masks, ~half.masks)  # the tint is the background
    sub = half.subset(slice(0, 5))
    assert len(sub) == 5 and sub.shortcut == "tint"
    shuffled = half.shuffled_labels(1)
    assert sorted(shuffled.labels) == sorted(half.labels)
    assert not np.array_equal(shuffled.labels, half.labels)


def test_validation():
    with pytest.raises(InvalidInput, match="classes"):
        synthetic.make_shapes(4, classes=("disc", "hexagon"))
    with pytest.raises(InvalidInput, match="classes"):
        synthetic.make_shapes(4, classes=9)
    with pytest.raises(InvalidInput, match="n:"):
        synthetic.make_shapes(0)
    with pytest.raises(InvalidInput, match="size"):
        synthetic.make_shapes(4, size=8)
    with pytest.raises(InvalidInput, match="shortcut"):
        synthetic.make_shapes(4, shortcut="logo")
    with pytest.raises(InvalidInput, match="shortcut_rate"):
        synthetic.make_shapes(4, shortcut="patch", shortcut_rate=1.5)
    with pytest.raises(InvalidInput, match="framework"):
        synthetic.train(synthetic.make_shapes(4, size=32), framework="jax")
    five = synthetic.make_shapes(10, size=32, classes=5, seed=1)
    assert five.classes[-1] == "ring" and set(five.labels.tolist()) == {0, 1, 2, 3, 4}


def test_import_needs_no_framework():
    code = (
        "import sys, seewhy.synthetic, seewhy.metrics, seewhy.demo;"
        "bad = {'torch', 'tensorflow', 'keras', 'jax'} & set(sys.modules);"
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_tiny_cnn_trains_and_spec():
    pytest.importorskip("torch")
    train = synthetic.make_shapes(96, size=32, seed=0, clutter=2)
    model = synthetic.train_torch(train, epochs=1)
    assert not model.training
    assert model.seewhy_spec.labels == train.classes
    assert model.seewhy_spec.preprocess.size == (32, 32)
    acc = synthetic.accuracy(model, synthetic.make_shapes(32, size=32, seed=9, clutter=2))
    assert 0.0 <= acc <= 1.0
    import seewhy

    assert seewhy.layers(model)[1] == "relu4"  # the CAM layer the docstring promises


def test_stripes_ground_truth_and_determinism() -> None:
    data = synthetic.make_stripes(12, seed=4)
    assert data.classes == synthetic.STRIPES and data.size == 32
    assert np.bincount(data.labels).tolist() == [4, 4, 4]
    for i in range(len(data)):
        ys, xs = np.nonzero(data.masks[i])
        assert tuple(data.boxes[i]) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert data.preprocess == synthetic.STRIPES_PREPROCESS
    assert np.array_equal(synthetic.make_stripes(12, seed=4).images, data.images)
    assert not np.array_equal(synthetic.make_stripes(12, seed=5).images, data.images)
    assert synthetic.make_stripes(2, size=64, seed=1).images.shape == (2, 64, 64, 3)


def test_map_scores_against_the_ground_truth() -> None:
    masks = np.zeros((2, 8, 8), bool)
    masks[:, 2:4, 4:8] = True  # rows 2-3, columns 4-7: the box (x0, y0, x1, y1) = (4, 2, 8, 4)
    boxes = np.array([[4, 2, 8, 4]] * 2)
    maps = np.zeros((2, 8, 8))
    maps[0, 3, 5] = 1.0  # on the object
    maps[1, 6, 0] = 1.0  # far off
    maps[1, 3, 5] = -5.0  # negative mass does not count
    np.testing.assert_allclose(synthetic.box_share(masks), [8 / 64] * 2)
    np.testing.assert_allclose(synthetic.mass_inside(maps, masks), [1.0, 0.0])
    assert synthetic.peak_inside(maps, boxes).tolist() == [True, False]
    maps[1] = 0.0
    maps[1, 1, 3] = 1.0  # one pixel off the box's corner: inside with margin 1, not 0
    assert synthetic.peak_inside(maps, boxes)[1]
    assert not synthetic.peak_inside(maps, boxes, margin=0)[1]


def _torch_trainers() -> list[Any]:
    from seewhy.synthetic.segmentation import train_torch_segmenter

    trainers = [synthetic.train_torch, train_torch_segmenter]
    if importlib.util.find_spec("timm") is not None:
        from seewhy.synthetic.vit import train_torch_vit

        trainers.append(train_torch_vit)
    return trainers


@pytest.mark.parametrize(
    "bad",
    [{"epochs": 0}, {"epochs": True}, {"batch_size": 0}, {"lr": 0.0}, {"lr": float("nan")}],
)
def test_every_torch_trainer_refuses_a_bad_schedule_in_one_line_naming_itself(bad) -> None:
    """The segmenter used to fail deep in torch (ZeroDivisionError, a scheduler's ValueError)."""
    pytest.importorskip("torch")
    data = synthetic.make_shapes(8, size=32, seed=0)
    for trainer in _torch_trainers():
        with pytest.raises(InvalidInput) as caught:
            trainer(data, **bad)
        message = str(caught.value)
        assert "\n" not in message and message.startswith(f"{trainer.__name__}: {next(iter(bad))}:")


def test_torch_trainers_are_seeded_and_leave_the_global_random_stream_alone() -> None:
    torch = pytest.importorskip("torch")
    data = synthetic.make_shapes(16, size=32, seed=0, clutter=1)
    for trainer in _torch_trainers():
        torch.manual_seed(123)
        first = trainer(data, epochs=1, batch_size=8, seed=5)
        after_first = torch.rand(3)
        torch.manual_seed(123)
        second = trainer(data, epochs=1, batch_size=8, seed=5)
        assert torch.equal(torch.rand(3), after_first), trainer.__name__  # stream untouched
        other = trainer(data, epochs=1, batch_size=8, seed=6)
        weights = [m.state_dict() for m in (first, second, other)]
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
        assert any(not torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
        assert not first.training and all(p.grad is None for p in first.parameters())
