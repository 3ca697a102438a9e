"""What a model says about its own input, as a backend's ``hints()`` reports it.

It lives with the backends (not with :mod:`seewhy.spec`, which reads it) so
that a backend never imports the code that asks it: ``spec`` depends on the
backends, never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..preprocess import Preprocess

__all__ = ["ModelHints", "input_rejected"]


@dataclass(frozen=True)
class ModelHints:
    """What a model says about its own input; each field is None where it says nothing.

    A backend's ``hints()`` (the :class:`~seewhy.backends.capabilities.Hints`
    capability) returns one (ONNX graphs, Keras ``model.inputs``, timm
    ``pretrained_cfg``, Hugging Face configs, ...). ``source`` names where
    the hints were read, for the spec's record. ``preprocess`` is a whole
    preprocessing the model declares (its size included); ``value_range``
    only the range its pixels take when the model normalises by itself
    (``(0, 255)`` after a ``Rescaling(1/255)`` layer).

    Attributes
    ----------
    size : tuple of (int, int) or None
        The (H, W) the model is fixed to or was trained at.
    channels : int or None
        Input channels (1 grey, 3 RGB, ...).
    preprocess : Preprocess or None
        A whole preprocessing the model declares.
    labels : tuple of str or None
        The class names the model carries.
    source : str
        Where the hints were read.
    value_range : tuple of (float, float) or None
        The pixels' range when the model rescales them itself.
    name : str or None
        What to call a model that has no name of its own (a file's stem).
    assumed : str
        When ``preprocess`` was assumed from what the model is: which, and how
        to change it.
    """

    size: tuple[int, int] | None = None  # (H, W) the model is fixed to or was trained at
    channels: int | None = None  # input channels (1 grey, 3 RGB, ...)
    preprocess: Preprocess | None = None  # a whole preprocessing the model declares
    labels: tuple[str, ...] | None = None  # class names the model carries
    source: str = ""
    value_range: tuple[float, float] | None = None  # pixels' range when the model rescales
    name: str | None = None  # what to call a model that has no name of its own (a file's stem)
    assumed: str = ""  # a whole ``preprocess`` assumed from what the model is: which, how to change


def input_rejected(complaint: str, height: int, width: int, channels: int) -> str:
    """The one line for a model that rejects its input's size or channels, with the fix.

    Parameters
    ----------
    complaint : str
        The framework's own words, shortened.
    height, width : int
        The input size tried.
    channels : int
        The input channels tried.

    Returns
    -------
    str
        The message, naming ``preprocess=`` and ``--size`` as the fix.
    """
    return (
        f"model: it rejects {height}x{width} inputs with {channels} channel(s) ({complaint}); "
        "give its size and channels: preprocess=seewhy.Preprocess(size=(H, W)) (one channel: "
        "mean=(m,), std=(s,)), or --size H,W on the command line"
    )
