"""seewhy.targets on PyTorch: each kind of target through every method, outputs, JSON, errors.

References are plain: a built-in target must give exactly the maps of the
callable that scores the same thing, and a region's score is checked
against the sum written out by hand.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest

import seewhy
from contract import SETTINGS
from models import (
    one_conv,
    pixel_classifier,
    sigmoid_ended,
    tiny_cnn,
    tiny_segmenter,
    two_headed,
)
from seewhy import registry
from seewhy import targets as T
from seewhy.backends.capabilities import Attention, LayerReadout
from seewhy.errors import InvalidInput, SeewhyError, UnsupportedModel

torch = pytest.importorskip("torch")

SIZE = 16
PLAIN = seewhy.Preprocess(size=(SIZE, SIZE), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
pytestmark = pytest.mark.filterwarnings("ignore::seewhy.errors.ConstantMapWarning")


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(1).random((2, SIZE, SIZE, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def mask() -> np.ndarray:
    m = np.zeros((SIZE, SIZE), bool)
    m[2:9, 4:12] = True
    return m


def _snapshot(model: Any) -> dict[str, Any]:
    hooks = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks")
    return {
        "training": [m.training for m in model.modules()],
        "hooks": [[len(getattr(m, h)) for h in hooks] for m in model.modules()],
        "grads": [p.grad is None for p in model.parameters()],
        "requires": [p.requires_grad for p in model.parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def _same(model: Any, before: dict[str, Any]) -> None:
    after = _snapshot(model)
    for key in ("training", "hooks", "grads", "requires"):
        assert after[key] == before[key], key
    for name, value in before["state"].items():
        assert torch.equal(after["state"][name], value), name


def _explain(model: Any, x: np.ndarray, method: str, **kw: Any) -> seewhy.Explanation:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return seewhy.explain(model, x, method, preprocess=PLAIN, **SETTINGS.get(method, {}), **kw)


def test_output_and_similarity_equal_their_callables(x: np.ndarray) -> None:
    model = tiny_cnn(classes=6, seed=2)
    reference = np.random.default_rng(0).normal(size=6).astype(np.float32)
    vector = torch.from_numpy(reference)

    def cosine(out: Any) -> Any:
        return torch.nn.functional.cosine_similarity(out, vector[None], dim=1)

    for built_in, function in (
        (T.Output(4), lambda out: out[:, 4]),
        (T.Similarity(reference), cosine),
    ):
        for method in ("gradcam", "occlusion"):
            a = _explain(model, x, method, target=built_in)
            b = _explain(model, x, method, target=function)
            np.testing.assert_allclose(a.maps, b.maps, atol=5e-4)  # occlusion: small drops
            np.testing.assert_allclose(
                a.extras["target_score"], b.extras["target_score"], rtol=1e-6
            )
    with torch.no_grad():
        out = model(torch.from_numpy(x).permute(0, 3, 1, 2))
    expected = torch.nn.functional.cosine_similarity(out, vector[None], dim=1).numpy()
    np.testing.assert_allclose(a.extras["target_score"], expected, rtol=1e-5)


def test_a_region_scores_the_class_summed_over_the_mask(x: np.ndarray, mask: np.ndarray) -> None:
    model = tiny_segmenter()
    ex = _explain(model, x, "gradcam", target=T.Region(1, mask))
    with torch.no_grad():
        out = model(torch.from_numpy(x).permute(0, 3, 1, 2))["out"]
    expected = (out[:, 1] * torch.from_numpy(mask)).sum(dim=(1, 2)).numpy()
    np.testing.assert_allclose(ex.extras["target_score"], expected, rtol=1e-5)
    # a mask at another size is resized to the output's (nearest pixel centre)
    np.testing.assert_array_equal(T.Region(1, mask).mask_at((8, 8)), mask[1::2, 1::2])
    assert ex.targets.tolist() == [1, 1] and ex.logits.shape == (2, 0)
    assert ex.label(0).startswith("region of class 1: score ")


@pytest.mark.parametrize("method", sorted(SETTINGS))
def test_every_method_explains_a_region_and_a_multilabel_or_refuses(
    method: str, x: np.ndarray, mask: np.ndarray
) -> None:
    segmenter, classifier = tiny_segmenter(), tiny_cnn(classes=4, seed=3)
    before = _snapshot(segmenter)
    needs = registry.get(method).requires
    if {Attention, LayerReadout} & needs or method in (
        "answer-attention",
        "query-attention",
        "attnlrp",
    ):
        with pytest.raises(UnsupportedModel) as refused:
            _explain(classifier, x, method, target=T.MultiLabel([1, 3]))
        assert "\n" not in str(refused.value)
        return
    if method == "finercam":  # compares class logits: other targets refused in one line
        with pytest.raises(UnsupportedModel, match=r"finercam: .*gradcam") as refused:
            _explain(segmenter, x, method, target=T.Region(2, mask))
        assert "\n" not in str(refused.value)
        _same(segmenter, before)
        return
    if method == "cam":  # CAM needs a GAP + linear head: one line that names the fix
        with pytest.raises(UnsupportedModel, match=r"cam: .*gradcam"):
            _explain(segmenter, x, method, target=T.Region(2, mask))
    else:
        ex = _explain(segmenter, x, method, target=T.Region(2, mask))
        assert ex.maps.shape == (2, SIZE, SIZE) and np.isfinite(ex.maps).all()
        assert ex.params["target"]["kind"] == "region"
    _same(segmenter, before)
    both = _explain(classifier, x, method, target=T.MultiLabel([1, 3]))
    function = lambda out: out[:, 1] + out[:, 3]  # noqa: E731
    summed = _explain(
        classifier, x, *(("gradcam",) if method == "cam" else (method,)), target=function
    )
    np.testing.assert_allclose(both.maps, summed.maps, atol=1e-6)


def test_the_model_is_untouched_when_a_target_raises(x: np.ndarray, mask: np.ndarray) -> None:
    model = tiny_segmenter()
    before = _snapshot(model)

    def broken(out: Any) -> Any:
        raise RuntimeError("the callable failed on purpose")

    for target, error in (
        (T.Region(7, mask), InvalidInput),
        (broken, RuntimeError),
        (lambda out: out["nope"], Exception),
        (lambda out: out.sum(), InvalidInput),  # one number, not one per image
    ):
        for method in ("gradcam", "saliency", "occlusion"):
            with pytest.raises(error):
                _explain(model, x, method, target=target)
            _same(model, before)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(z, np.float64)))


def _logits(model: Any, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out: np.ndarray = model(torch.from_numpy(x).permute(0, 3, 1, 2)).double().numpy()
    return out


def _binary(pool: np.ndarray) -> Any:
    """tiny_cnn with one logit, its bias set so that half of ``pool`` is "dog" (z > 0)."""
    model = tiny_cnn(classes=1, seed=4)
    with torch.no_grad():
        model[6].bias -= float(np.median(_logits(model, pool)))
    return model


@pytest.fixture(scope="module")
def pool() -> np.ndarray:
    rng = np.random.default_rng(11)
    return (rng.random((32, SIZE, SIZE, 3)) * rng.random((32, 1, 1, 3)) * 2).astype(np.float32)


@pytest.fixture(scope="module")
def mixed(pool: np.ndarray) -> np.ndarray:
    """Six images of which the binary model calls three "cat" (p < 0.5), three "dog"."""
    z = _logits(_binary(pool), pool)[:, 0]
    order = np.argsort(z)
    picked = pool[np.concatenate([order[:3], order[-3:]])]
    assert (_logits(_binary(pool), picked)[:, 0] < 0).sum() == 3
    return picked


def test_a_one_output_model_probability_is_its_sigmoid(pool: np.ndarray, mixed: np.ndarray) -> None:
    model = _binary(pool)
    prob = _explain(model, mixed, "saliency", score="probability")
    logit = _explain(model, mixed, "saliency")
    own = logit.logits[np.arange(len(mixed)), logit.targets]  # each image's class: -z or +z
    slope = (_sigmoid(own) * (1 - _sigmoid(own)))[:, None, None, None]
    attributions = prob.extras["attributions"]
    assert np.abs(attributions).max() > 0  # a softmax over one class would give all zeros
    np.testing.assert_allclose(
        attributions, slope * logit.extras["attributions"], rtol=1e-4, atol=1e-9
    )
    z = _logits(model, mixed)[:, 0]
    tops = [p[0].probability for p in prob.predictions]
    np.testing.assert_allclose(tops, _sigmoid(np.abs(z)), rtol=1e-6)  # the predicted class's


@pytest.mark.parametrize("method", ["gradcam", "cam", "saliency", "occlusion", "scorecam"])
def test_a_one_logit_head_explains_both_classes(
    method: str, pool: np.ndarray, mixed: np.ndarray
) -> None:
    """The seed chapter's binary classifier: "cat" (class 0, p < 0.5) scores -z, "dog" +z."""
    model = _binary(pool)
    before = _snapshot(model)
    z = _logits(model, mixed)[:, 0]
    labels = ["cat", "dog"]
    cat = _explain(model, mixed, method, target=0, labels=labels)
    dog = _explain(model, mixed, method, target=1, labels=labels)
    default = _explain(model, mixed, method, labels=labels)
    _same(model, before)
    np.testing.assert_allclose(dog.logits, np.stack([-z, z], axis=1), rtol=1e-5, atol=1e-6)
    if method != "scorecam":  # its weights are softmaxed scores: not linear in the score
        signed = "attributions" if method == "saliency" else None  # its map is |gradient|
        a, b = ((e.extras[signed] if signed else e.layer_maps) for e in (cat, dog))
        np.testing.assert_allclose(a, -b, rtol=1e-4, atol=1e-7)
    assert np.ptp(cat.maps, axis=(1, 2)).min() > 0  # a map for the negative class too
    predicted = (z > 0).astype(np.int64)
    assert default.targets.tolist() == predicted.tolist()
    assert [default.target_labels[i] for i in range(len(z))] == [labels[c] for c in predicted]
    for i in range(len(z)):
        shown = {p.label: p.probability for p in default.predictions[i]}
        assert shown["dog"] == pytest.approx(_sigmoid(z[i]), rel=1e-6)
        assert shown["cat"] == pytest.approx(1 - _sigmoid(z[i]), rel=1e-6)
        assert default.predictions[i][0].label == labels[predicted[i]]
        assert cat.label(i) == f"cat: {100 * (1 - _sigmoid(z[i])):.1f}%"
    with pytest.raises(InvalidInput, match=r"target: class 2 is outside the model's 0\.\.1"):
        _explain(model, mixed, method, target=2)


