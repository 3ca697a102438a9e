"""Targets evaluated in Keras: the output a head picks, and its score columns.

:mod:`seewhy.targets` is written against ``keras.ops``' names, so here the
targets get ``keras.ops`` itself and run inside every compiled pass
(TensorFlow, torch, JAX alike).
"""

from __future__ import annotations

import threading
from typing import Any

import keras

from ...errors import BackendError, InvalidInput
from ...targets import Region
from ...targets.base import class_scores
from ..heads import Head, output_position
from .structure import is_functional

__all__ = [
    "check_choice",
    "check_region_classes",
    "head_output",
    "head_scores",
    "output_index",
    "output_names",
    "select_output",
    "traced_classes",
]


def output_names(model: Any) -> list[str]:
    """The model's output names, in the order of ``model.outputs``.

    A functional model built with a dict of outputs is named by its keys,
    which is what the user wrote and what the model returns (Keras'
    ``output_names`` are the layers', ``dense_1`` for ``"cls"``); otherwise
    Keras' ``output_names``, else each output tensor's name.
    """
    keys = _dict_keys(model)
    if keys is not None:
        return keys
    names = getattr(model, "output_names", None)
    if names:
        return [str(n) for n in names]
    outputs = getattr(model, "outputs", None) or []
    return [str(getattr(o, "name", i)).split("/")[0].split(":")[0] for i, o in enumerate(outputs)]


def _dict_keys(model: Any) -> list[str] | None:
    """A functional model's dict-of-outputs keys in its outputs' (flattened) order, else None."""
    struct = model.output if is_functional(model) else None
    outputs = getattr(model, "outputs", None) or []
    if not isinstance(struct, dict) or len(struct) != len(outputs):
        return None  # not a dict, or a nested one: Keras' own names
    return [str(k) for k in keras.tree.flatten({key: key for key in struct})]


def output_index(model: Any, choice: int | str | None) -> int:
    """Which of a functional model's outputs ``choice`` names (0 when it has one)."""
    outputs = getattr(model, "outputs", None) or []
    if len(outputs) <= 1:
        if choice not in (None, 0):
            raise InvalidInput(f"output: the model has one output; got output={choice!r}")
        return 0
    return output_position(output_names(model), choice)


def select_output(out: Any, choice: int | str | None, names: list[str] | None = None) -> Any:
    """The one output to score among what the walk returned (a tensor, list or dict).

    Several and no choice: a one-line error listing them, never a silent pick.
    """
    if isinstance(out, dict):
        keys = [str(k) for k in out]
        if choice is None and "logits" in keys:
            return out["logits"]
        return _pick(list(out.values()), keys, choice)
    if isinstance(out, (list, tuple)):
        if len(out) == 1:
            return out[0]
        labels = names if names and len(names) == len(out) else [str(i) for i in range(len(out))]
        return _pick(list(out), labels, choice)
    return out  # one tensor (a choice was checked against the model's outputs already)


def _pick(values: list[Any], labels: list[str], choice: int | str | None) -> Any:
    if len(values) == 1 and choice in (None, 0):
        return values[0]
    return values[output_position(labels, choice)]


_TRACED = threading.local()  # what the last scoring in this thread saw (read by a trace)


def head_scores(head: Head, out: Any, sigmoid: bool, channels_last: bool = True) -> Any:
    """float32 (N, columns + classes): the head's target columns, then any class scores.

    A per-pixel output of a channels-last model, (N, h, w, classes), is given
    to the targets as (N, classes, h, w), the layout they read. One logit z
    becomes the two classes (-z, +z) (:func:`seewhy.targets.class_scores`).
    """
    ops = keras.ops
    _TRACED.one_logit = len(out.shape) == 2 and out.shape[1] == 1
    if channels_last and len(out.shape) == 4 and head.columns is not None:
        out = ops.transpose(out, (0, 3, 1, 2))
    if head.columns is None:
        if len(out.shape) == 4:
            raise InvalidInput(
                f"target: the output {tuple(out.shape)} is per-pixel (segmentation); pass "
                "target=seewhy.targets.Region(class_index, mask) (--target region:CLASS:mask.png)"
            )
        if len(out.shape) != 2:
            raise BackendError(
                f"model output: expected class scores of shape (N, classes), got "
                f"{tuple(out.shape)}; pass a seewhy.targets target or a callable"
            )
        return ops.cast(class_scores(out, ops), "float32")
    columns = [
        ops.reshape(
            ops.cast(t.score(out, ops, probability=head.probability, sigmoid=sigmoid), "float32"),
            (-1,),
        )
        for t in head.columns
    ]
    scores = ops.stack(columns, axis=1)
    if len(out.shape) == 2:
        scores = ops.concatenate([scores, ops.cast(class_scores(out, ops), "float32")], axis=1)
    return scores


def head_output(model: Any, choice: int | str | None) -> int:
    """The output whose softmax or sigmoid is skipped: the chosen one, else the first.

    Never raises for several outputs and no choice (listing layers walks
    the model too); scoring them raises in :func:`select_output`.
    """
    outputs = getattr(model, "outputs", None) or []
    if choice is None or len(outputs) <= 1:
        return 0
    return output_index(model, choice)


def traced_classes(eager: Any, run: Any, head: Head) -> tuple[int, bool]:
    """Width of the scores of the tracing pass, and whether the output is one logit.

    The width is 0 when the model's outputs need a choice: the trace lists
    layers too, which must work before ``output=`` or a target is chosen, and
    scoring such a model raises the error that says how. A head that chose an
    output or a target raises its error here, in one line (not a later "class
    0 is outside the model's 0..-1"). One logit: a binary head, whose class
    probabilities are sigmoids.
    """
    _TRACED.one_logit = False
    try:
        width = int(eager(run).shape[1])
    except (InvalidInput, BackendError):  # the scoring passes raise it again, in one line
        if head.output is not None or head.columns is not None:
            raise
        return 0, False
    return width, bool(getattr(_TRACED, "one_logit", False))


def check_choice(model: Any, choice: int | str | None) -> None:
    """Refuse, before anything is compiled, a missing or wrong choice among a model's outputs.

    (Inside a compiled pass the same error would reach the user wrapped in
    the framework's own.) A lone output named ``logits`` needs no choice.
    """
    outputs = getattr(model, "outputs", None) or []
    if choice is None and "logits" in output_names(model):
        return
    if choice is not None or len(outputs) > 1:
        output_index(model, choice)


def check_region_classes(model: Any, head: Head, channels_first: bool) -> None:
    """Refuse, on the host, a Region class past the per-pixel output's classes.

    Every Region of one mask shape shares one compiled pass with its class as
    an input, so the check inside the pass runs only when it is first traced;
    a later class out of range would get the framework's own index error
    (TensorFlow) or NaN scores (JAX). A functional model's output shape says
    how many classes there are; a subclassed model keeps the traced check.
    """
    regions = [t for t in head.columns or () if isinstance(t, Region)]
    outputs = getattr(model, "outputs", None) or []
    if not regions or not outputs:
        return
    shape = tuple(outputs[head_output(model, head.output)].shape)
    classes = shape[1 if channels_first else -1] if len(shape) == 4 else None
    if classes is not None:
        for region in regions:
            region.check_classes(int(classes))
