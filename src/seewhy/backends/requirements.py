"""The one check that refuses what a backend cannot serve, in one line that says what works.

A method's ``requires`` (or a feature's one capability) against the
protocols of :mod:`seewhy.backends.capabilities` the backend inherits:
:func:`require` for a method, :func:`need_layers` and its siblings for a
feature, :func:`methods_for` for what does work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .. import registry
from ..errors import UnsupportedModel
from .capabilities import (
    Attention,
    Backend,
    Devices,
    Gradients,
    Heads,
    Hints,
    LayerReadout,
    Layers,
    Predicts,
    Relevance,
    Weights,
)
from .extra_gradients import BiasGradients, LayerCurvature
from .layouts import Layout, parse_layout

if TYPE_CHECKING:
    from ..methods.base import Method

__all__ = [
    "METRICS_THAT_PREDICT",
    "capabilities_of",
    "lacking",
    "methods_for",
    "need_devices",
    "need_gradients",
    "need_layers",
    "need_weights",
    "reduced_precision_methods",
    "refusal",
    "require",
    "use_layout",
]

B = TypeVar("B", bound=Backend)

#: The faithfulness metrics that only ask a model for predictions.
METRICS_THAT_PREDICT = "deletion, insertion, average drop, ROAD"


#: Every capability, in the order messages name them, with what it gives in a user's words.
_WORDS: dict[type, str] = {
    Predicts: "the model's scores",
    Layers: "the model's layers",
    Gradients: "gradients of its scores",
    Attention: "a transformer's attention",
    LayerReadout: "a transformer's score read at every block (LeGrad)",
    BiasGradients: "the gradient at every bias (FullGrad)",
    LayerCurvature: "second derivatives at a layer (ShapleyCAM)",
    Relevance: "relevance propagated layer by layer (LRP)",
    Heads: "scores of other outputs and targets than classes",
    Weights: "the model's weights",
    Devices: "to move the model to a device or another process",
    Hints: "what the model says about its input",
}


def capabilities_of(backend: object) -> tuple[type, ...]:
    """The capabilities ``backend`` has, in the order messages name them.

    Parameters
    ----------
    backend : object
        A backend (what :func:`seewhy.backends.backend_for` returns).

    Returns
    -------
    tuple of type
        The capability protocols it implements.
    """
    return tuple(c for c in _WORDS if isinstance(backend, c))


def lacking(backend: object, needed: Iterable[type]) -> list[type]:
    """The capabilities in ``needed`` that ``backend`` does not have, in a stable order.

    Parameters
    ----------
    backend : object
        A backend (what :func:`seewhy.backends.backend_for` returns).
    needed : iterable of type
        Capability protocols (a method's ``requires``).

    Returns
    -------
    list of type
        Those it lacks; empty when it has them all.
    """
    wanted = set(needed)
    return [
        c for c in (*_WORDS, *wanted - set(_WORDS)) if c in wanted and not isinstance(backend, c)
    ]


def methods_for(backend: object) -> list[str]:
    """The registered methods whose every requirement ``backend`` meets.

    Parameters
    ----------
    backend : object
        A backend (what :func:`seewhy.backends.backend_for` returns).

    Returns
    -------
    list of str
        Their names, sorted.
    """
    return [name for name in registry.names() if not lacking(backend, registry.get(name).requires)]


def reduced_precision_methods() -> list[str]:
    """The registered methods whose passes all go through ``predict`` (``forward_only``):
    those ``precision="bfloat16"`` or ``"float16"`` applies to."""
    return [name for name in registry.names() if registry.get(name).forward_only]


def _why(backend: object) -> str:
    """Why ``backend`` lacks what it lacks: its own ``reason``, else its framework's name."""
    reason = getattr(backend, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    return f"the {getattr(backend, 'framework', 'given')} backend does not offer it"


def refusal(backend: object, missing: Sequence[type], who: str) -> UnsupportedModel:
    """The one line for ``who`` (a method, a check) needing what ``backend`` lacks.

    It names what is missing, why the backend lacks it, and what works with it.

    Parameters
    ----------
    backend : object
        A backend (what :func:`seewhy.backends.backend_for` returns).
    missing : sequence of type
        The capabilities it lacks.
    who : str
        Who needs it, as the message names it (``"model: the sanity check"``).

    Returns
    -------
    UnsupportedModel
        The error, for the caller to raise.
    """
    needs = " and ".join(_WORDS.get(c, c.__name__) for c in missing)
    works = ", ".join(methods_for(backend)) or "none"
    return UnsupportedModel(
        f"{who} needs {needs}; {_why(backend)}; methods that work with it: {works} "
        f"(metrics: {METRICS_THAT_PREDICT})"
    )


def require(backend: object, method: Method | type[Method]) -> None:
    """Refuse, before any image is read, a method ``backend`` cannot serve (one line).

    Parameters
    ----------
    backend : object
        A backend (what :func:`seewhy.backends.backend_for` returns).
    method : Method or type of Method
        The method (or its class), whose ``requires`` lists what it needs.

    Raises
    ------
    UnsupportedModel
        The backend lacks a capability the method requires.
    """
    missing = lacking(backend, method.requires)
    if missing:
        raise refusal(backend, missing, f"method: {method.name}")


def _served(backend: object, capability: type, who: str) -> Any:
    """``backend`` when it has ``capability``; else the refusal naming ``who`` needs it."""
    if isinstance(backend, capability):
        return backend
    raise refusal(backend, [capability], who)


def need_layers(backend: object, who: str) -> Layers:
    """``backend``'s :class:`Layers`, or the one-line refusal saying ``who`` needs them.

    Parameters
    ----------
    backend : object
        A backend (what :func:`seewhy.backends.backend_for` returns).
    who : str
        Who needs it, as the message names it (``"model: the sanity check"``).

    Returns
    -------
    Layers
        ``backend`` itself, typed as having them.

    Raises
    ------
    UnsupportedModel
        It does not.
    """
    served: Layers = _served(backend, Layers, who)
    return served


def need_gradients(backend: object, who: str) -> Gradients:
    """``backend``'s :class:`Gradients`, or the one-line refusal saying ``who`` needs them.

    Parameters
    ----------
    backend, who
        As in :func:`need_layers`.
    """
    served: Gradients = _served(backend, Gradients, who)
    return served


def need_weights(backend: object, who: str) -> Weights:
    """``backend``'s :class:`Weights`, or the one-line refusal saying ``who`` needs them.

    Parameters
    ----------
    backend, who
        As in :func:`need_layers`.
    """
    served: Weights = _served(backend, Weights, who)
    return served


def need_devices(backend: object, who: str) -> Devices:
    """``backend``'s :class:`Devices`, or the one-line refusal saying ``who`` needs them.

    Parameters
    ----------
    backend, who
        As in :func:`need_layers`.
    """
    served: Devices = _served(backend, Devices, who)
    return served


def use_layout(backend: B, value: Any) -> tuple[B, str | None]:
    """The backend reading layers in the user's ``layout=`` (a view), and what
    ``Explanation.params`` records: a name as given, a :class:`Layout` by its
    description, a callable as ``"callable"``. The backend given is unchanged.

    Parameters
    ----------
    backend : object
        A backend (what :func:`seewhy.backends.backend_for` returns).
    value : object
        ``explain``'s ``layout=``: None, a name, a :class:`Layout` or a callable.

    Returns
    -------
    tuple of (backend, str or None)
        The backend to use and the recorded form; ``(backend, None)`` for None.

    Raises
    ------
    UnsupportedModel
        A layout for a backend without :class:`Layers`.
    InvalidInput
        A layout seewhy cannot read.
    """
    choice = parse_layout(value)
    if choice is None:
        return backend, None
    if not isinstance(backend, Layers):
        raise refusal(backend, [Layers], "layout: reading a layer in a layout")
    view = backend.with_layout(choice)
    if isinstance(value, str):
        return view, value
    return view, choice.describe() if isinstance(choice, Layout) else "callable"
