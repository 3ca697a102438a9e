"""The PyTorch backend: correct maps, batching, targets, and no trace left on the model."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import seewhy
from models import (
    bn_dropout_cnn,
    flatten_head_cnn,
    mlp,
    one_conv,
    raising_model,
    reused_activation_cnn,
    tiny_cnn,
)
from seewhy.errors import InvalidInput, LayerNotFound, UnsupportedModel

torch = pytest.importorskip("torch")
nn = torch.nn

CAMS = ["cam", "gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam"]


def _snapshot(model: torch.nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad for p in model.parameters()],
        "modules": [id(m) for m in model.modules()],
        "hooks": [
            (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for m in model.modules()
        ],
        "inplace": [getattr(m, "inplace", None) for m in model.modules()],
    }


def _assert_untouched(model: torch.nn.Module, before: dict) -> None:
    after = _snapshot(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert all(g is None for g in after["grads"]), ".grad was filled"
    assert after["modules"] == before["modules"], "a module was swapped"
    assert after["hooks"] == before["hooks"], "a hook was left behind"
    assert after["inplace"] == before["inplace"]
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    assert torch.is_grad_enabled(), "global grad mode was not restored"


@pytest.mark.parametrize("method", CAMS)
def test_batch_equals_single_calls(method: str, batch: np.ndarray) -> None:
    model = tiny_cnn()
    together = seewhy.explain(model, batch, method=method, target=[0, 1, 2, 3])
    for i in range(len(batch)):
        alone = seewhy.explain(model, batch[i : i + 1], method=method, target=i)
        np.testing.assert_allclose(alone.maps[0], together.maps[i], atol=1e-5)
    split = seewhy.explain(model, batch, method=method, target=[0, 1, 2, 3], batch_size=3)
    np.testing.assert_allclose(split.maps, together.maps, atol=1e-5)


def test_a_prepared_batch_is_taken_as_it_is(batch: np.ndarray) -> None:
    """A seewhy.inputs.Batch skips decoding: same maps, and its own pictures are kept."""
    from seewhy.inputs import Batch

    model = tiny_cnn()
    usual = seewhy.explain(model, batch)
    pictures = np.full((4, 24, 24, 3), 7, np.uint8)  # not what denormalising would give
    prepared = Batch(np.ascontiguousarray(batch.transpose(0, 2, 3, 1)), pictures, tuple("abcd"))
    ex = seewhy.Explainer(model, "gradcam").explain(prepared)
    np.testing.assert_allclose(ex.maps, usual.maps, atol=1e-6)
    assert ex.images is pictures or np.array_equal(ex.images, pictures)
    assert ex.sources == tuple("abcd") and not ex.failures


def test_maps_change_with_the_target(batch: np.ndarray) -> None:
    model = tiny_cnn()
    a = seewhy.explain(model, batch, target=0)
    b = seewhy.explain(model, batch, target=3)
    assert (a.targets == 0).all() and (b.targets == 3).all()
    assert not np.allclose(a.maps, b.maps, atol=1e-3)


def test_default_target_is_top1_and_predictions_are_sorted(batch: np.ndarray) -> None:
    model = tiny_cnn()
    ex = seewhy.explain(model, batch, top_k=3)
    logits = model(torch.from_numpy(batch)).detach().numpy()
    np.testing.assert_array_equal(ex.targets, logits.argmax(1))
    np.testing.assert_allclose(ex.logits, logits, rtol=1e-5, atol=1e-6)
    for preds in ex.predictions:
        assert len(preds) == 3
        probs = [p.probability for p in preds]
        assert probs == sorted(probs, reverse=True)


def test_score_is_the_logit_unless_asked() -> None:
    model = tiny_cnn()
    x = np.random.default_rng(3).normal(size=(2, 3, 24, 24)).astype(np.float32)
    backend = seewhy.backends.backend_for(model)
    inputs = x.transpose(0, 2, 3, 1)
    logit = backend.capture(inputs, layer="2", targets=np.array([1, 1]), gradients=True)
    prob = backend.capture(
        inputs, layer="2", targets=np.array([1, 1]), gradients=True, score="probability"
    )
    # d softmax_1 / dA = p1 * (d z1/dA - sum_j p_j d z_j/dA): not a multiple of d z1/dA
    assert logit.gradients is not None and prob.gradients is not None
    ratio = prob.gradients / np.where(logit.gradients == 0, 1, logit.gradients)
    assert np.nanstd(ratio[0]) > 1e-3
    reference = copy.deepcopy(model)
    reference[3] = nn.ReLU()
    store = {}
    reference[2].register_forward_hook(lambda m, a, o: store.setdefault("a", o))
    out = reference(torch.from_numpy(x))
    (g,) = torch.autograd.grad(out[:, 1].sum(), store["a"])
    np.testing.assert_allclose(logit.gradients, g.numpy(), rtol=1e-5, atol=1e-7)


def test_target_by_name_and_errors() -> None:
    model = tiny_cnn()
    labels = ["cat", "dog", "tank", "cloud", "car"]
    x = np.zeros((2, 3, 24, 24), np.float32)
    ex = seewhy.explain(model, x, target="Tank", labels=labels)
    assert list(ex.targets) == [2, 2] and ex.target_labels == ("tank", "tank")
    with pytest.raises(InvalidInput, match="did you mean 'tank'"):
        seewhy.explain(model, x, target="tnak", labels=labels)
    with pytest.raises(InvalidInput, match="outside"):
        seewhy.explain(model, x, target=9)
    with pytest.raises(InvalidInput, match="one class per image"):
        seewhy.explain(model, x, target=[1, 2, 3])


@pytest.mark.parametrize("method", CAMS)
def test_model_untouched_after_success(method: str, batch: np.ndarray) -> None:
    model = tiny_cnn()
    model[0].weight.requires_grad_(False)  # a frozen layer stays frozen
    model.train()
    model[2].eval()  # mixed flags come back exactly
    before = _snapshot(model)
    seewhy.explain(model, batch, method=method)
    _assert_untouched(model, before)


@pytest.mark.parametrize("method", ["gradcam", "eigencam"])
def test_model_untouched_after_an_exception(method: str, batch: np.ndarray) -> None:
    model = raising_model(tiny_cnn())  # raises inside forward, after the CAM layer has run
    model.train()
    seewhy.layers(model)  # trace once while it still works
    model.fail_after = 0
    before = _snapshot(model)
    with pytest.raises(RuntimeError, match="the model failed on purpose"):
        seewhy.explain(model, batch, method=method, layer="inner.2")
    _assert_untouched(model, before)


def test_model_untouched_after_a_bad_target(batch: np.ndarray) -> None:
    model = tiny_cnn().train()
    before = _snapshot(model)
    with pytest.raises(InvalidInput):
        seewhy.explain(model, batch, target=99)
    _assert_untouched(model, before)


def test_dropout_model_is_explained_in_eval_mode(batch: np.ndarray) -> None:
    model = bn_dropout_cnn(3, seed=0)  # train mode: dropout and batch statistics live
    a = seewhy.explain(model, batch)
    b = seewhy.explain(model, batch)
    np.testing.assert_array_equal(a.maps, b.maps)
    assert model.training


def test_default_layer_skips_pooled_maps_and_follows_inplace_relu() -> None:
    infos, default = seewhy.layers(tiny_cnn())
    assert default == "3"  # the ReLU after the last conv, not the 1x1 pooled output
    assert infos[-1].shape[1:] == (1, 1)


def test_module_called_twice_uses_its_last_call(batch: np.ndarray) -> None:
    model = reused_activation_cnn()
    infos, default = seewhy.layers(model)
    assert default == "act"
    assert next(i for i in infos if i.name == "act").calls == 2
    ex = seewhy.explain(model, batch, method="gradcam", target=1)
    x = torch.from_numpy(batch)
    h1 = model.act(model.conv1(x))
    a = model.act(model.conv2(h1) + h1).detach().requires_grad_(True)
    out = model.fc(torch.relu(a).mean(dim=(2, 3)))
    (g,) = torch.autograd.grad(out[:, 1].sum(), a)
    expected = np.einsum("nc,nchw->nhw", g.mean(dim=(2, 3)).numpy(), a.detach().numpy())
    np.testing.assert_allclose(ex.layer_maps, expected, rtol=1e-4, atol=1e-7)


def test_wrong_layer_name_lists_near_matches(batch: np.ndarray) -> None:
    model = reused_activation_cnn()
    with pytest.raises(LayerNotFound, match="conv2"):
        seewhy.explain(model, batch, layer="conv3")
    with pytest.raises(LayerNotFound, match="no 4-D feature map"):
        seewhy.explain(model, batch, layer="fc")


def test_a_model_without_feature_maps_gets_a_clear_error() -> None:
    with pytest.raises(LayerNotFound, match="no layer with a 4-D output"):
        seewhy.explain(mlp(8), np.zeros((1, 3, 8, 8), np.float32))


def test_cam_refuses_a_head_that_is_not_gap_linear(batch: np.ndarray) -> None:
    model = flatten_head_cnn(24, classes=3)
    with pytest.raises(UnsupportedModel, match="gradcam"):
        seewhy.explain(model, batch, method="cam")


def test_zero_gradient_gives_zero_map_not_nan() -> None:
    model = tiny_cnn()
    with torch.no_grad():
        model[6].weight[2].zero_()
    ex = seewhy.explain(model, np.ones((1, 3, 24, 24), np.float32), target=2)
    assert np.isfinite(ex.maps).all() and (ex.maps == 0).all()


def test_model_with_tuple_output_and_inplace_layer_target(batch: np.ndarray) -> None:
    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny_cnn()

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.net(x), x.mean()

    # layer "net.2" is followed by an in-place ReLU: the capture must keep pre-ReLU values
    model = Pair()
    ex = seewhy.explain(model, batch, layer="net.2", method="gradcam")
    assert ex.layer_maps.shape == (4, 12, 12)
    cap = seewhy.backends.backend_for(model).capture(
        batch.transpose(0, 2, 3, 1), layer="net.2", targets=None, gradients=True
    )
    expected = model.net[2](model.net[1](model.net[0](torch.from_numpy(batch)))).detach()
    np.testing.assert_allclose(cap.activations, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert (cap.activations < 0).any()


class _ViewsAcrossChannels(nn.Module):
    """Flattens with ``view``, which a channels-last input makes raise (or asserts)."""

    def __init__(self, insists: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 24 * 24, 5)
        self.layouts: list[bool] = []
        self.insists = insists

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.layouts.append(x.is_contiguous())
        if self.insists:
            assert x.is_contiguous(), "contiguous input only"
        return self.fc(torch.relu(self.conv(x)).view(len(x), -1))


def test_predict_runs_channels_last_on_cpu_and_agrees(batch: np.ndarray) -> None:
    from seewhy.backends import backend_for

    model = tiny_cnn().eval()
    nhwc = np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
    seen: list[torch.Tensor] = []
    handle = model.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    try:
        logits = backend_for(model).predict(nhwc, batch_size=3)
    finally:
        handle.remove()
    assert [t.is_contiguous(memory_format=torch.channels_last) for t in seen] == [True, True]
    with torch.no_grad():
        usual = model(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(logits, usual, rtol=1e-5, atol=1e-5)
    # an error of the model's own (4 channels for 3) comes through; the layout is kept
    from seewhy.backends.torch.passes import _NEEDS_CONTIGUOUS

    with pytest.raises(RuntimeError, match="channels"):
        backend_for(model).predict(np.zeros((2, 24, 24, 4), np.float32))
    assert model not in _NEEDS_CONTIGUOUS


@pytest.mark.parametrize("insists", [False, True], ids=["view-raises", "asserts"])
def test_predict_falls_back_for_a_model_that_cannot_take_channels_last(
    batch: np.ndarray, insists: bool
) -> None:
    from seewhy.backends import backend_for

    model = _ViewsAcrossChannels(insists).eval()
    nhwc = np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
    before = _snapshot(model)
    logits = backend_for(model).predict(nhwc)
    again = backend_for(model).predict(nhwc)
    _assert_untouched(model, before)
    # one failed channels-last try, then the usual layout only
    assert model.layouts == [False, True, True]
    with torch.no_grad():
        usual = model(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(logits, usual, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(logits, again)
    with pytest.raises(InvalidInput, match="expected a"):
        backend_for(model).predict(nhwc[0])


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_preferred_batch_size_keeps_the_biggest_activation_under_32_mib() -> None:
    """64 channels at 128 x 128 is 4 MiB an image in float32: 8 per pass, 16 in bfloat16."""
    from seewhy.backends.torch import TorchBackend

    wide = one_conv(64, 3)
    x = np.zeros((2, 128, 128, 3), np.float32)
    backend = TorchBackend(wide)
    assert backend.preferred_batch_size(x) == 8
    assert backend.preferred_batch_size(x, "bfloat16") == 16
    assert TorchBackend(wide.double()).preferred_batch_size(x) == 4
    assert TorchBackend(tiny_cnn()).preferred_batch_size(x[:, :24, :24]) == 256  # the cap
    scripted = TorchBackend(torch.jit.script(tiny_cnn()))  # no layers to trace: input x 8
    assert scripted.preferred_batch_size(x) == 2**25 // (8 * 128 * 128 * 3 * 4)
    backend.device = torch.device("cuda")  # only read, never used here
    assert backend.preferred_batch_size(x) == 64
    with pytest.raises(InvalidInput, match="precision"):
        backend.preferred_batch_size(x, "fp8")


def test_backend_lists_copies_randomises_places_and_packs(batch: np.ndarray) -> None:
    """The protocol members the sanity check and the audit use, on the user's model and a copy."""
    import pickle

    from seewhy.backends import Backend, PackedModel, backend_for, unpack_model

    model = tiny_cnn()
    backend = backend_for(model)
    assert isinstance(backend, Backend) and backend.model is model
    nhwc = np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
    assert backend.parameter_layers(nhwc) == [("0", "Conv2d"), ("2", "Conv2d"), ("6", "Linear")]
    before = _snapshot(model)
    copied = backend.copy_model()
    backend_for(copied).randomize_layers(["2"], np.zeros_like)
    assert not copied[2].weight.any() and copied[0].weight.equal(model[0].weight)
    with pytest.raises(LayerNotFound, match="no module 'nope'"):
        backend_for(copied).randomize_layers(["nope"], np.zeros_like)
    assert backend.place(None) is model and backend.place("cpu") is model
    _assert_untouched(model, before)
    packed = backend.pack(pickle)
    assert isinstance(packed, PackedModel) and packed.framework == "torch"
    rebuilt = unpack_model(pickle.loads(pickle.dumps(packed)))
    with torch.no_grad():
        x = torch.from_numpy(batch)
        assert torch.equal(rebuilt(x), model(x))


