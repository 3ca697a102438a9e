"""The model decides its input (issue 14), Keras side: declared shapes, built-in preprocessing.

Each case is a small model built here; the command-line cases run
``seewhy explain photo.jpg --model model.keras`` in this process.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from keras_helpers import keras_or_skip, to_numpy

keras = keras_or_skip()
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

import seewhy  # noqa: E402
from models import keras_one_conv  # noqa: E402
from seewhy.errors import InputGuessWarning  # noqa: E402
from seewhy.spec import resolve_spec  # noqa: E402

PHOTO = seewhy.samples.load("chelsea")  # 300 x 451 RGB


def _cifar(rescaling: bool = False, seed: int = 0) -> Any:
    """A 32 x 32 CIFAR-style CNN with a Flatten head (a fixed size)."""
    first = keras.layers.Rescaling(1 / 255) if rescaling else None
    return keras_one_conv(
        keras, (32, 32, 3), classes=10, seed=seed, activation="relu", padding="same",
        flatten=True, first=first,
    )  # fmt: skip


def _grey(seed: int = 1) -> Any:
    return keras_one_conv(keras, (28, 28, 1), classes=10, seed=seed, activation="relu")


def _quiet(call: Any, *args: Any, **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call(*args, **kw)


def test_declared_size_is_used_for_photos_and_for_arrays_of_that_size() -> None:
    model = _cifar()
    ex = _quiet(seewhy.explain, model, PHOTO)
    assert ex.maps.shape == (1, 32, 32) and ex.input_spec["source"].startswith("model.inputs")
    small = np.asarray(Image.fromarray(PHOTO).resize((32, 32)))
    assert _quiet(seewhy.explain, model, small).maps.shape == (1, 32, 32)
    with pytest.raises(seewhy.BackendError) as info:  # a size it refuses: one line, the fix
        _quiet(seewhy.explain, model, PHOTO, preprocess=seewhy.Preprocess(size=(40, 40)))
    assert "40x40" in str(info.value) and "Preprocess(size=" in str(info.value)
    assert "\n" not in str(info.value)
    wide = keras_one_conv(keras, (96, 128, 3), filters=2, seed=2, conv="c")
    assert resolve_spec(wide).preprocess.size == (96, 128)


def test_a_rescaling_layer_means_raw_pixels_and_nothing_is_guessed() -> None:
    model = _cifar(rescaling=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputGuessWarning)
        ex = seewhy.explain(model, PHOTO)
    picture = ex.images[0].astype(np.float32)  # what the model saw, as a person sees it
    expected = to_numpy(keras, model(picture[None]))
    np.testing.assert_allclose(ex.logits, expected, rtol=1e-4, atol=1e-4)
    assert ex.input_spec["scale"] == 1.0 and ex.input_spec["guessed"] == []


def test_an_application_known_by_its_name_gets_its_familys_preprocess_input() -> None:
    # named as keras.applications.Xception names its model
    model = keras_one_conv(keras, (71, 71, 3), filters=2, seed=3, conv="c", name="xception")
    spec = resolve_spec(model)
    assert spec.preprocess.size == (71, 71) and not spec.guessed
    # Xception's preprocess_input ("tf" mode): x / 127.5 - 1
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=-1)
    expected = keras.applications.xception.preprocess_input(ramp.astype(np.float32))
    np.testing.assert_allclose(
        spec.preprocess.normalise(ramp), to_numpy(keras, expected), atol=1e-6
    )


@pytest.fixture(scope="module")
def mobilenet() -> Any:
    """keras.applications MobileNetV3Small with its built-in preprocessing, built once."""
    if keras.backend.backend() == "jax":
        pytest.skip(
            "building keras.applications models takes over 15 s on JAX here; "
            "the same code path runs on TensorFlow and torch"
        )
    return keras.applications.MobileNetV3Small(
        weights=None,
        input_shape=(32, 32, 3),
        classes=5,
        include_preprocessing=True,
        minimalistic=True,
    )


def test_a_leading_normalization_on_the_255_scale_means_raw_pixels() -> None:
    mean = [0.485 * 255, 0.456 * 255, 0.406 * 255]  # as ConvNeXt's built-in preprocessing
    norm = keras.layers.Normalization(mean=mean, variance=[3000.0, 3000.0, 3000.0])
    model = keras_one_conv(keras, (24, 24, 3), filters=2, seed=4, conv="c", first=norm)
    pre = resolve_spec(model).preprocess
    assert pre.scale == 1.0 and pre.mean == (0.0, 0.0, 0.0) and pre.size == (24, 24)


def test_mobilenet_v3_built_in_preprocessing_takes_0_to_255(mobilenet: Any) -> None:
    spec = resolve_spec(mobilenet)
    assert spec.preprocess.size == (32, 32) and spec.preprocess.scale == 1.0
    assert spec.preprocess.mean == (0.0, 0.0, 0.0) and "Rescaling" in spec.source
    assert not spec.guessed


def test_one_channel_keras_model_takes_photos() -> None:
    model = _grey()
    with pytest.warns(InputGuessWarning, match="mean"):
        ex = seewhy.explain(model, PHOTO)
    assert ex.maps.shape == (1, 28, 28) and ex.images.shape == (1, 28, 28, 3)
    assert ex.input_spec["channels"] == 1


@pytest.mark.parametrize("kind", ["cifar", "grey", "mobilenetv3"])
def test_cli_explains_a_photo_with_a_keras_file(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    from seewhy.cli import main

    if kind == "mobilenetv3":
        model = request.getfixturevalue("mobilenet")
    else:
        model = _cifar() if kind == "cifar" else _grey()
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    photo = tmp_path / "photo.jpg"
    Image.fromarray(PHOTO).save(photo)
    out = tmp_path / "out"
    code = main(["explain", str(photo), "--model", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    panel = Image.open(out / "photo.seewhy.png")
    assert panel.size[0] > 3 * 32
    notes = [line for line in err.splitlines() if "guessed" in line]
    assert len(notes) == (0 if kind == "mobilenetv3" else 1)  # the guess, said once, one line
    assert all(line.startswith("seewhy: note: ") for line in notes)
