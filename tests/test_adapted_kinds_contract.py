"""Every method on every adapted kind of model (issue 27): maps, or a one-line refusal.

A detector, SAM or a segmenter reaches the methods through ``adapters.py``; a method
that cannot serve one must say so in one line naming what to use, never crash with
the framework's own error from deep inside a pass. Tiny models (tests/models.py),
one target each that the kind scores, cheap settings for the sampling methods.
"""

from __future__ import annotations

import contextlib
import importlib.util
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import seewhy
from models import (
    hf_mask2former,
    hf_segformer,
    tiny_hf_detector,
    tiny_sam,
    tiny_yolo,
    ultralytics_offline,
    yolo_photo,
)
from seewhy.errors import InvalidInput, SeewhyError, UnsupportedModel
from seewhy.targets import Box, Mask, Region

torch = pytest.importorskip("torch")

SIDE = 32
PLAIN = seewhy.Preprocess(size=(SIDE, SIDE), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
SWIN = seewhy.Preprocess(size=(64, 64), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))  # its size
PHOTO = yolo_photo(SIDE, SIDE)
REGION = np.zeros((SIDE, SIDE), bool)
REGION[8:24, 8:20] = True


def _quarters(picture: np.ndarray) -> np.ndarray:
    """Four superpixels: LIME and Kernel SHAP without a segmentation's cost."""
    h, w = picture.shape[:2]
    return (np.arange(h)[:, None] >= h // 2) * 2 + (np.arange(w)[None, :] >= w // 2)


#: The sampling methods at a few samples each: what is checked is that they run.
CHEAP: dict[str, dict[str, Any]] = {
    "lime": {"samples": 8, "segmentation": _quarters},
    "kernelshap": {"samples": 8, "segmentation": _quarters},
    "rise": {"masks": 4},
    "occlusion": {"window": 16, "stride": 16},
    "integrated-gradients": {"steps": 2},
    "smoothgrad": {"samples": 2},
    "scorecam": {"channels": 4},
    "ablationcam": {"channels": 4},
}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The one line each adaptation says, not shown."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _needs(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")


def _yolo(yaml: str) -> Any:
    _needs("ultralytics")
    ultralytics_offline()
    return tiny_yolo(yaml, imgsz=SIDE)


def _hf(build: Callable[[], Any]) -> Callable[[], Any]:
    def built() -> Any:
        _needs("transformers")
        return build()

    return built


def _sam() -> Any:
    _needs("segment_anything")
    return tiny_sam(side=SIDE)


#: kind -> (builder, target it scores, explain's keywords)
KINDS: dict[str, tuple[Callable[[], Any], Any, dict[str, Any]]] = {
    "sam": (_sam, Mask(points=[(10, 12)]), {}),
    "yolo-detect": (lambda: _yolo("yolov8n.yaml"), Box((4, 4, 20, 20), 0), {}),
    "hf-detr": (_hf(tiny_hf_detector), Box((4, 4, 20, 20), 0), {"preprocess": PLAIN}),
    "hf-segformer": (_hf(hf_segformer), Region(1, REGION), {"preprocess": PLAIN}),
    "hf-mask2former": (_hf(hf_mask2former), Region(2, REGION), {"preprocess": SWIN}),
}


@pytest.fixture(scope="module")
def built() -> Iterator[dict[str, Any]]:
    """Each kind's model, built on first use and kept for the module, then let go."""
    cache: dict[str, Any] = {}
    yield cache
    cache.clear()


def _model(built: dict[str, Any], kind: str) -> Any:
    if kind not in built:
        built[kind] = KINDS[kind][0]()
    return built[kind]


def _cases() -> list[Any]:
    cases = []
    for kind in KINDS:
        for method in seewhy.methods():
            cases.append(pytest.param(kind, method, id=f"{kind}-{method}"))
    return cases


@pytest.mark.parametrize(("kind", "method"), _cases())
def test_every_method_gives_finite_maps_or_refuses_in_one_line(
    built: dict[str, Any], kind: str, method: str
) -> None:
    model = _model(built, kind)
    _, target, keywords = KINDS[kind]
    try:
        with quiet():
            found = seewhy.explain(
                model, PHOTO, method, target=target, **keywords, **CHEAP.get(method, {})
            )
    except SeewhyError as refused:
        said = str(refused)
        assert "\n" not in said and len(said) < 400, said
        assert "use " in said, f"the refusal names nothing to use instead: {said}"
        return
    assert found.maps.shape == (1, *keywords.get("preprocess", PLAIN).size)
    assert np.isfinite(found.maps).all()


def test_sams_windowed_grid_attention_is_refused_without_its_relative_bias() -> None:
    """The windows' (N, H, W, C) input itself refused, not only the bias: a raw unpack
    error before."""
    _needs("segment_anything")
    sam = tiny_sam(side=SIDE)
    for block in sam.image_encoder.blocks:
        block.attn.use_rel_pos = False  # plain scores: only the grid is left to refuse
    with quiet(), pytest.raises(UnsupportedModel, match=r"\(N, H, W, C\) grid.*use gradcam"):
        seewhy.explain(sam, PHOTO, "attention-rollout", target=Mask(points=[(10, 12)]))


def test_a_region_on_a_yolo_detector_without_masks_names_the_seg_model(
    built: dict[str, Any],
) -> None:
    with quiet(), pytest.raises(InvalidInput, match=r"no masks; use a -seg model.*Box\(xyxy"):
        seewhy.explain(_model(built, "yolo-detect"), PHOTO, "gradcam", target=Region(0, REGION))


def test_a_read_only_photo_is_resized_without_a_warning() -> None:
    _needs("torchvision")
    from seewhy.backends.torch.resample import torchvision_resize

    photo = PHOTO.copy()
    photo.flags.writeable = False  # as np.asarray(PIL image) hands it out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = torchvision_resize(photo, (16, 16), "bilinear")
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
