"""The metrics :func:`~seewhy.metrics.evaluate` knows, each declared once where it is defined.

A metric function carries :func:`metric` (``@metric("deletion", ...)``): its
name, whether higher or lower is better, what it needs (the model's
predictions, object masks or boxes), which of ``evaluate``'s settings it
takes and the number that sums its result up. ``evaluate``, the CLI's help
and its one-line summaries read these declarations, so a new metric is one
decorated function. Names and misspellings work as for the methods
(:class:`seewhy.registry.Registry`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, TypeVar

from ..errors import InvalidInput, SeewhyError
from ..registry import Registry

__all__ = ["Direction", "Metric", "Need", "Result", "get", "metric", "names", "registered"]


class Direction(Enum):
    """Which way a metric's headline number improves.

    Attributes
    ----------
    HIGHER
        Higher is better (insertion, the pointing game, IoU).
    LOWER
        Lower is better (deletion, Average Drop).
    """

    HIGHER = "higher is better"
    LOWER = "lower is better"


class Need(Enum):
    """What a metric reads besides the explanation's maps.

    Attributes
    ----------
    PREDICTIONS
        The model's forward passes and nothing else, so a model that only
        predicts (``seewhy.BlackBox``, ONNX) will do.
    OBJECTS
        The ground truth: object ``masks=`` or ``boxes=``.
    """

    PREDICTIONS = "the model's predictions"
    OBJECTS = "object masks= or boxes="


#: The keywords every metric of a need takes from ``evaluate``, besides its own settings.
NEED_KEYWORDS: Mapping[Need, tuple[str, ...]] = {
    Need.PREDICTIONS: ("images", "batch_size", "precision"),
    Need.OBJECTS: ("masks", "boxes"),
}

#: ``evaluate``'s keywords for a vision-language model's text side: a metric that runs the
#: model lists them in its ``settings`` to score a recorded Prompt or Answer again.
TEXT_SIDE: tuple[str, ...] = ("tokenizer", "processor")


class Result(Protocol):
    """What a metric returns: anything that turns into JSON-ready numbers.

    ``evaluate`` reports ``to_dict()``, and :attr:`Metric.headline` names the
    key of it that sums the result up.
    """

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Metric:
    """One registered metric: what ``evaluate`` needs to know to run and report it.

    ``function`` is called as ``function(model, explanation, **keywords)`` when
    the metric needs predictions, else ``function(explanation, **keywords)``;
    two metrics may share one function (Average Drop and Increase in
    Confidence come from the same passes), and ``evaluate`` then runs it once.

    Attributes
    ----------
    name : str
        The registered name (lower case, ``_`` between words).
    function : callable
        The metric function; returns a :class:`Result`.
    direction : Direction
        Which way the headline number improves.
    needs : frozenset of Need
        What it reads besides the maps; none: the maps alone.
    settings : tuple of str
        ``evaluate``'s keywords the function takes (``steps``, ``baseline``, ...).
    headline : str
        The key of ``function(...).to_dict()`` that sums the result up.
    """

    name: str
    function: Callable[..., Result]
    direction: Direction
    needs: frozenset[Need]
    settings: tuple[str, ...]  # evaluate's keywords the function takes (steps, baseline, ...)
    headline: str  # the key of ``function(...).to_dict()`` that sums the result up

    @property
    def needs_model(self) -> bool:
        """Whether the metric runs the model (every one that does only predicts)."""
        return Need.PREDICTIONS in self.needs

    def keywords(self) -> tuple[str, ...]:
        """Every keyword the function takes from ``evaluate``: its needs' and its settings."""
        needed = [k for need in Need if need in self.needs for k in NEED_KEYWORDS[need]]
        return (*needed, *self.settings)

    def compute(self, model: Any, explanation: Any, given: Mapping[str, Any]) -> Result:
        """The result on ``explanation``, with the keywords it takes picked from ``given``."""
        keywords = {k: given[k] for k in self.keywords() if k in given}
        if self.needs_model:
            return self.function(model, explanation, **keywords)
        return self.function(explanation, **keywords)


def _metric_key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


# No loader: this module is inside :mod:`seewhy.metrics`, whose package imports every
# metric module before anyone can reach this one.
_METRICS: Registry[Metric] = Registry("metric", key=_metric_key, not_found=InvalidInput)

F = TypeVar("F", bound=Callable[..., Any])


def metric(
    name: str,
    *aliases: str,
    direction: Direction,
    needs: frozenset[Need] = frozenset(),
    settings: tuple[str, ...] = (),
    headline: str = "mean",
) -> Callable[[F], F]:
    """Function decorator: make a metric function known to ``evaluate`` by ``name``.

    The function is returned unchanged. One that does not take a keyword its
    needs or ``settings`` promise is refused here, when its module is imported.

    Parameters
    ----------
    name : str
        The metric's name (``-`` or ``_``, any case, are one).
    *aliases : str
        Other names it is found by.
    direction : Direction
        Which way its headline number improves.
    needs : frozenset of Need
        What it reads besides the maps; it then takes those needs' keywords
        (``images``, ``batch_size``, ``precision``; ``masks``, ``boxes``).
    settings : tuple of str
        ``evaluate``'s keywords it takes besides its needs'.
    headline : str
        The key of its result's ``to_dict()`` that sums the result up.

    Returns
    -------
    callable
        The decorator.

    Raises
    ------
    SeewhyError
        When the decorated function does not take a keyword the declaration promises.
    """

    def wrap(function: F) -> F:
        entry = Metric(_metric_key(name), function, direction, needs, settings, headline)
        _check_signature(entry)
        _METRICS.add(entry, name, *aliases)
        return function

    return wrap


def _check_signature(entry: Metric) -> None:
    parameters = inspect.signature(entry.function).parameters
    missing = [k for k in entry.keywords() if k not in parameters]
    if missing:
        raise SeewhyError(
            f"metric {entry.name!r}: {entry.function.__qualname__} does not take "
            f"{', '.join(missing)}, which its declaration promises"
        )


def get(name: str) -> Metric:
    """The metric registered under ``name`` (``-`` or ``_``, any case).

    Parameters
    ----------
    name : str
        A metric's name or alias.

    Returns
    -------
    Metric
        Its declaration.

    Raises
    ------
    InvalidInput
        No metric has that name; the message names the nearest ones.
    """
    return _METRICS.get(name)


def names() -> list[str]:
    """Primary names of the registered metrics, sorted."""
    return _METRICS.names()


def registered() -> list[Metric]:
    """Every registered metric, in :func:`names` order."""
    return _METRICS.entries()
