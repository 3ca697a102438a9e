"""torchvision model objects are fed their family's own picture (issue 24, point 1).

An object keeps no record of its weights, so each family's DEFAULT weights'
``transforms()`` are used and said to be assumed, in one line with the fix.
The reference is torchvision's own ``weights.transforms()`` on the PIL photo,
as its reference scripts evaluate the weights.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from PIL import Image

import seewhy
from models import resnet18, torchvision_model
from seewhy.errors import InputGuessWarning
from seewhy.inputs.batches import resize_for_model
from seewhy.spec import guess_note, resolve_spec

torch = pytest.importorskip("torch", reason="needs torch (pip install seewhy[torch])")
tv = pytest.importorskip("torchvision")

PHOTO = seewhy.samples.load("chelsea")  # 300 x 451: not square
#: One builder per family, and every recipe the DEFAULT weights differ by.
FAMILIES = (
    "alexnet",
    "convnext_tiny",
    "densenet121",
    "efficientnet_b0",
    "efficientnet_b3",
    "efficientnet_v2_s",
    "googlenet",
    "inception_v3",
    "maxvit_t",
    "mnasnet0_5",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "regnet_y_400mf",
    "regnet_x_400mf",
    "resnet18",
    "resnet50",
    "resnext50_32x4d",
    "shufflenet_v2_x0_5",
    "squeezenet1_1",
    "swin_t",
    "swin_v2_t",
    "vgg11",
    "vit_b_32",
    "wide_resnet50_2",
)


def _shell(name: str) -> torch.nn.Module:
    """The builder's model with 7 classes, weightless on the meta device where it builds there."""
    extra: dict[str, Any] = {"init_weights": False} if name in ("inception_v3", "googlenet") else {}
    return torchvision_model(name, 7, meta=True, **extra)


def _theirs(weights: Any) -> np.ndarray:
    return weights.transforms()(Image.fromarray(PHOTO)).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("name", FAMILIES)
def test_each_family_gets_its_default_weights_picture_and_says_so(name: str) -> None:
    from seewhy.backends.torch.hints import model_hints

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GoogLeNet's init notice
        model = _shell(name)
    hints = model_hints(model, torch.device("cpu"), torch.float32, try_sizes=False)
    spec = resolve_spec(model, type("B", (), {"hints": lambda self, try_sizes=False: hints})())
    default = tv.models.get_model_weights(name).DEFAULT
    ours = spec.preprocess.normalise(resize_for_model(PHOTO, spec.preprocess))
    np.testing.assert_allclose(ours, _theirs(default), atol=2e-6, rtol=0)
    assert spec.guessed == ("preprocessing",)
    note = guess_note(spec)
    assert note is not None and "\n" not in note
    assert f"{default}" in note and f"'torchvision:{name}'" in note
    assert "preprocess=seewhy.Preprocess.from_torchvision(weights)" in note


@pytest.mark.parametrize(
    "name", ["resnet18", "squeezenet1_1", "mobilenet_v3_small", "shufflenet_v2_x0_5"]
)
def test_logits_equal_the_weights_own_pipeline_and_the_note_is_warned(name: str) -> None:
    model = torchvision_model(name, 5)
    with pytest.warns(InputGuessWarning, match="DEFAULT weights' preprocessing") as seen:
        top = seewhy.predict(model, PHOTO, top_k=5)[0]
    assert len([w for w in seen if w.category is InputGuessWarning]) == 1
    ours = np.array([p.logit for p in sorted(top, key=lambda p: p.index)])
    default = tv.models.get_model_weights(name).DEFAULT
    with torch.inference_mode():
        theirs = model(torch.from_numpy(_theirs(default)).permute(2, 0, 1)[None])[0].numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_named_weights_given_by_the_user_are_followed_and_nothing_is_assumed() -> None:
    model = resnet18(5)
    older = tv.models.ResNet18_Weights.IMAGENET1K_V1
    pre = seewhy.Preprocess.from_torchvision(older)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputGuessWarning)
        ex = seewhy.explain(model, PHOTO, "saliency", preprocess=pre)
    assert ex.input_spec["guessed"] == [] and ex.input_spec["resize"] == 256
    np.testing.assert_allclose(
        pre.normalise(resize_for_model(PHOTO, pre)), _theirs(older), atol=2e-6, rtol=0
    )
    # the transforms themselves read the same, and a record gives the preset back
    assert seewhy.Preprocess.from_torchvision(older.transforms()) == pre
    assert seewhy.spec.preprocess_from_record(ex.input_spec) == pre


def test_a_model_no_builder_makes_says_the_common_recipe_was_assumed() -> None:
    model = resnet18()
    model.fc = torch.nn.Sequential(torch.nn.Linear(512, 64), torch.nn.Linear(64, 3))
    spec = resolve_spec(model)
    assert spec.guessed == ("preprocessing",) and spec.preprocess.resize == 256
    note = guess_note(spec)
    assert note is not None and "no torchvision builder makes this ResNet" in note


def test_a_bad_weights_object_is_one_line() -> None:
    with pytest.raises(seewhy.InvalidInput, match="weights: expected torchvision weights"):
        seewhy.Preprocess.from_torchvision("IMAGENET1K_V1")
