"""Load a Keras model from a file or ``keras:NAME``, refusing files that run code.

* ``model.keras`` (Keras 3 archive) is loaded with ``safe_mode=True``: a file
  with ``Lambda`` layers (Python bytecode) is refused with
  :class:`~seewhy.errors.UntrustedModel` unless ``trust=True``.
* ``model.h5`` / ``.hdf5`` (legacy Keras 2 format): the stored config is read
  first; a ``Lambda`` layer there is refused the same way.
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
from pathlib import Path
from typing import Any

from ...errors import BackendError, InvalidInput, UntrustedModel
from ...preprocess import ModelSpec, Preprocess

__all__ = ["load_keras_model"]

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
    if path.suffix.lower() in (".h5", ".hdf5") and not trust and _h5_has_lambda(path):
        raise _untrusted(path)
    keras = _keras()
    try:
        model = keras.saving.load_model(str(path), compile=False, safe_mode=not trust)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            raise _untrusted(path) from None
        raise InvalidInput(f"model: {path.name} is not a loadable Keras model ({exc})") from exc
    if weights is not None:
        _load_weights(model, weights)
    return model


def _untrusted(path: Path) -> UntrustedModel:
    return UntrustedModel(
        f"model: {path.name} contains Lambda layers whose Python code runs when loaded; "
        "pass --trust-model (trust=True) only if you trust its author"
    )


def _h5_has_lambda(path: Path) -> bool:
    """True if a legacy HDF5 model's stored config has a Lambda layer (read, not run)."""
    try:
        import h5py
    except ImportError:  # pragma: no cover - keras depends on h5py
        return True  # cannot check: be safe
    with h5py.File(path, "r") as f:
        raw = f.attrs.get("model_config")
    if raw is None:
        return False
    text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    return _mentions_lambda(json.loads(text))


def _mentions_lambda(node: Any) -> bool:
    if isinstance(node, dict):
        if node.get("class_name") in ("Lambda", "TFOpLambda", "SlicingOpLambda"):
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
    except ValueError as exc:
        raise InvalidInput(f"weights: {weights!r} does not fit the model ({exc})") from exc


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
    except ValueError as exc:
        raise InvalidInput(f"weights: {weights!r} does not fit {apps[key]} ({exc})") from exc
    except OSError as exc:  # no network for the ImageNet download
        raise BackendError(
            f"model: could not download the ImageNet weights of {apps[key]} ({exc}); "
            "pass a local file with --weights"
        ) from exc
    mode = next((m for prefix, m in _MODES if key.startswith(prefix)), "tf")
    height, width = (int(d) if d else 224 for d in model.input_shape[1:3])
    if mode == "caffe":
        model = _rgb_to_bgr(keras, model)
    model.seewhy_spec = ModelSpec(
        name=f"keras:{apps[key]}",
        preprocess=_preprocess(mode, (height, width)),
        labels=_imagenet_labels() if model.output_shape[-1] == 1000 else None,
    )
    return model


def _preprocess(mode: str, size: tuple[int, int]) -> Preprocess:
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
