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
Each metric :func:`evaluate` knows declares its name, direction and needs
where it is defined (``@metric``, :mod:`.registry`).
Fills and blur come from ``seewhy._kit.fills``, scores from ``_kit.scores``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .._kit.blas import one_blas_thread
from ..errors import InvalidInput
from ..explanation import Explanation
from . import registry
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
from .registry import Direction, Metric, Need
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
    "DEFAULT_METRICS",
    "FAITHFULNESS_METRICS",
    "LOCALISATION_METRICS",
    "SANITY_MEASURES",
    "ConfidenceChange",
    "Curve",
    "Direction",
    "LocalisationScore",
    "Metric",
    "Need",
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
    "registry",
    "road",
    "sanity_check",
    "spearman",
    "ssim",
]

#: Names :func:`evaluate` accepts that need the model (its predictions only).
FAITHFULNESS_METRICS: tuple[str, ...] = tuple(
    m.name for m in registry.registered() if Need.PREDICTIONS in m.needs
)
#: Names :func:`evaluate` accepts that need object masks or boxes.
LOCALISATION_METRICS: tuple[str, ...] = tuple(
    m.name for m in registry.registered() if Need.OBJECTS in m.needs
)
#: What :func:`evaluate` (and ``seewhy evaluate``) scores when not told.
DEFAULT_METRICS: tuple[str, ...] = ("deletion", "insertion", "average_drop")


def evaluate(
    model: Any,
    explanation: Explanation,
    metrics: Sequence[str] = DEFAULT_METRICS,
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
    tokenizer: Any = None,
    processor: Any = None,
) -> dict[str, Any]:
    """Several metrics at once, as one JSON-ready dict keyed by metric name.

    Each entry is the result's ``to_dict()``; the names are those of
    :func:`seewhy.metrics.registry.names` (``-`` or ``_``, any case), and a
    misspelling is refused with the nearest names. Localisation metrics need
    ``masks=`` or ``boxes=``. ``baseline`` is deletion's; insertion always
    starts from the blurred image. ``precision`` is the faithfulness metrics'
    (see :func:`deletion`). Each metric takes only the settings it declares;
    two metrics from the same passes (Average Drop, Increase in Confidence)
    run them once. Used by ``seewhy evaluate``.

    Parameters
    ----------
    model : object
        The model that was explained; the faithfulness metrics ask it for
        predictions, the localisation metrics do not use it.
    explanation : Explanation
        The explanation to score.
    metrics : sequence of str
        Metric names (:data:`DEFAULT_METRICS` when not given).
    images : object, optional
        The explained images, when the explanation's pictures cannot be
        preprocessed again (see :func:`deletion`).
    masks : array-like, optional
        Object masks for the localisation metrics (see :func:`pointing_game`).
    boxes : array-like, optional
        Object boxes in the model input's pixels, instead of masks.
    steps : int
        Deletion's and insertion's number of steps.
    baseline : str
        What deletion's removed pixels become.
    batch_size : int, optional
        Images per forward pass; None lets the backend choose.
    tolerance : float, optional
        The pointing game's tolerance in pixels.
    threshold : float
        Where IoU cuts the map.
    precision : str
        ``"float32"``, ``"bfloat16"`` or ``"float16"`` for the forward passes.
    tokenizer, processor : object, optional
        A vision-language model's own, as :func:`seewhy.explain` took them:
        the metrics run the model as explain did (its image-seeing part) and
        score the Prompt or Answer the explanation recorded.

    Returns
    -------
    dict
        ``{metric name: result.to_dict()}``, JSON-ready.

    Raises
    ------
    InvalidInput
        An unknown metric name (with the nearest names), or localisation
        metrics without ``masks`` or ``boxes``.
    """
    with one_blas_thread():  # numpy's BLAS on one thread (see _kit/blas.py)
        chosen = [registry.get(name) for name in metrics]
        lacking = [m.name for m in chosen if Need.OBJECTS in m.needs]
        if lacking and masks is None and boxes is None:
            raise InvalidInput(f"metrics: {', '.join(lacking)} need masks= or boxes=")
        given = {
            "images": images,
            "masks": masks,
            "boxes": boxes,
            "steps": steps,
            "baseline": baseline,
            "batch_size": batch_size,
            "tolerance": tolerance,
            "threshold": threshold,
            "precision": precision,
            "tokenizer": tokenizer,
            "processor": processor,
        }
        done: dict[Callable[..., Any], dict[str, Any]] = {}
        out: dict[str, Any] = {}
        for m in chosen:
            if m.function not in done:
                done[m.function] = m.compute(model, explanation, given).to_dict()
            out[m.name] = done[m.function]
        return out
