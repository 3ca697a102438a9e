"""Packaging promises: light import, registry rules, public API."""

from __future__ import annotations

import subprocess
import sys

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
        assert hasattr(seewhy, name), name


def test_unknown_method_parameter_is_rejected() -> None:
    from seewhy.errors import InvalidInput

    with pytest.raises(InvalidInput, match="unknown parameter"):
        seewhy.registry.get("gradcam")(colour="red")