def test_layer_edit_checks_the_scales(batch: np.ndarray) -> None:
    from seewhy.backends import backend_for

    nhwc = np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
    backend = backend_for(tiny_cnn())
    with pytest.raises(InvalidInput, match=r"scales: expected \(N, E, C\) or \(E, C\)"):
        backend.predict_with_layer_edit(nhwc, layer="2", scales=np.ones((2, 2, 2, 16)))
    empty = backend.predict_with_layer_edit(nhwc, layer="2", scales=np.ones((0, 16)))
    assert empty.shape == (len(nhwc), 0, 0)


def test_explaining_again_builds_one_twin_not_two(
    batch: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The layer is looked up in the kept trace: a second twin per call only to read it
    cost as much as the capture's own (1 ms of a 12 ms VLM answer map)."""
    from seewhy.backends.torch import twin

    explainer = seewhy.Explainer(tiny_cnn(), "gradcam")
    first = explainer.explain(batch)
    built: list[object] = []
    real = twin.build_twin
    monkeypatch.setattr(twin, "build_twin", lambda model: built.append(model) or real(model))
    again = explainer.explain(batch)
    assert len(built) == 1  # the capture's own twin, never the user's model itself
    assert again.layer == first.layer
    np.testing.assert_array_equal(again.maps, first.maps)


def test_a_layer_swapped_after_the_first_explanation_is_traced_anew(batch: np.ndarray) -> None:
    """The kept trace belongs to the model as it was: a block put in place of a layer
    (more modules) is traced again, so its inner layer can be named."""
    model = tiny_cnn()
    explainer = seewhy.Explainer(model, "gradcam")
    before = explainer.explain(batch)
    model[2] = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, stride=2))
    swapped = seewhy.Explainer(model, "gradcam", layer="2.0").explain(batch)
    assert swapped.layer == "2.0"
    assert swapped.layer_maps.shape == before.layer_maps.shape  # the stride-2 conv's own map
