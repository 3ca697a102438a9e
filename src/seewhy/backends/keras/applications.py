"""keras.applications models fed exactly as a Keras user feeds them.

The pipeline every keras.applications page shows is
``keras.utils.load_img(path, target_size=(H, W))`` (a plain resize of the
whole picture to the model's size, with ``load_img``'s default
``interpolation="nearest"``; no crop), ``img_to_array``, then the family's
``preprocess_input``. That function is one of Keras's three modes, or a
pass-through for the families that normalise inside the model:

* ``"caffe"`` (ResNet50/101/152, VGG16/19): RGB to BGR, the ImageNet mean
  pixel subtracted, no scaling -> ``Preprocess(channel_order="BGR")``;
* ``"tf"`` (Xception, InceptionV3, InceptionResNetV2, MobileNet, MobileNetV2,
  ResNetV2, NASNet): ``x / 127.5 - 1``;
* ``"torch"`` (DenseNet): ``x / 255`` then ImageNet's mean and std;
* built in (EfficientNet, EfficientNetV2, MobileNetV3, ConvNeXt): the model's
  own ``Rescaling``/``Normalization`` layers take [0, 255] pixels.

A family is known by the name keras.applications gives its model
(``resnet50``, ``mobilenetv2_1.00_224``, ...) or, when renamed, by layer
names only its builder writes; also when it is the first layer of a user's
model (transfer learning). A built-in family built with
``include_preprocessing=False`` takes what its documentation says
(MobileNetV3, EfficientNetV2: [-1, 1]); ConvNeXt's says nothing, so it is
left to the guess (and its warning) of :mod:`seewhy.spec`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from ...preprocess import IMAGENET, Preprocess
from .structure import children, is_model

__all__ = [
    "FAMILIES",
    "Family",
    "Reading",
    "application_preprocess",
    "family_of",
    "preset_for_mode",
]

#: Layers a user's model may put in front of an application without changing the picture.
PASSING = ("InputLayer", "Resizing", "CenterCrop", "RandomFlip", "RandomRotation", "RandomZoom")

#: ImageNet's mean pixel in BGR order, as ``imagenet_utils.preprocess_input`` subtracts it.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class Family:
    """One keras.applications module and how its models take their input."""

    module: str  # keras.applications.<module>
    mode: str  # preprocess_input's mode: "caffe", "tf", "torch", or "built-in"
    names: str  # the model names keras.applications gives (regex, lower case)
    layers: tuple[str, ...]  # layer names (regexes) that together only this builder writes
    default_size: int = 224  # the size its ImageNet weights take, for models of any size
    unbuilt: str | None = None  # the documented mode when built without its own preprocessing

    def matches_name(self, name: str) -> bool:
        return re.fullmatch(self.names, name.lower()) is not None

    def matches_layers(self, names: list[str]) -> bool:
        return all(any(re.fullmatch(p, n) for n in names) for p in self.layers)


#: Checked in this order: a family whose layers are a subset of another's comes later.
FAMILIES = (
    Family("resnet_v2", "tf", r"resnet(50|101|152)v2", ("conv2_block1_preact_bn", "post_bn")),
    Family("resnet", "caffe", r"resnet(50|101|152)", ("conv1_bn", "conv2_block1_3_conv")),
    Family("densenet", "torch", r"densenet(121|169|201)", ("conv2_block1_0_bn", "pool2_conv")),
    Family("vgg19", "caffe", r"vgg19", ("block1_pool", "block5_conv4")),
    Family("vgg16", "caffe", r"vgg16", ("block1_pool", "block5_conv3")),
    Family("xception", "tf", r"xception", ("block1_conv1_bn", "block14_sepconv2"), 299),
    Family("inception_v3", "tf", r"inception_v3", ("mixed0", "mixed10"), 299),
    Family(
        "inception_resnet_v2",
        "tf",
        r"inception_resnet_v2",
        ("mixed_5b", "block35_1_mixed", "conv_7b"),
        299,
    ),
    Family("mobilenet", "tf", r"mobilenet_\d\.\d\d_\d+", ("conv_dw_1", "conv_pw_1")),
    Family("mobilenet_v2", "tf", r"mobilenetv2_\d\.\d\d_\d+", ("bn_Conv1", "block_1_expand")),
    Family(
        "mobilenet_v3",
        "built-in",
        r"mobilenetv3(small|large)",
        ("conv_bn", "expanded_conv_1_expand"),
        unbuilt="tf",
    ),
    Family("nasnet", "tf", r"nasnet_large", (), 331),  # the same cells as NASNetMobile
    Family("nasnet", "tf", r"nasnet_mobile", ("stem_conv1", "reduction_conv_1_stem_1")),
    Family("efficientnet", "built-in", r"efficientnetb[0-7]", ("block1a_dwconv", "top_conv")),
    Family(
        "efficientnet_v2",
        "built-in",
        r"efficientnetv2-(b[0-3]|s|m|l)",
        ("stem_conv", "block1a_project_conv", "top_conv"),
        unbuilt="tf",
    ),
    Family(
        "convnext",
        "built-in",
        r"convnext_(tiny|small|base|large|xlarge)",
        (r".+_stem", r".+_stage_0_block_0_depthwise_conv"),
    ),
)


def family_of(model: Any) -> tuple[Family, Any, str] | None:
    """The keras.applications family of ``model`` or of the application it starts with.

    Returns the family, the application model itself, and how it was known
    (``"name"`` or ``"layers"``); None for any other model.
    """
    for candidate in (model, _first_model(model)):
        if candidate is None:
            continue
        name = str(getattr(candidate, "name", ""))
        family = next((f for f in FAMILIES if f.matches_name(name)), None)
        if family is not None:
            return family, candidate, "name"
        names = [str(layer.name) for layer in children(candidate)]
        family = next((f for f in FAMILIES if f.layers and f.matches_layers(names)), None)
        if family is not None:
            return family, candidate, "layers"
    return None


def _first_model(model: Any) -> Any:
    """A nested model that comes first in ``model`` (after layers that keep the picture)."""
    for layer in children(model):
        if is_model(layer):
            return layer
        if type(layer).__name__ not in PASSING:
            return None
    return None


class Reading(NamedTuple):
    """What :func:`application_preprocess` found: the preset, where it was read, and
    (empty unless) what seewhy had to assume about it, as one line with the fix."""

    preprocess: Preprocess
    source: str
    assumed: str = ""


def application_preprocess(
    model: Any,
    size: tuple[int, int] | None,
    value_range: tuple[float, float] | None,
) -> Reading | None:
    """The family's own pipeline for ``model`` as a preset; None for any other model.

    ``size`` is the (H, W) the model is fixed to (None: any size);
    ``value_range`` is what its leading ``Rescaling``/``Normalization`` says,
    so a built-in family is known to carry its preprocessing layers. A model
    with such a layer of its own in front of a "caffe"/"tf"/"torch"
    application normalises by itself: not an application's pipeline, None.
    A built-in family of any size is left to the spec's size guess (its
    values are read from its layers either way).
    """
    found = family_of(model)
    if found is None:
        return None
    family, app, how = found
    mode, assumed = family.mode, []
    if mode == "built-in":
        if value_range == (0.0, 255.0) and size is not None:
            mode = "raw"
        elif value_range is None and family.unbuilt is not None:
            mode = family.unbuilt
            assumed.append(
                f"[-1, 1] pixels (x / 127.5 - 1), as keras.applications documents "
                f"{family.module} built with include_preprocessing=False"
            )
        else:
            return None
    elif value_range is not None:
        return None
    if size is None:
        size = (family.default_size, family.default_size)
        assumed.append(
            f"size {size[0]}x{size[1]}, the keras.applications.{family.module} default, "
            "as the model takes any size"
        )
    known = f"its name {app.name!r}" if how == "name" else "its layers"
    what = "[0, 255] input" if mode == "raw" else f"preprocess_input {_WORDS[mode]}"
    source = (
        f"keras.applications.{family.module} (known by {known}): {what}, "
        f"size {size[0]}x{size[1]} as keras.utils.load_img(target_size) resizes "
        "(the whole picture, nearest)"
    )
    note = ""
    if assumed:
        note = (
            f"{' and '.join(assumed)}; if it was trained otherwise, pass "
            "preprocess=seewhy.Preprocess(size=..., mean=..., std=...) (or --size H,W)"
        )
    return Reading(preset_for_mode(mode, size), source, note)


_WORDS = {
    "caffe": "mode 'caffe' (BGR, ImageNet's mean pixel subtracted)",
    "tf": "mode 'tf' (x / 127.5 - 1)",
    "torch": "mode 'torch' (x / 255, ImageNet's mean and std)",
}


def preset_for_mode(mode: str, size: tuple[int, int]) -> Preprocess:
    """A ``preprocess_input`` mode (or ``"raw"``: [0, 255] as they are) after ``load_img``'s resize.

    "caffe" subtracts the BGR mean with scale 1 and std 1: bit for bit what
    Keras computes. "tf" is ``(x - 127.5) / 127.5``, within one float32
    rounding of Keras's ``x / 127.5 - 1`` (closer than ``x * (1 / 127.5) - 1``);
    "torch" is ImageNet's preset, within one rounding of ``x / 255`` first.
    """
    mean: tuple[float, ...] = (127.5,) * 3
    std: tuple[float, ...] = (127.5,) * 3
    scale, order = 1.0, "RGB"
    if mode == "caffe":
        mean, std, order = _CAFFE_MEAN_BGR, (1.0,) * 3, "BGR"
    elif mode == "torch":
        mean, std, scale = IMAGENET.mean, IMAGENET.std, IMAGENET.scale
    elif mode == "raw":
        mean, std = (0.0,) * 3, (1.0,) * 3
    return Preprocess(
        size=size,
        resize=None,
        mean=mean,
        std=std,
        scale=scale,
        interpolation="nearest",
        channel_order=order,
    )