def test_a_one_output_linear_then_sigmoid_is_the_same_binary_classifier(
    pool: np.ndarray, mixed: np.ndarray
) -> None:
    logits_model = _binary(pool)
    probability_model = sigmoid_ended(logits_model)
    z = _logits(logits_model, mixed)[:, 0]
    for target in (0, 1):
        ended = _explain(probability_model, mixed, "cam", target=target, layer="0.3")
        plain = _explain(logits_model, mixed, "cam", target=target, layer="3")
        np.testing.assert_allclose(ended.layer_maps, plain.layer_maps, rtol=1e-5, atol=1e-7)
        expected = _sigmoid(z) if target else 1 - _sigmoid(z)
        np.testing.assert_allclose(
            [ended.target_probability(i) for i in range(len(z))], expected, rtol=1e-6
        )
    shown = seewhy.predict(probability_model, mixed, preprocess=PLAIN, labels=["cat", "dog"])
    assert [p[0].label for p in shown] == ["dog" if v > 0 else "cat" for v in z]


@pytest.mark.parametrize("functional", [False, True], ids=["nn.Sigmoid", "torch.sigmoid"])
def test_a_final_sigmoid_is_explained_at_its_logits(functional: bool, x: np.ndarray) -> None:
    """A multi-label model ending in a sigmoid: its maps are those of its logits, its
    predictions each label's own probability, and head="sigmoid" does not apply it twice."""
    logits_model = tiny_cnn(classes=4, seed=7)
    model = sigmoid_ended(logits_model, functional=functional)
    layer = "body.3" if functional else "0.3"
    before = _snapshot(model)
    logits = _logits(logits_model, x)
    with pytest.warns(UserWarning, match="class scores come out of a sigmoid") as caught:
        seewhy.explain(model, x, "gradcam", layer=layer, preprocess=PLAIN)
    said = [w for w in caught if "sigmoid" in str(w.message)]
    assert len(said) == 1 and "\n" not in str(said[0].message)  # once per model, one line
    for method in ("gradcam", "cam", "saliency", "occlusion"):
        ended = _explain(model, x, method, layer=layer, target=2)
        plain = _explain(logits_model, x, method, layer="3", target=2)
        np.testing.assert_allclose(ended.maps, plain.maps, atol=1e-5)
        np.testing.assert_allclose(ended.logits, logits, rtol=1e-5, atol=1e-6)
        assert ended.params["head"] == "sigmoid"
    _same(model, before)
    declared = _explain(model, x, "gradcam", layer=layer, head="sigmoid", top_k=4)
    probability = _explain(model, x, "gradcam", layer=layer, score="probability", target=1)
    for i in range(len(x)):
        listed = {p.index: p.probability for p in declared.predictions[i]}
        np.testing.assert_allclose([listed[c] for c in range(4)], _sigmoid(logits[i]), rtol=1e-6)
        assert probability.target_probability(i) == pytest.approx(_sigmoid(logits[i, 1]))
    predicted = seewhy.predict(model, x, preprocess=PLAIN, top_k=4)
    for i in range(len(x)):
        listed = {p.index: p.probability for p in predicted[i]}
        np.testing.assert_allclose([listed[c] for c in range(4)], _sigmoid(logits[i]), rtol=1e-6)


