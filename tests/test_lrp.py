"""LRP (issue 29, point 1): conservation, the paper's loop, zennit, and the model untouched.

References: a layer-by-layer loop written from the papers' formulas (Bach et al.,
2015; Montavon et al., 2017, 2019; Lapuschkin et al., 2019) on dense matrices of
each layer of a tiny float64 CNN; zennit's ``Gradient`` attributor with the same
composite and canonizer on torchvision's VGG-11 (BatchNorm) and ResNet-18.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import seewhy
from models import (
    lrp_gated_net,
    lrp_group_norm_net,
    lrp_padded_net,
    lrp_plain_net,
    lrp_vgg11_bn,
    randomise_batchnorm,
    timm_test_efficientnet,
    torchvision_model,
)
from seewhy.backends.relevance import Relevance
from seewhy.backends.torch import TorchBackend
from seewhy.errors import InvalidInput, UnsupportedModel
from seewhy.methods.lrp import composite_rules

torch = pytest.importorskip("torch")
nn = torch.nn
AS_IS = seewhy.Preprocess(size=(8, 8), resize=None, mean=(0.0,) * 3, std=(1.0,) * 3, scale=1.0)


def _pictures(n: int, side: int, seed: int = 0, low: float = -1.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, 1.0, (n, side, side, 3)).astype(np.float32)


# -- the paper's loop -----------------------------------------------------------------------


def _dense(layer: Any, shape: tuple[int, ...], weight: Any = None) -> Any:
    """(J, K): the layer's linear map without bias as a matrix (its weights, or ``weight``)."""

    basis = torch.eye(int(np.prod(shape)), dtype=torch.float64).reshape(-1, *shape)
    with torch.no_grad():
        if isinstance(layer, nn.Conv2d):
            w = layer.weight if weight is None else weight
            out = torch.nn.functional.conv2d(basis, w, None, layer.stride, layer.padding)
        elif isinstance(layer, nn.Linear):
            out = torch.nn.functional.linear(basis, layer.weight if weight is None else weight)
        else:
            out = layer(basis)  # average pool
    return out.flatten(1)  # row j: what input unit j alone makes of each output


