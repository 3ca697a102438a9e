"""The metric registry: each metric declares its name, direction, needs and settings once,
and ``evaluate`` runs it from that declaration alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import seewhy
from models import with_spec
from seewhy import metrics
from seewhy.errors import InvalidInput, SeewhyError
from seewhy.metrics.registry import Direction, Need, metric

SIDE = 24
BOXES = [[4, 4, 16, 16], [0, 0, 12, 24], [8, 2, 20, 14], [6, 6, 18, 18]]
# settings that differ from every default, so one evaluate() forgot to pass (or passed to
# a metric that does not take it, like deletion's baseline to insertion) shows
GIVEN: dict[str, Any] = {"steps": 4, "baseline": "black", "tolerance": 2.0, "threshold": 0.3}


def _direct(model: Any, ex: Any, x: np.ndarray) -> dict[str, Callable[[], Any]]:
    """Each metric called by hand, as its own documentation says, with ``GIVEN``."""
    return {
        "deletion": lambda: metrics.deletion(model, ex, images=x, steps=4, baseline="black"),
        "insertion": lambda: metrics.insertion(model, ex, images=x, steps=4),
        "average_drop": lambda: metrics.average_drop(model, ex, images=x),
        "increase_in_confidence": lambda: metrics.increase_in_confidence(model, ex, images=x),
        "road": lambda: metrics.road(model, ex, images=x),
        "pointing_game": lambda: metrics.pointing_game(ex, boxes=BOXES, tolerance=2.0),
        "energy_pointing_game": lambda: metrics.energy_pointing_game(ex, boxes=BOXES),
        "energy_in_box": lambda: metrics.energy_in_box(ex, boxes=BOXES),
        "iou": lambda: metrics.iou(ex, boxes=BOXES, threshold=0.3),
    }


@pytest.fixture
def net(model: Any) -> Any:
    """The conftest CNN (5 classes) saying its input size, as a saved model may."""
    return with_spec(model, (SIDE, SIDE), [f"c{i}" for i in range(5)])


@pytest.fixture
def inputs() -> np.ndarray:
    """Four pictures in [0, 1], NHWC, the model's input size (no preprocessing to guess)."""
    return np.random.default_rng(3).random((4, SIDE, SIDE, 3)).astype(np.float32)


def test_every_metric_declares_a_direction_needs_and_a_headline() -> None:
    registered = metrics.registry.registered()
    assert [m.name for m in registered] == metrics.registry.names()
    assert len(registered) >= 9
    for m in registered:
        assert isinstance(m.direction, Direction), m.name
        assert isinstance(m.needs, frozenset) and all(isinstance(n, Need) for n in m.needs)
        assert m.headline, m.name
    # the public tuples are the registry's, not lists of their own
    assert set(metrics.FAITHFULNESS_METRICS) == {
        m.name for m in registered if Need.PREDICTIONS in m.needs
    }
    assert set(metrics.LOCALISATION_METRICS) == {
        m.name for m in registered if Need.OBJECTS in m.needs
    }
    assert set(metrics.DEFAULT_METRICS) <= set(metrics.registry.names())


def test_evaluate_equals_calling_each_metric_directly(net: Any, inputs: np.ndarray) -> None:
    ex = seewhy.explain(net, inputs, "gradcam")
    direct = _direct(net, ex, inputs)
    assert set(direct) == set(metrics.registry.names()), "a new metric needs its direct call here"
    scored = metrics.evaluate(net, ex, list(direct), images=inputs, boxes=BOXES, **GIVEN)
    assert list(scored) == list(direct)
    for name, call in direct.items():
        expected = call().to_dict()
        assert scored[name] == expected, name
        headline = scored[name][metrics.registry.get(name).headline]
        assert isinstance(headline, float) and np.isfinite(headline), name
    # the direction each curve reports is the one its metric declares
    assert scored["deletion"]["higher_is_better"] is False
    assert scored["insertion"]["higher_is_better"] is True
    assert scored["insertion"]["params"]["baseline"] == "blur"  # deletion's baseline stays its