def test_a_sigmoid_inside_the_network_is_no_head(x: np.ndarray) -> None:
    """A gate's sigmoid mid-network (squeeze-and-excitation style) leaves the scores alone."""
    model = one_conv(6, 3, seed=8, activation=torch.nn.Sigmoid())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "came out of a sigmoid" note either
        ex = seewhy.explain(model, x, "gradcam", layer="1", preprocess=PLAIN)
    logits = _logits(model, x)
    np.testing.assert_allclose(ex.logits, logits, rtol=1e-5)
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert ex.predictions[0][0].probability == pytest.approx(softmax[0].max())
    assert "head" not in ex.params


def test_a_declared_sigmoid_head_lists_each_labels_own_probability(x: np.ndarray) -> None:
    model = tiny_cnn(classes=3, seed=5)
    ex = _explain(model, x, "cam", head="sigmoid")
    grad = _explain(model, x, "gradcam", head="sigmoid")
    np.testing.assert_allclose(ex.maps, grad.maps, atol=1e-5)  # CAM = Grad-CAM on a GAP head
    probabilities = sorted(p.probability for p in ex.predictions[0])
    expected = sorted(1 / (1 + np.exp(-ex.logits[0].astype(np.float64))))
    np.testing.assert_allclose(probabilities, expected, rtol=1e-6)
    assert ex.params["head"] == "sigmoid"
    prob = _explain(model, x, "occlusion", head="sigmoid", score="probability", target=1)
    scores = prob.extras.get("target_score")
    assert scores is None  # a plain class: no target columns, the fast path
    with pytest.raises(InvalidInput, match="head: expected one of softmax, sigmoid"):
        _explain(model, x, "gradcam", head="tanh")


