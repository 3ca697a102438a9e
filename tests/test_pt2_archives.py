"""Issue 23.1: a .pt2 archive must not run code without the trust flag, as the attack.

torch's zip reader looks names up ignoring letter case, takes the first of
two equal names and reads another central directory than Python's zipfile
when data precedes the zip; torch.export.load unpickles weights, constants
and sample inputs with ``weights_only=False``. Each hostile archive below
starts as a real ``torch.export.save`` and carries a payload that creates a
marker folder when unpickled: refused in one line, the marker never appears;
where torch itself would run it, loading it trusted shows the file is hostile.
Genuine archives (buffers, constants, extra files, pickled weights, the old
layout) still load untrusted and predict as the model they came from.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import seewhy
from models import tiny_cnn
from seewhy.errors import InvalidInput, UntrustedModel
from test_untrusted_files import _one_line, _RunsCode

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]
X = torch.zeros(1, 3, 24, 24)
WEIGHTS = "clean/data/weights/"
CONFIG = WEIGHTS + "model_weights_config.json"

# An edit of one archive entry: (name, bytes) -> the entries written in its place.
Edit = Callable[[str, bytes], list[tuple[str, bytes]]]


def _export(path: Path, model: Any = None, **save: Any) -> Path:
    model = tiny_cnn() if model is None else model
    torch.export.save(torch.export.export(model, (X,)), str(path), **save)
    return path


def _rewrite(folder: Path, edit: Edit, *, name: str = "evil.pt2") -> Path:
    """A real export of the tiny CNN with each entry replaced by ``edit``'s entries."""
    clean = _export(folder / "clean.pt2")
    path = folder / name
    with zipfile.ZipFile(clean) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            for entry, data in edit(info.filename, src.read(info)):
                dst.writestr(entry, data)
    return path


def _payload(marker: Path) -> bytes:
    """The pickle that creates ``marker``, padded so that torch can also view it as float32."""
    data = pickle.dumps(_RunsCode(marker))
    return data + b"\0" * (-len(data) % 4)


