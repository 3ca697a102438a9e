"""ExplainCallback writes panels and TensorBoard images while a Keras model trains.

Runs once per Keras backend (test_keras_backends.py); TensorBoard images must
appear on every one, and training must end with the same weights as without
the callback.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from keras_helpers import current_backend, images, keras_or_skip, to_numpy
from models import gap_model

keras = keras_or_skip()
# Keras' own numpy conversions warn under numpy 2 (not seewhy's code paths).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

from seewhy.errors import InvalidInput  # noqa: E402
from seewhy.keras import ExplainCallback  # noqa: E402


def _fit(callbacks: list[Any], epochs: int) -> Any:
    model = gap_model(keras, classes=3)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = images(8)
    y = np.arange(8) % 3
    keras.utils.set_random_seed(1)  # the shuffling of the batches
    model.fit(x, y, epochs=epochs, batch_size=4, verbose=0, callbacks=callbacks)
    return model


def _pixels(source: Path | bytes) -> np.ndarray:
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        return np.asarray(image.convert("RGB"))


def _tensorboard_images(log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The log folder as TensorBoard itself reads it."""
    pytest.importorskip("tensorboard")
    if current_backend() != "tensorflow":  # TensorBoard's reader imports TensorFlow if it can
        monkeypatch.setitem(sys.modules, "tensorflow", None)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    events.Reload()
    return events


def test_panels_and_tensorboard_images_every_n_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    callback = ExplainCallback(images(2, seed=9), "gradcam", every=2, log_dir=tmp_path)
    _fit([callback], epochs=3)
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["seewhy_gradcam_epoch0002_img00.png", "seewhy_gradcam_epoch0002_img01.png"]
    assert callback.written == [tmp_path / n for n in names]
    with Image.open(callback.written[0]) as panel:
        assert panel.mode == "RGB" and panel.width > panel.height  # picture | map | overlay

    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    events = _tensorboard_images(tmp_path, monkeypatch)
    assert sorted(events.Tags()["images"]) == ["seewhy/gradcam/0", "seewhy/gradcam/1"]
    for i, path in enumerate(callback.written):
        (shown,) = events.Images(f"seewhy/gradcam/{i}")
        assert shown.step == 2  # the epoch number
        expected = _pixels(path)
        assert (shown.height, shown.width) == expected.shape[:2]
        np.testing.assert_array_equal(_pixels(shown.encoded_image_string), expected)


def test_the_event_writer_needs_no_tensorflow(tmp_path: Path) -> None:
    if current_backend() == "tensorflow":
        pytest.skip("TensorFlow is there anyway")
    code = (
        "import sys, numpy as np; from pathlib import Path;"
        "from seewhy.keras import _EventWriter;"
        f"w = _EventWriter(Path({str(tmp_path)!r}));"
        "w.images({'a': np.zeros((4, 6, 3), np.uint8)}, 1); w.close();"
        "print('tensorflow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1


def test_training_is_the_same_with_and_without_the_callback(tmp_path: Path) -> None:
    plain = _fit([], epochs=2)
    watched = _fit([ExplainCallback(images(2, seed=9), "gradcam", log_dir=tmp_path)], epochs=2)
    assert len(list(tmp_path.glob("*.png"))) == 4
    start = gap_model(keras, classes=3)
    moved = False
    for a, b, c in zip(plain.weights, watched.weights, start.weights, strict=True):
        np.testing.assert_array_equal(to_numpy(keras, a), to_numpy(keras, b))
        moved = moved or not np.array_equal(to_numpy(keras, a), to_numpy(keras, c))
    assert moved, "the model trained"


def test_png_only_when_asked_with_panel_options(tmp_path: Path) -> None:
    callback = ExplainCallback(
        images(1),
        "gradcam",
        log_dir=tmp_path,
        tensorboard=False,
        panel_options={"arrangement": "vertical"},
    )
    _fit([callback], epochs=1)
    assert len(callback.written) == 1 and not list(tmp_path.glob("events.out.tfevents.*"))
    with Image.open(callback.written[0]) as panel:
        assert panel.height > panel.width  # picture over map over overlay


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"every": 0}, "ExplainCallback: every: expected a positive integer, got 0"),
        ({"tensorboard": "yes"}, "ExplainCallback: tensorboard: expected True or False"),
        # explain's keywords and the method's settings: checked here, not after an epoch
        ({"layr": "conv"}, "ExplainCallback: .*'layr'.*'layer'"),
        ({"method": "smoothgrad", "sample": 4}, "ExplainCallback: .*'sample'.*'samples'"),
    ],
)
def test_bad_settings_are_one_line_errors(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        ExplainCallback(images(1), log_dir=tmp_path, **settings)
