"""``Preprocess.channel_order``: BGR models fed BGR, people shown RGB (issue 24).

No framework here: the order is numpy in ``Preprocess``; the keras.applications
models that need it are checked against Keras itself in
``test_keras_applications_pipeline.py``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import seewhy
from seewhy.errors import InvalidInput
from seewhy.inputs import prepare
from seewhy.preprocess import ModelSpec
from seewhy.spec import preprocess_from_record, spec_record

#: keras.applications' "caffe" mode: BGR, ImageNet's mean pixel (in BGR) subtracted.
CAFFE = seewhy.Preprocess(
    size=(40, 60),
    mean=(103.939, 116.779, 123.68),
    std=(1.0, 1.0, 1.0),
    scale=1.0,
    channel_order="BGR",
)


def _photo() -> np.ndarray:
    return seewhy.samples.load("chelsea")  # 300 x 451, a real photo with colour


def test_bgr_reverses_the_channels_before_mean_and_std() -> None:
    picture = np.asarray(prepare(_photo(), CAFFE, strict=True)[0].images)
    x = CAFFE.normalise(picture)
    bgr = picture[..., ::-1].astype(np.float32)
    np.testing.assert_array_equal(x, bgr - np.asarray([103.939, 116.779, 123.68], np.float32))
    rgb = replace(CAFFE, channel_order="RGB").normalise(picture)
    assert np.abs(rgb - x).max() > 50  # the order changes the input: the test can fail


def test_a_bgr_input_is_shown_in_rgb() -> None:
    batch, _ = prepare(_photo(), CAFFE, strict=True)
    np.testing.assert_array_equal(CAFFE.denormalise(batch.inputs), batch.images)
    # an input the user preprocessed themselves is shown through the same preset
    shown, _ = prepare(batch.inputs, CAFFE, strict=True)
    np.testing.assert_array_equal(shown.images, batch.images)


def test_colour_fills_land_on_the_right_channel() -> None:
    from seewhy._kit.fills import fill_values

    x = np.zeros((1, 4, 4, 3), np.float32)
    red = fill_values(x, (255, 0, 0), CAFFE)[0, 0, 0]
    np.testing.assert_allclose(red, [-103.939, -116.779, 255 - 123.68], rtol=1e-6)


def test_the_order_is_recorded_and_read_back() -> None:
    record = spec_record(ModelSpec(preprocess=CAFFE))
    assert record["channel_order"] == "BGR"
    assert preprocess_from_record(record) == CAFFE
    older = {k: v for k, v in record.items() if k != "channel_order"}  # written before it
    assert preprocess_from_record(older).channel_order == "RGB"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"channel_order": "bgr"}, "'RGB' or 'BGR'"),
        ({"channel_order": "RGBA"}, "'RGB' or 'BGR'"),
        ({"channel_order": "BGR", "mean": (0.5,), "std": (0.2,)}, "one-channel (grey)"),
    ],
)
def test_a_bad_order_is_one_line_naming_the_choices(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidInput) as info:
        seewhy.Preprocess(**kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "Preprocess.channel_order" in message and words in message and "\n" not in message
