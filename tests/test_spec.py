"""The model decides its input (issue 14), PyTorch side: each case a small model built here.

Size, channels, value range, crop and labels come from the caller, then the
model (timm ``pretrained_cfg``, Hugging Face config and image processor,
torchvision objects, the first convolution, sizes tried), then a default
that is said to be a guess. Logits are checked against the model's own
preprocessing pipelines (timm, Hugging Face) on a real photo.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import seewhy
from models import (
    flatten_head_cnn,
    hf_vit_from_folder,
    one_conv,
    resnet18,
    timm_test_resnet,
    torchvision_model,
)
from seewhy.errors import (
    BackendError,
    ConstantMapWarning,
    FewSuperpixelsWarning,
    InputGuessWarning,
    InvalidInput,
)
from seewhy.spec import preprocess_from_record, resolve_spec

torch = pytest.importorskip("torch", reason="needs torch (pip install seewhy[torch])")
nn = torch.nn
PHOTO = seewhy.samples.load("chelsea")  # 300 x 451 RGB


def _pooled(channels: int = 3, classes: int = 10) -> nn.Module:
    return one_conv(8, classes, seed=1, channels=channels)


def _quiet(call: Any, *args: Any, **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call(*args, **kw)


def _quiet_except(kind: type[Warning], call: Any, *args: Any, **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", kind)
        return call(*args, **kw)


# -- hand-built models: size by trying, channels by the first convolution, own size kept --


def test_flatten_head_size_is_found_by_trying_and_the_model_is_left_alone() -> None:
    model = flatten_head_cnn(32).train()
    grads_before = [p.grad for p in model.parameters()]
    with pytest.warns(InputGuessWarning, match="value range|mean"):
        ex = seewhy.explain(model, PHOTO, layer="1")
    assert ex.input_spec["size"] == [32, 32] and "sizes tried" in ex.input_spec["source"]
    assert ex.maps.shape == (1, 32, 32) and "size" not in ex.input_spec["guessed"]
    assert model.training and all(m.training for m in model.modules())
    assert [p.grad for p in model.parameters()] == grads_before
    assert not any(m._forward_hooks for m in model.modules())


def test_a_size_no_trial_finds_is_one_line_naming_the_fix() -> None:
    model = flatten_head_cnn(37)
    with pytest.raises(BackendError) as info:
        _quiet(seewhy.explain, model, PHOTO, layer="1")
    message = str(info.value)
    assert "\n" not in message and "224x224" in message and "Preprocess(size=" in message
    assert "--size" in message
    ex = _quiet(
        seewhy.explain, model, PHOTO, layer="1", preprocess=seewhy.Preprocess(size=(37, 37))
    )
    assert ex.maps.shape == (1, 37, 37) and ex.input_spec["guessed"] == []


def test_one_channel_model_takes_pictures_by_luminance_and_shows_them_in_rgb() -> None:
    model = _pooled(channels=1)
    pre = seewhy.Preprocess(size=(28, 28), mean=(0.5,), std=(0.25,))
    seen: list[torch.Tensor] = []
    handle = model[0].register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    try:
        ex = seewhy.explain(model, PHOTO, preprocess=pre)
    finally:
        handle.remove()
    assert ex.images.shape == (1, 28, 28, 3) and ex.input_spec["channels"] == 1
    # the plain way: Pillow's resize, its own grey conversion (ITU-R 601), then (x/255 - m)/s
    grey = Image.fromarray(PHOTO).resize((28, 28), Image.Resampling.BILINEAR).convert("L")
    expected = (np.asarray(grey, np.float32) / 255.0 - 0.5) / 0.25
    got = next(t for t in seen if t.shape[-2:] == (28, 28))[0, 0].numpy()
    assert np.abs(got - expected).max() <= 1.01 / 255 / 0.25  # Pillow rounds luma its own way
    # without a Preprocess: channels read from the first convolution, the rest said to be guessed
    with pytest.warns(InputGuessWarning, match="value range|mean"):
        ex = seewhy.explain(model, PHOTO)
    assert ex.input_spec["channels"] == 1 and ex.images.shape[-1] == 3


def test_unknown_size_keeps_a_picture_that_fits_and_resizes_a_larger_one() -> None:
    model = _pooled()
    small = np.asarray(Image.fromarray(PHOTO).resize((32, 32)))
    with pytest.warns(InputGuessWarning, match="size 224x224"):
        ex = seewhy.explain(model, small)
    assert ex.maps.shape == (1, 32, 32) and "size" in ex.input_spec["guessed"]
    ex = _quiet(seewhy.explain, model, PHOTO)
    assert ex.maps.shape == (1, 224, 224)


def test_spec_is_recorded_in_json_and_round_trips() -> None:
    pre = seewhy.Preprocess(
        size=(40, 48), resize=52, mean=(0.3,), std=(0.2,), interpolation="bicubic"
    )
    ex = _quiet(seewhy.explain, _pooled(channels=1), PHOTO, preprocess=pre)
    record = ex.to_dict()["input"]
    assert record["size"] == [40, 48] and record["source"] == "preprocess="
    assert preprocess_from_record(record) == pre
    assert "method=" in repr(ex) and len(repr(ex)) < 400 and "\n" not in repr(ex)


def test_wrong_argument_types_get_the_one_line_template() -> None:
    model = _pooled()
    with pytest.raises(InvalidInput, match=r"labels: expected a sequence of class names"):
        seewhy.explain(model, PHOTO, labels=seewhy.Preprocess())
    with pytest.raises(InvalidInput, match=r"preprocess: expected a seewhy.Preprocess"):
        seewhy.explain(model, PHOTO, preprocess=(224, 224))
    with pytest.raises(InvalidInput, match=r"mean and std of one length"):
        seewhy.Preprocess(mean=(0.5, 0.5), std=(0.5, 0.5))


# -- quiet failures: constant maps, superpixels on small pictures ------------------------


def test_torchvision_vit_zero_head_warns_of_a_constant_map_and_reads_its_size() -> None:
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    vit = tv.models.VisionTransformer(
        image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32
    ).eval()
    spec = resolve_spec(vit)
    assert spec.preprocess.size == (32, 32) and spec.labels is not None
    assert spec.guessed == ("preprocessing",)  # no builder makes a 32 px ViT: said to be assumed
    with pytest.warns(ConstantMapWarning, match="zero-initialised"):
        _quiet_except(ConstantMapWarning, seewhy.explain, vit, PHOTO, "saliency")


def test_a_map_negative_everywhere_is_told_apart_from_a_constant_one() -> None:
    """Grad-CAM of a class every feature argues against: the ReLU leaves nothing, for a reason."""
    net = one_conv(2, 2)
    with torch.no_grad():
        net[0].bias.fill_(1.0)  # features positive and varying over the picture
        net[4].weight.copy_(torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
    pre = seewhy.Preprocess(size=(16, 16))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ex = seewhy.explain(net, PHOTO, "gradcam", layer="1", target=0, preprocess=pre)
    said = [str(w.message) for w in seen if issubclass(w.category, ConstantMapWarning)]
    assert len(said) == 1 and "negative everywhere" in said[0] and "zero-initialised" not in said[0]
    assert ex.maps.max() == 0 and ex.layer_maps.max() < 0 < np.ptp(ex.layer_maps)


def test_superpixels_scale_with_a_small_picture_and_warn_when_few_remain() -> None:
    from seewhy._kit.superpixels import segment

    small = np.asarray(Image.fromarray(PHOTO).resize((32, 32)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewSuperpixelsWarning)
        labels = segment(small)
    assert labels.max() + 1 >= 8  # a fixed 4-px kernel leaves 2 here
    with pytest.warns(FewSuperpixelsWarning, match="only 1 superpixel"):
        segment(small, np.zeros((32, 32), np.int64))


# -- timm, Hugging Face, torchvision: the model's own preprocessing --------------------


def test_timm_pretrained_cfg_gives_the_logits_of_timms_own_transform() -> None:
    pytest.importorskip("timm")
    from timm.data import create_transform, resolve_data_config

    model = timm_test_resnet()
    spec = resolve_spec(model)
    cfg = model.pretrained_cfg
    assert (
        spec.preprocess.size == tuple(cfg["input_size"][1:]) and spec.preprocess.mean == cfg["mean"]
    )
    assert spec.labels is not None and len(spec.labels) == 1000 and not spec.guessed
    transform = create_transform(**resolve_data_config({}, model=model))
    with torch.no_grad():
        theirs = model(transform(Image.fromarray(PHOTO))[None]).numpy()
    ours = seewhy.explain(model, PHOTO, "saliency").logits
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_timm_loader_reads_the_same_cfg(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    weights = tmp_path / "w.pt"
    torch.save(timm_test_resnet().state_dict(), weights)
    model = seewhy.load_model("timm:test_resnet", weights=str(weights))
    pre = model.seewhy_spec.preprocess
    assert pre.size == (160, 160) and pre.mean == (0.5, 0.5, 0.5) and pre.resize == 168


def _hf_vit(tmp_path: Path) -> tuple[Any, Any]:
    transformers = pytest.importorskip("transformers")
    labels = {0: "apple", 1: "banana", 2: "cherry"}
    processor = transformers.ViTImageProcessor(
        size={"height": 64, "width": 64},
        image_mean=[0.5, 0.4, 0.3],
        image_std=[0.2, 0.25, 0.3],
        resample=2,
    )
    model = hf_vit_from_folder(
        tmp_path,
        processor,
        image_size=64,
        patch_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    return model, processor


def test_hugging_face_config_and_processor_give_the_processors_logits(tmp_path: Path) -> None:
    model, processor = _hf_vit(tmp_path)
    spec = resolve_spec(model)
    assert spec.preprocess.size == (64, 64) and spec.preprocess.mean == (0.5, 0.4, 0.3)
    assert spec.labels == ("apple", "banana", "cherry") and not spec.guessed
    with torch.no_grad():
        theirs = model(**processor(images=PHOTO, return_tensors="pt")).logits.numpy()
    ex = seewhy.explain(model, PHOTO, "saliency", target="banana")
    np.testing.assert_allclose(ex.logits, theirs, rtol=1e-4, atol=1e-4)
    assert ex.target_labels == ("banana",)
    # the same model built without the folder: its config still gives size and labels
    model.config._name_or_path = ""
    model = type(model)(model.config).eval()
    with pytest.warns(InputGuessWarning, match="mean"):
        ex = seewhy.explain(model, PHOTO, "saliency", target="banana")
    assert ex.maps.shape == (1, 64, 64)


def test_torchvision_inception_object_runs_at_299_with_imagenet_labels() -> None:
    tv = pytest.importorskip("torchvision")
    model = torchvision_model("inception_v3", aux_logits=False, init_weights=False)
    spec = resolve_spec(model)
    assert spec.preprocess.size == (299, 299) and spec.preprocess.resize == 342
    assert spec.labels is not None and spec.labels[0] == "tench"
    assert spec.guessed == ("preprocessing",) and "Inception_V3_Weights" in spec.assumed
    reference = tv.models.Inception_V3_Weights.DEFAULT.transforms()
    assert [reference.crop_size[0], reference.resize_size[0]] == [299, 342]


def test_torchvision_loader_takes_the_weights_own_transforms(tmp_path: Path) -> None:
    tv = pytest.importorskip("torchvision")
    weights = tmp_path / "r18.pt"
    torch.save(resnet18().state_dict(), weights)
    model = seewhy.load_model("torchvision:resnet18", weights=str(weights))
    reference = tv.models.ResNet18_Weights.DEFAULT
    pre = model.seewhy_spec.preprocess
    assert pre.size == (224, 224) and pre.resize == reference.transforms().resize_size[0]
    assert model.seewhy_spec.labels == tuple(reference.meta["categories"])


# -- files that are not what they seem ------------------------------------------------


def test_unknown_file_and_torchscript_layers_say_what_they_are(tmp_path: Path) -> None:
    junk = tmp_path / "model.bin"
    junk.write_bytes(b"\x08\x07\x12\x07pytorch" + bytes(40))  # an ONNX-like protobuf
    with pytest.raises(InvalidInput, match="not a model file seewhy knows"):
        seewhy.load_model(str(junk))
    scripted = tmp_path / "m.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated
        torch.jit.script(_pooled()).save(str(scripted))
    model = seewhy.load_model(str(scripted), trust=True)
    with pytest.raises(seewhy.UnsupportedModel, match="cannot be hooked"):
        _quiet(seewhy.layers, model)


def test_cli_size_option_and_the_one_line_guess_and_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from seewhy.cli import main

    path = tmp_path / "flat37.pt"
    torch.save(flatten_head_cnn(37), path)
    photo = tmp_path / "photo.png"
    Image.fromarray(PHOTO).save(photo)
    common = ["explain", str(photo), "--model", str(path), "--trust-model", "--layer", "1"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("seewhy: error: model: it rejects 224x224") and "--size" in err[-1]
    assert sum("guessed" in line for line in err) == 1 and "Traceback" not in "".join(err)
    assert main([*common, "--size", "37", "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "photo.seewhy.png").is_file()


# -- inputs a model cannot take at all: one line naming the way out (issue 24, point 6) --


def test_a_forward_that_needs_a_second_argument_is_one_line() -> None:
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
            return self.conv(x).mean((2, 3)) + extra

    with pytest.raises(BackendError) as info:
        _quiet(seewhy.predict, TwoInputs(), PHOTO, preprocess=seewhy.Preprocess(size=(32, 32)))
    message = str(info.value)
    assert "\n" not in message and "'extra'" in message and "several inputs yet" in message
    assert "wrap it" in message


def test_a_volume_model_given_photos_is_told_volumes_are_future_work() -> None:
    model = nn.Sequential(
        nn.Conv3d(3, 4, 3), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    with pytest.raises(BackendError) as info:
        _quiet(seewhy.predict, model, PHOTO)
    message = str(info.value)
    assert "\n" not in message and "Conv3d" in message and "(N, C, D, H, W)" in message
    assert "Preprocess(size=" not in message  # no size makes a photo a volume


@pytest.mark.parametrize(
    ("tensor", "said"),
    [
        (torch.zeros(1, 4, 32, 32), "shape (1, 4, 32, 32) has 4 channels (read channels-first)"),
        (torch.zeros(4, 32, 32), "shape (4, 32, 32) has 4 channels (read channels-first)"),
    ],
)
def test_a_four_channel_tensor_is_named_in_the_shape_given(tensor: torch.Tensor, said: str) -> None:
    with pytest.raises(InvalidInput) as info:
        _quiet(seewhy.predict, _pooled(), tensor)
    message = str(info.value)
    assert "\n" not in message and said in message and "x[" in message


def test_new_geometry_fields_round_trip_and_bad_values_are_one_line() -> None:
    pre = seewhy.Preprocess(
        size=(40, 48), resize=(50, 60), fit="contain", fill=(1, 2, 3), crop_rounding="floor"
    )
    ex = _quiet(seewhy.explain, _pooled(), PHOTO, "saliency", preprocess=pre)
    assert preprocess_from_record(ex.to_dict()["input"]) == pre
    assert ex.images.shape[1:3] == (40, 48)
    with pytest.raises(InvalidInput, match=r"Preprocess.resize: expected \(height, width\)"):
        seewhy.Preprocess(resize=256, fit="stretch")
    with pytest.raises(InvalidInput, match=r"Preprocess\.fit: expected one of"):
        seewhy.Preprocess(fit="squash")
