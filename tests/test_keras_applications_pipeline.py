"""keras.applications models get exactly the input a Keras user's own pipeline makes (issue 24).

The reference is what every keras.applications page shows:
``keras.utils.load_img(path, target_size=(H, W))`` (a plain resize with its
default ``interpolation="nearest"``), ``img_to_array``, then the family's
``keras.applications.<module>.preprocess_input``. seewhy reads the same PNG of
a real non-square photo (chelsea, 300 x 451) and must feed the model the same
tensor and get the same logits, for one model of every keras.applications
module, built with random weights at a small non-square size.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from keras_helpers import current_backend, keras_or_skip, to_numpy

keras = keras_or_skip()
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

import seewhy  # noqa: E402
from seewhy.backends import backend_for  # noqa: E402
from seewhy.backends.keras.applications import FAMILIES  # noqa: E402
from seewhy.errors import InputGuessWarning  # noqa: E402
from seewhy.inputs import prepare  # noqa: E402
from seewhy.spec import guess_note, preprocess_from_record, resolve_spec, spec_record  # noqa: E402

SMALL = (32, 48)  # non-square, as the photo is; the smallest most families take
#: constructor -> (module whose preprocess_input is the reference, input size, extra args)
MODELS: dict[str, tuple[str, tuple[int, int], dict[str, Any]]] = {
    "ResNet50": ("resnet", SMALL, {}),
    "ResNet50V2": ("resnet_v2", SMALL, {}),
    "VGG16": ("vgg16", SMALL, {}),
    "VGG19": ("vgg19", SMALL, {}),
    "DenseNet121": ("densenet", SMALL, {}),
    "Xception": ("xception", (71, 96), {}),
    "InceptionV3": ("inception_v3", (75, 96), {}),
    "InceptionResNetV2": ("inception_resnet_v2", (75, 96), {}),
    "MobileNet": ("mobilenet", SMALL, {}),
    "MobileNetV2": ("mobilenet_v2", SMALL, {}),
    "MobileNetV3Small": ("mobilenet_v3", SMALL, {"minimalistic": True}),
    "NASNetMobile": ("nasnet", SMALL, {}),
    "EfficientNetB0": ("efficientnet", SMALL, {}),
    "EfficientNetV2B0": ("efficientnet_v2", SMALL, {}),
    "ConvNeXtTiny": ("convnext", SMALL, {}),
}
BACKEND = current_backend()
#: The families each Keras backend runs. What is under test is numpy (the same on every
#: backend); building the models is what costs: under a second each on torch, seconds on
#: TensorFlow (seewhy's compiled pass), tens of seconds on JAX. So torch runs every family
#: Keras builds there (all but NASNet, built on TensorFlow only), TensorFlow adds NASNet and
#: one "caffe" and one built-in family, JAX the "caffe" (BGR) one.
HERE = {
    "torch": [n for n in sorted(MODELS) if not n.startswith("NASNet")],
    "tensorflow": ["NASNetMobile", "VGG16", "MobileNetV3Small"],
    "jax": ["VGG16"],
}[BACKEND]
not_on_jax = pytest.mark.skipif(
    BACKEND == "jax",
    reason="building these models takes tens of seconds each on JAX here; the code under test "
    "is numpy and runs on torch and TensorFlow",
)


@pytest.fixture(scope="module")
def photo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "chelsea.png"
    Image.fromarray(seewhy.samples.load("chelsea")).save(path)
    return path


def _build(constructor: str, size: tuple[int, int], **kw: Any) -> Any:
    keras.utils.set_random_seed(0)
    build = getattr(keras.applications, constructor)
    args: dict[str, Any] = {"weights": None, "input_shape": (*size, 3)}
    if kw.pop("include_top", True):
        args.update(classes=3, classifier_activation=None)
    else:
        args["include_top"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras' notes on sizes it has no weights for
        return build(**args, **kw)


def _keras_pipeline(module: str, path: Path, size: tuple[int, int]) -> tuple[np.ndarray, Any]:
    """What a Keras user feeds: load_img(target_size) -> img_to_array -> preprocess_input."""
    picture = keras.utils.img_to_array(keras.utils.load_img(path, target_size=size))[None]
    own = importlib.import_module(f"keras.applications.{module}").preprocess_input
    return picture, own(picture.copy())  # preprocess_input may work in place


def _quiet_spec(model: Any) -> Any:
    """The spec seewhy resolves, failing if it guessed anything (InputGuessWarning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputGuessWarning)
        return resolve_spec(model, warn=True)


def _assert_logits(model: Any, ours: np.ndarray, reference: np.ndarray) -> None:
    expected = to_numpy(keras, model(reference, training=False))
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("name", HERE)
def test_each_family_gets_exactly_what_its_keras_pipeline_makes(
    name: str, photo_file: Path
) -> None:
    module, size, extra = MODELS[name]
    model = _build(name, size, **extra)
    picture, reference = _keras_pipeline(module, photo_file, size)
    spec = _quiet_spec(model)
    assert f"keras.applications.{module} " in spec.source and "nearest" in spec.source
    batch, _ = prepare(str(photo_file), spec.preprocess, strict=True)
    np.testing.assert_array_equal(batch.images, picture.astype(np.uint8))  # shown as RGB
    np.testing.assert_allclose(batch.inputs, reference, rtol=1e-6, atol=1e-6)
    _assert_logits(model, backend_for(model).predict(batch.inputs), reference)
    # what the Explanation records gives the same preprocessing back
    assert preprocess_from_record(spec_record(spec)) == spec.preprocess
    back = spec.preprocess.denormalise(batch.inputs)  # the model input, as a person sees it
    assert np.abs(back.astype(int) - picture.astype(int)).max() <= 1


