"""seewhy without PyTorch: the numpy-only tests, run again where ``import torch`` fails.

torch is an optional extra, yet it is installed wherever the suite runs, so an
``import torch`` slipping into ``import seewhy``, the numpy backend, a black
box's path or the metrics would pass every other test. Here a fresh pytest
process runs the tests that need no framework with torch blocked the way a
missing package is (``sys.modules["torch"] = None``: ``import torch`` raises
ImportError, ``importlib.util.find_spec`` says it is absent); every package
that imports torch fails with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from keras_helpers import ROOT

# Tests that need no framework, chosen to be quick (a few seconds together), and how many of
# each must pass (a little under today's count): fewer means tests were skipped or lost, not run.
NUMPY_ONLY_FILES = {
    "tests/test_numpy_backend.py": 15,  # the method math on the closed-form backend
    "tests/test_blackbox.py": 12,  # black boxes: plain functions, the predict-only path
    "tests/test_explain_safety.py": 200,  # explain's argument checks
    "tests/test_metrics_localisation.py": 5,  # the localisation metrics
}

BLOCKED_RUN = """
import sys

sys.modules["torch"] = None  # what Python does for a package that is not there
try:
    import torch
except ImportError:
    pass
else:
    sys.exit("the block let torch in")

import pytest

code = pytest.main(sys.argv[1:])
if sys.modules.get("torch") is not None:
    sys.exit("torch was imported around the block")
sys.exit(code)
"""


def _passed_per_file(report: Path) -> dict[str, int]:
    """Passed tests by file, from pytest's JUnit report (a classname is the dotted path)."""
    passed = dict.fromkeys(NUMPY_ONLY_FILES, 0)
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        if any(child.tag in ("failure", "error", "skipped") for child in case):
            continue
        file = "/".join(case.get("classname", "").split(".")[:2]) + ".py"
        passed[file] = passed.get(file, 0) + 1
    return passed


def test_the_numpy_only_tests_pass_with_torch_blocked(tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    command = [sys.executable, "-c", BLOCKED_RUN, "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [*command, f"--junitxml={report}", *NUMPY_ONLY_FILES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = (done.stdout + done.stderr)[-4000:]
    if done.returncode != 0:
        pytest.fail(f"the torch-less run failed (exit {done.returncode}):\n{output}")
    passed = _passed_per_file(report)
    short = {
        file: (passed[file], least)
        for file, least in NUMPY_ONLY_FILES.items()
        if passed[file] < least
    }
    assert not short, f"passed, at least expected (skipped or lost, not run): {short}\n{output}"
