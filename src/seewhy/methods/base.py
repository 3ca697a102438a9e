"""What a method is: given a backend and a batch, return raw maps.

Methods never import a framework; they ask the backend for activations,
gradients or predictions, and do the math in numpy.

A method's settings are the keyword-only parameters of its ``__init__``, with
their defaults, as scikit-learn estimators declare theirs: they are checked
once when the method is built and kept as attributes of the same name, so
``Method.params`` lists every setting, defaults included.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .._kit.checks import optional_positive_int
from .._kit.scores import check_targets, target_scores
from ..backends.base import Precision, Score
from ..backends.capabilities import Attention, Backend, Gradients, Layers, Predicts
from ..errors import InvalidInput
from ..preprocess import Preprocess

__all__ = ["Context", "Method", "RawResult", "check_copies", "unknown_keyword"]


@dataclass(frozen=True)
class Context:
    """Everything a method may need for one batch.

    Attributes
    ----------
    backend : Backend
        The model's backend: predictions, activations, gradients.
    inputs : numpy.ndarray
        (N, H, W, C) float32 model inputs.
    targets : numpy.ndarray or None
        (N,) int64 columns of the scores to explain, or None for each image's
        top-1 class.
    layer : str or None
        The resolved layer name, for methods that use one.
    score : {"logit", "probability"}
        What a target's score is.
    batch_size : int
        Images explained together; also the gradient passes of noisy copies.
    forward_batch : int or None
        Perturbed copies per forward-only pass; None: the backend's choice.
    progress : callable, optional
        Called with the units of work done, for progress bars.
    precision : str
        Precision of the forward-only passes (perturbation methods).
    images : numpy.ndarray or None
        (N, H, W, 3) uint8 pictures the inputs came from.
    preprocess : Preprocess or None
        How pictures become inputs, for fills made in pixel space.
    sigmoid : bool
        The head's labels are independent: a probability is a sigmoid.
    target_objects : tuple or None
        Each image's :mod:`seewhy.targets` target when it is not a plain
        class; ``targets`` are then the columns of the backend's scores
        holding them (the class logits follow those columns).
    """

    backend: Backend
    inputs: np.ndarray  # (N, H, W, C) float32 model inputs
    targets: np.ndarray | None  # (N,) int64, or None for each image's top-1 class
    layer: str | None  # resolved layer name, for methods that use one
    score: Score = "logit"
    batch_size: int = 32  # images explained together; gradient passes of noisy copies
    # perturbed copies per forward-only pass; None: the backend's preferred_batch_size
    forward_batch: int | None = None
    progress: Callable[[int], None] | None = None  # called with units of work done
    precision: Precision = "float32"  # of forward-only passes (perturbation methods)
    images: np.ndarray | None = None  # (N, H, W, 3) uint8 pictures the inputs came from
    preprocess: Preprocess | None = None  # how pictures become inputs (for fills in pixel space)
    sigmoid: bool = False  # the head's labels are independent: a probability is a sigmoid
    # each image's seewhy.targets target when not a plain class; ``targets`` are then the
    # columns of the backend's scores holding them (the class logits follow the columns)
    target_objects: tuple[Any, ...] | None = None

    def predict(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        """Logits for ``x`` at the context's precision, ``batch_size`` inputs per pass.

        Parameters
        ----------
        x : numpy.ndarray
            (N, H, W, C) float32 inputs.
        batch_size : int
            Inputs per forward pass.
        """
        return self.backend.predict(x, batch_size=batch_size, precision=self.precision)

    def scores(self, logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Each row's score at its target (float64): logit or probability, as the context asks.

        Parameters
        ----------
        logits : numpy.ndarray
            (N, K) scores.
        targets : numpy.ndarray
            (N,) the column to read in each row.
        """
        return target_scores(logits, targets, self.score, self.sigmoid)

    def logits_and_targets(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Logits of the unperturbed inputs and the classes to explain (checked).

        Parameters
        ----------
        batch_size : int
            Inputs per forward pass.
        """
        logits = self.predict(self.inputs, batch_size)
        if self.targets is None:
            return logits, logits.argmax(axis=1).astype(np.int64)
        return logits, check_targets(self.targets, len(logits), logits.shape[1])

    def forward_copies(self, chosen: int | None) -> int:
        """Perturbed copies per forward-only pass: the method's, the caller's, or the backend's.

        Left to the backend, PyTorch on the CPU gets batches that keep every
        activation under 32 MiB (6 for Lite0), which run faster than 32.

        Parameters
        ----------
        chosen : int or None
            The method's own ``copies_per_pass`` setting.
        """
        if chosen is not None:
            return chosen
        if self.forward_batch is not None:
            return self.forward_batch
        return self.backend.preferred_batch_size(self.inputs, self.precision)

    def gradient_copies(self, chosen: int | None) -> int:
        """Noisy or ablated copies per pass: the method's, else the explainer's batch size.

        Parameters
        ----------
        chosen : int or None
            The method's own ``copies_per_pass`` setting.
        """
        return self.batch_size if chosen is None else chosen


@dataclass(frozen=True)
class RawResult:
    """A method's output before post-processing.

    ``maps`` are (N, h, w) at the layer's (or input's) resolution, not yet
    rectified or normalised. ``extras`` carries method-specific arrays
    (e.g. signed pixel attributions) into ``Explanation.extras``; ``settings``
    the values a method chose for settings left to the input size (``None``
    defaults), recorded in ``Explanation.params``.

    Attributes
    ----------
    maps : numpy.ndarray
        (N, h, w) raw maps.
    logits : numpy.ndarray
        (N, K) scores of the unperturbed inputs.
    targets : numpy.ndarray
        (N,) the columns explained.
    extras : Mapping
        Method-specific arrays for ``Explanation.extras``.
    settings : Mapping
        Values the method chose for settings left to the input size.
    """

    maps: np.ndarray
    logits: np.ndarray
    targets: np.ndarray
    extras: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)


class Method(ABC):
    """Base of every explanation method.

    A subclass declares its settings as keyword-only ``__init__`` parameters
    with defaults (``None`` for "chosen from the input size"), checks them and
    stores each as the attribute of the same name; ``param_names`` and
    ``params`` are read from that signature. A positional or unknown setting
    is refused with the method's name and the nearest spelling.

    Examples
    --------
    A method that marks the pixels furthest from the mean input, with one setting::

        @seewhy.register("contrast")
        class Contrast(seewhy.Method):
            def __init__(self, *, power: float = 1.0) -> None:
                self.power = power

            def run(self, ctx: seewhy.Context) -> seewhy.RawResult:
                logits, targets = ctx.logits_and_targets(ctx.batch_size)
                maps = np.abs(ctx.inputs).mean(axis=-1) ** self.power
                return seewhy.RawResult(maps, logits, targets)
    """

    name: ClassVar[str] = ""
    # The backend capabilities the method asks for (seewhy.backends.capabilities):
    # Explainer refuses, in one line, a model whose backend lacks one.
    requires: ClassVar[frozenset[type]] = frozenset({Predicts, Layers, Gradients})
    # Read from ``requires`` for every subclass (see __init_subclass__), never set by hand.
    uses_layer: ClassVar[bool] = True  # a layer is resolved before the first batch
    needs_gradients: ClassVar[bool] = True  # the passes ask for gradients
    reads_attention: ClassVar[bool] = False  # a transformer's attention
    forward_only: ClassVar[bool] = False  # only predictions: may run in reduced precision
    rectify: ClassVar[bool] = True  # apply ReLU to the map before normalising

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Read the flags the running code asks from ``requires``: the two never disagree."""
        super().__init_subclass__(**kwargs)
        cls.uses_layer = Layers in cls.requires
        cls.needs_gradients = Gradients in cls.requires
        cls.reads_attention = Attention in cls.requires

    def __new__(cls, *args: Any, **settings: Any) -> Method:
        """Refuse positional and unknown settings with the method's name in the message."""
        if args:
            raise InvalidInput(f"{cls.name}: settings are keywords, got {len(args)} positional")
        unknown = [key for key in settings if key not in cls.param_names()]
        if unknown:
            raise InvalidInput(unknown_keyword(cls.name, unknown[0], cls.param_names()))
        return super().__new__(cls)

    def __init__(self) -> None:  # noqa: B027  (a method may have no settings)
        """No settings; subclasses add theirs as keyword-only parameters."""

    @classmethod
    @functools.cache
    def param_names(cls) -> tuple[str, ...]:
        """Names of the settings, in the order of ``__init__``'s signature (read once per class)."""
        parameters = inspect.signature(cls.__init__).parameters.values()
        return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Each setting's default, as declared in the signature."""
        parameters = inspect.signature(cls.__init__).parameters
        return {name: parameters[name].default for name in cls.param_names()}

    @property
    def params(self) -> dict[str, Any]:
        """Every setting with the value this method uses (defaults included)."""
        return {name: getattr(self, name) for name in self.param_names()}

    @abstractmethod
    def run(self, ctx: Context) -> RawResult:
        """Explain one batch.

        Parameters
        ----------
        ctx : Context
            The batch, its targets and the backend.

        Returns
        -------
        RawResult
            The raw maps, before rectifying, upsampling and normalising.
        """


