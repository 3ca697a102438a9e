"""Explainer.explain over several batches: every row of the result belongs to one input.

The accident this guards: images are read ``batch_size`` at a time, a bad
file is dropped from its batch, and per-image targets are given by position
among all inputs. A row that slips by one gives a map, a target or a picture
of the neighbouring image, and nothing else would notice.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import seewhy
from models import audit_model
from seewhy.api import explainer_keywords
from seewhy.errors import SkippedInputWarning

torch = pytest.importorskip("torch")


def _pictures(folder: Path) -> list[str]:
    """Five inputs: four distinct noise pictures and, in the middle, a broken file."""
    rng = np.random.default_rng(3)
    paths = []
    for k in range(5):
        path = folder / f"p{k}.png"
        if k == 2:
            path.write_bytes(b"\x89PNG\r\n\x1a\n broken")
        else:
            Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
def test_rows_line_up_across_batches_and_a_bad_file(tmp_path: Path, method: str) -> None:
    paths = _pictures(tmp_path)
    targets = [1, 0, 1, 1, 0]  # by position among all five: the broken file's is dropped
    model = audit_model()
    explainer = seewhy.Explainer(model, method, batch_size=2, top_k=1)
    with pytest.warns(SkippedInputWarning, match="p2.png"):
        ex = explainer.explain(paths, target=targets)
    kept = [0, 1, 3, 4]
    assert ex.sources == tuple(paths[k] for k in kept)
    assert ex.targets.tolist() == [targets[k] for k in kept]
    assert [f.source for f in ex.failures] == [paths[2]]
    assert len(ex.maps) == len(ex.images) == len(ex.photos) == len(ex.predictions) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the constant-map note, if any, is said above
        alone = [
            seewhy.Explainer(model, method, top_k=1).explain(paths[k], target=targets[k])
            for k in kept
        ]
    for one in alone[1:]:  # neighbours differ: a row shifted by one could not pass below
        assert np.abs(one.maps[0] - alone[0].maps[0]).max() > 1e-2
    for row, one in enumerate(alone):  # batched BLAS sums in another order: 1e-4
        np.testing.assert_allclose(ex.maps[row], one.maps[0], rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(ex.logits[row], one.logits[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(ex.images[row], one.images[0])
        assert ex.predictions[row][0].index == one.predictions[0][0].index
        assert ex.target_labels[row] == one.target_labels[0]
    assert ex.params == alone[0].params and ex.layer == alone[0].layer
    assert ex.input_spec == alone[0].input_spec


def test_explain_takes_every_explainer_keyword_with_the_same_default(tmp_path: Path) -> None:
    """``explain`` spells Explainer's keywords out; an option added to one only would be lost."""
    mirror = inspect.signature(seewhy.explain).parameters
    own = inspect.signature(seewhy.Explainer.__init__).parameters
    for name in explainer_keywords():
        assert (mirror[name].default, mirror[name].annotation) == (
            own[name].default,
            own[name].annotation,
        ), name
    path = _pictures(tmp_path)[0]
    ex = seewhy.explain(audit_model(), path, "occlusion", top_k=1, photos=False, window=(8, 8))
    assert len(ex.predictions[0]) == 1 and ex.photos == (None,)
    assert ex.params["window"] == (8, 8)