def test_several_outputs_need_a_choice(x: np.ndarray) -> None:
    for as_dict, names in ((False, "tuple"), (True, "kind, size")):
        model = two_headed(as_dict=as_dict)
        with pytest.raises(InvalidInput, match=rf"2 outputs \({names}\).*output="):
            _explain(model, x, "gradcam")
        first = _explain(model, x, "gradcam", output=1)
        assert first.logits.shape == (2, 2) and first.params["output"] == 1
    chosen = _explain(model, x, "gradcam", output="size")
    np.testing.assert_array_equal(chosen.maps, first.maps)
    with pytest.raises(InvalidInput, match="no output 'sizes'"):
        _explain(model, x, "gradcam", output="sizes")
    segmenter = tiny_segmenter()  # a dict with "out": that one, as torchvision's
    everywhere = T.Region(0, np.ones((SIZE, SIZE), bool))
    out = _explain(segmenter, x, "gradcam", target=everywhere, layer="backbone.2")
    aux = _explain(segmenter, x, "gradcam", output="aux", target=everywhere, layer="backbone.2")
    assert not np.allclose(out.extras["target_score"], aux.extras["target_score"])


def test_a_segmentation_output_without_a_target_says_how_to_choose(x: np.ndarray) -> None:
    with pytest.raises(InvalidInput, match=r"per-pixel \(segmentation\).*Region"):
        _explain(tiny_segmenter(), x, "gradcam")


