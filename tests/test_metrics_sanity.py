"""Sanity checks (Adebayo et al., 2018): the paper's finding on the bundled model."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import seewhy  # noqa: E402
from models import tiny_cnn  # noqa: E402
from seewhy import metrics  # noqa: E402
from seewhy.errors import InvalidInput  # noqa: E402
from seewhy.metrics import sanity  # noqa: E402


def test_similarity_measures():
    rng = np.random.default_rng(0)
    a = rng.random((32, 32))
    assert metrics.spearman(a, a) == pytest.approx(1.0)
    assert metrics.spearman(a, 2 * a + 1) == pytest.approx(1.0)  # ranks only
    assert metrics.spearman(a, -a) == pytest.approx(-1.0)
    assert metrics.spearman(a, -a, absolute=True) == pytest.approx(1.0)  # same magnitudes
    signed = a - 0.5
    flipped = np.where(rng.random(a.shape) < 0.5, -signed, signed)  # signs scrambled
    assert metrics.spearman(signed, flipped, absolute=True) == pytest.approx(1.0)
    assert abs(metrics.spearman(signed, flipped)) < 0.5
    assert metrics.spearman(a, np.zeros_like(a)) == 0.0  # a flat map ranks nothing
    assert metrics.spearman(np.zeros_like(a), np.full_like(a, 3.0)) == 1.0  # nothing differs
    assert metrics.ssim(a, a) == pytest.approx(1.0)
    assert metrics.ssim(a, rng.random((32, 32))) < 0.3


def _blob(size: int, cy: float, cx: float, width: float = 6.0) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))


def test_hog_similarity_on_known_cases():
    blob = _blob(64, 24, 30)
    assert metrics.hog_similarity(blob, blob) == pytest.approx(1.0)
    # HOG sees edges, not values: a brighter copy with an offset keeps its outline
    assert metrics.hog_similarity(blob, 0.5 * blob + 0.2) > 0.99
    near = metrics.hog_similarity(blob, np.roll(blob, 2, axis=1))
    far = metrics.hog_similarity(blob, _blob(64, 44, 40))
    noise = metrics.hog_similarity(blob, np.random.default_rng(1).random((64, 64)))
    assert 1.0 > near > 0.5 > max(far, noise) and abs(noise) < 0.1
    # constant maps have no edges at all: no NaN, and no structure in common with a blob
    flat = np.full((64, 64), 0.3)
    assert metrics.hog_similarity(flat, np.zeros((64, 64))) == 1.0  # nothing differs
    assert metrics.hog_similarity(flat, blob) == 0.0
    assert metrics.hog_similarity(blob, flat) == 0.0
    # maps of any size get a grid (224 px: 8 px cells; tiny maps: 2 px cells, smaller blocks)
    assert sanity.hog_features(np.zeros((224, 224))).size == 26 * 26 * 3 * 3 * 9
    small = np.random.default_rng(2).random((5, 5))
    assert np.isfinite(metrics.hog_similarity(small, small.T))
    with pytest.raises(InvalidInput, match="same shape"):
        metrics.hog_similarity(blob, blob[:32])
    with pytest.raises(InvalidInput, match="cell"):
        metrics.hog_similarity(blob, blob, cell=100)


def test_paper_maps_sum_attributions_over_channels(model):
    x = np.random.default_rng(3).normal(size=(2, 3, 16, 16)).astype(np.float32)
    grads = seewhy.explain(model, x, "saliency")
    attributions = grads.extras["attributions"]
    absolute, signed = metrics.paper_maps(grads)
    np.testing.assert_allclose(absolute, np.abs(attributions).sum(axis=-1), rtol=1e-6)
    np.testing.assert_allclose(signed, attributions.sum(axis=-1), rtol=1e-6)
    cam = seewhy.explain(model, x, "gradcam")  # no attributions: the raw map, upsampled
    absolute, signed = metrics.paper_maps(cam)
    assert signed.shape == cam.maps.shape and signed.min() < 0 <= absolute.min()
    np.testing.assert_allclose(absolute, np.abs(signed))


@pytest.fixture(scope="module")
def lite0():
    return seewhy.zoo.efficientnet_lite0()


def test_paper_finding_on_the_bundled_model(lite0):
    """Grad-CAM and gradients change with random top layers; Guided Backprop barely does.

    Two images, the classifier, head and top blocks randomised in cascade.
    Figures measured on five samples are in the comments (mean over images).
    """
    state = {k: v.clone() for k, v in lite0.state_dict().items()}
    flags = [m.training for m in lite0.modules()]
    images = ["sample:chelsea", "sample:astronaut"]
    groups = metrics.randomization_steps(lite0, np.zeros((1, 224, 224, 3), np.float32))
    assert groups[0] == ["classifier"] and groups[-1] == ["conv_stem", "bn_stem"]
    top = groups[:11]  # classifier, head and the top blocks, cascading

    def run(method: str, randomized_target: str = "original") -> metrics.SanityResult:
        return metrics.sanity_check(
            lite0, images, method, layers=top, steps=2, randomized_target=randomized_target
        )

    gradcam = run("gradcam")
    assert gradcam.steps == ("classifier", top[-1][0])
    assert gradcam.spearman.shape == gradcam.ssim.shape == gradcam.hog.shape == (2, 2)
    assert gradcam.randomized.shape == (2, 2, 224, 224)
    assert gradcam.final_spearman < 0.3 and gradcam.passes()  # five samples: 0.09
    assert gradcam.mean("hog").max() < 0.3  # its outline is gone at once (five: 0.12, 0.05)

    saliency = run("saliency")
    assert saliency.final_spearman < 0.5  # five: 0.32 (0.44 after the classifier)
    assert (
        np.abs(saliency.mean("spearman_signed")).max() < 0.2
    )  # signs scrambled (five: 0.03, 0.02)

    gbp = run("guided-backprop")
    for name in gbp.measures:  # every measure stays near 1 (five samples: >= 0.94)
        assert gbp.mean(name).min() > 0.85, name
    assert gbp.mean_spearman.min() > 0.9 and not gbp.passes()

    # Guided Grad-CAM = Guided Backprop x Grad-CAM. Explaining the original model's
    # class (the default), the random classifier makes its Grad-CAM factor pick other
    # regions, so its ranks fall (five samples: 0.57 after the classifier, 0.49 at the
    # end); the edges it keeps from Guided Backprop hold its SSIM, HOG and signed rank
    # correlation well above Grad-CAM's.
    ggc = run("guided-gradcam")
    assert ggc.mean_spearman[0] < 0.7 and ggc.passes()
    for name in ("spearman_signed", "ssim", "hog"):
        assert np.all(ggc.mean(name) > gradcam.mean(name) + 0.1), name
    # The paper's protocol explains each randomised model's own top-1 class. That
    # class's random weights agree with the strongest feature maps, so its Grad-CAM
    # keeps the object's shape and Guided Grad-CAM barely changes (five samples:
    # Spearman 0.93 / 0.80, HOG 0.94 / 0.89, signed 0.98 / 0.95), as in the paper.
    ggc_paper = run("guided-gradcam", "predicted")
    assert ggc_paper.mean_spearman.min() > 0.7 and not ggc_paper.passes()
    assert ggc_paper.mean("hog").min() > 0.8 and ggc_paper.mean("spearman_signed").min() > 0.9
    assert ggc_paper.params["randomized_target"] == "predicted"
    # ...while Grad-CAM alone still fails to survive the top blocks (0.21)
    assert run("gradcam", "predicted").final_spearman < 0.5

    fig = metrics.plot_sanity([gradcam, gbp, ggc])
    assert type(fig).__name__ == "Figure"
    titles = {ax.get_title() for ax in fig.axes}
    assert set(metrics.SANITY_MEASURES.values()) <= titles
    summary = gradcam.to_dict()
    assert summary["steps"][0]["randomized"] == "classifier"
    assert set(metrics.SANITY_MEASURES) <= set(summary["steps"][0])
    assert len(summary["steps"][1]["hog_per_image"]) == 2 and "final_hog" in summary
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
    assert res.steps == ("shuffled labels",) and res.measures == tuple(metrics.SANITY_MEASURES)
    assert res.hog.shape == res.spearman_abs.shape == (1, 3)
    shuffled = retrain()  # a model is taken as it is, not called
    again = metrics.data_randomization_check(
        model, data.images[:3], shuffled, "gradcam", randomized_target="predicted"
    )
    assert calls == [1, 1] and again.params["randomized_target"] == "predicted"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(InvalidInput, match="steps"):
        metrics.sanity_check(model, data.images[:1], steps=0)
    with pytest.raises(InvalidInput, match="randomized_target"):
        metrics.sanity_check(model, data.images[:1], randomized_target="shuffled")
    with pytest.raises(InvalidInput, match="measure"):
        indep.measure("pearson")


def test_randomisation_goes_through_the_backend_protocol(numpy_backend):
    """Copies and re-drawn weights come from the Backend protocol: a numpy backend is enough."""
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype(np.float32)
    weights = ("kernel", "bias", "head", "head_bias")
    before = {name: getattr(numpy_backend.model, name).copy() for name in weights}
    assert metrics.randomization_steps(numpy_backend, x) == [["head"], ["features"]]
    cascade = metrics.sanity_check(numpy_backend, x, "gradcam", seed=3)
    assert cascade.steps == ("head", "features") and cascade.spearman.shape == (2, 2)
    assert cascade.params["framework"] == numpy_backend.framework
    indep = metrics.sanity_check(numpy_backend, x, "gradcam", cascading=False, seed=3)
    # the first step re-draws the same layer from the same seed either way
    np.testing.assert_array_equal(indep.randomized[0], cascade.randomized[0])
    assert not np.array_equal(indep.randomized[1], cascade.randomized[1])
    for name in weights:  # the user's model is exactly as it was
        np.testing.assert_array_equal(getattr(numpy_backend.model, name), before[name])


def test_a_torchscript_model_gets_the_check_of_a_pixel_method():
    """TorchScript takes no hooks: its layers are randomised in their registered order."""
    import torch

    eager = tiny_cnn(3, widths=(4, 4), stride=1, inplace=False)
    model = torch.jit.script(eager)
    x = np.random.default_rng(0).random((1, 32, 32, 3)).astype(np.float32)
    result = metrics.sanity_check(model, x, "saliency", steps=2)
    assert result.steps == ("6", "0") and np.isfinite(result.spearman).all()
    assert all(
        torch.equal(a, b) for a, b in zip(model.parameters(), eager.parameters(), strict=True)
    )