def test_a_metric_needing_objects_without_them_is_one_line(net: Any, inputs: np.ndarray) -> None:
    ex = seewhy.explain(net, inputs, "gradcam")
    with pytest.raises(InvalidInput) as caught:
        metrics.evaluate(net, ex, ["deletion", "iou", "pointing-game"], images=inputs)
    message = str(caught.value)
    assert "\n" not in message
    assert message == "metrics: iou, pointing_game need masks= or boxes="


def test_a_misspelt_metric_gets_the_nearest_names(net: Any, inputs: np.ndarray) -> None:
    ex = seewhy.explain(net, inputs, "gradcam")
    with pytest.raises(InvalidInput, match=r"unknown metric 'deletoin'; did you mean deletion\?"):
        metrics.evaluate(net, ex, ["deletoin"], images=inputs)
    with pytest.raises(InvalidInput, match="did you mean average_drop"):
        metrics.registry.get("averagedrop")
    # spelling variants are one name, reported under its own spelling
    assert metrics.registry.get("Average-Drop") is metrics.registry.get("average_drop")
    assert list(metrics.evaluate(net, ex, ["Average-Drop"], images=inputs)) == ["average_drop"]


def _counting_box(model: Any) -> tuple[Any, list[int]]:
    """The torch model as a BlackBox that counts the images it is asked to score."""
    import torch

    seen: list[int] = []

    def scores(x: np.ndarray) -> np.ndarray:
        seen.append(len(x))
        with torch.no_grad():
            return model(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()

    return seewhy.BlackBox(scores, size=SIDE, classes=5), seen


def test_a_model_that_only_predicts_gets_the_predictions_only_metrics(
    net: Any, inputs: np.ndarray
) -> None:
    box, _ = _counting_box(net)
    ex = seewhy.explain(box, inputs, "occlusion")
    scored = metrics.evaluate(
        box, ex, metrics.registry.names(), images=inputs, boxes=BOXES, **GIVEN
    )
    direct = _direct(box, ex, inputs)
    for m in metrics.registry.registered():
        assert scored[m.name] == direct[m.name]().to_dict(), m.name
        assert np.isfinite(scored[m.name][m.headline]), m.name
    # A metric that runs the model declares its predictions and nothing else of it, so all of
    # them serve a black box. A new need (layers, gradients) must come with evaluate refusing
    # it, in one line, on a model that cannot serve it, and with that refusal tested here.
    assert set(Need) == {Need.PREDICTIONS, Need.OBJECTS}


def test_metrics_from_the_same_passes_run_them_once(net: Any, inputs: np.ndarray) -> None:
    box, seen = _counting_box(net)
    ex = seewhy.explain(box, inputs, "occlusion")
    seen.clear()
    metrics.evaluate(box, ex, ["average_drop"], images=inputs)
    once = sum(seen)
    seen.clear()
    both = metrics.evaluate(box, ex, ["average_drop", "increase_in_confidence"], images=inputs)
    assert sum(seen) == once > 0
    assert both["increase_in_confidence"] == both["average_drop"]


def test_a_declaration_the_function_cannot_keep_is_refused_at_import() -> None:
    before = metrics.registry.names()

    def no_steps(model: Any, explanation: Any, *, images: Any = None) -> Any:
        return None

    with pytest.raises(SeewhyError, match="does not take batch_size, precision, steps"):
        metric(
            "no_steps",
            direction=Direction.LOWER,
            needs=frozenset({Need.PREDICTIONS}),
            settings=("steps",),
        )(no_steps)
    with pytest.raises(SeewhyError, match="metric name 'deletion' is already registered"):
        metric("deletion", direction=Direction.LOWER)(lambda explanation: None)
    assert metrics.registry.names() == before
