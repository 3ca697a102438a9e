"""Exceptions raised by seewhy.

Every error a user can cause is a :class:`SeewhyError` with a one-line message
that names the argument, what was expected and what was received.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "ConstantMapWarning",
    "FewSuperpixelsWarning",
    "InputGuessWarning",
    "InvalidInput",
    "LayerNotFound",
    "MethodNotFound",
    "NonFiniteScoresWarning",
    "SeewhyError",
    "SkippedInputWarning",
    "UnsupportedModel",
    "UntrustedModel",
]


class SeewhyError(Exception):
    """Base class of every error seewhy raises on purpose."""


class InvalidInput(SeewhyError, ValueError):
    """An image, target or parameter that cannot be used as given."""


class LayerNotFound(SeewhyError, KeyError):
    """A layer name that the model does not have, or no usable layer at all."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MethodNotFound(SeewhyError, KeyError):
    """A method name that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class BackendError(SeewhyError, RuntimeError):
    """The model's framework is missing, unknown, or failed in a way we can name."""


class UnsupportedModel(SeewhyError, TypeError):
    """The model cannot be explained by the requested method (e.g. CAM without a GAP head)."""


class UntrustedModel(SeewhyError):
    """A model file that could run arbitrary code when loaded, without the trust flag."""


class SkippedInputWarning(UserWarning):
    """An image in a batch could not be used; the others were explained."""


class NonFiniteScoresWarning(RuntimeWarning):
    """The model gave NaN or infinite scores for some images; they have no top class."""


class InputGuessWarning(UserWarning):
    """The model does not say its input size, channels or value range; a default was used."""


class ConstantMapWarning(UserWarning):
    """A map came out constant (all zero): it shows nothing, and the likely cause is named."""


class FewSuperpixelsWarning(UserWarning):
    """A picture split into so few superpixels that LIME / Kernel SHAP can say little."""
