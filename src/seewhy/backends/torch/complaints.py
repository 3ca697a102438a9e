"""A PyTorch model's own complaint about its input, as one line with the fix.

Read where a pass runs the model (:mod:`.structure`) and where sizes are
tried (:mod:`.hints`): a shape error deep in the model becomes the one line
that says which size and channels to give.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ...errors import BackendError
from ..hints import input_rejected

__all__ = ["input_mismatch", "not_a_picture_model"]


_SIZE_WORDS = (
    "mat1 and mat2 shapes cannot be multiplied",
    "doesn't match model",
    "channels, but got",  # "expected input[1, 3, 28, 28] to have 1 channels, but got 3"
    "size mismatch",
    "shape '[",  # view/reshape to a fixed shape
    "is invalid for input of size",
    "must match the size of tensor",
)


def input_mismatch(exc: BaseException, shape: tuple[int, ...]) -> Exception | None:
    """The model's own complaint about the input's size or channels as one line with the fix.

    None when ``exc`` is not such a complaint (it is then the model's own error).
    """
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if not any(word in text for word in _SIZE_WORDS):
        return None
    _, channels, height, width = (*shape, 0, 0, 0, 0)[:4]
    return BackendError(input_rejected(text, height, width, channels))


def not_a_picture_model(model: nn.Module, inputs: Any, exc: BaseException) -> Exception | None:
    """One line for a model that cannot take one picture batch at all, with the way out:
    a ``forward`` that needs more arguments, or a volume model (Conv3d) or a signal one
    (Conv1d). None when ``exc`` is something else. seewhy does not yet explain several
    inputs or volumes, so the line says how to get by without them."""
    missing = _missing_arguments(model, inputs) if isinstance(exc, TypeError) else None
    if missing:
        names = ", ".join(repr(n) for n in missing)
        return BackendError(
            f"model: its forward needs more than the picture ({names} without a default); "
            "seewhy passes one image batch: wrap it in a module whose forward(x) supplies "
            f"{names} (seewhy does not take several inputs yet)"
        )
    first = next((m for m in model.modules() if isinstance(m, _CONVS)), None)
    if isinstance(first, (nn.Conv3d, nn.Conv1d)) and not isinstance(exc, TypeError):
        kind, shape = (
            ("volumes", "(N, C, D, H, W)")
            if isinstance(first, nn.Conv3d)
            else ("signals", "(N, C, L)")
        )
        return BackendError(
            f"model: it takes {kind} {shape} (its first layer is a {type(first).__name__}), "
            f"and seewhy explains 2-D pictures (N, C, H, W); seewhy does not explain {kind} yet: "
            "explain a 2-D model, or wrap this one so its forward takes a picture batch"
        )
    return None


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _missing_arguments(model: nn.Module, inputs: Any) -> list[str]:
    """The parameters of ``model.forward`` that one positional input leaves without a value."""
    import inspect

    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return []
    try:
        signature.bind(inputs)
    except TypeError:
        return [
            p.name
            for p in list(signature.parameters.values())[1:]
            if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
    return []
