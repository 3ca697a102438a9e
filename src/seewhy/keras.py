"""Keras integration: watch where a model looks while it trains.

``seewhy.keras`` is imported only on request (``from seewhy.keras import
ExplainCallback``); it imports Keras, never torch. Inside this module
``import keras`` is the Keras package itself (imports are absolute).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .backends.base import Score
from .errors import InvalidInput
from .preprocess import Preprocess

__all__ = ["ExplainCallback"]


class ExplainCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Explain fixed validation images at the end of every ``every``-th epoch.

    Each image's panel (picture | heatmap | overlay, with the explained class)
    is written to ``log_dir`` as
    ``seewhy_{method}_epoch{NNNN}_img{II}.png``. When Keras runs on
    TensorFlow the same panels also go to TensorBoard as image summaries
    (tag ``seewhy/{method}/{i}``, step = epoch number) in ``log_dir``; on
    the torch and JAX backends only the PNG files are written.

    ``images`` are whatever :func:`seewhy.explain` accepts; float arrays are
    taken as already preprocessed model inputs, so a model trained on its own
    input scaling can be given a slice of its validation data directly.
    ``target=None`` explains each image's top-1 class at that epoch. The
    other keyword arguments go to :func:`seewhy.explain` (``layer``,
    ``preprocess``, ``labels``, ``score``, method parameters).

    The model is only read: the explanation runs in inference mode on the
    current weights and changes nothing in it.
    """

    def __init__(
        self,
        images: Any,
        method: str = "gradcam",
        *,
        every: int = 1,
        log_dir: str | Path = "seewhy_logs",
        target: int | str | Sequence[int | str] | None = None,
        layer: str | None = None,
        preprocess: Preprocess | None = None,
        labels: Sequence[str] | None = None,
        score: Score = "logit",
        cmap: str = "viridis",
        **params: Any,
    ) -> None:
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise InvalidInput(f"every: expected a positive number of epochs, got {every!r}")
        self.images = images
        self.method = method
        self.every = every
        self.log_dir = Path(log_dir)
        self.target = target
        self.layer = layer
        self.preprocess = preprocess
        self.labels = labels
        self.score: Score = score
        self.cmap = cmap
        self.method_params = params  # (Callback.params is Keras' own: the fit settings)
        self.written: list[Path] = []  # every PNG written so far, in order
        self._writer: Any = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        number = epoch + 1
        if number % self.every:
            return
        from .api import explain

        explanation = explain(
            self.model,
            self.images,
            self.method,
            target=self.target,
            layer=self.layer,
            preprocess=self.preprocess,
            labels=self.labels,
            score=self.score,
            **self.method_params,
        )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        method = re.sub(r"[^A-Za-z0-9_.-]+", "_", explanation.method)
        panels = []
        for i in range(len(explanation)):
            panel = explanation.panel(i, cmap=self.cmap).convert("RGB")
            path = self.log_dir / f"seewhy_{method}_epoch{number:04d}_img{i:02d}.png"
            panel.save(path)
            self.written.append(path)
            panels.append(np.asarray(panel))
        self._summaries(method, panels, number)

    def _summaries(self, method: str, panels: list[np.ndarray], step: int) -> None:
        """TensorBoard image summaries, when Keras runs on TensorFlow."""
        if keras.backend.backend() != "tensorflow":
            return
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir))
        # TensorBoard's image-summary layout (width, height, PNG bytes, plugin
        # "images"), written with core TensorFlow: tf.summary.image itself
        # would need the tensorboard package just to write the file.
        metadata = tf.compat.v1.SummaryMetadata()
        metadata.plugin_data.plugin_name = "images"
        with self._writer.as_default():
            for i, panel in enumerate(panels):
                height, width = panel.shape[:2]
                tensor = tf.stack(
                    [tf.as_string(width), tf.as_string(height), tf.io.encode_png(panel)]
                )
                tf.summary.write(
                    f"seewhy/{method}/{i}",
                    tensor,
                    step=step,
                    metadata=metadata.SerializeToString(),
                )
        self._writer.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