@not_on_jax
def test_a_caffe_model_is_explained_on_bgr_and_shown_in_rgb(photo_file: Path) -> None:
    """ResNet50/VGG ("caffe"): BGR input, mean pixel subtracted; the picture stays RGB."""
    model = _build("VGG16", SMALL)
    picture, reference = _keras_pipeline("vgg16", photo_file, SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputGuessWarning)
        ex = seewhy.explain(model, str(photo_file), method="gradcam")
    assert ex.input_spec["channel_order"] == "BGR" and ex.input_spec["scale"] == 1.0
    assert ex.input_spec["mean"] == [103.939, 116.779, 123.68] and ex.input_spec["resize"] is None
    np.testing.assert_array_equal(ex.images[0], picture[0].astype(np.uint8))
    _assert_logits(model, ex.logits, reference)
    # the order matters: the same means on RGB pixels are another input
    as_rgb = replace(resolve_spec(model).preprocess, channel_order="RGB")
    wrong, _ = prepare(str(photo_file), as_rgb, strict=True)
    assert np.abs(wrong.inputs - reference).max() > 10.0


def test_every_keras_applications_constructor_is_a_known_family() -> None:
    """A new Keras model family, or a renamed default, fails here instead of being guessed."""
    constructors = [n for n in dir(keras.applications) if n[:1].isupper()]
    assert len(constructors) >= 40
    for name in constructors:
        build = getattr(keras.applications, name)
        module = build.__module__.rsplit(".", 1)[1]
        default = inspect.signature(build).parameters["name"].default
        if default is None:  # MobileNet, MobileNetV2: named after alpha and size
            default = f"{'mobilenetv2' if module == 'mobilenet_v2' else 'mobilenet'}_1.00_224"
        found = [f.module for f in FAMILIES if f.matches_name(default)]
        assert found[:1] == [module], (name, default, found)


@not_on_jax
def test_a_renamed_application_is_known_by_its_layers(photo_file: Path) -> None:
    model = _build("ResNet50", SMALL, name="my_backbone")
    spec = _quiet_spec(model)
    assert spec.preprocess.channel_order == "BGR" and "known by its layers" in spec.source
    _, reference = _keras_pipeline("resnet", photo_file, SMALL)
    batch, _ = prepare(str(photo_file), spec.preprocess, strict=True)
    _assert_logits(model, backend_for(model).predict(batch.inputs), reference)


@not_on_jax
def test_an_application_inside_a_users_model_sets_its_input(photo_file: Path) -> None:
    """Transfer learning: Input -> MobileNetV2 (no top) -> pooling -> the user's head."""
    base = _build("MobileNetV2", SMALL, include_top=False, alpha=0.35)
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((*SMALL, 3)),
            base,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4),
        ],
        name="pets",
    )
    spec = _quiet_spec(model)
    assert "keras.applications.mobilenet_v2" in spec.source and spec.preprocess.resize is None
    _, reference = _keras_pipeline("mobilenet_v2", photo_file, SMALL)
    batch, _ = prepare(str(photo_file), spec.preprocess, strict=True)
    np.testing.assert_allclose(batch.inputs, reference, rtol=1e-6, atol=1e-6)
    _assert_logits(model, backend_for(model).predict(batch.inputs), reference)


@not_on_jax
def test_an_application_of_any_size_says_the_size_it_assumed(photo_file: Path) -> None:
    """VGG16 without its top takes any size: 224 x 224 (its default) is said, in one line."""
    keras.utils.set_random_seed(2)
    inputs = keras.Input((None, None, 3))
    base = keras.applications.VGG16(weights=None, include_top=False)  # (None, None, 3)
    pooled = keras.layers.GlobalAveragePooling2D()(base(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(pooled))
    spec = resolve_spec(model)
    note = guess_note(spec)
    assert note is not None and "\n" not in note
    assert "size 224x224" in note and "vgg16 default" in note and "Preprocess(" in note
    assert spec.preprocess.channel_order == "BGR" and spec.preprocess.size == (224, 224)
    with pytest.warns(InputGuessWarning, match="size 224x224"):
        seewhy.predict(model, str(photo_file))


@not_on_jax
def test_built_without_its_preprocessing_layer_the_documented_input_is_said(
    photo_file: Path,
) -> None:
    """MobileNetV3 with include_preprocessing=False takes [-1, 1] (its documentation)."""
    model = _build("MobileNetV3Small", SMALL, minimalistic=True, include_preprocessing=False)
    spec = resolve_spec(model)
    note = guess_note(spec)
    assert note is not None and "[-1, 1]" in note and "include_preprocessing=False" in note
    picture = keras.utils.img_to_array(keras.utils.load_img(photo_file, target_size=SMALL))[None]
    batch, _ = prepare(str(photo_file), spec.preprocess, strict=True)
    np.testing.assert_allclose(batch.inputs, picture / 127.5 - 1.0, atol=1e-6)
    _assert_logits(model, backend_for(model).predict(batch.inputs), picture / 127.5 - 1.0)


@not_on_jax
def test_keras_name_loads_the_application_with_its_own_pipeline(tmp_path: Path) -> None:
    """``--model keras:DenseNet121``: no 256-to-224 crop, the model itself (no wrapper)."""
    from seewhy.backends.keras.loading import load_keras_model

    weights = tmp_path / "densenet121.weights.h5"
    keras.applications.DenseNet121(weights=None).save_weights(weights)
    model = load_keras_model("keras:DenseNet121", weights=str(weights), trust=False)
    spec = resolve_spec(model)
    assert model.name == "densenet121" and spec.name == "keras:DenseNet121"
    assert spec.preprocess == seewhy.Preprocess(size=(224, 224), interpolation="nearest")
    assert "keras.applications.densenet" in spec.source and spec.labels is not None
