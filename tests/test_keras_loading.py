"""Loading Keras models from files and keras.applications names, safely."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from keras_helpers import current_backend, images, keras_or_skip
from models import gap_model, keras_one_conv

keras = keras_or_skip()
# Keras' own numpy conversions warn under numpy 2 (not seewhy's code paths).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

from seewhy.backends.keras import KerasBackend  # noqa: E402
from seewhy.backends.keras.loading import load_keras_model  # noqa: E402
from seewhy.errors import InvalidInput, UntrustedModel  # noqa: E402


def _lambda_model() -> object:
    double = keras.layers.Lambda(lambda t: t * 2.0, name="double")
    return keras_one_conv(keras, filters=2, seed=None, first=double)


def test_keras_file_round_trip(tmp_path: Path) -> None:
    model = gap_model(keras)
    path = tmp_path / "tiny.keras"
    model.save(path)
    loaded = load_keras_model(str(path), weights=None, trust=False)
    np.testing.assert_allclose(
        KerasBackend(loaded).predict(images(2)), KerasBackend(model).predict(images(2)), atol=1e-6
    )


def test_lambda_layers_need_trust(tmp_path: Path) -> None:
    path = tmp_path / "lambda.keras"
    _lambda_model().save(path)  # type: ignore[attr-defined]
    with pytest.raises(UntrustedModel, match="Lambda"):
        load_keras_model(str(path), weights=None, trust=False)
    assert load_keras_model(str(path), weights=None, trust=True) is not None


def test_h5_lambda_layers_need_trust(tmp_path: Path) -> None:
    path = tmp_path / "lambda.h5"
    _lambda_model().save(path)  # type: ignore[attr-defined]
    with pytest.raises(UntrustedModel, match="Lambda"):
        load_keras_model(str(path), weights=None, trust=False)


def test_missing_files_and_names(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such Keras model file"):
        load_keras_model(str(tmp_path / "nope.keras"), weights=None, trust=False)
    with pytest.raises(InvalidInput, match="did you mean ResNet50"):
        load_keras_model("keras:resnet5O", weights=None, trust=False)
    with pytest.raises(InvalidInput, match="no such file"):
        load_keras_model("keras:MobileNetV2", weights=str(tmp_path / "w.h5"), trust=False)


def test_application_with_local_weights(tmp_path: Path) -> None:
    """keras:NAME with a weights file: offline, with the family's preprocessing."""
    if current_backend() != "torch":  # Keras reads the file; seewhy's part is numpy
        pytest.skip("on the torch backend only: three MobileNetV2 builds take 20-50 s elsewhere")
    reference = keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(96, 96, 3))
    path = tmp_path / "mobilenet.weights.h5"
    reference.save_weights(path)
    with pytest.raises(InvalidInput, match="does not fit"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns about each layer it cannot fill
        load_keras_model("keras:MobileNetV2", weights=str(path), trust=False)  # alpha differs
    model = load_keras_model("keras:MobileNetV2", weights=_full(tmp_path), trust=False)
    assert model.seewhy_spec.preprocess.mean == (127.5, 127.5, 127.5)
    assert model.seewhy_spec.labels is not None and len(model.seewhy_spec.labels) == 1000


def _full(tmp_path: Path) -> str:
    path = tmp_path / "mobilenet_full.weights.h5"
    keras.applications.MobileNetV2(weights=None).save_weights(path)
    return str(path)
