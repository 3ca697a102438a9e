"""Lightning integration: watch where a PyTorch model looks while it trains.

``seewhy.lightning`` is imported only on request (``from seewhy.lightning
import ExplainCallback``); it imports Lightning and torch, never Keras.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from ._kit.checks import bad_argument, optional_positive_int
from ._training_panels import PanelSettings, explain_and_save

__all__ = ["ExplainCallback"]

_WHERE = "ExplainCallback"


class ExplainCallback(PanelSettings, pl.Callback):
    """Explain fixed images with the model being trained, every few epochs or steps.

    At the end of every ``every``-th training epoch, and/or after every
    ``every_n_steps``-th optimizer step, each image's panel (picture |
    heatmap | overlay, with the explained class and its probability) is
    written to ``log_dir`` as ``seewhy_{method}_epoch{NNNN}_img{II}.png``
    (``..._step{NNNNNNN}_img{II}.png`` for steps), and to the trainer's
    loggers: TensorBoard images (tag ``seewhy/{method}/{i}``) through a
    :class:`~lightning.pytorch.loggers.TensorBoardLogger`, a list of
    captioned images under key ``seewhy/{method}`` through a
    :class:`~lightning.pytorch.loggers.WandbLogger`. The logger step is
    ``trainer.global_step``, so the pictures line up with the loss curves.
    Only the global-zero process explains and writes.

    ``images`` are whatever :func:`seewhy.explain` accepts (float arrays are
    taken as already preprocessed inputs, so a slice of the validation data
    works). ``cmap`` and ``panel_options`` (e.g. ``{"arrangement": "vertical"}``)
    go to :meth:`Explanation.panel`; every other keyword argument goes to
    :func:`seewhy.explain` (``target``, ``layer``, ``preprocess``, ``labels``,
    ``score``, ..., and the method's settings) and is checked here, so a
    misspelling stops the callback before training starts. Left out,
    ``target`` is each image's top-1 class at that moment.

    Training goes on exactly as without the callback: the model is
    explained in eval mode and handed back with its training flags and
    ``.grad`` as Lightning left them, and the random streams of torch,
    numpy and :mod:`random` are restored after the explanation (a method
    with noise or masks would otherwise shift the next batch's dropout or
    shuffling).

    Parameters
    ----------
    images : object
        The images explained each time, in any form :func:`seewhy.explain` takes.
    method : str
        The method, by its registered name.
    every : int or None
        Explain after every ``every``-th training epoch; None: not by epoch.
    every_n_steps : int or None
        Explain after every ``every_n_steps``-th optimizer step; None: not by step.
        One of the two must be given.
    log_dir : str or Path
        Where the PNGs go; made when missing.
    cmap : str, optional
        The heatmap's matplotlib colour map; None: seewhy's default.
    panel_options : Mapping, optional
        More keywords for :meth:`Explanation.panel`.
    **settings
        Keywords for :func:`seewhy.explain`, the method's settings included.

    Raises
    ------
    InvalidInput
        A bad setting or a misspelt keyword, or neither ``every`` nor
        ``every_n_steps``, before training starts.
    """

    def __init__(
        self,
        images: Any,
        method: str = "gradcam",
        *,
        every: int | None = 1,
        every_n_steps: int | None = None,
        log_dir: str | Path = "seewhy_logs",
        cmap: str | None = None,
        panel_options: Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        super().__init__()
        self.every = optional_positive_int(every, "every", where=_WHERE)
        self.every_n_steps = optional_positive_int(every_n_steps, "every_n_steps", where=_WHERE)
        if self.every is None and self.every_n_steps is None:
            raise bad_argument(
                "every",
                "a number of epochs (or every_n_steps= a number of steps)",
                None,
                where=_WHERE,
            )
        self.keep_settings(images, method, log_dir, cmap, panel_options, settings)
        self._last_step = 0  # no panels before the first step; accumulation repeats a step

    # -- Lightning hooks ------------------------------------------------------------

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        number = trainer.current_epoch + 1  # current_epoch moves on after these hooks
        if self.every is not None and number % self.every == 0:
            self._log(trainer, pl_module, f"epoch{number:04d}")

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        step = trainer.global_step
        if self.every_n_steps is None or step == self._last_step or step % self.every_n_steps:
            return
        self._last_step = step
        self._log(trainer, pl_module, f"step{step:07d}")

    # -- the work -------------------------------------------------------------------

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stem: str) -> None:
        if not trainer.is_global_zero:
            return
        with _training_untouched(pl_module):
            logged = explain_and_save(pl_module, self, stem)
        ex = logged.explanation
        captions = [f"{ex.sources[i]}: {ex.label(i)}" for i in range(len(ex))]
        _to_loggers(trainer, logged.method, logged.panels, captions, trainer.global_step)


def _to_loggers(
    trainer: pl.Trainer,
    method: str,
    panels: list[np.ndarray],
    captions: list[str],
    step: int,
) -> None:
    """The panels to each logger that shows pictures; the others get the PNG files only."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            for i, panel in enumerate(panels):
                logger.experiment.add_image(
                    f"seewhy/{method}/{i}", panel, global_step=step, dataformats="HWC"
                )
            logger.experiment.flush()
        elif isinstance(logger, WandbLogger):
            logger.log_image(key=f"seewhy/{method}", images=panels, step=step, caption=captions)


@contextmanager
def _training_untouched(module: torch.nn.Module) -> Iterator[None]:
    """Gradients possible (also from an inference-mode hook) and every random stream restored.

    The backend already restores training flags and never writes ``.grad``;
    this keeps the training run's random numbers where they were.
    """
    devices = sorted({p.device.index or 0 for p in module.parameters() if p.device.type == "cuda"})
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    try:
        with (
            torch.random.fork_rng(devices=devices),
            torch.inference_mode(False),
            torch.enable_grad(),
        ):
            yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
