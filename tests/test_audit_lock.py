"""Issue 23, point 4: two audits into one ``--out`` at once, and a lock left by a killed run.

The race is real: separate processes started together, each a full
``seewhy audit`` (or a bare lock taker, for many contenders). A run holds the
folder from before its model loads to its report, so the loser must be
refused in one line that names the winner's pid, and the folder must end up
holding the winner's data set only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from seewhy.audit.lock import LOCK, acquire, hold
from seewhy.errors import InvalidInput
from test_audit_store_safety import LABELS, make_data, run, snapshot

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]

#: A model whose forward waits for a file, so the first run holds the lock until the test says.
GATED_MODEL = textwrap.dedent(
    """
    import os, time
    import torch
    from models import tiny_cnn

    class Gated(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_cnn(3, 0, widths=(4, 4), inplace=False)

        def forward(self, x):
            deadline = time.monotonic() + 120
            while not os.path.exists(os.environ["GATE"]) and time.monotonic() < deadline:
                time.sleep(0.02)
            return self.net(x)
    """
)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    paths = [str(tmp_path), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(paths), **extra}


def _gated_model_file(tmp_path: Path) -> Path:
    (tmp_path / "gated.py").write_text(GATED_MODEL)
    sys.path.insert(0, str(tmp_path))
    try:
        import gated

        import seewhy

        model = gated.Gated()
        model.seewhy_spec = seewhy.ModelSpec(
            name="gated", preprocess=seewhy.Preprocess(size=(32, 32)), labels=LABELS
        )
        torch.save(model, tmp_path / "gated.pth")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("gated", None)
    return tmp_path / "gated.pth"


def _other_data(root: Path) -> Path:
    root.mkdir()
    for k in range(3):
        Image.new("RGB", (40, 36), (40 * k, 90, 200 - 40 * k)).save(root / f"other{k}.png")
    return root


def test_two_audits_racing_into_one_folder_one_is_refused_naming_the_other(
    tmp_path: Path,
) -> None:
    model = _gated_model_file(tmp_path)
    sets = [make_data(tmp_path / "cats"), _other_data(tmp_path / "others")]
    out, gate = tmp_path / "shared", tmp_path / "go"
    env = _env(tmp_path, GATE=str(gate))

    def start(data: Path) -> subprocess.Popen[str]:
        argv = [sys.executable, "-m", "seewhy.audit", str(data), "--model", str(model)]
        argv += ["--trust-model", "--out", str(out), "--quiet", "--batch-size", "2"]
        return subprocess.Popen(
            argv, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    runs = [start(data) for data in sets]
    deadline = time.monotonic() + 120
    while all(p.poll() is None for p in runs):  # the winner waits at the gate: the loser ends
        assert time.monotonic() < deadline, "neither run ended"
        time.sleep(0.05)
    loser = next(i for i, p in enumerate(runs) if p.poll() is not None)
    winner = 1 - loser
    _, err = runs[loser].communicate()
    lines = err.strip().splitlines()
    assert runs[loser].returncode != 0 and len(lines) == 1, err
    assert "is in use by another seewhy audit" in lines[0]
    assert f"pid {runs[winner].pid} on " in lines[0] and "Traceback" not in err
    gate.touch()
    _, err = runs[winner].communicate(timeout=180)
    assert runs[winner].returncode == 0, err
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert summary["images"] == (6 if winner == 0 else 3)  # the winner's data set, only
    assert not (out / LOCK).exists()


LOCK_TAKER = textwrap.dedent(
    """
    import os, sys, time
    from seewhy.audit.lock import acquire
    from seewhy.errors import InvalidInput
    out, gate = sys.argv[1], sys.argv[2]
    while not os.path.exists(gate):
        time.sleep(0.005)
    try:
        lock = acquire(__import__("pathlib").Path(out))
    except InvalidInput as exc:
        print("refused", exc)
        sys.exit(1)
    print("took", os.getpid(), flush=True)
    time.sleep(float(sys.argv[3]))
    lock.release()
    """
)


def test_of_many_processes_released_at_once_exactly_one_takes_the_lock(tmp_path: Path) -> None:
    script = tmp_path / "take.py"
    script.write_text(LOCK_TAKER)
    out, gate = tmp_path / "out", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(out), str(gate), "3"],
            env=_env(tmp_path),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(6)
    ]
    time.sleep(2.0)  # every process has imported seewhy and waits at the gate
    gate.touch()
    outputs = [p.communicate(timeout=60) for p in procs]
    took = [p.pid for p, (o, _) in zip(procs, outputs, strict=True) if o.startswith("took")]
    refused = [o for o, _ in outputs if o.startswith("refused")]
    assert len(took) == 1 and len(refused) == 5, outputs
    assert all(f"pid {took[0]} on " in line for line in refused)
    assert not out.exists()  # the folder the winner made is gone with its lock


def test_a_lock_left_by_a_killed_run_is_taken_over_and_said(tmp_path: Path) -> None:
    data, out = make_data(tmp_path / "data"), tmp_path / "out"
    script = tmp_path / "take.py"
    script.write_text(LOCK_TAKER)
    (tmp_path / "go").touch()
    holder = subprocess.Popen(
        [sys.executable, str(script), str(out), str(tmp_path / "go"), "600"],
        env=_env(tmp_path),
        text=True,
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdout.readline().startswith("took")
    with pytest.raises(InvalidInput, match=f"pid {holder.pid} on "):
        run(data, out)  # alive: refused
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (out / LOCK).is_file()  # the killed run had no chance to remove it
    result = run(data, out)
    assert result.summary["explained"] == 6 and not (out / LOCK).exists()
    taken = [n for n in result.notes if n.startswith("took over the lock")]
    assert len(taken) == 1 and f"pid {holder.pid} on " in taken[0]


def test_a_planted_lock_link_or_a_users_file_of_that_name_is_left_alone(tmp_path: Path) -> None:
    victim = tmp_path / "mine.txt"
    victim.write_bytes(b"mine")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK).symlink_to(victim)
    with pytest.raises(InvalidInput, match="cannot take the lock"):
        acquire(out)
    assert victim.read_bytes() == b"mine" and (out / LOCK).is_symlink()
    (out / LOCK).unlink()
    (out / LOCK).write_bytes(b"my own notes")
    with pytest.raises(InvalidInput, match="is not a seewhy lock file"):
        acquire(out)
    assert (out / LOCK).read_bytes() == b"my own notes"


def test_a_run_that_fails_after_locking_leaves_no_folder_and_no_lock(tmp_path: Path) -> None:
    data, out = make_data(tmp_path / "data"), tmp_path / "out"
    missing = str(tmp_path / "no-such-model.pt")
    with pytest.raises(InvalidInput):
        run(data, out, model=missing)  # the lock is taken (and out made) before loading
    assert not out.exists()
    out.mkdir()
    with hold(out):
        assert snapshot(out) == {LOCK: (out / LOCK).read_bytes()}
    assert out.is_dir() and snapshot(out) == {}  # a folder the user made stays
