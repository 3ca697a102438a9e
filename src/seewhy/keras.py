"""Keras integration: watch where a model looks while it trains.

``seewhy.keras`` is imported only on request (``from seewhy.keras import
ExplainCallback``); it imports Keras, never torch. Inside this module
``import keras`` is the Keras package itself (imports are absolute).
"""

from __future__ import annotations

import importlib.util
import io
import itertools
import os
import socket
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ._kit.checks import bad_argument, flag, positive_int
from ._training_panels import PanelSettings, explain_and_save

__all__ = ["ExplainCallback"]

_WHERE = "ExplainCallback"
_SERIAL = itertools.count()  # event files of one process and second stay apart


class ExplainCallback(PanelSettings, keras.callbacks.Callback):  # type: ignore[misc]
    """Explain fixed validation images at the end of every ``every``-th epoch.

    Each image's panel (picture | heatmap | overlay, with the explained class)
    is written to ``log_dir`` as
    ``seewhy_{method}_epoch{NNNN}_img{II}.png``, and the same panels go to a
    TensorBoard event file in ``log_dir`` as image summaries (tag
    ``seewhy/{method}/{i}``, step = epoch number), on every Keras backend
    (TensorFlow, torch, JAX) and without importing TensorFlow on the others.
    ``tensorboard=None`` writes the event file when the ``tensorboard``
    package is installed, ``True`` insists on it, ``False`` writes PNGs only.

    ``images`` are whatever :func:`seewhy.explain` accepts; float arrays are
    taken as already preprocessed model inputs, so a model trained on its own
    input scaling can be given a slice of its validation data directly.
    ``cmap`` and ``panel_options`` (e.g. ``{"arrangement": "vertical"}``) go to
    :meth:`Explanation.panel`; every other keyword argument goes to
    :func:`seewhy.explain` (``target``, ``layer``, ``preprocess``, ``labels``,
    ``score``, ..., and the method's settings) and is checked here, so a
    misspelling stops the callback before training starts. Left out,
    ``target`` is each image's top-1 class at that epoch.

    The model is only read: the explanation runs in inference mode on the
    current weights and changes nothing in it.

    Parameters
    ----------
    images : object
        The images explained each time, in any form :func:`seewhy.explain` takes.
    method : str
        The method, by its registered name.
    every : int
        Explain after every ``every``-th epoch (1: each one).
    log_dir : str or Path
        Where the PNGs and the TensorBoard event file go; made when missing.
    cmap : str, optional
        The heatmap's matplotlib colour map; None: seewhy's default.
    panel_options : Mapping, optional
        More keywords for :meth:`Explanation.panel`.
    tensorboard : bool, optional
        Write the event file: None when ``tensorboard`` is installed, True
        always (refused without it), False never.
    **settings
        Keywords for :func:`seewhy.explain`, the method's settings included.

    Raises
    ------
    InvalidInput
        A bad setting or a misspelt keyword, before training starts.
    """

    def __init__(
        self,
        images: Any,
        method: str = "gradcam",
        *,
        every: int = 1,
        log_dir: str | Path = "seewhy_logs",
        cmap: str | None = None,
        panel_options: Mapping[str, Any] | None = None,
        tensorboard: bool | None = None,
        **settings: Any,
    ) -> None:
        super().__init__()
        self.every = positive_int(every, "every", where=_WHERE)
        installed = importlib.util.find_spec("tensorboard") is not None
        self.tensorboard = (
            installed if tensorboard is None else flag(tensorboard, "tensorboard", where=_WHERE)
        )
        if self.tensorboard and not installed:
            raise bad_argument(
                "tensorboard",
                "False or None without the tensorboard package (pip install tensorboard)",
                tensorboard,
                where=_WHERE,
            )
        self.keep_settings(images, method, log_dir, cmap, panel_options, settings)
        self._writer: _EventWriter | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        number = epoch + 1
        if number % self.every:
            return
        logged = explain_and_save(self.model, self, f"epoch{number:04d}")
        self._summaries(logged.method, logged.panels, number)

    def _summaries(self, method: str, panels: list[np.ndarray], step: int) -> None:
        """TensorBoard image summaries, on every Keras backend."""
        if not self.tensorboard:
            return
        if self._writer is None:
            self._writer = _EventWriter(self.log_dir)
        self._writer.images({f"seewhy/{method}/{i}": p for i, p in enumerate(panels)}, step)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _EventWriter:
    """A TensorBoard event file of image summaries, written without TensorFlow.

    TensorBoard's own ``EventFileWriter`` (and ``torch.utils.tensorboard``
    on top of it) imports TensorFlow whenever it is installed, and TensorFlow
    next to torch's compiler stack can crash the process; so this writes the
    records itself: TensorBoard's event protos in TFRecord framing (length,
    masked CRC-32C of the length, data, masked CRC-32C of the data).
    """

    def __init__(self, log_dir: Path) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

        self._event, self._summary, self._crc = event_pb2.Event, summary_pb2.Summary, masked_crc32c
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = f"{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_SERIAL)}"
        self.path = log_dir / f"events.out.tfevents.{stamp}.seewhy"
        self._file = self.path.open("xb")
        self._write(self._event(wall_time=time.time(), file_version="brain.Event:2"))

    def images(self, panels: dict[str, np.ndarray], step: int) -> None:
        """One image summary per tag (uint8 RGB arrays), at ``step``, flushed to disk."""
        from PIL import Image

        values = []
        for tag, panel in panels.items():
            buffer = io.BytesIO()
            Image.fromarray(panel).save(buffer, format="PNG")
            height, width = panel.shape[:2]
            image = self._summary.Image(
                height=height, width=width, colorspace=3, encoded_image_string=buffer.getvalue()
            )
            values.append(self._summary.Value(tag=tag, image=image))
        summary = self._summary(value=values)
        self._write(self._event(wall_time=time.time(), step=step, summary=summary))
        self._file.flush()

    def _write(self, event: Any) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._file.write(header + struct.pack("<I", self._crc(header)))
        self._file.write(data + struct.pack("<I", self._crc(data)))

    def close(self) -> None:
        self._file.close()
