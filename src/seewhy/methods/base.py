"""What a method is: given a backend and a batch, return raw maps.

Methods never import a framework; they ask the backend for activations,
gradients or predictions, and do the math in numpy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..backends.base import Backend, Precision, Score
from ..preprocess import Preprocess

__all__ = ["Context", "Method", "RawResult"]


@dataclass(frozen=True)
class Context:
    """Everything a method may need for one batch."""

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


@dataclass(frozen=True)
class RawResult:
    """A method's output before post-processing.

    ``maps`` are (N, h, w) at the layer's (or input's) resolution, not yet
    rectified or normalised. ``extras`` carries method-specific arrays
    (e.g. signed pixel attributions) into ``Explanation.extras``.
    """

    maps: np.ndarray
    logits: np.ndarray
    targets: np.ndarray
    extras: Mapping[str, Any] = field(default_factory=dict)


class Method(ABC):
    """Base class of every explanation method.

    Parameters are keyword-only, stored as given, validated when used.
    """

    name: ClassVar[str] = ""
    uses_layer: ClassVar[bool] = True
    forward_only: ClassVar[bool] = False  # only predictions: may run in reduced precision
    rectify: ClassVar[bool] = True  # apply ReLU to the map before normalising

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.param_names())
        if unknown:
            from ..errors import InvalidInput

            raise InvalidInput(
                f"{self.name}: unknown parameter(s) {', '.join(sorted(unknown))}; "
                f"expected some of: {', '.join(self.param_names()) or 'none'}"
            )
        self.params = dict(params)

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """Names of the keyword parameters this method accepts."""
        return ()

    def param(self, key: str, default: Any) -> Any:
        return self.params.get(key, default)

    @abstractmethod
    def run(self, ctx: Context) -> RawResult:
        """Explain one batch."""