def unknown_keyword(
    where: str,
    key: str,
    known: Iterable[str],
    *,
    noun: str = "parameter",
    others: Mapping[str, Iterable[str]] | None = None,
    owner: str = "this method",
    notes: Mapping[str, str] | None = None,
) -> str:
    """One line for a misspelt keyword: the nearest known spelling, or who else takes it.

    ``others`` maps other methods' names to their settings: a keyword that is
    a setting of another method, but not of ``owner``, says so (first: it is
    surer than a guessed spelling). ``notes`` are keywords of another call,
    with where they go.
    """
    names = list(known)
    text = f"{where}: unknown {noun} {key!r}"
    owners = sorted(name for name, settings in (others or {}).items() if key in settings)
    if owners:
        return f"{text}; it is a setting of {', '.join(owners)}, not of {owner}"
    close = difflib.get_close_matches(key, [*names, *(notes or {})], n=1, cutoff=0.6)
    if close:
        note = (notes or {}).get(close[0])
        return f"{text}; did you mean {close[0]!r}{f' ({note})' if note else ''}?"
    return f"{text}; expected one of: {', '.join(names) or 'none'}"


def check_copies(value: Any, where: str) -> int | None:
    """The ``copies_per_pass`` setting: None (the explainer's or backend's) or a positive int."""
    return optional_positive_int(value, "copies_per_pass", where=where)
