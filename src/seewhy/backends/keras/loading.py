"""Load a Keras model from a file or ``keras:NAME``, refusing files that run code.

* ``model.keras`` (Keras 3 archive): its ``config.json`` is read first and a
  ``Lambda`` layer (marshalled Python bytecode) is refused with
  :class:`~seewhy.errors.UntrustedModel` unless ``trust=True``; the file is
  then loaded with ``safe_mode=True`` (Keras refuses lambdas and non-Keras
  classes itself too).
* ``model.h5`` / ``.hdf5`` (legacy Keras 2 format): the stored config is read
  first; a ``Lambda`` layer there is refused the same way, and the load also
  runs under ``safe_mode``.
* Every loading error is one line (:func:`~seewhy.backends.common.one_line`).
* ``keras:NAME`` builds ``keras.applications.NAME`` (case-insensitive, e.g.
  ``keras:ResNet50``). Without ``weights`` the ImageNet weights are
  downloaded by Keras on first use (into ``~/.keras/models``, so online once);
  ``weights="path.weights.h5"`` loads a local file instead (offline use).
  The model gets a ``seewhy_spec`` with the preprocessing its family was
  trained with; for the Caffe-style families (VGG, ResNet v1), which expect
  BGR, the returned model is a Sequential of a fixed RGB->BGR channel swap and
  the application model (so seewhy's RGB preprocessing stays right; the CAM
  layers are then named ``resnet50/...``).

Imports Keras only (never torch).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from ...errors import BackendError, InvalidInput, UntrustedModel
from ...preprocess import ModelSpec, Preprocess
from ..common import one_line

__all__ = ["load_keras_model", "preprocess_for_mode"]

# keras.applications family (by lower-case name prefix) -> preprocessing mode.
_MODES: tuple[tuple[str, str], ...] = (
    ("vgg", "caffe"),
    ("resnet50v2", "tf"),
    ("resnet101v2", "tf"),
    ("resnet152v2", "tf"),
    ("resnet", "caffe"),
    ("densenet", "torch"),
    ("mobilenetv3", "raw"),
    ("mobilenet", "tf"),
    ("inception", "tf"),
    ("xception", "tf"),
    ("nasnet", "tf"),
    ("efficientnet", "raw"),
    ("convnext", "raw"),
    ("regnet", "raw"),
)


def _keras() -> Any:
    try:
        import keras
    except ImportError as exc:
        raise BackendError(
            "keras is not installed; install it with: pip install 'seewhy[keras]'"
        ) from exc
    return keras


def load_keras_model(spec: str, *, weights: str | None = None, trust: bool = False) -> Any:
    """A Keras model from ``spec`` (a ``.keras``/``.h5`` file or ``keras:NAME``)."""
    if spec.startswith("keras:"):
        return _application(spec.split(":", 1)[1], weights)
    path = Path(spec)
    if not path.is_file():
        raise InvalidInput(f"model: no such Keras model file {spec!r}")
    if not trust and _stored_config_has_lambda(path):
        raise _untrusted(path)
    keras = _keras()
    try:
        model = keras.saving.load_model(str(path), compile=False, safe_mode=not trust)
    except Exception as exc:  # Keras raises many kinds, some with the whole config
        if not trust and ("safe_mode" in str(exc) or "Lambda" in str(exc)):
            raise _untrusted(path) from None
        raise InvalidInput(
            f"model: {path.name} is not a loadable Keras model ({one_line(exc)})"
        ) from None
    if weights is not None:
        _load_weights(model, weights)
    return model


def _untrusted(path: Path) -> UntrustedModel:
    return UntrustedModel(
        f"model: {path.name} contains Lambda layers whose Python code runs when loaded; "
        "pass --trust-model (trust=True) only if you trust its author"
    )


def _stored_config_has_lambda(path: Path) -> bool:
    """Whether the model config stored in the file has a Lambda layer (read, never run)."""
    try:
        text = _stored_config(path)
    except Exception as exc:  # not HDF5, not a zip, a config that is not text
        raise InvalidInput(
            f"model: {path.name} is not a loadable Keras model ({one_line(exc)})"
        ) from None
    if text is None:
        return False
    try:
        config = json.loads(text)
    except ValueError:
        return True  # a config Keras might read but we cannot: take it as unsafe
    return _mentions_lambda(config)


def _stored_config(path: Path) -> str | None:
    """The JSON model config of a ``.keras`` archive or a legacy HDF5 file, if it has one."""
    if path.suffix.lower() in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
        if raw is None:
            return None
        return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    if not zipfile.is_zipfile(path):
        return None  # Keras says why it cannot read the file
    with zipfile.ZipFile(path) as archive:
        configs = [i for i in archive.infolist() if i.filename.lstrip("/") == "config.json"]
        return "\n".join(archive.read(i).decode("utf-8") for i in configs) or None


_LAMBDA_CLASSES = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__"})


def _mentions_lambda(node: Any) -> bool:
    """Whether any object in the config is a Lambda layer or a marshalled Python function."""
    if isinstance(node, dict):
        if node.get("class_name") in _LAMBDA_CLASSES or node.get("function_type") == "lambda":
            return True
        return any(_mentions_lambda(v) for v in node.values())
    if isinstance(node, list):
        return any(_mentions_lambda(v) for v in node)
    return False


def _load_weights(model: Any, weights: str) -> None:
    if not Path(weights).is_file():
        raise InvalidInput(f"weights: no such file {weights!r}")
    try:
        model.load_weights(weights)
    except Exception as exc:  # h5py, zipfile and Keras errors alike
        raise InvalidInput(
            f"weights: {weights!r} does not fit the model ({one_line(exc)})"
        ) from None


def _application(name: str, weights: str | None) -> Any:
    keras = _keras()
    apps = {n.lower(): n for n in dir(keras.applications) if n[:1].isupper()}
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in apps:
        import difflib

        close = difflib.get_close_matches(key, list(apps), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(apps[c] for c in close)}? " if close else ""
        raise InvalidInput(f"model: keras.applications has no model {name!r}; {hint}".rstrip())
    if weights is not None and not Path(weights).is_file():
        raise InvalidInput(f"weights: no such file {weights!r}")
    build = getattr(keras.applications, apps[key])
    try:
        model = build(weights=weights if weights is not None else "imagenet")
    except OSError as exc:  # no network for the ImageNet download
        if weights is not None:
            raise InvalidInput(
                f"weights: {weights!r} does not fit {apps[key]} ({one_line(exc)})"
            ) from None
        raise BackendError(
            f"model: could not download the ImageNet weights of {apps[key]} ({one_line(exc)}); "
            "pass a local file with --weights"
        ) from None
    except Exception as exc:
        raise InvalidInput(
            f"weights: {weights!r} does not fit {apps[key]} ({one_line(exc)})"
        ) from None
    mode = next((m for prefix, m in _MODES if key.startswith(prefix)), "tf")
    height, width = (int(d) if d else 224 for d in model.input_shape[1:3])
    if mode == "caffe":
        model = _rgb_to_bgr(keras, model)
    model.seewhy_spec = ModelSpec(
        name=f"keras:{apps[key]}",
        preprocess=preprocess_for_mode(mode, (height, width)),
        labels=_imagenet_labels() if model.output_shape[-1] == 1000 else None,
    )
    return model


def preprocess_for_mode(mode: str, size: tuple[int, int]) -> Preprocess:
    """Keras' ``preprocess_input`` modes as seewhy presets (RGB in, resize + centre crop)."""
    resize = round(size[0] / 0.875)
    if mode == "caffe":  # BGR order is handled by the model's first layer
        return Preprocess(size, resize, (123.68, 116.779, 103.939), (1.0, 1.0, 1.0), 1.0)
    if mode == "torch":
        return Preprocess(size, resize)
    if mode == "raw":  # the model rescales by itself
        return Preprocess(size, resize, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 1.0)
    return Preprocess(size, resize, (127.5, 127.5, 127.5), (127.5, 127.5, 127.5), 1.0)


def _rgb_to_bgr(keras: Any, model: Any) -> Any:
    """The application after a fixed 1x1 convolution that swaps R and B (no Lambda)."""
    import numpy as np

    swap = keras.layers.Conv2D(3, 1, use_bias=False, trainable=False, name="rgb_to_bgr")
    wrapped = keras.Sequential([keras.Input(model.input_shape[1:]), swap, model], name=model.name)
    swap.set_weights([np.eye(3, dtype=np.float32)[::-1].reshape(1, 1, 3, 3)])
    return wrapped


def _imagenet_labels() -> tuple[str, ...] | None:
    from ...zoo import imagenet_labels

    return imagenet_labels()
