"""Each photo fed at the size its VLM's own processor gives it (tiny random Qwen2-VL and
LLaVA-NeXT, offline).

What a user would check by hand, with two photos of different aspect in one
call: the pixels and grids (Qwen2-VL) or tiles (LLaVA-NeXT) the vision tower
is fed are the processor's own for those photos; each photo's answer score
is the model's own teacher-forced log-probability on the processor's inputs;
a photo explained with others lands on the photo where it lands alone; and
the stream that feeds them keeps the input order and reports bad items.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import seewhy  # noqa: E402
from models import tiny_llava_next, tiny_qwen2_vl  # noqa: E402
from seewhy.inputs import BatchStream  # noqa: E402
from seewhy.inputs.batches import resize_for_model  # noqa: E402
from seewhy.preprocess import Preprocess  # noqa: E402
from seewhy.spec import preprocess_from_record  # noqa: E402
from seewhy.targets import Answer  # noqa: E402
from seewhy.viz.geometry import onto_photo  # noqa: E402
from seewhy.vlm import adapt, generative_tiles  # noqa: E402
from seewhy.vlm.generative_models import VisionPath  # noqa: E402

PROMPT = "what is this ?"
ANSWER = "a red cat"
RNG = np.random.default_rng(7)
WIDE = RNG.integers(0, 256, (40, 60, 3), dtype=np.uint8)  # Qwen2-VL: 32x64
TALL = RNG.integers(0, 256, (70, 30, 3), dtype=np.uint8)  # Qwen2-VL: 64x32; LLaVA-NeXT: 64x32
FLAT = RNG.integers(0, 256, (30, 60, 3), dtype=np.uint8)  # LLaVA-NeXT: the 32x64 pinpoint


def _explain(model: Any, processor: Any, images: Any, **kw: Any) -> Any:
    kw.setdefault("target", Answer(ANSWER, prompt=PROMPT))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return seewhy.explain(model, images, "gradcam", processor=processor, **kw)


def _own_score(model: Any, processor: Any, photo: np.ndarray) -> float:
    """The answer's teacher-forced log-probability from the model's own forward on its
    processor's inputs for ``photo``."""
    turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    text = processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
    inputs = dict(processor(text=[text], images=[photo], return_tensors="pt"))
    answer = processor.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    inputs["input_ids"] = torch.cat([inputs["input_ids"], torch.tensor([answer])], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    if "mm_token_type_ids" in inputs:  # Qwen2-VL: the answer's tokens are text (0)
        types = inputs["mm_token_type_ids"]
        tail = torch.zeros((1, len(answer)), dtype=types.dtype)
        inputs["mm_token_type_ids"] = torch.cat([types, tail], dim=1)
    with torch.no_grad():
        logits = model(**inputs).logits[0, -len(answer) - 1 : -1].float()
    return float(torch.log_softmax(logits, -1)[torch.arange(len(answer)), answer].sum())


@pytest.fixture(scope="module")
def qwen() -> Any:
    return tiny_qwen2_vl()


@pytest.fixture(scope="module")
def both(qwen: Any) -> tuple[Any, list[dict[str, Any]]]:
    """Both photos explained in one call, and the pixel inputs each pass fed the tower."""
    fed: list[dict[str, Any]] = []
    own = VisionPath.image_kwargs

    def recorded(self: Any, pixels: Any) -> Any:
        found = own(self, pixels)
        fed.append({key: value.detach().clone() for key, value in found.items()})
        return found

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(VisionPath, "image_kwargs", recorded)
        found = _explain(*qwen, [WIDE, TALL])
    return found, fed


@pytest.fixture(scope="module")
def alone(qwen: Any) -> Any:
    return _explain(*qwen, WIDE)


def test_the_tower_is_fed_the_processors_own_pixels_and_grids_for_each_photo(
    qwen: Any, both: Any
) -> None:
    processor = qwen[1]
    found, fed = both
    theirs = processor.image_processor(images=[WIDE, TALL], return_tensors="pt")
    assert theirs["image_grid_thw"].tolist() == [[1, 4, 8], [1, 8, 4]]  # two sizes
    rows = dict(zip(((4, 8), (8, 4)), theirs["pixel_values"].split(32), strict=True))
    grids = set()
    for each in fed:  # every pass (the layer's, the score's): one photo, as its processor makes it
        (grid,) = each["image_grid_thw"].tolist()
        grids.add(tuple(grid))
        np.testing.assert_allclose(each["pixel_values"], rows[grid[1], grid[2]], atol=1e-5)
    assert grids == {(1, 4, 8), (1, 8, 4)}
    assert found.input_spec["fed_sizes"] == [[32, 64], [64, 32]]


def test_each_photos_score_is_the_models_own_on_its_processors_inputs(qwen: Any, both: Any) -> None:
    found = both[0]
    for i, photo in enumerate((WIDE, TALL)):
        expected = _own_score(*qwen, photo)
        assert found.extras["target_score"][i] == pytest.approx(expected, abs=1e-3)
    assert found.extras["target_score"][0] != pytest.approx(found.extras["target_score"][1])


def test_a_photo_explained_with_another_lands_where_it_lands_alone(both: Any, alone: Any) -> None:
    found = both[0]
    # alone: the Explanation is at the size the model saw, over the whole photo
    assert alone.maps.shape == (1, 32, 64) and alone.layer_maps.shape == (1, 2, 4)
    assert alone.photo(0).box == (0.0, 0.0, 40.0, 60.0)
    # together: each photo laid onto the 64x64 canvas, its aspect kept, padded with nothing
    assert found.maps.shape == (2, 64, 64) and found.images.shape == (2, 64, 64, 3)
    assert found.maps[0, :8].max() == 0 and found.maps[1, :, :14].max() == 0
    mine, inside = onto_photo(found.maps[0], found.photo(0))
    single, _ = onto_photo(alone.maps[0], alone.photo(0))
    assert inside.all() and mine.shape == single.shape == (40, 60)
    assert np.corrcoef(mine.ravel(), single.ravel())[0, 1] > 0.98
    tall, inside = onto_photo(found.maps[1], found.photo(1))
    assert inside.all() and tall.shape == (70, 30) and tall.std() > 0


def test_the_record_feeds_the_photo_again_as_the_model_saw_it(alone: Any) -> None:
    pre = preprocess_from_record(alone.input_spec)
    assert pre.size == (32, 64) and pre.resampler == "torchvision"
    np.testing.assert_array_equal(resize_for_model(WIDE, pre), alone.images[0])
    assert alone.input_spec["fed_sizes"] == [[32, 64]]


def test_a_preprocess_the_caller_passes_feeds_every_photo_at_its_one_size(qwen: Any) -> None:
    model, processor = qwen
    canvas = adapt(model, processor=processor).preprocess  # type: ignore[union-attr]
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        found = seewhy.explain(
            model, [WIDE, TALL], "gradcam", processor=processor, preprocess=canvas,
            target=Answer(ANSWER, prompt=PROMPT),
        )  # fmt: skip
    assert found.maps.shape == (2, 64, 64) and "fed_sizes" not in found.input_spec
    line = next(str(w.message) for w in said if "Qwen2VL" in str(w.message))
    assert "each fed at the size its processor gives it" in line and "64x64 canvas" in line


def test_a_photo_its_processor_refuses_is_skipped_and_the_others_explained(qwen: Any) -> None:
    strip = np.zeros((2, 500, 3), np.uint8)  # an aspect beyond the processor's 200
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        found = seewhy.explain(
            *qwen[:1], [WIDE, strip, WIDE], "gradcam", processor=qwen[1],
            target=Answer(ANSWER, prompt=PROMPT),
        )  # fmt: skip
    assert found.sources == ("<array 0>", "<array 2>") and found.maps.shape == (2, 32, 64)
    (failure,) = found.failures
    assert "refuses a 2x500 photo" in failure.reason and "crop it" in failure.reason
    assert any("skipped: <array 1>" in str(w.message) for w in said)


@pytest.fixture(scope="module")
def llava_next() -> Any:
    """Tiny LLaVA-NeXT (pinpoints 32x64, 64x32, 64x64), two photos explained in one call, and
    the views (base image, tiles) each pass cut."""
    model, processor = tiny_llava_next()
    cut: list[Any] = []
    own = generative_tiles._views

    def recorded(path: Any, pixels: Any) -> Any:
        found = own(path, pixels)
        cut.append(found[0].detach().clone())
        return found

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(generative_tiles, "_views", recorded)
        found = _explain(model, processor, [FLAT, TALL])
    return model, processor, found, cut


def test_llava_next_cuts_each_photo_into_the_tiles_its_processor_picks(llava_next: Any) -> None:
    _, processor, found, cut = llava_next
    theirs = processor.image_processor(images=[FLAT, TALL], return_tensors="pt")
    assert theirs["pixel_values"].shape[1] == 3  # a base image and two tiles each
    tiles = {(1, 2): theirs["pixel_values"][0, 1:], (2, 1): theirs["pixel_values"][1, 1:]}
    grids = set()
    for views in cut:  # every pass: one photo, its tiles as its processor cuts them
        match = [k for k, v in tiles.items() if torch.allclose(views[0, 1:], v, atol=1e-5)]
        assert len(match) == 1
        grids.add(match[0])
    assert grids == {(1, 2), (2, 1)} and found.input_spec["fed_sizes"] == [[32, 64], [64, 32]]


def test_llava_next_scores_each_photo_on_its_own_pinpoint_canvas(llava_next: Any) -> None:
    """The model's own forward on its processor's inputs for the photo in its pinpoint (the
    base image is shrunk from that canvas, which is what is left of the processor's own)."""
    model, processor, found, _ = llava_next
    sizes = adapt(model, processor=processor).sizes  # type: ignore[union-attr]
    for i, photo in enumerate((FLAT, TALL)):
        canvas = resize_for_model(photo, sizes(*photo.shape[:2]))
        assert canvas.shape[:2] == ((32, 64), (64, 32))[i]
        expected = _own_score(model, processor, canvas)
        assert found.extras["target_score"][i] == pytest.approx(expected, abs=1e-3)


def _by_width(height: int, width: int) -> Preprocess:
    """A photo's own preprocessing in a test: wide photos 8x16, the others 16x8."""
    size = (8, 16) if width > height else (16, 8)
    return Preprocess(size=size, resize=size, fit="stretch", mean=(0.0,) * 3, std=(1.0,) * 3)


def test_the_stream_batches_neighbours_of_one_size_in_order_and_reports_bad_items() -> None:
    wide, tall = np.zeros((10, 20, 3), np.uint8), np.zeros((20, 10, 3), np.uint8)
    items = [wide, wide, tall, np.zeros((0, 4, 3), np.uint8), wide]
    pre = Preprocess(size=(12, 12), resize=(12, 12), fit="contain", fill=(0,))
    groups = list(BatchStream(items, pre, size=5, per_photo=_by_width))
    batches = [b for b, _ in groups]
    assert [b.indices for b in batches] == [(0, 1), (2,), (4,)]  # order kept, one size each
    assert [b.inputs.shape[1:3] for b in batches] == [(8, 16), (16, 8), (8, 16)]
    assert [b.fed.size for b in batches] == [(8, 16), (16, 8), (8, 16)]  # type: ignore[union-attr]
    failures = [f for _, failed in groups for f in failed]
    assert len(failures) == 1 and "<array 3>" in failures[0].reason
    assert batches[0].photos[0].box == (0.0, 0.0, 10.0, 20.0)  # type: ignore[union-attr]