def _bias(layer: Any, k: int) -> Any:
    b = getattr(layer, "bias", None)
    if b is None:
        return torch.zeros(k, dtype=torch.float64)
    return b.detach().repeat_interleave(k // len(b))  # a conv's bias at each position


def _stab(z: Any, e: float) -> Any:
    return z + e * torch.where(z >= 0, 1.0, -1.0)


def _rule(name: str, x: Any, w: Any, b: Any, r: Any, layer: Any, shape: Any, box: Any) -> Any:
    """One layer's R_j from R_k, as the papers write it (x: (J,), w: (J, K))."""
    c = x[:, None] * w
    if name in ("epsilon", "norm"):
        e = 0.1 if name == "epsilon" else 1e-6
        return c @ (r / _stab(c.sum(0) + b, e))
    if name == "zplus":
        cp = c.clamp(min=0)
        return cp @ (r / _stab(cp.sum(0) + b.clamp(min=0), 1e-6))
    if name == "alphabeta":  # alpha 2, beta 1
        cp, cn = c.clamp(min=0), c.clamp(max=0)
        pos = cp @ (r / _stab(cp.sum(0) + b.clamp(min=0), 1e-6))
        return 2 * pos - cn @ (r / _stab(cn.sum(0) + b.clamp(max=0), 1e-6))
    if name == "gamma":  # inputs after a ReLU are >= 0: x (w + 0.25 w+)
        cg = x[:, None] * (w + 0.25 * w.clamp(min=0))
        return cg @ (r / _stab(cg.sum(0) + b + 0.25 * b.clamp(min=0), 1e-6))
    if name == "flat":  # uniform over each output's receptive field
        ones = torch.ones_like(layer.weight)
        connected = _dense(layer, shape, ones) if isinstance(layer, nn.Conv2d) else ones.T
        return connected @ (r / _stab(connected.sum(0), 1e-6))
    if name == "wsquare":
        w2 = w * w
        return w2 @ (r / _stab(w2.sum(0), 1e-6))
    if name == "zbox":
        lo, hi = (torch.full(shape, v, dtype=torch.float64).flatten() for v in box)
        cb = c - lo[:, None] * w.clamp(min=0) - hi[:, None] * w.clamp(max=0)
        return cb @ (r / _stab(cb.sum(0), 1e-6))
    raise AssertionError(name)


def paper_lrp(net: Any, x: np.ndarray, rules: tuple[str, str, str], box: Any = None) -> Any:
    """(N, C, H, W) relevance of ``net`` (a Sequential), layer by layer from the output."""
    first, conv, dense = rules
    out = []
    for image in torch.from_numpy(x).double().permute(0, 3, 1, 2):
        acts, a = [], image[None]
        for layer in net:
            acts.append(a)
            with torch.no_grad():
                a = layer(a)
        t = int(a.argmax())
        r = torch.zeros(a.shape[1], dtype=torch.float64)
        r[t] = a[0, t]
        weighted = [i for i, m in enumerate(net) if isinstance(m, (nn.Conv2d, nn.Linear))]
        for i in reversed(range(len(net))):
            layer, shape = net[i], tuple(acts[i].shape[1:])
            if isinstance(layer, (nn.ReLU, nn.Flatten)):
                continue
            name = "norm"
            if i in weighted:
                kind = conv if isinstance(layer, nn.Conv2d) else dense
                name = first if i == weighted[0] else kind
            w = _dense(layer, shape)
            x_in = acts[i].detach().flatten()
            r = _rule(name, x_in, w, _bias(layer, w.shape[1]), r, layer, shape, box)
        out.append(r.reshape(acts[0].shape[1:]))
    return torch.stack(out).numpy()


@pytest.fixture(scope="module")
def plain() -> Any:
    return lrp_plain_net()


@pytest.mark.parametrize(
    ("composite", "rules"),
    [
        ("epsilon-plus-flat", ("flat", "zplus", "epsilon")),
        ("epsilon-gamma-box", ("zbox", "gamma", "epsilon")),
        ("epsilon-alpha2-beta1-flat", ("flat", "alphabeta", "epsilon")),
        ("epsilon", ("epsilon",) * 3),
        ("wsquare", ("wsquare",) * 3),
    ],
)
def test_equal_to_the_papers_layer_by_layer_loop(plain: Any, composite: str, rules: Any) -> None:
    x = _pictures(2, 8, seed=1)
    ruleset = composite_rules(composite, epsilon=0.1, low=(-1.0,), high=(1.0,))
    got = TorchBackend(plain).relevance(x, targets=None, rules=ruleset).relevance
    expected = paper_lrp(plain, x, rules, box=(-1.0, 1.0)).transpose(0, 2, 3, 1)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * scale, err_msg=composite)


@pytest.mark.parametrize("build", [lrp_plain_net, lrp_gated_net])
def test_relevance_sums_to_the_logit_on_a_bias_free_relu_net(build: Any) -> None:
    net = build(bias=False, seed=2) if build is lrp_plain_net else build(seed=2)
    x = _pictures(3, 8, seed=3)
    with torch.no_grad():
        plain = net(torch.from_numpy(x).permute(0, 3, 1, 2).to(next(net.parameters())))
    for composite in ("epsilon", "zplus", "epsilon-plus"):
        cap = TorchBackend(net).relevance(
            x,
            targets=np.array([0, 1, 2]),
            rules=composite_rules(composite, epsilon=1e-9, stabilizer=1e-12),
        )
        np.testing.assert_allclose(cap.logits, plain.numpy(), rtol=1e-5, atol=1e-7)  # in place
        logits = cap.logits[np.arange(3), [0, 1, 2]]
        np.testing.assert_allclose(cap.start, logits, rtol=1e-6)
        np.testing.assert_allclose(cap.relevance.sum(axis=(1, 2, 3)), logits, rtol=1e-4)


