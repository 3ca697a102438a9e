"""Packaging promises: light import, registry rules, public API."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

import seewhy
from seewhy.errors import MethodNotFound, SeewhyError
from seewhy.methods.base import Method


def test_import_seewhy_loads_no_framework() -> None:
    code = (
        "import sys, seewhy, seewhy.zoo, seewhy.samples, seewhy.cli;"
        "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'jax', 'cv2', 'matplotlib')"
        " if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import seewhy pulled in {out.stdout.strip()}"


def test_methods_cover_the_cam_family() -> None:
    names = set(seewhy.methods())
    assert {"cam", "gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam"} <= names


def test_registry_refuses_duplicates() -> None:
    with pytest.raises(SeewhyError, match="already registered"):

        @seewhy.register("gradcam")
        class Again(Method):  # pragma: no cover - never used
            def run(self, ctx):  # type: ignore[no-untyped-def]
                raise NotImplementedError


def test_unknown_method_suggests_near_match() -> None:
    with pytest.raises(MethodNotFound, match="gradcam"):
        seewhy.registry.get("gradcma")


def test_all_is_unique_and_exists() -> None:
    # the order is ruff's RUF022 sort, checked by the linter
    assert len(set(seewhy.__all__)) == len(seewhy.__all__)
    for name in seewhy.__all__:
        if name in ("keras", "lightning"):
            # importing these here would load TensorFlow beside torch's compiler in one
            # process (a known crash); that they import is tested in their own files
            assert importlib.util.find_spec(f"seewhy.{name}") is not None, name
        else:
            assert hasattr(seewhy, name), name


def test_unknown_method_parameter_is_rejected() -> None:
    from seewhy.errors import InvalidInput

    with pytest.raises(InvalidInput, match="unknown parameter"):
        seewhy.registry.get("gradcam")(colour="red")


def test_method_settings_are_the_signature() -> None:
    occlusion = seewhy.registry.get("occlusion")
    assert occlusion.param_names() == ("window", "stride", "fill", "copies_per_pass", "seed")
    assert occlusion.defaults()["fill"] == "zeros"
    assert seewhy.Method is Method and {"Context", "Method", "RawResult"} <= set(seewhy.__all__)


@pytest.mark.parametrize(
    ("method", "settings", "message"),
    [
        ("occlusion", {"window": 0}, "occlusion: window: expected a positive integer, got 0"),
        ("occlusion", {"fill": "glitter"}, "occlusion: fill: expected a number, an RGB triple"),
        ("rise", {"p": 1.5}, r"rise: p: expected a number in \(0, 1\], got 1.5"),
        ("smoothgrad", {"noise": -1}, "smoothgrad: noise: expected a finite number >= 0"),
        ("ig", {"rule": "simpson"}, "integrated-gradients: rule: expected one of gausslegendre"),
        ("lime", {"explainer": "anchor"}, "lime: explainer: expected one of lime, shap"),
        ("gradcam", {"guided": "yes"}, "gradcam: guided: expected True or False"),
        ("scorecam", {"copies_per_pass": 0}, "scorecam: copies_per_pass: expected a positive"),
    ],
)
def test_bad_settings_raise_when_the_explainer_is_built(method, settings, message) -> None:
    from seewhy.errors import InvalidInput

    model = object()  # never reached: the settings are checked before the model is looked at
    with pytest.raises(InvalidInput, match=message):
        seewhy.Explainer(model, method, **settings)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("explain", "explain: unknown keyword 'targets'; did you mean 'target'?"),
        ("Explainer", "Explainer: unknown keyword 'targets'; did you mean 'target' (a keyword of"),
    ],
)
def test_unknown_keyword_is_the_callers_with_the_nearest_spelling(call, message) -> None:
    from seewhy.errors import InvalidInput

    function = getattr(seewhy, call)
    args = (object(), np.zeros((1, 8, 8, 3), np.float32)) if call == "explain" else (object(),)
    with pytest.raises(InvalidInput, match=message.replace("?", r"\?").replace("(", r"\(")):
        function(*args, method="gradcam", targets=1)


def test_a_setting_of_another_method_says_whose_it_is() -> None:
    from seewhy.errors import InvalidInput

    with pytest.raises(InvalidInput, match=r"'samples'; it is a setting of .*smoothgrad.*gradcam"):
        seewhy.explain(object(), np.zeros((1, 8, 8, 3)), "gradcam", samples=10)
    with pytest.raises(InvalidInput, match="did you mean 'samples'"):
        seewhy.explain(object(), np.zeros((1, 8, 8, 3)), "smoothgrad", sample=10)
