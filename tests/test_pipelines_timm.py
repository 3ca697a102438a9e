"""timm models are fed the very picture ``create_transform(**resolve_data_config(...))`` makes
(issue 24, points 2 and 6): every crop mode, ``crop_pct`` 1.0 and above, non-square sizes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

import seewhy
from models import timm_test_resnet, timm_vit
from seewhy.inputs.batches import resize_for_model
from seewhy.spec import resolve_spec

torch = pytest.importorskip("torch", reason="needs torch (pip install seewhy[torch])")
timm = pytest.importorskip("timm")
from timm.data import create_transform, resolve_data_config  # noqa: E402

PHOTO = seewhy.samples.load("chelsea")  # 300 x 451
PORTRAIT = np.ascontiguousarray(seewhy.samples.load("astronaut")[:, 60:400])  # 512 x 340

#: pretrained_cfg fields -> the case it stands for (the families the issue names).
CASES = {
    "center 0.875 (timm's default)": {"crop_pct": None, "crop_mode": None},
    "center 0.95 bicubic": {"crop_pct": 0.95, "crop_mode": "center", "interpolation": "bicubic"},
    "center 1.0 (CAFormer, DINOv2)": {"crop_pct": 1.0, "crop_mode": "center"},
    "center 1.15 (VOLO: padded)": {"crop_pct": 1.15, "crop_mode": "center"},
    "squash 1.0": {"crop_pct": 1.0, "crop_mode": "squash"},
    "squash 0.9 (NFNet)": {"crop_pct": 0.9, "crop_mode": "squash"},
    "border 1.0": {"crop_pct": 1.0, "crop_mode": "border"},
    "border 0.9": {"crop_pct": 0.9, "crop_mode": "border", "mean": (0.2, 0.5, 0.8)},
    "non-square center": {"input_size": (3, 96, 128), "crop_pct": 0.9},
    "non-square border": {"input_size": (3, 128, 96), "crop_mode": "border"},
}


def _model(fields: dict[str, Any]) -> torch.nn.Module:
    model = timm_test_resnet(6)
    cfg = dict(model.pretrained_cfg)
    cfg.update(fields)
    model.pretrained_cfg = cfg
    return model


def _timm_input(model: torch.nn.Module, photo: np.ndarray) -> torch.Tensor:
    transform = create_transform(**resolve_data_config({}, model=model))
    out: torch.Tensor = transform(Image.fromarray(photo))
    return out


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("photo", [PHOTO, PORTRAIT], ids=["landscape", "portrait"])
def test_every_crop_setting_gives_timms_own_tensor(case: str, photo: np.ndarray) -> None:
    model = _model(CASES[case])
    pre = resolve_spec(model).preprocess
    theirs = _timm_input(model, photo).permute(1, 2, 0).numpy()
    ours = pre.normalise(resize_for_model(photo, pre))
    np.testing.assert_allclose(ours, theirs, atol=2e-6, rtol=0)


@pytest.mark.parametrize(
    "case", ["center 1.0 (CAFormer, DINOv2)", "squash 0.9 (NFNet)", "border 0.9"]
)
def test_logits_equal_timms_on_the_photo(case: str) -> None:
    model = _model(CASES[case])
    with torch.inference_mode():
        theirs = model(_timm_input(model, PHOTO)[None])[0].numpy()
    top = seewhy.predict(model, PHOTO, top_k=6)[0]
    ours = np.array([p.logit for p in sorted(top, key=lambda p: p.index)])
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_crop_pct_one_is_a_short_side_resize_and_crop_not_a_squash() -> None:
    pre = resolve_spec(_model(CASES["center 1.0 (CAFormer, DINOv2)"])).preprocess
    assert (pre.resize, pre.fit) == (pre.size[0], "short")


def _vit_built_for(height: int, width: int) -> torch.nn.Module:
    """A one-block ViT whose patch embedding refuses any size but the one it was built for."""
    return timm_vit((height, width), num_classes=4, depth=1)


def test_a_vit_built_for_224x320_gets_224x320_pictures() -> None:
    model = _vit_built_for(64, 96)
    spec = resolve_spec(model)
    assert spec.preprocess.size == (64, 96) and "patch_embed.img_size" in spec.source
    transform = create_transform(**resolve_data_config({"input_size": (3, 64, 96)}, model=model))
    with torch.inference_mode():
        theirs = model(transform(Image.fromarray(PHOTO))[None])[0].numpy()
    top = seewhy.predict(model, PHOTO, top_k=4)[0]
    ours = np.array([p.logit for p in sorted(top, key=lambda p: p.index)])
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_the_wrong_size_anyway_is_one_line_naming_the_fix() -> None:
    model = _vit_built_for(64, 96)
    with pytest.raises(seewhy.BackendError) as info:
        seewhy.predict(model, PHOTO, preprocess=seewhy.Preprocess(size=(64, 64)))
    message = str(info.value)
    assert "\n" not in message and "64x64" in message and "Preprocess(size=" in message
