"""How far can an explanation be trusted? Faithfulness, sanity checks, localisation.

Everything here is numpy plus calls to the model's backend; no framework is
imported by these modules. Functions take the model and an
:class:`~seewhy.Explanation` (or maps with ``images=``), e.g.
``deletion(model, explanation, steps=50)``; localisation needs no model, only
the explanation and object ``masks=`` or ``boxes=``.

Where each lives: :mod:`.faithfulness` (``cases``: what is measured;
``curves``: deletion, insertion; ``confidence``: Average Drop; ``road``),
:mod:`.sanity` (``similarity``: the measures; ``cascade``: the
randomisation tests; ``result``; ``plots``) and :mod:`.localisation`.
Fills and blur come from ``seewhy._kit.fills``, scores from ``_kit.scores``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._kit.blas import one_blas_thread
from ..errors import InvalidInput
from ..explanation import Explanation
from .faithfulness import (
    ConfidenceChange,
    Curve,
    RoadResult,
    average_drop,
    deletion,
    increase_in_confidence,
    insertion,
    noisy_linear_impute,
    road,
)
from .localisation import (
    LocalisationScore,
    energy_in_box,
    energy_pointing_game,
    iou,
    pointing_game,
)
from .sanity import (
    SANITY_MEASURES,
    SanityResult,
    data_randomization_check,
    hog_similarity,
    paper_maps,
    plot_sanity,
    randomization_steps,
    sanity_check,
    spearman,
    ssim,
)

__all__ = [
    "FAITHFULNESS_METRICS",
    "LOCALISATION_METRICS",
    "SANITY_MEASURES",
    "ConfidenceChange",
    "Curve",
    "LocalisationScore",
    "RoadResult",
    "SanityResult",
    "average_drop",
    "data_randomization_check",
    "deletion",
    "energy_in_box",
    "energy_pointing_game",
    "evaluate",
    "hog_similarity",
    "increase_in_confidence",
    "insertion",
    "iou",
    "noisy_linear_impute",
    "paper_maps",
    "plot_sanity",
    "pointing_game",
    "randomization_steps",
    "road",
    "sanity_check",
    "spearman",
    "ssim",
]

#: Names :func:`evaluate` accepts that need the model.
FAITHFULNESS_METRICS: tuple[str, ...] = ("deletion", "insertion", "average_drop", "road")
#: Names :func:`evaluate` accepts that need object masks or boxes.
LOCALISATION_METRICS: tuple[str, ...] = (
    "pointing_game",
    "energy_pointing_game",
    "energy_in_box",
    "iou",
)


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def evaluate(
    model: Any,
    explanation: Explanation,
    metrics: Sequence[str] = ("deletion", "insertion", "average_drop"),
    *,
    images: Any = None,
    masks: Any = None,
    boxes: Any = None,
    steps: int = 50,
    baseline: str = "zeros",
    batch_size: int | None = None,
    tolerance: float | None = None,
    threshold: float = 0.5,
    precision: str = "float32",
) -> dict[str, Any]:
    """Several metrics at once, as one JSON-ready dict keyed by metric name.

    Each entry is the result's ``to_dict()``; localisation metrics need
    ``masks=`` or ``boxes=``. ``baseline`` is deletion's; insertion always
    starts from the blurred image. ``precision`` is the faithfulness metrics'
    (see :func:`deletion`). Used by ``seewhy evaluate``.
    """
    with one_blas_thread():  # numpy's BLAS on one thread (see _kit/blas.py)
        wanted = [_key(m) for m in metrics]
        known = FAITHFULNESS_METRICS + LOCALISATION_METRICS + ("increase_in_confidence",)
        unknown = [m for m in wanted if m not in known]
        if unknown:
            raise InvalidInput(
                f"metrics: unknown {', '.join(unknown)}; expected some of: {', '.join(known)}"
            )
        needs_objects = [m for m in wanted if m in LOCALISATION_METRICS]
        if needs_objects and masks is None and boxes is None:
            raise InvalidInput(f"metrics: {', '.join(needs_objects)} need masks= or boxes=")
        out: dict[str, Any] = {}
        confidence = None
        passes: dict[str, Any] = {
            "images": images,
            "batch_size": batch_size,
            "precision": precision,
        }
        for name in wanted:
            if name == "deletion":
                out[name] = deletion(
                    model, explanation, steps=steps, baseline=baseline, **passes
                ).to_dict()
            elif name == "insertion":
                out[name] = insertion(model, explanation, steps=steps, **passes).to_dict()
            elif name in ("average_drop", "increase_in_confidence"):
                if confidence is None:
                    confidence = average_drop(model, explanation, **passes).to_dict()
                out[name] = confidence
            elif name == "road":
                out[name] = road(model, explanation, **passes).to_dict()
            elif name == "pointing_game":
                out[name] = pointing_game(
                    explanation, masks=masks, boxes=boxes, tolerance=tolerance
                ).to_dict()
            elif name == "energy_pointing_game":
                out[name] = energy_pointing_game(explanation, masks=masks, boxes=boxes).to_dict()
            elif name == "energy_in_box":
                out[name] = energy_in_box(explanation, masks=masks, boxes=boxes).to_dict()
            elif name == "iou":
                out[name] = iou(
                    explanation, masks=masks, boxes=boxes, threshold=threshold
                ).to_dict()
        return out