def test_targets_load_back_from_json_and_from_params(x: np.ndarray, mask: np.ndarray) -> None:
    kinds = [
        T.Class(2),
        T.MultiLabel([0, 3]),
        T.Output(1),
        T.Similarity([0.5, -1.0, 2.0]),
        T.Region(1, mask),
        T.Box((1.5, 2.0, 10.0, 12.0), 3, add_iou=True),
    ]
    for target in kinds:
        text = json.dumps(target.to_json())
        back = T.from_json(text)
        assert type(back) is type(target) and back.to_json() == target.to_json()
    region = T.from_json(T.Region(1, mask).to_json())
    assert isinstance(region, T.Region)
    np.testing.assert_array_equal(region.mask, mask)
    model = tiny_segmenter()
    ex = _explain(model, x, "gradcam", target=T.Region(1, mask))
    again = seewhy.explain(model, x, "gradcam", preprocess=PLAIN, **ex.params)
    np.testing.assert_array_equal(again.maps, ex.maps)
    assert json.loads(json.dumps(ex.to_dict()))["params"]["target"]["kind"] == "region"
    with pytest.raises(InvalidInput, match="cannot be loaded from JSON"):
        T.from_json(T.Custom(len).to_json())


def test_one_target_per_image_mixes_kinds(x: np.ndarray) -> None:
    model = tiny_cnn(classes=4, seed=6)
    mixed = _explain(model, x, "gradcam", target=[2, T.MultiLabel([0, 1])])
    alone = [
        _explain(model, x[i : i + 1], "gradcam", target=t)
        for i, t in enumerate([2, T.MultiLabel([0, 1])])
    ]
    for i in range(2):
        np.testing.assert_allclose(mixed.maps[i], alone[i].maps[0], atol=1e-6)
    assert mixed.target_labels == ("class 2", "class 0 + class 1")
    assert isinstance(mixed.params["target"], list)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: T.Box((5, 5, 2, 9)), "Box: xyxy: expected x0 < x1 and y0 < y1"),
        (lambda: T.Box("1,2,3,4"), "Box: xyxy: expected 4 numbers"),
        (lambda: T.Region(0, np.zeros((4, 4), bool)), "Region: mask is empty"),
        (lambda: T.Region(0, np.ones(4, bool)), "Region: mask: expected a 2-D"),
        (lambda: T.Similarity(np.zeros(3)), "Similarity: vector: expected a non-zero"),
        (lambda: T.MultiLabel([]), "MultiLabel: indices: expected a non-empty list"),
        (lambda: T.Class(-1), "Class: index: expected an integer >= 0"),
    ],
)
def test_bad_targets_are_refused_in_one_line(make: Any, message: str) -> None:
    with pytest.raises(SeewhyError, match=message) as caught:
        make()
    assert "\n" not in str(caught.value)


def test_probability_of_a_raw_value_target_is_refused(x: np.ndarray) -> None:
    with pytest.raises(InvalidInput, match="'probability' does not apply to a output target"):
        _explain(tiny_cnn(), x, "gradcam", target=T.Output(0), score="probability")


