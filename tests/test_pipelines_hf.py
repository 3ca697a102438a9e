"""Hugging Face models are fed their own image processor's picture (issue 24, point 3).

Each processor class transformers ships for image classification is saved
with ``save_pretrained`` beside a tiny random model; seewhy's input on a real
non-square photo must equal the processor's ``pixel_values`` (the default,
torchvision-backed class a folder loads, and a Pillow one the model carries as
``model.image_processor``), and a processor seewhy cannot
reproduce is refused in one line, never followed quietly.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import seewhy
from models import hf_vit_from_folder
from seewhy.inputs.batches import resize_for_model
from seewhy.spec import resolve_spec

torch = pytest.importorskip("torch", reason="needs torch (pip install seewhy[torch])")
transformers = pytest.importorskip("transformers")

PHOTO = seewhy.samples.load("chelsea")  # 300 x 451
PORTRAIT = np.ascontiguousarray(seewhy.samples.load("astronaut")[:, 60:400])  # 512 x 340

#: class -> settings (those the issue names first: DeiT, ConvNext's crop_pct, MobileViT's flip).
PROCESSORS: dict[str, dict[str, Any]] = {
    "DeiTImageProcessor": {},  # 256 x 256, then the centre 224
    "ConvNextImageProcessor": {"crop_pct": 0.9},  # microsoft/resnet-50's too
    "ConvNextImageProcessor-384": {"size": {"shortest_edge": 384}},  # warped, no crop
    "MobileViTImageProcessor": {},  # no normalisation, RGB -> BGR
    "ViTImageProcessor": {"image_mean": [0.5, 0.4, 0.3], "resample": 3},
    "BeitImageProcessor": {"do_center_crop": True},
    "BitImageProcessor": {},
    "CLIPImageProcessor": {},
    "SiglipImageProcessor": {},
    "EfficientNetImageProcessor": {},
    "EfficientNetImageProcessor-offset": {"rescale_offset": True, "include_top": False},
    "LevitImageProcessor": {},
    "MobileNetV1ImageProcessor": {},
    "MobileNetV2ImageProcessor": {},
    "PoolFormerImageProcessor": {},
    "PvtImageProcessor": {},
    "SegformerImageProcessor": {},
}
#: Processors whose pictures are no resize-crop-normalise: refused in one line.
REFUSED = ("ImageGPTImageProcessor", "PerceiverImageProcessor")


def _processor(case: str, pil: bool) -> Any:
    name = case.split("-")[0] + ("Pil" if pil else "")
    return getattr(transformers, name)(**PROCESSORS.get(case, {}))


def _save(tmp_path: Path, processor: Any, side: tuple[int, int]) -> Any:
    """A tiny random ViT at ``side`` with ``processor`` saved beside it, loaded from there."""
    return hf_vit_from_folder(
        tmp_path,
        processor,
        image_size=list(side),
        patch_size=32,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
    )


def _pixels(processor: Any, photo: np.ndarray) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out: torch.Tensor = processor(images=photo, return_tensors="pt")["pixel_values"]
    return out


@pytest.mark.parametrize("pil", [False, True], ids=["torchvision", "pillow"])
@pytest.mark.parametrize("case", list(PROCESSORS))
def test_every_classification_processor_gives_its_own_pixels(
    tmp_path: Path, case: str, pil: bool
) -> None:
    processor = _processor(case, pil)
    theirs = _pixels(processor, PHOTO)
    model = _save(tmp_path, processor, tuple(theirs.shape[-2:]))
    if pil:  # the folder loads transformers' default (torchvision) class: carry this one
        model.image_processor = processor
    spec = resolve_spec(model)
    read = "its image_processor" if pil else "preprocessor_config.json"
    assert read in spec.source and not spec.guessed
    assert spec.preprocess.resampler == ("pillow" if pil else "torchvision")
    for photo in (PHOTO, PORTRAIT):
        expected = _pixels(processor, photo)[0].permute(1, 2, 0).numpy()
        ours = spec.preprocess.normalise(resize_for_model(photo, spec.preprocess))
        np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "case", ["DeiTImageProcessor", "ConvNextImageProcessor", "MobileViTImageProcessor"]
)
def test_logits_equal_the_models_on_its_processors_pixels(tmp_path: Path, case: str) -> None:
    processor = _processor(case, pil=False)
    pixels = _pixels(processor, PHOTO)
    model = _save(tmp_path, processor, tuple(pixels.shape[-2:]))
    with torch.inference_mode():
        theirs = model(pixel_values=pixels).logits[0].numpy()
    top = seewhy.predict(model, PHOTO, top_k=3)[0]
    ours = np.array([p.logit for p in sorted(top, key=lambda p: p.index)])
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_mobilevit_is_fed_bgr_without_normalisation(tmp_path: Path) -> None:
    model = _save(tmp_path, _processor("MobileViTImageProcessor", pil=False), (256, 256))
    pre = resolve_spec(model).preprocess
    assert pre.channel_order == "BGR" and pre.mean == (0.0,) * 3 and pre.std == (1.0,) * 3


@pytest.mark.parametrize("name", REFUSED)
def test_a_processor_seewhy_cannot_reproduce_is_refused_in_one_line(
    tmp_path: Path, name: str
) -> None:
    processor = getattr(transformers, name)()
    _save(tmp_path, processor, (32, 32))
    model = transformers.ViTForImageClassification.from_pretrained(tmp_path).eval()
    with pytest.raises(seewhy.UnsupportedModel) as info:
        seewhy.predict(model, PHOTO)
    message = str(info.value)
    assert "\n" not in message and name in message and "pixel_values" in message


def test_a_processor_that_pads_is_refused_in_one_line(tmp_path: Path) -> None:
    processor = transformers.ViTImageProcessor(size={"height": 32, "width": 32})
    _save(tmp_path, processor, (32, 32))
    path = tmp_path / "preprocessor_config.json"
    path.write_text(
        path.read_text().replace('"do_resize": true', '"do_pad": true, "do_resize": true')
    )
    model = transformers.ViTForImageClassification.from_pretrained(tmp_path).eval()
    with pytest.raises(seewhy.UnsupportedModel, match="do_pad"):
        seewhy.predict(model, PHOTO)


def test_the_user_preprocess_wins_and_nothing_is_checked(tmp_path: Path) -> None:
    processor = transformers.ImageGPTImageProcessor()
    model = _save(tmp_path, processor, (32, 32))
    pre = seewhy.Preprocess(size=(32, 32))
    top = seewhy.predict(model, PHOTO, preprocess=pre, top_k=1)[0]
    assert len(top) == 1
