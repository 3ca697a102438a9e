"""ExplainCallback writes panels while a Keras model trains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_helpers import current_backend, images, keras_or_skip
from models import gap_model

keras = keras_or_skip()
# Keras' own numpy conversions warn under numpy 2 (not seewhy's code paths).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

from seewhy.errors import InvalidInput  # noqa: E402
from seewhy.keras import ExplainCallback  # noqa: E402


def _fit(callback: ExplainCallback, epochs: int) -> None:
    model = gap_model(keras, classes=3)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = images(8)
    y = np.arange(8) % 3
    model.fit(x, y, epochs=epochs, batch_size=4, verbose=0, callbacks=[callback])


def test_panels_written_every_n_epochs(tmp_path: Path) -> None:
    callback = ExplainCallback(images(2, seed=9), "gradcam", every=2, log_dir=tmp_path)
    _fit(callback, epochs=3)
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["seewhy_gradcam_epoch0002_img00.png", "seewhy_gradcam_epoch0002_img01.png"]
    assert callback.written == [tmp_path / n for n in names]
    with Image.open(callback.written[0]) as panel:
        assert panel.mode == "RGB" and panel.width > panel.height  # picture | map | overlay
    events = list(tmp_path.glob("events.out.tfevents.*"))
    if current_backend() == "tensorflow":
        assert events, "TensorBoard summaries are written on the TensorFlow backend"
        _assert_image_summaries(events[0], {"seewhy/gradcam/0", "seewhy/gradcam/1"})
    else:
        assert not events, "PNG only on other backends"


def _assert_image_summaries(path: Path, tags: set[str]) -> None:
    import tensorflow as tf

    seen = set()
    for record in tf.data.TFRecordDataset(str(path)):
        event = tf.compat.v1.Event.FromString(record.numpy())
        seen.update(value.tag for value in event.summary.value)
    assert tags <= seen


def test_every_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="every"):
        ExplainCallback(images(1), every=0, log_dir=tmp_path)
