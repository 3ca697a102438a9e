"""ONNX Runtime models: an ``InferenceSession`` or a ``.onnx`` file, read from its graph.

The graph says what the model takes: its one input's name, layout (NCHW or
NHWC), size, channels, element type and whether the batch is dynamic. A
static batch of 1 runs one image at a time (said once, in a warning); a
graph with several outputs is scored on its first. ONNX Runtime computes no
gradients, so only the methods and metrics that only predict apply.
onnxruntime is imported only when a model is one (``pip install 'seewhy[onnx]'``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._kit.warn import warn_user
from ..errors import BackendError, InvalidInput, UnsupportedModel
from .base import Framework
from .common import PackedModel, one_line, require_module
from .hints import ModelHints
from .label_text import NotNames, parse_names
from .predict_only import PredictOnlyBackend

__all__ = ["OnnxBackend", "default_providers", "load_onnx", "onnx_backend", "unpack"]

#: Images per run for a graph with a dynamic batch (CPU; see benchmarks/bench_onnx.py).
DEFAULT_BATCH = 16
_ELEMENT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}
_CHANNEL_COUNTS = (1, 3, 4)
_LABEL_KEYS = ("labels", "class_names", "classes", "names")


def default_providers() -> list[str]:
    """CUDA when this onnxruntime has it, then the CPU (never a remote provider)."""
    ort = require_module("onnxruntime", "onnx")
    available = ort.get_available_providers()
    chosen = [p for p in ("CUDAExecutionProvider",) if p in available]
    return [*chosen, "CPUExecutionProvider"]


def load_onnx(
    path: str | os.PathLike[str],
    *,
    providers: Sequence[Any] | None = None,
    weights: str | None = None,
) -> Any:
    """An ``onnxruntime.InferenceSession`` for the file at ``path``.

    ``providers`` as ONNX Runtime takes them; by default CUDA where present,
    else the CPU. An ONNX file is data (a graph and its weights), never code:
    no trust flag is needed, and no separate weights file is taken.
    """
    if weights is not None:
        raise InvalidInput(f"weights: an ONNX file holds its own weights, got weights={weights!r}")
    ort = require_module("onnxruntime", "onnx")
    file = Path(path)
    if not file.is_file():
        raise InvalidInput(f"model: no ONNX file at {str(path)!r}")
    chosen = list(providers or default_providers())
    available = ort.get_available_providers()
    for provider in chosen:
        name = provider[0] if isinstance(provider, tuple) else provider
        if name not in available:
            raise InvalidInput(
                f"providers: {name!r} is not in this onnxruntime; available: {', '.join(available)}"
            )
    try:
        return ort.InferenceSession(str(file), providers=chosen)
    except Exception as exc:
        raise BackendError(f"model: ONNX Runtime cannot load {file.name}: {one_line(exc)}") from exc


def _is_session(model: Any) -> bool:
    ort = sys.modules.get("onnxruntime")
    return ort is not None and isinstance(model, ort.InferenceSession)


def onnx_backend(model: Any) -> OnnxBackend | None:
    """The backend of an InferenceSession or a path to a ``.onnx`` file; None otherwise."""
    if isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".onnx"):
        return OnnxBackend(load_onnx(model))
    return OnnxBackend(model) if _is_session(model) else None


def _metadata_labels(session: Any, classes: Any) -> tuple[str, ...] | None:
    """Class names a graph carries in its metadata (``labels``, ``classes``, ``names``, ...).

    Read by :func:`~seewhy.backends.label_text.parse_names` (a JSON or Python
    list, a dict of index to name as Ultralytics writes it, or a comma-separated
    line), never evaluated: the metadata is the file author's text. Names that
    cannot be read, or whose number is not the output's width ``classes``,
    are not used, with one warning saying so: a model still explains without
    its names, and its author's typo should not stop the user's run.
    """
    try:
        found = session.get_modelmeta().custom_metadata_map
    except (AttributeError, RuntimeError):  # a session stand-in without metadata
        return None
    problems: list[str] = []
    for key in _LABEL_KEYS:
        text = found.get(key)
        if not isinstance(text, str) or not text.strip():
            continue
        try:
            names = parse_names(text)
        except NotNames as exc:
            problems.append(f"its {key!r} metadata is not a list of class names ({exc})")
            continue
        if isinstance(classes, int) and len(names) != classes:
            problems.append(
                f"its {key!r} metadata names {len(names):,} classes, the output has {classes}"
            )
            continue
        if names:
            return names
    if problems:
        warn_user(
            f"the ONNX graph's class names are not used: {'; '.join(problems)}; classes are "
            "shown by index (pass labels=[...] to name them)"
        )
    return None


def _file_stem(session: Any) -> str | None:
    """The model file's name without its suffix (``resnet18`` for resnet18.onnx), if known."""
    path = getattr(session, "_model_path", None)  # set by onnxruntime for sessions from a file
    return Path(path).stem or None if isinstance(path, str) and path else None


