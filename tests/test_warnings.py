"""seewhy's warnings name the user's line, whichever way into seewhy the call went.

A fixed stacklevel is right for one path only; reached through ``seewhy.explain``
the warnings of ``Explainer.explain`` used to name a line of seewhy's api.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import seewhy
from seewhy import metrics


def flat(batch: np.ndarray) -> np.ndarray:
    """A black box whose scores never change: every map is constant."""
    return np.zeros((len(batch), 2), np.float32)


IMAGES = [np.zeros((16, 16, 3), np.uint8), "no-such-file.png"]

WAYS: dict[str, Callable[[], Any]] = {
    "seewhy.explain": lambda: seewhy.explain(
        seewhy.BlackBox(flat, classes=2), IMAGES, "occlusion", window=8, stride=8
    ),
    "Explainer.explain": lambda: seewhy.Explainer(
        seewhy.BlackBox(flat, classes=2), "occlusion", window=8, stride=8
    ).explain(IMAGES),
    "Explainer()": lambda: seewhy.Explainer(
        seewhy.BlackBox(flat, classes=2), "occlusion", window=8, stride=8
    )(IMAGES),
}


@pytest.mark.parametrize("way", list(WAYS))
def test_explain_warnings_name_the_callers_file(way: str) -> None:
    with pytest.warns(Warning) as caught:
        WAYS[way]()
    files = {type(w.message).__name__: w.filename for w in caught}
    assert set(files) >= {"SkippedInputWarning", "ConstantMapWarning"}, files
    assert set(files.values()) == {__file__}


def test_a_metrics_warning_names_the_callers_file() -> None:
    """deletion on another model than the one explained: its rebuilt inputs do not give the
    explanation's logits back, which it says, at the line that called it."""
    e = seewhy.explain(
        seewhy.BlackBox(flat, classes=2), np.zeros((1, 16, 16, 3), np.uint8), "occlusion", window=8
    )
    other = seewhy.BlackBox(lambda b: np.ones((len(b), 2), np.float32) * 3, classes=2)
    with pytest.warns(UserWarning, match="do not reproduce") as caught:
        metrics.deletion(other, e, steps=4)
    assert {w.filename for w in caught if "reproduce" in str(w.message)} == {__file__}


def test_a_warning_quoting_a_hostile_name_reaches_the_terminal_escaped() -> None:
    """Python prints warnings itself: a name with ESC or U+202E must not act in the terminal."""
    from seewhy._kit.warn import warn_user

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_user("labels: 'cat\x1b]0;pwned\x07' and 'gpj.\u202eexe' were dropped")
    (shown,) = [str(w.message) for w in caught]
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert "cat\\x1b]0;pwned\\x07" in shown and "gpj.\\u202eexe" in shown
