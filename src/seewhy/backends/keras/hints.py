"""What a Keras model says about its own input, read without running it.

``model.inputs`` gives the size (when fixed) and the channels; the layers
right after the input say the value range: a ``Rescaling`` layer (hand-built
models, and keras.applications MobileNetV3, EfficientNet(V2)) or a
``Normalization`` layer with means on the 0-255 scale (ConvNeXt) means the
model takes [0, 255] pixels and normalises them itself; a ``Normalization``
with means in [0, 1] means [0, 1] pixels. A keras.applications model (known
by its name or its layers, see :mod:`.applications`) gets exactly what
``load_img(target_size)`` and its family's ``preprocess_input`` make. A
keras-hub task (``ViTImageClassifier``, ...) carries its own image converter,
which keras-hub applies outside the model's call: its size, scale and offset
are read as the whole preprocessing.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from ...errors import BackendError
from ...preprocess import INTERPOLATIONS, Preprocess
from ..hints import ModelHints, input_rejected
from .applications import PASSING, application_preprocess
from .structure import children, is_model, layout
from .tensors import as_float32, variable_value

__all__ = ["input_mismatch", "model_hints"]

#: Layers that keep a picture a picture (they may sit between the input and the rescaling).
_PASSING = PASSING


def model_hints(model: Any) -> ModelHints:
    """The size, channels and value range ``model`` declares."""
    shape = _input_shape(model)
    size: tuple[int, int] | None = None
    channels: int | None = None
    source = []
    if shape is not None and len(shape) == 4:
        first = layout(model) == "channels_first"
        c, h, w = (shape[1], shape[2], shape[3]) if first else (shape[3], shape[1], shape[2])
        channels = int(c) if c else None
        size = (int(h), int(w)) if h and w else None
        source.append("model.inputs")
    value_range, layer = _value_range(model)
    if layer:
        source.append(f"its {layer} layer")
    preprocess, converter = _converter_preprocess(model, size, channels or 3)
    assumed = ""
    if preprocess is not None:
        source.append(f"its keras-hub {converter}")
    else:
        found = application_preprocess(model, size, value_range)
        if found is not None:
            preprocess, assumed = found.preprocess, found.assumed
            source.append(found.source)
    return ModelHints(
        size=size,
        channels=channels,
        preprocess=preprocess,
        source=", ".join(source),
        value_range=value_range,
        assumed=assumed,
    )


#: keras.layers.Resizing's interpolations -> the nearest Pillow filter seewhy resamples with.
_FILTERS = {"lanczos3": "lanczos", "lanczos5": "lanczos", "area": "box"}


def _converter_preprocess(
    model: Any, size: tuple[int, int] | None, channels: int
) -> tuple[Preprocess | None, str]:
    """A keras-hub task's own image converter (``model.preprocessor.image_converter``).

    keras-hub runs it in ``predict``/``fit`` only, never inside the model's
    call, so seewhy applies it: ``x * scale + offset`` on [0, 255] pixels
    (global or per channel) becomes ``Preprocess(scale=1, mean=-offset/scale,
    std=1/scale)``; its ``image_size`` is the size; a square size with
    ``crop_to_aspect_ratio`` (keras-hub's default) is a shorter-side resize
    and centre crop, any other a plain resize (said in the source, as a
    stretch, a crop or a pad seewhy does not reproduce exactly).
    """
    converter = getattr(getattr(model, "preprocessor", None), "image_converter", None)
    if converter is None or not hasattr(converter, "scale") or not hasattr(converter, "offset"):
        return None, ""
    own = getattr(converter, "image_size", None)
    size = (int(own[0]), int(own[1])) if own is not None and None not in own else size
    scale = _per_channel(converter.scale, 1.0, channels)
    offset = _per_channel(converter.offset, 0.0, channels)
    if size is None or scale is None or offset is None or not all(scale):
        return None, ""
    crop = bool(getattr(converter, "crop_to_aspect_ratio", False))
    pad = bool(getattr(converter, "pad_to_aspect_ratio", False))
    square = size[0] == size[1] and crop
    interpolation = str(getattr(converter, "interpolation", "bilinear"))
    interpolation = _FILTERS.get(interpolation, interpolation)
    preprocess = Preprocess(
        size=size,
        resize=size[0] if square else None,
        mean=tuple(-o / s for o, s in zip(offset, scale, strict=True)),
        std=tuple(1.0 / s for s in scale),
        scale=1.0,
        interpolation=interpolation if interpolation in INTERPOLATIONS else "bilinear",
    )
    name = type(converter).__name__
    if (crop or pad) and not square:
        name += f" ({'padding' if pad else 'cropping'} to its aspect ratio done as a plain resize)"
    return preprocess, name


def _per_channel(value: Any, unset: float, channels: int) -> tuple[float, ...] | None:
    """A converter's scale or offset (None, a number or one per channel) as one per channel."""
    if value is None:
        return (unset,) * channels
    values = np.asarray(value, dtype=np.float64).reshape(-1)
    if values.size == 1:
        return (float(values[0]),) * channels
    return tuple(float(v) for v in values) if values.size == channels else None


def _input_shape(model: Any) -> tuple[Any, ...] | None:
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):  # a subclassed model that was only called
        inputs = None
    if inputs:
        return tuple(inputs[0].shape)
    shape = getattr(model, "_build_shapes_dict", None) or {}
    found = next(iter(shape.values()), None) if isinstance(shape, dict) else None
    return tuple(found) if found is not None else None


def _value_range(model: Any) -> tuple[tuple[float, float] | None, str]:
    """The range the model's own leading preprocessing expects, and that layer's class name."""
    for layer in _leading(model):
        kind = type(layer).__name__
        if isinstance(layer, keras.layers.Rescaling):
            return (0.0, 255.0), kind
        if isinstance(layer, keras.layers.Normalization):
            mean = _normalization_mean(layer)
            if mean is None:
                return None, ""
            return ((0.0, 255.0) if mean > 1.5 else (0.0, 1.0)), kind
        if kind not in _PASSING:
            return None, ""
    return None, ""


def _leading(model: Any) -> list[Any]:
    """The layers from the input on, descending into a nested model that comes first."""
    out: list[Any] = []
    for layer in children(model):
        if is_model(layer):
            out.extend(_leading(layer))
            break
        out.append(layer)
        if type(layer).__name__ not in _PASSING:
            break
    return out


def _normalization_mean(layer: Any) -> float | None:
    try:
        value = as_float32(variable_value(layer.mean))
    except Exception:  # not adapted yet, or a variable of another kind
        return None
    return float(np.max(np.abs(value))) if value.size else None


#: How Keras words a layer's refusal of an input shape.
_SHAPE_WORDS = ("is incompatible with the layer", "Incompatible shapes", "expected axis")


def input_mismatch(exc: BaseException, shape: tuple[int, ...]) -> Exception | None:
    """Keras's own complaint about an (N, H, W, C) input as one line with the fix, else None."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if not any(word in text for word in _SHAPE_WORDS):
        return None
    _, height, width, channels = (*shape, 0, 0, 0, 0)[:4]
    return BackendError(input_rejected(text, height, width, channels))