def test_metrics_and_sanity_checks_score_the_explanations_target(
    x: np.ndarray, mask: np.ndarray
) -> None:
    import seewhy.metrics as metrics

    model = tiny_segmenter()
    region = T.Region(1, mask)
    ex = _explain(model, x, "gradcam", target=region)
    curve = metrics.deletion(model, ex, images=x, steps=4, preprocess=PLAIN, score="logit")
    with torch.no_grad():
        out = model(torch.from_numpy(x).permute(0, 3, 1, 2))["out"]
    expected = (out[:, 1] * torch.from_numpy(mask)).sum(dim=(1, 2)).numpy()
    np.testing.assert_allclose(curve.scores[:, 0], expected, rtol=1e-5)  # nothing removed yet
    probability = torch.softmax(out, dim=1)[:, 1]
    in_mask = (probability * torch.from_numpy(mask)).sum(dim=(1, 2)).numpy()
    drop = metrics.average_drop(model, ex, images=x, preprocess=PLAIN)
    np.testing.assert_allclose(drop.original, in_mask, rtol=1e-5)
    road = metrics.road(model, ex, images=x, preprocess=PLAIN, fractions=(0.5,))
    assert np.isfinite(road.morf).all() and np.isfinite(road.lerf).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check = metrics.sanity_check(model, x, "gradcam", target=region, preprocess=PLAIN, steps=2)
    assert check.randomized.shape[1:] == (2, SIZE, SIZE)


def test_metric_results_record_the_target_as_given_not_a_scoring_column(
    x: np.ndarray, mask: np.ndarray
) -> None:
    import seewhy.metrics as metrics

    model = tiny_segmenter()
    other = np.zeros_like(mask)
    other[8:, :] = True
    given = [T.Region(2, mask), T.Region(1, other)]  # scored as view columns 0 and 1
    ex = _explain(model, x, "gradcam", target=given)
    spec = ex.params["target"]
    assert [t["class_index"] for t in spec] == [2, 1]
    kw: dict[str, Any] = {"images": x, "preprocess": PLAIN}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = {
            "deletion": metrics.deletion(model, ex, steps=2, **kw),
            "insertion": metrics.insertion(model, ex, steps=2, **kw),
            "average_drop": metrics.average_drop(model, ex, **kw),
            "road": metrics.road(model, ex, fractions=(0.5,), **kw),
            "sanity": metrics.sanity_check(
                model, x, "gradcam", target=given, preprocess=PLAIN, steps=1
            ),
        }
    for name, result in results.items():
        assert result.targets.tolist() == [2, 1], name
        data = json.loads(json.dumps(result.to_dict()))
        assert data["targets"] == [2, 1] and data["params"]["target"] == spec, name
        loaded = [T.from_json(t) for t in data["params"]["target"]]
        np.testing.assert_array_equal(loaded[1].mask, other)
    ex_out = _explain(tiny_cnn(), x, "gradcam", target=T.Output(3))
    curve = metrics.deletion(tiny_cnn(), ex_out, steps=2, **kw)
    assert curve.targets.tolist() == [-1, -1]  # an output unit is no class
    assert curve.to_dict()["params"]["target"] == {"kind": "output", "index": 3}
    plain = metrics.deletion(
        tiny_cnn(), _explain(tiny_cnn(), x, "gradcam", target=2), steps=2, **kw
    )
    assert plain.targets.tolist() == [2, 2] and "target" not in plain.params


def test_the_segmentation_demo_region_maps_lie_inside_the_objects(tmp_path: Any) -> None:
    from seewhy.demo import run_segmentation_demo
    from seewhy.provenance import written_by_seewhy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_segmentation_demo(tmp_path, n_train=96, n_test=6, epochs=2, examples=2)
    assert result.report.exists() and all(p.exists() for p in result.images)
    assert all(written_by_seewhy(p) for p in (result.report, *result.images))  # its own again
    assert result.mass_inside.mean() > 2 * result.chance  # at the demo's size: 0.91 vs 0.10
    assert json.loads(json.dumps(result.to_dict()))["layer"] == "head.0"


