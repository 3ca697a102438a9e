"""Targets that score the output as a whole: a class, labels, a unit, an embedding, a callable."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from .._kit.checks import bad_argument
from ..errors import InvalidInput
from .base import Target, _class_values, _index, _width


class Class(Target):
    """Class ``index``: its logit (or probability), what an int target means.

    Parameters
    ----------
    index : int
        The class, 0-based.
    """

    kind = "class"
    has_probability = True

    def __init__(self, index: int) -> None:
        self.index = _index(index, "index", "Class")

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        values = _class_values(output, ops, probability, sigmoid)
        return ops.take(values, self.index, axis=1)

    def pass_key(self) -> Hashable:
        return (self.kind, self.index)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "index": self.index}

    def describe(self, label: Callable[[int], str]) -> str:
        return label(self.index)

    def class_index(self) -> int:
        return self.index


class MultiLabel(Target):
    """Several labels of a sigmoid (multi-label) head: the sum of their logits or probabilities.

    Parameters
    ----------
    indices : sequence of int
        The labels explained together; at least one.
    """

    kind = "multilabel"
    has_probability = True

    def __init__(self, indices: Sequence[int]) -> None:
        if isinstance(indices, (str, bytes)) or not isinstance(indices, Sequence) or not indices:
            raise bad_argument(
                "indices", "a non-empty list of class indices", indices, where="MultiLabel"
            )
        self.indices = tuple(_index(i, "indices", "MultiLabel") for i in indices)

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        values = _class_values(output, ops, probability, True)
        picked = ops.take(values, ops.convert_to_tensor(np.asarray(self.indices)), axis=1)
        return ops.sum(picked, axis=1)

    def pass_key(self) -> Hashable:
        return (self.kind, self.indices)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "indices": list(self.indices)}

    def describe(self, label: Callable[[int], str]) -> str:
        return " + ".join(label(i) for i in self.indices)

    def class_index(self) -> int:
        return self.indices[0]


class Output(Target):
    """The raw, signed value of output unit ``index`` (regression); the output is flattened.

    Parameters
    ----------
    index : int
        The unit in the flattened output.
    """

    kind = "output"

    def __init__(self, index: int = 0) -> None:
        self.index = _index(index, "index", "Output")

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        flat = ops.reshape(output, (-1, _width(output)))
        if self.index >= int(flat.shape[1]):
            raise InvalidInput(
                f"Output: index {self.index} is outside the model's {int(flat.shape[1])} outputs"
            )
        return ops.take(flat, self.index, axis=1)

    def pass_key(self) -> Hashable:
        return (self.kind, self.index)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "index": self.index}

    def describe(self, label: Callable[[int], str]) -> str:
        return f"output {self.index}"


class Similarity(Target):
    """Cosine similarity of the model's output (an embedding, flattened) to ``vector``.

    Parameters
    ----------
    vector : array_like
        A non-zero reference embedding, as many values as the flattened output.
    """

    kind = "similarity"

    def __init__(self, vector: Any) -> None:
        values = np.asarray(vector, dtype=np.float32).reshape(-1)
        if values.size == 0 or not np.isfinite(values).all() or not np.any(values):
            raise bad_argument("vector", "a non-zero finite vector", vector, where="Similarity")
        self.vector = values

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        flat = ops.reshape(ops.cast(output, "float32"), (-1, _width(output)))
        if int(flat.shape[1]) != self.vector.size:
            raise InvalidInput(
                f"Similarity: the vector has {self.vector.size} values, the model's output "
                f"{int(flat.shape[1])}"
            )
        unit = self._data(ops, 0)
        dot = ops.sum(flat * unit[None, :], axis=1)
        norm = ops.sqrt(ops.sum(flat * flat, axis=1))
        return dot / ops.maximum(norm, 1e-12)

    def arrays(self) -> tuple[np.ndarray, ...]:
        return ((self.vector / np.linalg.norm(self.vector)).astype(np.float32),)

    def pass_key(self) -> Hashable:
        return (self.kind, self.vector.size)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "vector": [float(v) for v in self.vector]}

    def describe(self, label: Callable[[int], str]) -> str:
        return "similarity"


class Custom(Target):
    """A callable ``f(output) -> (N,) scores`` in the model's own framework's ops.

    A plain callable passed as ``target=`` becomes one of these. It is not
    saved with the results: its JSON form keeps only its name.

    Parameters
    ----------
    function : callable
        From the model's (selected) output to one score per image.
    """

    kind = "callable"

    def __init__(self, function: Callable[[Any], Any]) -> None:
        if not callable(function):
            raise bad_argument("target", "a callable f(output) -> scores", function)
        self.function = function

    def score(self, output: Any, ops: Any, *, probability: bool, sigmoid: bool) -> Any:
        values = self.function(output)
        shape = tuple(getattr(values, "shape", ()))
        count = len(output) if isinstance(output, (list, tuple)) else output.shape[0]
        if len(shape) != 1 or (None not in (count, shape[0]) and shape[0] != count):
            raise InvalidInput(
                f"target: the callable {self.name} returned shape {shape}; expected one score "
                f"per image ({count},)"
            )
        return values

    def pass_key(self) -> Hashable:
        return (self.kind, id(self.function))  # a pass's key keeps its function alive

    @property
    def name(self) -> str:
        module = getattr(self.function, "__module__", None)
        name = getattr(self.function, "__qualname__", None) or type(self.function).__qualname__
        return f"{module}.{name}" if module else name

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name}

    def describe(self, label: Callable[[int], str]) -> str:
        return getattr(self.function, "__name__", "callable")
