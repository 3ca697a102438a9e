"""The contract every method keeps on every framework, as one table and a few checks.

In the manner of Captum's hook-removal tests: for each registered method,
on torch (``test_contract.py``) and on each Keras backend (``contract_keras.py``,
one sub-process per backend), the model is left exactly as it was after a
success, after a bad target and after the model itself raises; a batch gives
the maps of its single images; the method's settings are all recorded in
``Explanation.params``, defaults included.

``SETTINGS`` holds the smallest settings that keep a method honest and fast
(few samples, masks, steps); a new method must be added here, or the table
test fails.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest

import seewhy
from seewhy.registry import get


def quadrants(picture: np.ndarray) -> np.ndarray:
    """Four superpixels, whatever the picture's size (LIME and KernelSHAP stay cheap)."""
    h, w = picture.shape[:2]
    rows = (np.arange(h) >= h // 2).astype(np.int64)
    cols = (np.arange(w) >= w // 2).astype(np.int64)
    out: np.ndarray = 2 * rows[:, None] + cols[None, :]
    return out


SETTINGS: dict[str, dict[str, Any]] = {
    "ablationcam": {"channels": 2},
    "answer-attention": {},
    "attention-rollout": {"discard_ratio": 0.1},
    "attnlrp": {},
    "generic-attention": {},
    "cam": {},
    "eigencam": {},
    "eigengradcam": {},
    "finercam": {},
    "fullgrad": {},
    "gradcam": {},
    "gradcam++": {},
    "gradcam-elementwise": {},
    "gradient-x-input": {},
    "guided-backprop": {},
    "guided-gradcam": {},
    "hirescam": {},
    "integrated-gradients": {"steps": 4},
    "kpcacam": {},
    "kernelshap": {"samples": 12, "segmentation": quadrants},
    "layercam": {},
    "legrad": {},
    "lime": {"samples": 12, "segmentation": quadrants},
    "lrp": {},
    "occlusion": {"window": 6, "stride": 6},
    "query-attention": {},
    "rise": {"masks": 6},
    "saliency": {},
    "scorecam": {"channels": 2},
    "shapleycam": {},
    "smoothgrad": {"samples": 3},
    "xgradcam": {},
}

# Methods that explain only a generative VLM's Answer (refused in one line for any other
# model): tests/test_answer_attention.py holds their contract, on a tiny LLaVA.
VLM_METHODS = frozenset({"answer-attention"})
# Methods that explain only a DETR-style detector's decoder queries (refused in one line for
# any other model): tests/test_hf_detectors.py holds their contract, on tiny DETRs.
DETECTOR_METHODS = frozenset({"query-attention"})
METHODS = sorted(set(SETTINGS) - VLM_METHODS - DETECTOR_METHODS)
# Methods that read attention matrices: the contract runs them on a tiny ViT, not the CNN.
TRANSFORMER_METHODS = frozenset({"attention-rollout", "attnlrp", "generic-attention", "legrad"})
# Methods only the torch backend serves (Keras refuses them in one line: contract_keras.py).
TORCH_ONLY_METHODS = frozenset({"attnlrp", "fullgrad", "lrp", "legrad", "shapleycam"})
BAD_CLASS = 99  # every contract model has 5 classes

def declared_settings(method: str) -> dict[str, Any]:
    """The method's settings and defaults, read from its keyword-only ``__init__`` parameters."""
    parameters = inspect.signature(get(method).__init__).parameters.values()
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters), method
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def check_params_recorded(method: str, explanation: seewhy.Explanation) -> None:
    """Every declared setting is in ``params``: the value given, else its default.

    A None default is a setting the method works out when used (``cell_size``
    from the image size), so any recorded value will do.
    """
    declared = declared_settings(method)
    given = SETTINGS[method]
    missing = sorted(set(declared) - set(explanation.params))
    assert not missing, f"{method}: params lack {missing}"
    for name, default in declared.items():
        if name not in given and default is None:
            continue
        expected = given.get(name, default)
        assert _same(explanation.params[name], expected), (name, explanation.params[name])


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    return bool(a is b or a == b)


def check_batch_is_its_images(
    explain: Callable[..., seewhy.Explanation],
    x: np.ndarray,
    method: str,
    batch: seewhy.Explanation | None = None,
) -> None:
    """explain(x).maps[i] == explain(x[i:i+1]).maps[0], and the same targets.

    ``batch`` is explain(x) when the caller has it already.
    """
    if batch is None:
        batch = explain(x, method, **SETTINGS[method])
    for i in range(len(x)):
        single = explain(x[i : i + 1], method, **SETTINGS[method])
        assert int(single.targets[0]) == int(batch.targets[i]), (method, i)
        np.testing.assert_allclose(
            single.maps[0], batch.maps[i], rtol=1e-4, atol=1e-4, err_msg=f"{method}, image {i}"
        )


def raises_and_leaves(
    snapshot: Callable[[], Mapping[str, Any]],
    compare: Callable[[Mapping[str, Any], Mapping[str, Any]], None],
    call: Callable[[], object],
    error: type[BaseException] | tuple[type[BaseException], ...],
) -> None:
    """``call()`` raises ``error`` and the state seen by ``snapshot`` is as before."""
    before = snapshot()
    with pytest.raises(error):
        call()
    compare(before, snapshot())


def check_table_covers_the_registry() -> None:
    assert set(SETTINGS) == set(seewhy.methods()), "add the new method to contract.SETTINGS"
