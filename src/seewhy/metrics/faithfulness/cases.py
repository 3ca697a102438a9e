"""What a faithfulness metric measures, resolved once: model, maps, inputs, targets.

The public metrics accept an :class:`~seewhy.Explanation` or bare maps, with
or without the explained images; everything after :func:`resolve_case` works
on one :class:`Case` of float32 NHWC inputs and maps at the input's size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..._kit.checks import finite_float, positive_int
from ..._kit.fills import fill_values
from ..._kit.scores import check_score, check_targets, target_scores
from ..._kit.warn import warn_user
from ..._target_plan import plan_targets, record, resolve_targets, sigmoid_output
from ...adapters import seen
from ...backends import Backend, backend_for
from ...backends.base import Precision, check_precision
from ...errors import InvalidInput
from ...explanation import Explanation
from ...inputs import prepare
from ...maps import upsample
from ...preprocess import Preprocess
from .._maps import as_maps

__all__ = ["Baseline", "Case", "baseline_label", "resolve_case"]

#: What removed pixels become: a word of ``_kit.fills``, a number, an RGB triple or an array.
Baseline = str | float | tuple[float, float, float] | np.ndarray


@dataclass(frozen=True)
class Case:
    """What a faithfulness metric works on, resolved once."""

    backend: Backend
    inputs: np.ndarray  # (N, H, W, C) float32
    maps: np.ndarray  # (N, H, W) float32 at the input's size
    targets: np.ndarray | None  # (N,) int64, None for each image's top-1
    preprocess: Preprocess
    expected_logits: np.ndarray | None  # the explanation's logits when inputs were rebuilt
    precision: Precision = "float32"
    batch_size: int = 16  # images per forward pass
    name: str = "metric"  # the metric measuring it, for messages
    # a seewhy.targets target per image: ``backend`` is a view scoring them, one column each,
    # already as the metric's score (``targets`` index those columns)
    target_columns: bool = False
    sigmoid: bool = False  # the head's labels are independent (a probability is a sigmoid)
    # what results report for seewhy.targets targets: each image's class (-1: none), and the
    # targets' JSON form as ``Explanation.params["target"]`` holds it (never view columns),
    # with the output and head the explanation chose
    classes: np.ndarray | None = None
    chosen: Mapping[str, Any] = field(default_factory=dict)

    def reported(self, scored: np.ndarray) -> np.ndarray:
        """(N,) what a result's ``targets`` hold: class indices, never the view's columns."""
        return scored if self.classes is None else self.classes

    def recorded(self) -> dict[str, Any]:
        """What a result's ``params`` add: the targets as given (when not plain classes),
        the output and the head."""
        return dict(self.chosen)

    def scores(self, logits: np.ndarray, targets: np.ndarray, score: str) -> np.ndarray:
        """Each row's score at its target (float64), as ``score`` asks.

        Target columns already hold the score (a target without a probability
        keeps its own value: an output unit, a similarity, a box's score).
        """
        chosen = "logit" if self.target_columns else check_score(score)
        return target_scores(logits, targets, chosen, self.sigmoid)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits for ``x``, ``batch_size`` images per forward pass, at the case's precision."""
        return self.backend.predict(x, batch_size=self.batch_size, precision=self.precision)

    def fill(self, baseline: Baseline, blur_sigma: float | None) -> np.ndarray:
        """(N, H, W, C) float32 values removed pixels take (``_kit.fills``' meaning)."""
        sigma = None if blur_sigma is None else finite_float(blur_sigma, "blur_sigma", minimum=0.0)
        return fill_values(self.inputs, baseline, self.preprocess, sigma=sigma, where="baseline")

    def scored_targets(self, logits: np.ndarray) -> np.ndarray:
        """(N,) the targets checked against the model's classes, else each image's top-1."""
        if self.targets is not None:
            return check_targets(self.targets, len(logits), logits.shape[1])
        return logits.argmax(axis=1).astype(np.int64)

    def check_rebuilt(self, logits: np.ndarray, *, depth: int = 1) -> None:
        """Warn when inputs rebuilt from ``explanation.images`` do not give its logits back.

        ``depth``: the metric's frames between the user's call and this one.
        """
        expected = self.expected_logits
        if expected is None or expected.shape != logits.shape:
            return
        scale = float(np.abs(expected).max())
        # reduced precision moves logits by up to ~1% of their range; float32 by rounding
        relative = 2e-3 if self.precision == "float32" else 5e-2
        if float(np.abs(expected - logits).max()) > relative * scale + 1e-5:
            warn_user(
                f"{self.name}: the inputs rebuilt from explanation.images do not reproduce the "
                "explanation's logits; pass images= (the images you explained)"
            )


def resolve_case(
    name: str,
    model: Any,
    explanation: Explanation | np.ndarray,
    images: Any = None,
    targets: Any = None,
    preprocess: Preprocess | None = None,
    precision: str = "float32",
    batch_size: int | None = None,
    score: str = "probability",
    *,
    tokenizer: Any = None,
    processor: Any = None,
) -> Case:
    """Model, maps, inputs and targets from the forms the public functions accept.

    ``name`` is the metric asking (for messages); the other arguments are the
    public functions' own, passed on as they came.
    ``explanation`` is an :class:`Explanation` or maps (N, H, W) / (H, W).
    ``images`` are the images that were explained, in any form ``explain``
    accepts; with an Explanation they may be left out, and the inputs are then
    rebuilt from ``explanation.images`` with the model's preprocessing (exact
    for pictures; pass ``images`` when you explained preprocessed tensors).
    ``batch_size`` None lets the backend choose (``preferred_batch_size``).
    An Explanation's own target (``params["target"]``: a region, a box, ...),
    output and head are scored again, as the metric's ``score`` asks. A
    vision-language model is run as explain runs it (its image-seeing part),
    its recorded Prompt or Answer bound again with ``tokenizer``/``processor``.
    """
    precision_ = check_precision(precision)
    view = seen(model, tokenizer=tokenizer, processor=processor)
    backend = backend_for(view.model)
    spec = view.spec(backend, preprocess=preprocess)
    expected = None
    scored: dict[str, Any] = {}
    family = None  # the vision-language model the explanation was made with, if any
    if isinstance(explanation, Explanation):
        maps = np.asarray(explanation.maps, dtype=np.float32)
        scored = {k: explanation.params[k] for k in ("output", "head") if k in explanation.params}
        if targets is None:
            targets = explanation.params.get("target", explanation.targets)
            family = explanation.params.get("model_family")
        if images is None:
            inputs = np.asarray(spec.preprocess.normalise(explanation.images), dtype=np.float32)
            expected = np.asarray(explanation.logits, dtype=np.float32)
    else:
        maps = as_maps(explanation, f"{name}: explanation").astype(np.float32)
        if images is None:
            raise InvalidInput(
                f"{name}: images: expected the explained images when maps are given as an array"
            )
    if images is not None:
        batch, _ = prepare(
            images, spec.preprocess, channels_first=backend.channels_first, strict=True
        )
        inputs = batch.inputs
    if len(maps) != len(inputs):
        raise InvalidInput(
            f"{name}: expected one map per image ({len(inputs)} images), got {len(maps)} maps"
        )
    size = (inputs.shape[1], inputs.shape[2])
    if maps.shape[1:] != size:
        maps = upsample(maps, size)
    maps = np.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0)
    targets = view.targets(targets, family, who=f"{name}: targets")
    chosen = resolve_targets(targets, len(inputs), spec.labels)
    plan = plan_targets(
        backend,
        chosen,
        score=check_score(score),
        sigmoid_detected=sigmoid_output(backend, inputs[:1], scored.get("output")),
        strict=False,
        **scored,
    )
    classes = None
    if plan.objects is not None:
        expected = None  # the view's scores are the targets', not the explanation's logits
        classes = np.array([t.class_index() for t in plan.objects], np.int64)
        scored = {"target": record(plan.objects), **scored}
    per_pass = (
        backend.preferred_batch_size(inputs, precision_)
        if batch_size is None
        else positive_int(batch_size, "batch_size", where=name)
    )
    return Case(
        plan.backend,
        inputs,
        maps,
        plan.targets,
        spec.preprocess,
        expected,
        precision_,
        per_pass,
        name,
        target_columns=plan.objects is not None,
        sigmoid=plan.sigmoid,
        classes=classes,
        chosen=scored,
    )


def baseline_label(baseline: Baseline) -> Any:
    """How a result's ``params`` record a baseline: its name, number or colour, else "array"."""
    if isinstance(baseline, tuple):
        return [float(v) for v in baseline]
    return baseline if isinstance(baseline, (str, int, float)) else "array"
