"""Targets evaluated in torch: the output a head picks, and its score columns.

:mod:`seewhy.targets` writes each target once against ``keras.ops``' names;
:class:`TorchOps` is those few names in torch, so the same code runs here.

A model whose class scores come out of a final sigmoid (``nn.Sigmoid`` last
in an ``nn.Sequential``, or ``torch.sigmoid`` at the end of ``forward``) is
scored at the sigmoid's input, its logits, as the Keras backend does: every
forward runs under :func:`sigmoid_calls`, which notes each sigmoid's input
(a torch function mode: this thread only, nothing on the model), and
:func:`head_scores` swaps the chosen output for its logits when it is a
sigmoid's result.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from ..._kit.warn import warn_user
from ...errors import BackendError, InvalidInput
from ...targets.base import class_scores
from ..heads import Head, output_position

__all__ = [
    "SigmoidHead",
    "TorchOps",
    "head_scores",
    "is_detections",
    "select_output",
    "sigmoid_calls",
]


class TorchOps:
    """The ``keras.ops`` names targets use, in torch, on one device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def convert_to_tensor(self, value: Any) -> torch.Tensor:
        array = np.asarray(value)
        dtype = torch.int64 if array.dtype.kind in "iu" else torch.float32
        return torch.as_tensor(array, dtype=dtype, device=self.device)

    @staticmethod
    def take(x: torch.Tensor, index: Any, axis: int) -> torch.Tensor:
        if isinstance(index, torch.Tensor):
            return x.index_select(axis, index)
        return x.select(axis, int(index))

    @staticmethod
    def sum(x: torch.Tensor, axis: Any = None) -> torch.Tensor:
        return x.sum() if axis is None else x.sum(dim=axis)

    @staticmethod
    def softmax(x: torch.Tensor, axis: int = -1) -> torch.Tensor:
        return torch.softmax(x, dim=axis)

    @staticmethod
    def sigmoid(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)

    @staticmethod
    def reshape(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        return x.reshape(shape)

    @staticmethod
    def cast(x: torch.Tensor, dtype: str) -> torch.Tensor:
        return x.to(getattr(torch, dtype))

    @staticmethod
    def sqrt(x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(x)

    @staticmethod
    def maximum(x: Any, y: Any) -> torch.Tensor:
        return torch.clamp(x, min=y) if not isinstance(y, torch.Tensor) else torch.maximum(x, y)

    @staticmethod
    def minimum(x: Any, y: Any) -> torch.Tensor:
        return torch.clamp(x, max=y) if not isinstance(y, torch.Tensor) else torch.minimum(x, y)

    @staticmethod
    def where(condition: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.where(condition, x, y)

    @staticmethod
    def zeros_like(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    @staticmethod
    def max(x: torch.Tensor, axis: int | None = None) -> torch.Tensor:
        return x.max() if axis is None else x.amax(dim=axis)

    @staticmethod
    def argmax(x: torch.Tensor) -> torch.Tensor:
        return x.argmax()

    @staticmethod
    def stack(values: list[torch.Tensor], axis: int = 0) -> torch.Tensor:
        return torch.stack(values, dim=axis)

    @staticmethod
    def concatenate(values: list[torch.Tensor], axis: int = 0) -> torch.Tensor:
        return torch.cat(values, dim=axis)


# Every spelling of the logistic function a forward may call (nn.Sigmoid calls torch.sigmoid,
# F.sigmoid Tensor.sigmoid; an exported program runs the aten op).
_SIGMOIDS = frozenset(
    {torch.sigmoid, torch.Tensor.sigmoid, torch.special.expit, torch.ops.aten.sigmoid.default}
)
_KEPT_CALLS = 8  # the last sigmoids of a forward: a final one is among them
_LAST = threading.local()  # what this thread's last forward and scoring saw


class _SigmoidCalls(TorchFunctionMode):
    """Notes each sigmoid's input by its result (a torch function mode acts in one thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.deque[tuple[torch.Tensor, torch.Tensor]] = collections.deque(
            maxlen=_KEPT_CALLS
        )

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func in _SIGMOIDS and args and isinstance(out, torch.Tensor):
            self.calls.append((out, args[0]))
        return out


@contextlib.contextmanager
def sigmoid_calls() -> Iterator[None]:
    """Run a forward noting its last sigmoids, for :func:`head_scores` to find a final one.

    The notes hold the sigmoids' inputs until this thread's next forward.
    """
    mode = _SigmoidCalls()
    _LAST.calls = ()
    with mode:
        yield
    _LAST.calls = tuple(mode.calls)


def _before_sigmoid(chosen: Any) -> tuple[Any, bool]:
    """The logits of class scores that are a sigmoid's result (True), else the scores as given."""
    calls: tuple[tuple[torch.Tensor, torch.Tensor], ...] = getattr(_LAST, "calls", ())
    _LAST.calls = ()
    if isinstance(chosen, torch.Tensor) and chosen.ndim == 2:
        for out, logits in reversed(calls):
            if out is chosen and isinstance(logits, torch.Tensor) and logits.shape == out.shape:
                return logits, True
    return chosen, False


@dataclass(frozen=True)
class _Seen:
    """What the scoring of one forward found: a final sigmoid, one logit (a binary head)."""

    final_sigmoid: bool = False
    one_logit: bool = False


def _note(chosen: Any, final_sigmoid: bool) -> None:
    one = isinstance(chosen, torch.Tensor) and chosen.ndim == 2 and chosen.shape[1] == 1
    _LAST.seen = _Seen(final_sigmoid, one)


def is_detections(output: Any) -> bool:
    """A torchvision detector's output: one dict with boxes, labels and scores per image."""
    return (
        isinstance(output, (list, tuple))
        and len(output) > 0
        and all(isinstance(o, dict) and "boxes" in o and "scores" in o for o in output)
    )


def select_output(output: Any, choice: int | str | None) -> Any:
    """The one output to score: ``choice`` (index, key or attribute), else the only one.

    Hugging Face ``ModelOutput`` gives ``.logits``, a dict its ``"logits"``
    or ``"out"`` (torchvision segmentation); a detector's list of dicts is
    kept whole. Several outputs and no choice: a one-line error listing them.
    """
    if isinstance(output, torch.Tensor):
        if choice not in (None, 0):
            raise InvalidInput(f"output: the model returns one tensor; got output={choice!r}")
        return output
    if is_detections(output):
        if choice is not None:
            raise InvalidInput("output: a detector's output is scored whole; leave output out")
        return output
    if isinstance(output, dict) or hasattr(output, "keys"):
        keys = [str(k) for k in output.keys()]
        if choice is None:
            for usual in ("logits", "out"):
                if usual in keys:
                    return output[usual]
            if len(keys) == 1:
                return output[keys[0]]
        return output[keys[output_position(keys, choice)]]
    if isinstance(output, (tuple, list)) and output:
        if choice is None:
            per_image = [o for o in output if not (isinstance(o, torch.Tensor) and o.ndim == 0)]
            if len(per_image) == 1:  # the others are numbers (a loss), not outputs per image
                return select_output(per_image[0], None)
            raise InvalidInput(
                f"output: the model returns {len(output)} outputs ({type(output).__name__}); "
                f"choose one with output=0..{len(output) - 1} (--output N)"
            )
        if not isinstance(choice, int) or choice >= len(output):
            raise InvalidInput(
                f"output: expected an index 0..{len(output) - 1} of the model's outputs, "
                f"got {choice!r}"
            )
        return select_output(output[choice], None)
    raise BackendError(f"model output: expected a tensor of scores, got {type(output).__name__}")


def head_scores(head: Head, output: Any) -> torch.Tensor:
    """(N, columns + classes) scores: the head's target columns, then the class logits.

    Class scores that are a final sigmoid's result are replaced by its input
    (targets and callables see the logits too); one logit z becomes the two
    classes (-z, +z) (:func:`seewhy.targets.class_scores`).
    """
    chosen, final_sigmoid = _before_sigmoid(select_output(output, head.output))
    _note(chosen, final_sigmoid)
    if head.columns is None:
        return _class_scores(chosen)
    ops = TorchOps(_device(chosen))
    columns = [
        t.score(chosen, ops, probability=head.probability, sigmoid=head.sigmoid).reshape(-1)
        for t in head.columns
    ]
    scores = torch.stack([c.to(torch.float32) for c in columns], dim=1)
    if isinstance(chosen, torch.Tensor) and chosen.ndim == 2:
        scores = torch.cat([scores, class_scores(chosen, ops).to(scores.dtype)], dim=1)
    return scores


# model -> {(input shape, output choice, module count): what its scoring found}
_HEADS: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], _Seen]] = weakref.WeakKeyDictionary()


class SigmoidHead:
    """``sigmoid_output``: whether the class scores are independent sigmoids (a mixin).

    True when the scored output ends in a sigmoid (its logits are explained
    instead, said once in a warning) or is one logit (a binary classifier,
    read as two classes). Found by one forward of one image, kept per model,
    input shape and output choice.
    """

    model: Any
    _head: Head

    def sigmoid_output(self, x: np.ndarray) -> bool:
        key = (tuple(x.shape[1:]), self._head.output, sum(1 for _ in self.model.modules()))
        known = _HEADS.setdefault(self.model, {})
        if key not in known:
            _LAST.seen = _Seen()
            try:
                self.predict(x[:1])  # type: ignore[attr-defined]  # the backend's own pass
            except InvalidInput:  # a detector's or segmenter's output: no class scores
                pass
            known[key] = _LAST.seen
            if known[key].final_sigmoid:
                warn_user(
                    "the model's class scores come out of a sigmoid: seewhy explains the "
                    "sigmoid's input (the logits; targets and callables get them too) and shows "
                    "each label's own probability"
                )
        seen = known[key]
        return seen.final_sigmoid or seen.one_logit


def _class_scores(out: Any) -> torch.Tensor:
    if is_detections(out):
        raise InvalidInput(
            "target: this is a detector; pass target=seewhy.targets.Box(xyxy, label) (--target "
            "box:x0,y0,x1,y1[:label]), or leave target out to explain each detection"
        )
    if not isinstance(out, torch.Tensor):
        raise BackendError(f"model output: expected a tensor of class scores, got {type(out)}")
    if out.ndim == 4:
        raise InvalidInput(
            f"target: the output {tuple(out.shape)} is per-pixel (segmentation); pass "
            "target=seewhy.targets.Region(class_index, mask) (--target region:CLASS:mask.png)"
        )
    if out.ndim == 3:  # a sequence (a VLM's image features): only a target scores it
        raise InvalidInput(
            f"target: the output {tuple(out.shape)} is a sequence of tokens, not class "
            "scores; pass a target that scores it (seewhy.targets)"
        )
    if out.ndim != 2:
        raise BackendError(
            f"model output: expected class scores of shape (N, classes), got {tuple(out.shape)}"
        )
    scores: torch.Tensor = class_scores(out, TorchOps(out.device))
    return scores


def _device(output: Any) -> torch.device:
    if isinstance(output, torch.Tensor):
        return output.device
    for item in output:
        for value in item.values():
            if isinstance(value, torch.Tensor):
                return value.device
    return torch.device("cpu")


def is_detector(model: Any) -> bool:
    """A torchvision detection model (Faster R-CNN, RetinaNet, FCOS, SSD, ...), by its class."""
    return any(
        cls.__module__.startswith("torchvision.models.detection") for cls in type(model).__mro__
    )


def detections_as_numpy(output: Any) -> list[dict[str, np.ndarray]]:
    """A detector's output as numpy boxes (D, 4), labels (D,) and scores (D,) per image."""
    return [
        {key: item[key].detach().float().cpu().numpy() for key in ("boxes", "labels", "scores")}
        for item in output
    ]


def detector_layers(model: Any, infos: list[Any]) -> list[Any]:
    """A torchvision detector's or segmenter's candidate layers: its backbone's.

    A detector's later maps are per box, not per image; a segmenter's last
    map may be its auxiliary head, which the scored ``"out"`` never uses.
    """
    kinds = ("torchvision.models.detection", "torchvision.models.segmentation")
    if not any(cls.__module__.startswith(kinds) for cls in type(model).__mro__):
        return infos
    body = [
        info for info in infos if info.name.startswith("backbone.body.")
    ]  # feeds every FPN level
    return body or [info for info in infos if info.name.startswith("backbone.")] or infos
