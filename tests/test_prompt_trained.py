"""A dual encoder that has learnt captions points where its prompt says (issue 26, point 5).

The accident covered: a ``Prompt`` map that looks plausible but does not follow
the text (the wrong tokenizer, the wrong text embedding, the wrong layer or
geometry, a score that ignores the prompt). A tiny open_clip CLIP is trained
here on pictures of two coloured shapes with one caption per shape; on
held-out pictures, the map for one shape's caption must peak on that shape and
not on the other, through ``seewhy.targets.Prompt`` and ``seewhy.explain`` only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import seewhy
from models import captioned_clip
from seewhy.errors import InvalidInput
from seewhy.metrics import pointing_game
from seewhy.synthetic import CaptionedShapes, make_captioned_shapes
from seewhy.synthetic.captions import caption_for


@pytest.fixture(scope="module")
def trained() -> Any:
    pytest.importorskip("open_clip", reason="the trained check builds an open_clip CLIP")
    return captioned_clip(make_captioned_shapes(1000, seed=0), seed=0)


@pytest.fixture(scope="module")
def held_out() -> CaptionedShapes:
    return make_captioned_shapes(48, seed=1)  # pictures the model never saw


def _pointing(explanation: Any, data: CaptionedShapes, shape: int) -> float:
    return float(pointing_game(explanation, masks=data.masks[:, shape]).mean)


def test_a_prompts_gradcam_points_at_the_shape_it_names_and_not_at_the_other(
    trained: Any, held_out: CaptionedShapes
) -> None:
    for named in (0, 1):
        prompts = [seewhy.targets.Prompt(c[named]) for c in held_out.captions]
        ex = seewhy.explain(trained, held_out.images, "gradcam", target=prompts)
        on_named, on_other = _pointing(ex, held_out, named), _pointing(ex, held_out, 1 - named)
        assert on_named >= 0.9, f"shape {named}: peak on it in {on_named:.0%} of pictures"
        assert on_other <= 0.1, f"shape {named}: peak on the other shape in {on_other:.0%}"
        assert ex.params["target"][0] == {"kind": "prompt", "text": held_out.captions[0][named]}


def test_occlusion_agrees_that_the_named_shape_carries_the_score(
    trained: Any, held_out: CaptionedShapes
) -> None:
    # A perturbation method, reported beside Grad-CAM: hiding the named shape costs the
    # most. The window covers most of a shape (8-12 px radius at 64 px); the default
    # 8 px window leaves enough of a solid shape's colour to keep the score (~30%).
    prompts = [seewhy.targets.Prompt(c[0]) for c in held_out.captions]
    ex = seewhy.explain(trained, held_out.images, "occlusion", target=prompts, window=24, stride=8)
    on_named, on_other = _pointing(ex, held_out, 0), _pointing(ex, held_out, 1)
    print(f"occlusion (24 px window): named shape {on_named:.2f}, other shape {on_other:.2f}")
    assert on_named >= 0.75 and on_other <= 0.1, (on_named, on_other)


# -- the captioned pictures themselves (numpy only) ------------------------------------


def test_each_caption_names_exactly_one_shape_of_its_picture_and_its_mask_is_that_shape() -> None:
    data = make_captioned_shapes(40, seed=3)
    assert data.images.shape == (40, 64, 64, 3) and data.masks.shape == (40, 2, 64, 64)
    for i, captions in enumerate(data.captions):
        kinds, colours = data.kinds[i], data.colours[i]
        assert len(set(kinds)) == len(set(colours)) == 2  # no word shared by the two shapes
        for k, caption in enumerate(captions):
            assert caption == caption_for(data.colour_names[colours[k]], data.shapes[kinds[k]])
            hue = data.images[i][data.masks[i, k]].astype(float).mean(axis=0)
            assert hue.max() - hue.min() > 100  # a saturated fill, not the pale background
            x0, y0, x1, y1 = data.boxes[i, k]
            ys, xs = np.nonzero(data.masks[i, k])
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
    gap = np.array([_gap(data.masks[i, 0], data.masks[i, 1]) for i in range(len(data))])
    assert gap.min() >= 8  # twice the pointing game's 4 px tolerance: no peak counts for both


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    pa, pb = np.argwhere(a), np.argwhere(b)
    return float(np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1)).min())


def test_the_same_seed_draws_the_same_pictures_and_another_seed_new_ones() -> None:
    a, b, c = (make_captioned_shapes(6, seed=s) for s in (5, 5, 6))
    assert np.array_equal(a.images, b.images) and a.captions == b.captions
    assert not np.array_equal(a.images, c.images)
    part = a.subset([1, 4])
    assert part.captions == (a.captions[1], a.captions[4]) and len(part) == 2


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"objects": 5}, "make_captioned_shapes: objects: expected 2..4"),
        ({"colours": ["red"]}, "make_captioned_shapes: colours: expected 2+ distinct names"),
        ({"shapes": "disc"}, "make_captioned_shapes: shapes: expected a sequence of names"),
        ({"noise": -0.1}, "make_captioned_shapes: noise: expected a finite number >= 0"),
        ({"size": 16}, "make_captioned_shapes: size: expected an integer >= 32"),
    ],
)
def test_a_bad_setting_is_refused_in_one_line_naming_it(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        make_captioned_shapes(2, **settings)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
