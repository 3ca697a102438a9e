"""Sanity checks (Adebayo et al., 2018): the paper's finding on the bundled model."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import seewhy  # noqa: E402
from seewhy import metrics  # noqa: E402
from seewhy.errors import InvalidInput  # noqa: E402


def test_similarity_measures():
    rng = np.random.default_rng(0)
    a = rng.random((32, 32))
    assert metrics.spearman(a, a) == pytest.approx(1.0)
    assert metrics.spearman(a, 2 * a + 1) == pytest.approx(1.0)  # ranks only
    assert metrics.spearman(a, -a) == pytest.approx(-1.0)
    assert metrics.spearman(a, np.zeros_like(a)) == 0.0  # a flat map ranks nothing
    assert metrics.ssim(a, a) == pytest.approx(1.0)
    assert metrics.ssim(a, rng.random((32, 32))) < 0.3


@pytest.fixture(scope="module")
def lite0():
    return seewhy.zoo.efficientnet_lite0()


def _registered(*names: str) -> str | None:
    known = set(seewhy.methods())
    return next((n for n in names if n in known), None)


def test_paper_finding_on_the_bundled_model(lite0):
    """Grad-CAM and gradients change with random top layers; Guided Backprop barely does."""
    state = {k: v.clone() for k, v in lite0.state_dict().items()}
    flags = [m.training for m in lite0.modules()]
    images = ["sample:chelsea"]
    groups = metrics.randomization_steps(lite0, np.zeros((1, 224, 224, 3), np.float32))
    assert groups[0] == ["classifier"] and groups[-1] == ["conv_stem", "bn_stem"]
    top = groups[:11]  # classifier, head and the top blocks, cascading

    def run(method: str) -> metrics.SanityResult:
        return metrics.sanity_check(lite0, images, method, layers=top, steps=2)

    gradcam = run("gradcam")
    assert gradcam.steps == ("classifier", top[-1][0])
    assert gradcam.spearman.shape == gradcam.ssim.shape == (2, 1)
    assert gradcam.randomized.shape == (2, 1, 224, 224)
    assert gradcam.final_spearman < 0.5 and gradcam.passes()

    saliency = _registered("saliency", "gradient", "vanilla-gradient")
    if saliency is not None:
        assert run(saliency).final_spearman < 0.5

    guided = _registered("guided-backprop", "guidedbackprop", "guided-bp")
    if guided is None:
        pytest.skip("no Guided Backprop method registered yet")
    gbp = run(guided)
    assert gbp.mean_spearman.min() > 0.9 and gbp.mean_ssim.min() > 0.9
    assert not gbp.passes()

    guided_cam = _registered("guided-gradcam", "guidedgradcam")
    if guided_cam is not None:  # partly invariant: its structure outlives Grad-CAM's
        ggc = run(guided_cam)
        assert np.all(ggc.mean_ssim > gradcam.mean_ssim)

    fig = metrics.plot_sanity([gradcam, gbp])
    assert type(fig).__name__ == "Figure"
    assert gradcam.to_dict()["steps"][0]["randomized"] == "classifier"
    # the user's model is exactly as it was
    after = lite0.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert [m.training for m in lite0.modules()] == flags
    assert all(p.grad is None for p in lite0.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in lite0.modules())


def _tiny(seed: int, shuffle: bool = False):
    from seewhy import synthetic

    data = synthetic.make_shapes(240, size=32, seed=seed, clutter=2)
    if shuffle:
        data = data.shuffled_labels(seed)
    return synthetic.train_torch(data, epochs=2, seed=seed), data


def test_independent_mode_and_data_randomisation():
    model, data = _tiny(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    indep = metrics.sanity_check(model, data.images[:2], "gradcam", cascading=False, steps=3)
    assert indep.mode == "independent" and len(indep.steps) == 3
    assert indep.steps[0] == "fc"
    calls = []

    def retrain():
        calls.append(1)
        return _tiny(1, shuffle=True)[0]

    res = metrics.data_randomization_check(model, data.images[:3], retrain, "gradcam")
    assert calls == [1] and res.mode == "data" and res.spearman.shape == (1, 3)
    assert res.steps == ("shuffled labels",)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(InvalidInput, match="steps"):
        metrics.sanity_check(model, data.images[:1], steps=0)


@pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="keras not installed")
def test_keras_sanity_works_on_a_clone():
    from seewhy import synthetic

    data = synthetic.make_shapes(64, size=32, seed=0, clutter=2)
    model = synthetic.train_keras(data, epochs=1)
    weights = [w.copy() for w in model.get_weights()]
    res = metrics.sanity_check(model, data.images[:2], "gradcam", steps=2)
    assert res.steps == ("fc", "conv1") and res.spearman.shape == (2, 2)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights(), strict=True))