def _torch_saved(value: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _with_config_entries(data: bytes, **entries: dict[str, Any]) -> bytes:
    """A payload config with ``entries`` added, each a copy of the first entry with changes."""
    config = json.loads(data)
    first = next(iter(config["config"].values()))
    for fqn, changes in entries.items():
        config["config"][fqn] = {**first, **changes}
    return json.dumps(config).encode()


def _raw_payload_read_as_pickle(marker: Path, pickled_as: str, decoy: bool) -> Edit:
    """The issue's attack: ``weight_0`` is declared raw bytes (and holds the payload); one
    more weight, declared a pickle, is named ``pickled_as``; with ``decoy`` a harmless
    torch.save file is the member of that name.
    """
    payload = _payload(marker)
    raw = {"sizes": [{"as_int": len(payload) // 4}], "strides": [{"as_int": 1}]}

    def edit(name: str, data: bytes) -> list[tuple[str, bytes]]:
        if name == CONFIG:
            config = json.loads(data)
            config["config"]["0.weight"]["tensor_meta"].update(raw)
            data = _with_config_entries(
                json.dumps(config).encode(), evil={"path_name": pickled_as, "use_pickle": True}
            )
        if name == WEIGHTS + "weight_0":
            decoys = [(WEIGHTS + pickled_as, _torch_saved(torch.zeros(1)))] if decoy else []
            return [(name, payload), *decoys]
        return [(name, data)]

    return edit


def _refused(path: Path, marker: Path, *words: str) -> str:
    with pytest.raises(UntrustedModel) as refused:
        seewhy.load_model(str(path))
    message = _one_line(refused.value)
    assert "trust" in message and all(word in message for word in words), message
    assert not marker.exists()
    return message


def _runs_when_trusted(path: Path, marker: Path) -> None:
    """Proof the archive is hostile: torch itself (the trust flag) runs its payload."""
    with pytest.raises(InvalidInput) as failed:  # the payload is no tensor: torch fails after
        seewhy.load_model(str(path), trust=True)
    _one_line(failed.value)
    assert marker.exists()


# -- what torch's zip reader reads for a name -----------------------------------------


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")
@pytest.mark.parametrize(
    ("pickled_as", "decoy", "words"),
    [
        ("WEIGHT_0", True, ("WEIGHT_0", "weight_0", "letter case")),  # the archive
        ("Weight_0", True, ("Weight_0", "weight_0", "letter case")),
        ("WEIGHT_0", False, ("does not hold", "WEIGHT_0")),  # no member of that name at all
        ("weight_0", True, ("twice",)),  # two entries of one name: torch reads the first
    ],
    ids=["case-collision", "mixed-case", "config-names-missing-member", "duplicate-entry"],
)
def test_raw_weight_that_torch_would_read_as_a_pickle_is_refused(
    tmp_path: Path, pickled_as: str, decoy: bool, words: tuple[str, ...]
) -> None:
    marker = tmp_path / "code-ran"
    path = _rewrite(tmp_path, _raw_payload_read_as_pickle(marker, pickled_as, decoy))
    _refused(path, marker, *words)
    _runs_when_trusted(path, marker)


def _raw_name(name: str) -> bytes:
    return name.encode("utf-8")


@pytest.mark.parametrize(
    "odd",
    [
        "./weight_9",
        "sub/../weight_9",
        "sub//weight_9",
        "weight_9/",
        "sub\\weight_9",
        "weight_\u017f",  # long s: 'S' when upper-cased
        "\u212aey",  # Kelvin sign: 'k' when lower-cased
        "weight_9\x00.txt",  # Python's zipfile cuts the name at NUL
    ],
)
def test_member_whose_name_readers_may_take_differently_is_refused(
    tmp_path: Path, odd: str
) -> None:
    marker = tmp_path / "code-ran"
    stand_in = "x" * len(_raw_name(odd))  # Python's writer drops a NUL: patched in afterwards

    def edit(name: str, data: bytes) -> list[tuple[str, bytes]]:
        if name == CONFIG:
            data = _with_config_entries(data, evil={"path_name": odd, "use_pickle": True})
        extra = [(WEIGHTS + stand_in, _payload(marker))] if name == WEIGHTS + "weight_0" else []
        return [(name, data), *extra]

    path = _rewrite(tmp_path, edit)
    content = path.read_bytes()
    path.write_bytes(content.replace((WEIGHTS + stand_in).encode(), _raw_name(WEIGHTS + odd)))
    _refused(path, marker, "name")


@pytest.mark.parametrize(
    "member",
    [
        "clean/data/weights/notes.pkl",  # beside the weights, named by no config
        "clean/data/executorch/program.pkl",
        "clean/models/model.pkl",
        "clean/payload",
        "elsewhere/payload",  # outside the archive's folder
    ],
)
def test_member_nothing_accounts_for_is_refused(tmp_path: Path, member: str) -> None:
    marker = tmp_path / "code-ran"

    def edit(name: str, data: bytes) -> list[tuple[str, bytes]]:
        extra = [(member, pickle.dumps(_RunsCode(marker)))] if name == CONFIG else []
        return [(name, data), *extra]

    _refused(_rewrite(tmp_path, edit), marker, member)


def _polyglot(clean: bytes, hostile: bytes) -> bytes:
    """One file: Python's zipfile reads ``clean``, torch's zip reader ``hostile``.

    ``clean`` goes last, after a copy of ``hostile`` whose central directory
    starts where ``clean``'s says its own does: Python allows for the data
    before the zip, miniz reads offsets from the start of the file.
    """

    def directory(zip_bytes: bytes) -> tuple[int, int]:
        end = zip_bytes.rindex(b"PK\x05\x06")
        size, offset = struct.unpack("<II", zip_bytes[end + 12 : end + 20])
        return size, offset

    (size, offset), (h_size, h_offset) = directory(clean), directory(hostile)
    assert h_size == size and h_offset <= offset, "the two archives must list the same names"
    gap = b"\0" * (offset - h_offset)
    return hostile[:h_offset] + gap + hostile[h_offset : h_offset + size] + clean


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch's, if trusted
def test_archive_python_and_torch_read_differently_runs_no_code(tmp_path: Path) -> None:
    """The check reads one archive, torch another: seewhy hands torch what it checked."""
    marker = tmp_path / "code-ran"
    clean = _export(tmp_path / "clean.pt2")

    def hostile(name: str, data: bytes) -> list[tuple[str, bytes]]:
        return [(name, pickle.dumps(_RunsCode(marker)) if "/sample_inputs/" in name else data)]

    path = tmp_path / "polyglot.pt2"
    path.write_bytes(_polyglot(clean.read_bytes(), _rewrite(tmp_path, hostile).read_bytes()))
    model = seewhy.load_model(str(path))  # what Python's zipfile reads: the clean model
    assert torch.equal(model(X), torch.export.load(str(clean)).module()(X))
    assert not marker.exists()
    _runs_when_trusted(path, marker)


# -- what torch unpickles: only what its weights-only unpickler let through -----------


def test_constant_that_is_a_python_object_is_refused(tmp_path: Path) -> None:
    """torch reads ``opaque_obj_*`` constants with plain ``pickle.loads``."""
    marker = tmp_path / "code-ran"
    clean = _export(tmp_path / "clean.pt2", _Normalised().eval())
    path = tmp_path / "evil.pt2"
    with zipfile.ZipFile(clean) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("_constants_config.json"):
                opaque = {"path_name": "opaque_obj_0", "use_pickle": True}
                data = _with_config_entries(data, evil=opaque)
                dst.writestr("clean/data/constants/opaque_obj_0", pickle.dumps(_RunsCode(marker)))
            dst.writestr(info, data)
    _refused(path, marker, "opaque_obj_0", "object")
    _runs_when_trusted(path, marker)


def test_weight_declared_a_pickle_must_hold_weights_only(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"

    def edit(name: str, data: bytes) -> list[tuple[str, bytes]]:
        if name == CONFIG:
            config = json.loads(data)
            config["config"]["0.bias"]["use_pickle"] = True
            data = json.dumps(config).encode()
        return [(name, _torch_saved(_RunsCode(marker)) if name == WEIGHTS + "weight_1" else data)]

    path = _rewrite(tmp_path, edit)
    _refused(path, marker, "weight_1", "more than weights", "mkdir")
    _runs_when_trusted(path, marker)


def _legacy(folder: Path, model: Any, *, example_inputs: bytes | None = None) -> Path:
    """An archive in the layout torch.export.save wrote before torch 2.8 (still read by load)."""
    serde = pytest.importorskip("torch._export.serde.serialize")
    schema = pytest.importorskip("torch._export.serde.schema")
    artifact = serde.serialize(torch.export.export(model, (X,)))
    path = folder / "legacy.pt2"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("version", ".".join(map(str, schema.SCHEMA_VERSION)))
        archive.writestr("serialized_exported_program.json", artifact.exported_program)
        archive.writestr("serialized_state_dict.pt", artifact.state_dict)
        archive.writestr("serialized_constants.pt", artifact.constants)
        archive.writestr("serialized_example_inputs.pt", example_inputs or artifact.example_inputs)
    return path


def test_old_layout_loads_and_its_hostile_pickle_is_refused(tmp_path: Path) -> None:
    model = tiny_cnn()
    loaded = seewhy.load_model(str(_legacy(tmp_path, model)))
    assert torch.equal(loaded(X), model(X))
    marker = tmp_path / "code-ran"
    path = _legacy(tmp_path, model, example_inputs=_torch_saved(_RunsCode(marker)))
    _refused(path, marker, "serialized_example_inputs.pt", "more than weights")
    with pytest.raises(InvalidInput):
        seewhy.load_model(str(path), trust=True)
    assert marker.exists()  # torch's own fallback to weights_only=False ran it


# -- genuine archives still load untrusted --------------------------------------------


class _Normalised(torch.nn.Module):
    """Buffers (BatchNorm's, an int64 one), a non-persistent buffer and a tensor constant."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn = tiny_cnn()
        self.norm = torch.nn.BatchNorm2d(3)
        self.register_buffer("shift", torch.full((1, 3, 1, 1), 0.25), persistent=False)
        self.scale = torch.tensor(1.5)  # neither parameter nor buffer: a lifted constant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cnn(self.norm(x) * self.scale + self.shift)


def test_genuine_archives_load_without_trust_and_predict_the_same(tmp_path: Path) -> None:
    x = torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    model = _Normalised()
    model.norm.running_mean.uniform_(-1, 1)
    model.eval()
    path = _export(tmp_path / "normalised.pt2", model, extra_files={"notes.txt": "hello"})
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with zipfile.ZipFile(path) as archive:
        assert any("_constants_config.json" in n for n in archive.namelist())
    assert torch.allclose(seewhy.load_model(str(path))(x), model(x), atol=1e-6)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_genuine_weight_saved_as_a_pickle_loads_without_trust(tmp_path: Path) -> None:
    """torch writes tensor subclasses as pickles (``use_pickle``): they load weights-only."""
    model = tiny_cnn()
    weight = model.state_dict()["0.weight"]

    def edit(name: str, data: bytes) -> list[tuple[str, bytes]]:
        if name == CONFIG:
            config = json.loads(data)
            config["config"]["0.weight"]["use_pickle"] = True
            data = json.dumps(config).encode()
        saved = _torch_saved(torch.nn.Parameter(weight))
        return [(name, saved if name == WEIGHTS + "weight_0" else data)]

    assert torch.equal(seewhy.load_model(str(_rewrite(tmp_path, edit)))(X), model(X))


# -- a broken archive: one line from the command line, whatever torch logs -------------

_CLI_SCRIPT = r"""
import sys
from seewhy.cli import main

image, archives = sys.argv[1], sys.argv[2:]
for archive in archives:
    for trust in ([], ["--trust-model"]):
        print(f"@@ {archive} {trust} ", file=sys.stderr, flush=True)
        code = main(["explain", image, "--model", archive, *trust])
        print(f"exit={code}", file=sys.stderr, flush=True)
"""


def test_cli_says_a_broken_archive_in_one_line(tmp_path: Path) -> None:
    pil = pytest.importorskip("PIL.Image")
    image = tmp_path / "photo.png"
    pil.new("RGB", (24, 24), "red").save(image)

    def graph_edit(change: Callable[[bytes], bytes]) -> Edit:
        return lambda name, data: [(name, change(data) if name.endswith("model.json") else data)]

    unknown_op = graph_edit(lambda d: d.replace(b"torch.ops.aten.", b"torch.ops.aten.no_such_", 1))
    broken = {
        "truncated-graph.pt2": graph_edit(lambda data: data[: len(data) // 2]),
        "unknown-operator.pt2": unknown_op,
        "newer-archive.pt2": lambda n, d: [(n, b"9" if n.endswith("archive_version") else d)],
    }
    paths = [str(_rewrite(tmp_path, edit, name=name)) for name, edit in broken.items()]
    cut = tmp_path / "cut.pt2"
    cut.write_bytes((tmp_path / "clean.pt2").read_bytes()[:-100])
    paths.append(str(cut))
    done = subprocess.run(
        [sys.executable, "-c", _CLI_SCRIPT, str(image), *paths],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = done.stderr.split("@@ ")[1:]
    assert len(runs) == 2 * len(paths), done.stderr[-3000:]
    for run in runs:
        _case, *said, code = run.strip().splitlines()
        assert code == "exit=1" and len(said) == 1, run
        assert said[0].startswith("seewhy: error: model:") and ".pt2" in said[0], run
    assert "Traceback" not in done.stderr and "\x1b" not in done.stderr