def test_a_timm_efficientnet_conserves_through_gates_sums_and_batchnorm_act() -> None:
    """Squeeze-excite gates, residual sums, SiLU inside BatchNormAct and timm's pooling:
    bias-free (fresh BatchNorms shift nothing), the relevance still sums to the logit."""
    pytest.importorskip("timm")
    net = timm_test_efficientnet(statistics=False).double()
    for module in net.modules():
        if isinstance(module, nn.Linear | nn.Conv2d) and module.bias is not None:
            nn.init.zeros_(module.bias)
    rules = composite_rules("epsilon", epsilon=1e-30, stabilizer=1e-30)
    cap = TorchBackend(net).relevance(_pictures(2, 32, seed=7), targets=None, rules=rules)
    assert (np.abs(cap.start) > 1e-4).all()  # a score worth sharing out
    np.testing.assert_allclose(cap.relevance.sum(axis=(1, 2, 3)), cap.start, rtol=1e-5)
    assert not cap.unruled and len(cap.merged) == sum(
        isinstance(m, nn.BatchNorm2d) for m in net.modules()
    )


def test_a_layer_without_a_rule_is_named_in_one_warning() -> None:
    with pytest.warns(UserWarning, match=r"no LRP rule for 1 layer\(s\) with weights \(1\)"):
        e = seewhy.explain(lrp_group_norm_net(), _pictures(1, 8), "lrp", preprocess=AS_IS)
    assert np.isfinite(e.extras["attributions"]).all()


# -- zennit ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torchvision_cnns() -> dict[str, Any]:
    resnet = randomise_batchnorm(torchvision_model("resnet18", classes=10), seed=1)
    return {"vgg11_bn": lrp_vgg11_bn(), "resnet18": resnet}


@pytest.mark.parametrize("name", ["vgg11_bn", "resnet18"])
def test_equal_to_zennit_on_torchvision_vgg_and_resnet(name: str, torchvision_cnns: Any) -> None:
    composites = pytest.importorskip("zennit.composites")
    from zennit.attribution import Gradient
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    model = torchvision_cnns[name]
    canonizer = ResNetCanonizer if name == "resnet18" else VGGCanonizer
    x = _pictures(2, 32, seed=4)
    inputs = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        logits = model(inputs)
    t = logits.argmax(1)
    theirs = {"epsilon-plus-flat": composites.EpsilonPlusFlat(canonizers=[canonizer()])}
    if name == "vgg11_bn":  # the paper's loop checks every rule; zennit the default, and z-box
        theirs["epsilon-gamma-box"] = composites.EpsilonGammaBox(
            low=-1.0, high=1.0, canonizers=[canonizer()]
        )

    backend = TorchBackend(model)
    for composite, zennit_composite in theirs.items():
        with Gradient(model=model, composite=zennit_composite) as attributor:
            _, relevance = attributor(inputs, torch.eye(10)[t] * logits.gather(1, t[:, None]))
        zmap = relevance.sum(1).numpy()
        ruleset = composite_rules(composite, low=(-1.0,), high=(1.0,))
        cap = backend.relevance(x, targets=None, rules=ruleset)
        ours = cap.relevance.sum(axis=-1)
        for i in range(2):
            r = np.corrcoef(zmap[i].ravel(), ours[i].ravel())[0, 1]
            assert r >= 0.99, (name, composite, i, r)
        np.testing.assert_allclose(ours.sum(axis=(1, 2)), zmap.sum(axis=(1, 2)), rtol=1e-3)
        batchnorms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        assert len(cap.merged) == batchnorms and not cap.unruled


def test_equal_to_zennit_on_convolutions_of_every_padding_stride_and_grouping() -> None:
    composites = pytest.importorskip("zennit.composites")
    from zennit.attribution import Gradient

    net = lrp_padded_net()
    x = _pictures(2, 9, seed=8, low=0.0)
    inputs = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        logits = net(inputs)
    t = logits.argmax(1)
    theirs = composites.EpsilonGammaBox(low=0.0, high=1.0)
    with Gradient(model=net, composite=theirs) as attributor:
        _, relevance = attributor(inputs, torch.eye(3)[t] * logits.gather(1, t[:, None]))
    rules = composite_rules("epsilon-gamma-box", low=(0.0,), high=(1.0,))
    ours = TorchBackend(net).relevance(x, targets=None, rules=rules).relevance
    expected = relevance.permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


# -- the method: settings, refusals, the model untouched -------------------------------------


