"""``--target``'s text forms, read by the command line (``seewhy.cli.target_text``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seewhy import targets as T
from seewhy.cli.target_text import parse_target
from seewhy.errors import InvalidInput


def _mask(tmp_path: Path) -> Path:
    picture = np.zeros((8, 8), np.uint8)
    picture[2:5, 3:6] = 255
    Image.fromarray(picture).save(tmp_path / "mask.png")
    return tmp_path / "mask.png"


def test_each_text_form_becomes_its_target(tmp_path: Path) -> None:
    labels = ["cat", "dog"]
    box = parse_target("box:1,2,30,40:dog", labels)
    assert isinstance(box, T.Box) and box.xyxy == (1.0, 2.0, 30.0, 40.0) and box.label == 1
    region = parse_target(f"region:cat:{_mask(tmp_path)}", labels)
    assert isinstance(region, T.Region) and region.index == 0 and region.mask.sum() == 9
    assert parse_target("output:3").to_json() == {"kind": "output", "index": 3}
    multi = parse_target("labels:cat,1", labels)
    assert multi.to_json() == {"kind": "multilabel", "indices": [0, 1]}  # type: ignore[union-attr]
    assert parse_target("dog", labels) == "dog"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("box:1,2,x,4", "expected box:x0,y0,x1,y1[:label], got 'x'"),
        ("output:first", "expected output:N, got 'first'"),
        ("region:cat", "expected region:CLASS:mask.png"),
        ("labels:cat,cow", "'cow'"),
    ],
)
def test_a_malformed_text_is_one_line_naming_the_form(text: str, said: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_target(text, ["cat", "dog"])
    assert said in str(refused.value) and "\n" not in str(refused.value)


def test_the_old_python_spelling_still_works_and_warns_once(tmp_path: Path) -> None:
    from seewhy._kit import warn

    warn._SHOWN.clear()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        first = T.parse("output:2")
        second = T.parse(f"region:1:{_mask(tmp_path)}")
    said = [str(w.message) for w in seen if w.category is DeprecationWarning]
    assert len(said) == 1 and "seewhy.targets.parse is deprecated" in said[0]
    assert first.to_json() == parse_target("output:2").to_json()  # type: ignore[union-attr]
    assert isinstance(second, T.Region) and second.index == 1