def test_the_audit_explains_each_images_ground_truth_region(tmp_path: Any) -> None:
    from PIL import Image

    from seewhy.audit import audit

    rng = np.random.default_rng(3)
    data, masks = tmp_path / "data", tmp_path / "masks"
    for label in ("a", "b"):
        (data / label).mkdir(parents=True)
        (masks / label).mkdir(parents=True)
        for k in range(2):
            Image.fromarray((rng.random((SIZE, SIZE, 3)) * 255).astype(np.uint8)).save(
                data / label / f"{k}.png"
            )
            mask = np.zeros((SIZE, SIZE), np.uint8)
            mask[3 + k : 10, 4:12] = 255
            Image.fromarray(mask).save(masks / label / f"{k}.png")
    model = tiny_segmenter()
    model.seewhy_spec = seewhy.ModelSpec(name="seg", preprocess=PLAIN, labels=("bg", "a", "b"))
    before = _snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = tmp_path / "report"
        result = audit(data, model, out=out, object_masks=masks, target_from="region")
    _same(model, before)
    from seewhy.audit.store import Store

    records = Store(result.out).records()
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    assert {r["target"] for r in records} == {"region of a", "region of b"}
    assert all(r["pred_label"] is None for r in records)  # a segmenter lists no classes
    with pytest.raises(InvalidInput, match="target_from: expected one of predicted, true, region"):
        audit(data, model, out=tmp_path / "other", target_from="boxes")


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script is deprecated
def test_the_command_line_takes_region_and_output_targets(tmp_path: Any, mask: np.ndarray) -> None:
    from PIL import Image

    from seewhy.cli import main

    torch.jit.script(tiny_segmenter()).save(str(tmp_path / "seg.pt"))
    picture = (np.random.default_rng(0).random((SIZE, SIZE, 3)) * 255).astype(np.uint8)
    Image.fromarray(picture).save(tmp_path / "img.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    common = ["--model", str(tmp_path / "seg.pt"), "--trust-model", "--size", str(SIZE)]
    common += ["--method", "saliency", "--out", str(tmp_path / "out")]
    target = ["--target", f"region:1:{tmp_path / 'mask.png'}"]
    out = tmp_path / "out.json"
    assert main(["explain", str(tmp_path / "img.png"), *common, *target, "--json", str(out)]) == 0
    record = json.loads(out.read_text())["images"][0]
    assert record["target_label"] == "region of class 1" and record["predictions"] == []
    loaded = T.from_json(record["target_spec"])
    assert isinstance(loaded, T.Region)
    np.testing.assert_array_equal(loaded.mask, mask)
    aux = ["--output", "aux", *target]
    assert main(["explain", str(tmp_path / "img.png"), *common, *aux]) == 0
    assert (
        main(["explain", str(tmp_path / "img.png"), *common, "--output", "sideways", *target]) == 1
    )


def test_evaluate_and_sanity_commands_take_and_record_region_and_output_targets(
    tmp_path: Any, mask: np.ndarray
) -> None:
    from PIL import Image

    from seewhy.cli import main
    from seewhy.cli.target_text import parse_target

    # pickled whole: the sanity check needs hooks
    torch.save(pixel_classifier(3), tmp_path / "seg.pt")
    torch.save(one_conv(8, 5), tmp_path / "cnn.pt")
    picture = (np.random.default_rng(0).random((SIZE, SIZE, 3)) * 255).astype(np.uint8)
    Image.fromarray(picture).save(tmp_path / "img.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    region = f"region:2:{tmp_path / 'mask.png'}"
    for model, target in (("seg.pt", region), ("cnn.pt", "output:3")):
        common = [str(tmp_path / "img.png"), "--model", str(tmp_path / model), "--trust-model"]
        common += ["--size", str(SIZE), "--method", "gradcam", "--target", target]
        parsed = parse_target(target)
        assert isinstance(parsed, T.Target)
        spec = parsed.to_json()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluated, checked = tmp_path / "evaluate.json", tmp_path / "sanity.json"
            evaluate = ["--metrics", "deletion,insertion,average_drop,road", "--steps", "2"]
            assert main(["evaluate", *common, *evaluate, "--json", str(evaluated)]) == 0
            sanity = ["--steps", "1", "--out", str(tmp_path / "s.png"), "--json", str(checked)]
            assert main(["sanity", *common, *sanity]) == 0
        entry = json.loads(evaluated.read_text())["methods"]["gradcam"]
        classes = [2] if target == region else [-1]
        assert entry["target_spec"] == spec and entry["targets"] == classes
        for name, result in entry["metrics"].items():
            assert result["params"]["target"] == spec and result["targets"] == classes, name
        (result,) = json.loads(checked.read_text())["results"]
        assert result["params"]["target"] == spec and result["targets"] == classes
        if target == region:  # the recorded form loads back to the mask in the file
            loaded = T.from_json(result["params"]["target"])
            assert isinstance(loaded, T.Region)
            np.testing.assert_array_equal(loaded.mask, mask)