def test_the_map_is_the_signed_channel_sum_and_settings_are_recorded(plain: Any) -> None:
    x = _pictures(2, 8, seed=5, low=0.0)
    pre = seewhy.Preprocess(size=(8, 8), resize=None, mean=(0.5,) * 3, std=(0.25,) * 3)
    e = seewhy.explain(plain, x, "lrp", preprocess=pre, composite="epsilon-gamma-box")
    attributions = e.extras["attributions"]
    np.testing.assert_allclose(e.layer_maps, attributions.sum(axis=-1), rtol=1e-6)
    assert (attributions < 0).any() and (attributions > 0).any()  # signed, not rectified
    assert e.params["composite"] == "epsilon-gamma-box"
    assert e.params["low"] == (-2.0,) * 3 and e.params["high"] == (2.0,) * 3  # 0, 255 mapped
    assert e.panel(0, signed=True).size[0] > 0
    ruled = seewhy.explain(
        plain, x, "lrp", preprocess=AS_IS, layer_rules={"0": "epsilon"}, epsilon=0.5
    )
    assert not np.allclose(ruled.extras["attributions"], e.extras["attributions"])


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({"composite": "epsilon-plus-box"}, "composite: expected one of epsilon-plus-flat"),
        ({"composite": "epsilon-alpha2-beta1", "alpha": 3}, "use composite='alphabeta'"),
        ({"layer_rules": {"0": "zz"}}, "layer_rules['0']: expected one of"),
        ({"layer_rules": {"nope": "epsilon"}}, "layer_rules names 'nope'"),
        ({"epsilon": -1}, "epsilon: expected a finite number >= 0"),
    ],
)
def test_bad_settings_are_refused_in_one_line(plain: Any, settings: Any, said: str) -> None:
    with pytest.raises(InvalidInput, match=said.replace("(", r"\(").replace("[", r"\[")) as info:
        seewhy.explain(plain, _pictures(1, 8), "lrp", preprocess=AS_IS, **settings)
    assert "\n" not in str(info.value)


def test_a_model_that_only_predicts_is_refused_in_one_line() -> None:
    box = seewhy.BlackBox(lambda x: np.zeros((len(x), 3), np.float32), size=8, classes=3)
    with pytest.raises(UnsupportedModel, match="LRP") as info:
        seewhy.explain(box, _pictures(1, 8), "lrp", preprocess=AS_IS)
    assert "\n" not in str(info.value)
    assert not isinstance(box, Relevance)


def _state(model: Any) -> dict[str, Any]:
    modules = list(model.modules())
    return {
        "tensors": {
            k: (v, v.detach().clone()) for k, v in model.state_dict(keep_vars=True).items()
        },
        "hooks": [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in modules],
        "training": [m.training for m in modules],
        "grads": [p.grad is None for p in model.parameters()],
        "children": [id(m) for m in modules],
    }


def _same_state(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key, (tensor, values) in before["tensors"].items():
        now, _ = after["tensors"][key]
        assert now is tensor and torch.equal(now.detach(), values), key
    for key in ("hooks", "training", "grads", "children"):
        assert before[key] == after[key], key
    assert torch._C._len_torch_function_stack() == 0


def test_an_efficientnet_keeps_its_modules_weights_and_flags_also_after_an_error() -> None:
    pytest.importorskip("timm")
    net = timm_test_efficientnet(seed=2)
    net.train()  # the user's flag: the pass runs in eval mode on a twin, this stays
    x = _pictures(2, 32, seed=6, low=0.0)
    pre = seewhy.Preprocess(size=(32, 32), resize=None)
    before = _state(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no layer left without a rule
        e = seewhy.explain(net, x, "lrp", preprocess=pre)
    _same_state(before, _state(net))
    assert np.isfinite(e.extras["attributions"]).all() and np.abs(e.layer_maps).max() > 0
    cap = TorchBackend(net).relevance(x, targets=None, rules=composite_rules("epsilon-plus-flat"))
    batchnorms = [n for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert sorted(bn for _, bn in cap.merged) == sorted(batchnorms)

    def fail(module: Any, args: Any, output: Any) -> None:
        raise RuntimeError("the model broke")

    handle = net.conv_head.register_forward_hook(fail)
    before = _state(net)
    with pytest.raises(RuntimeError, match="the model broke"):
        seewhy.explain(net, x, "lrp", preprocess=pre)
    _same_state(before, _state(net))
    handle.remove()
