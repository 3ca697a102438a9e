"""What every target is, and the class scores the targets share."""

from __future__ import annotations

import copy
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from typing import Any, ClassVar

import numpy as np

from .._kit.checks import positive_int
from ..errors import InvalidInput


class Target(ABC):
    """One score per image, computed from the model's (selected) output.

    ``probability`` asks for the probability rather than the logit (only
    class-like targets have one; :attr:`has_probability` says which);
    ``sigmoid`` says the head's labels are independent (sigmoid) rather than
    exclusive (softmax).
    """

    kind: ClassVar[str] = ""
    has_probability: ClassVar[bool] = False
    needs_detections: ClassVar[bool] = False  # scores a detector's boxes, not a tensor
    _tensors: tuple[Any, ...] = ()  # arrays() as a compiled pass's inputs (see bound)

    @abstractmethod
    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        """(N,) scores, a tensor of ``ops``' framework, from the batch's output.

        Parameters
        ----------
        output : tensor or list
            The model's (selected) output for the batch; a detector's: one
            dict per image.
        ops : namespace
            ``keras.ops``, or the PyTorch backend's functions of the same names.
        probability : bool
            Score the probability rather than the logit (class-like targets).
        sigmoid : bool
            The head's labels are independent (sigmoid), not exclusive (softmax).
        """

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """The JSON form :func:`from_json` loads back."""

    def describe(self, label: Callable[[int], str]) -> str:
        """A short caption for pictures and reports.

        Parameters
        ----------
        label : callable
            Names a class index.
        """
        return self.kind

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The target's data (a mask, a vector) as float32 arrays.

        A compiled pass (Keras) takes them as inputs rather than constants, so
        one compiled pass serves every target with the same :meth:`pass_key`.
        """
        return ()

    def pass_key(self) -> Hashable:
        """What a compiled pass scoring this target depends on, besides :meth:`arrays`.

        The default is the target itself, by identity (a pass per target).
        """
        return ("object", id(self))

    def bound(self, tensors: Sequence[Any]) -> Target:
        """This target scoring with ``tensors`` (its :meth:`arrays` as a pass's inputs).

        Parameters
        ----------
        tensors : sequence
            One tensor per array of :meth:`arrays`, in order.
        """
        if not tensors:
            return self
        twin = copy.copy(self)
        twin._tensors = tuple(tensors)
        return twin

    def _data(self, ops: Any, i: int) -> Any:
        """Array ``i`` of :meth:`arrays`: the pass's input when bound, else a constant."""
        return self._tensors[i] if self._tensors else ops.convert_to_tensor(self.arrays()[i])

    def class_index(self) -> int:
        """The class the target is about, or -1 when it has none (Output, Similarity)."""
        return -1

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(self.to_json())})"


def _index(value: Any, name: str, where: str) -> int:
    return positive_int(value, name, where=where, minimum=0)


def class_scores(output: Any, ops: Any) -> Any:
    """(N, K) class logits; a one-logit output z as its two classes, (-z, +z).

    A binary classifier with one output (``Dense(1, "sigmoid")``, a
    ``Linear(..., 1)``) has two classes: class 1 scores +z (probability
    sigmoid(z)) and class 0 scores -z (probability 1 - sigmoid(z)), Keras'
    binary convention. So ``target=0`` explains the negative class, and the
    top class (the default target) is the predicted one.
    """
    _check_rank(output, 2, "class scores (N, classes)")
    if int(output.shape[1]) == 1:
        return ops.concatenate([-output, output], axis=1)
    return output


def _class_values(output: Any, ops: Any, probability: bool, sigmoid: bool) -> Any:
    """(N, K) class scores: logits, or probabilities of a softmax or sigmoid head."""
    values = class_scores(output, ops)
    if not probability:
        return values
    if sigmoid or int(output.shape[1]) == 1:  # a one-logit head's classes are sigmoids
        return ops.sigmoid(values)
    return ops.softmax(values, axis=1)


def _width(output: Any) -> int:
    """Values per image of ``output`` (its batch size may be unknown while a pass is traced)."""
    return int(np.prod([int(d) for d in output.shape[1:]]))


def _check_rank(output: Any, rank: int, what: str) -> None:
    shape = tuple(getattr(output, "shape", ()))
    if len(shape) != rank:
        raise InvalidInput(f"target: expected a model output of {what}, got shape {shape}")