def _layout(name: str, shape: Sequence[Any]) -> bool:
    """True for NCHW, from where the graph's input has a channel count; warns where it guesses."""
    first, last = (isinstance(shape[i], int) and shape[i] in _CHANNEL_COUNTS for i in (1, 3))
    if first != last:
        return first
    warn_user(
        f"the ONNX input {name!r} of shape {list(shape)} does not say its layout; taking it as "
        "NCHW (channels first), as PyTorch exports are"
    )
    return True


class OnnxBackend(PredictOnlyBackend):
    """Runs an ``onnxruntime.InferenceSession`` on batches of prepared inputs."""

    framework: Framework = "onnx"
    description = "an ONNX Runtime model"
    reason = "ONNX Runtime only runs the graph forward, with no gradients or layer access"

    def __init__(self, session: Any) -> None:
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise UnsupportedModel(
                f"model: the ONNX graph takes {len(inputs)} inputs ({names}); seewhy feeds one "
                "image batch: export a graph with one input (fix the others inside it)"
            )
        graph_input = inputs[0]
        shape = list(graph_input.shape)
        dtype = _ELEMENT_TYPES.get(graph_input.type)
        if len(shape) != 4 or dtype is None:
            raise UnsupportedModel(
                f"model: the ONNX input {graph_input.name!r} is {graph_input.type} of shape "
                f"{shape}; seewhy feeds float images (N, C, H, W) or (N, H, W, C)"
            )
        channels_first = _layout(graph_input.name, shape)
        spatial = shape[2:4] if channels_first else shape[1:3]
        size = tuple(spatial) if all(isinstance(s, int) for s in spatial) else None
        channel = shape[1] if channels_first else shape[3]
        static = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        width = outputs[0].shape[1] if len(outputs[0].shape) == 2 else None
        super().__init__(
            session,
            channels_first=channels_first,
            batch=DEFAULT_BATCH,
            static_batch=static,
            classes=width if isinstance(width, int) and width > 0 else None,
            channels=channel if isinstance(channel, int) else None,
            hints=ModelHints(
                size=(int(size[0]), int(size[1])) if size else None,
                channels=channel if isinstance(channel, int) else None,
                labels=_metadata_labels(session, width),
                source=f"ONNX graph input {graph_input.name!r} {shape}",
                name=_file_stem(session),
            ),
        )
        self.input_name = graph_input.name
        self.output_name = outputs[0].name
        self.dtype = dtype
        if len(outputs) > 1:
            names = ", ".join(o.name for o in outputs)
            warn_user(
                f"the ONNX graph has {len(outputs)} outputs ({names}); scoring the first, "
                f"{self.output_name!r}"
            )
        if static is not None:
            warn_user(
                f"the ONNX graph's batch is fixed at {static}; running {static} input(s) per "
                "run (export with a dynamic batch axis to run more at once)"
            )

    def _forward(self, x: np.ndarray) -> Any:
        feed = {self.input_name: x if self.dtype is np.float32 else x.astype(self.dtype)}
        return self.model.run([self.output_name], feed)[0]

    def pack(self, pickle_module: Any) -> PackedModel:
        """The graph's bytes (read from its file, or as the session was given them), with
        weights kept in files beside it (ONNX external data) taken in."""
        path = getattr(self.model, "_model_path", None)
        blob = _with_weights(Path(path)) if path else getattr(self.model, "_model_bytes", None)
        if not isinstance(blob, bytes):
            raise BackendError(
                "model: cannot read this ONNX session's graph back to send it to another "
                "process; pass the .onnx path instead"
            )
        return PackedModel("onnx", blob)


#: ONNX's protobuf limit: a graph with more weights than this can only travel as files.
_PROTOBUF_LIMIT = 2**31 - 1


def _with_weights(path: Path) -> bytes:
    """The file's bytes; a graph whose weights are external data, with them taken in.

    Another process (a Ray worker) gets only these bytes, so weights left in a
    file beside the graph (``save_as_external_data``, what exporters do above
    2 GB) would be missing there.
    """
    blob = path.read_bytes()
    if b"location" not in blob:  # each external tensor names its file under "location"
        return blob
    onnx = require_module("onnx", "onnx")
    graph = onnx.load(str(path), load_external_data=False)
    initializers = list(graph.graph.initializer)
    if not any(t.data_location == onnx.TensorProto.EXTERNAL for t in initializers):
        return blob
    full = onnx.load(str(path))  # reads the weight files beside it
    size = full.ByteSize()
    if size > _PROTOBUF_LIMIT:
        raise BackendError(
            f"model: {path.name} keeps {size / 2**30:.1f} GiB of weights in files beside it, "
            "more than one ONNX message holds, so it cannot be sent to other processes; "
            "give the audit the .onnx path (each worker then loads it) or use the local engine"
        )
    return bytes(full.SerializeToString())


def unpack(packed: PackedModel) -> Any:
    """A session over the bytes :meth:`OnnxBackend.pack` packed, on this machine's providers."""
    ort = require_module("onnxruntime", "onnx")
    return ort.InferenceSession(packed.blob, providers=default_providers())
