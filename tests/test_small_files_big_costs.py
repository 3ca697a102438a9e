"""Issue 23.8 and 23.9 (first half), as the attack: small files with big costs, and refusals
that name what they found.

* an ONNX graph whose ``labels`` metadata is a few KB of nested brackets or
  additions: Python's literal parser raised a bare RecursionError/MemoryError
  out of ``seewhy.explain``; the model must still explain, with one warning;
* a 2 MB ``.keras`` holding 2 GiB of zeros cost 36 s and 5.6 GiB before its
  refusal: refused from the zip's directory, in well under a second and
  without the memory;
* a 9000 x 9000 1-bit PNG of 260 KB added 633 MiB when prepared (a palette
  one 929 MiB): it must cost what is explained;
* a ``.keras`` with a pickled torch module or a vocabulary read from a file
  path was refused as "contains Lambda layers": each refusal names what it
  found, and the payload never runs.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import seewhy
from keras_helpers import keras_script, keras_script_result
from seewhy.errors import InvalidInput, UntrustedModel
from seewhy.inputs import load_image, resize_for_model
from seewhy.inputs.decoding import load_named
from test_inputs_memory import _peak_growth

ROOT = Path(__file__).resolve().parents[1]


def _one_line(error: BaseException) -> str:
    message = str(error)
    assert message and "\n" not in message, message
    return message


# -- 8a: ONNX metadata ----------------------------------------------------------------


def _onnx_graph(path: Path, metadata: dict[str, str]) -> Path:
    """A 5-class graph (mean colour x weights) carrying ``metadata``, as an exporter writes it."""
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    weights = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x"], ["pooled"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["n", 5])],
        [onnx.numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, metadata)
    onnx.save(model, path)
    return path


HOSTILE_LABELS = {
    "nested brackets": "[" * 1000,  # 1 KB
    "nested dicts": "{0: " * 300 + "'a'" + "}" * 300,
    # ast.literal_eval: RecursionError "maximum recursion depth exceeded during ast construction"
    "additions": "['cat', " + "1+" * 100_000 + "1]",
    "index gaps": "{0: 'cat', 1: 'dog', 7: 'owl', 3: 'ant', 4: 'bee'}",
    "too long": "['" + "a" * (9 << 20) + "']",
}


@pytest.mark.parametrize("payload", list(HOSTILE_LABELS), ids=list(HOSTILE_LABELS))
def test_hostile_onnx_labels_still_explain_with_one_warning(tmp_path: Path, payload: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    path = _onnx_graph(tmp_path / "hostile.onnx", {"labels": HOSTILE_LABELS[payload]})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    picture = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ex = seewhy.explain(
            session, picture, "occlusion", preprocess=seewhy.Preprocess(size=(16, 16)), window=8
        )
    about = [str(w.message) for w in caught if "class names are not used" in str(w.message)]
    assert len(about) == 1, [str(w.message) for w in caught]
    assert "'labels'" in about[0] and "\n" not in about[0] and len(about[0]) < 400
    assert ex.maps.shape[0] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert seewhy.backends.backend_for(session).hints().labels is None


def test_good_names_beside_hostile_labels_are_used(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    names = "{0: 'cat', 1: 'dog', 2: 'owl', 3: 'ant', 4: 'bee'}"  # as Ultralytics writes them
    path = _onnx_graph(tmp_path / "named.onnx", {"labels": "[" * 1000, "names": names})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the readable names are used: nothing to warn about
        labels = seewhy.backends.backend_for(session).hints().labels
    assert labels == ("cat", "dog", "owl", "ant", "bee")


# -- 8b: a .keras that is a decompression bomb --------------------------------------------


def _zeros_stream(size: int) -> tuple[bytes, int]:
    """Raw DEFLATE of ``size`` zero bytes (whole MiB) and its CRC-32, in about a second.

    After a full flush DEFLATE forgets what came before, so every further MiB
    of zeros compresses to the same bytes: one block, repeated.
    """
    mib = bytes(1 << 20)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = packer.compress(mib) + packer.flush(zlib.Z_FULL_FLUSH)
    again = packer.compress(mib) + packer.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size >> 20):
        crc = zlib.crc32(mib, crc)
    return first + again * ((size >> 20) - 1) + packer.flush(), crc


def _zip(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> Path:
    """A zip of (name, stored bytes, method, CRC-32, unpacked size) members, written by hand
    (Python's zipfile would deflate the 2 GiB itself, for half a minute)."""
    local, central = bytearray(), bytearray()
    for name, data, method, crc, size in members:
        raw = name.encode()
        offset = len(local)
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 33, crc, len(data),
                             size, len(raw), 0) + raw + data  # fmt: skip
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 33, crc,
                               len(data), size, len(raw), 0, 0, 0, 0, 0, offset) + raw  # fmt: skip
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central),
                      len(local), 0)  # fmt: skip
    path.write_bytes(bytes(local + central + end))
    return path


def _stored(name: str, text: str) -> tuple[str, bytes, int, int, int]:
    data = text.encode()
    return name, data, zipfile.ZIP_STORED, zlib.crc32(data), len(data)


_CONFIG = json.dumps(
    {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "seq", "layers": [{"class_name": "InputLayer", "config": {}}]},
    }
)


def _keras_bomb(path: Path, gib: int = 2) -> Path:
    stream, crc = _zeros_stream(gib << 30)
    return _zip(
        path,
        [
            _stored("metadata.json", json.dumps({"keras_version": "3.15.1"})),
            _stored("config.json", _CONFIG),
            ("model.weights.h5", stream, zipfile.ZIP_DEFLATED, crc, gib << 30),
        ],
    )


_MEASURE = textwrap.dedent(
    """
    import json, resource, sys, time
    import seewhy
    from seewhy.errors import SeewhyError

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        seewhy.load_model(sys.argv[1])
        outcome = "loaded"
    except SeewhyError as exc:
        outcome = str(exc)
    grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024.0
    seconds = time.perf_counter() - start
    print(json.dumps({"outcome": outcome, "mib": grew, "s": seconds,
                      "keras": "keras" in sys.modules}))
    """
)


def test_a_keras_zip_bomb_is_refused_from_its_directory(tmp_path: Path) -> None:
    bomb = _keras_bomb(tmp_path / "bomb.keras")
    assert bomb.stat().st_size < 3 << 20  # 2 GiB of zeros in ~2 MB
    with zipfile.ZipFile(bomb) as archive:  # a genuine bomb: what it declares, it holds
        with archive.open("model.weights.h5") as member:
            assert member.read(8 << 20) == bytes(8 << 20)
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(bomb)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    # Before: 36 s and 5.6 GiB, then Keras' refusal.
    assert "decompression bomb" in result["outcome"] and "model.weights.h5" in result["outcome"]
    assert "\n" not in result["outcome"]
    assert result["mib"] < 64 and result["s"] < 5, result
    assert not result["keras"], "refused before Keras was even imported"


def test_the_bomb_is_refused_also_when_the_model_is_trusted(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="decompression bomb") as refused:
        seewhy.load_model(str(_keras_bomb(tmp_path / "bomb.keras", gib=1)), trust=True)
    _one_line(refused.value)


def test_a_bomb_spread_over_many_small_members_is_refused(tmp_path: Path) -> None:
    # each member under the per-member floor, together 64x the floor of the whole
    stream, crc = _zeros_stream(15 << 20)
    members = [_stored("config.json", _CONFIG)]
    members += [
        (f"assets/part{i}", stream, zipfile.ZIP_DEFLATED, crc, 15 << 20) for i in range(300)
    ]
    with pytest.raises(InvalidInput, match=r"declares .* of contents") as refused:
        seewhy.load_model(str(_zip(tmp_path / "spread.keras", members)))
    _one_line(refused.value)


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ([_stored("config.json", _CONFIG), _stored("config.json", '{"class_name": "Lambda"}')],
         "2 files named 'config.json'"),
        ([_stored("config.json", _CONFIG), _stored("/config.json", _CONFIG)],
         "2 files named 'config.json'"),
        ([_stored("config.json", "[" * 100_000 + "]" * 100_000)], "nests too deeply"),
        ([_stored("config.json", "{not json")], "not JSON"),
        ([_stored(f"assets/{i}", "") for i in range(10_001)], "10,001 files"),
    ],
    ids=["duplicate config", "slash config", "deep config", "broken config", "many members"],
)  # fmt: skip
def test_odd_archives_are_refused_in_one_line(
    tmp_path: Path, members: list[Any], words: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        seewhy.load_model(str(_zip(tmp_path / "odd.keras", members)))
    assert words in _one_line(refused.value)


def test_a_genuine_large_member_stored_as_keras_stores_it_passes(tmp_path: Path) -> None:
    from seewhy.backends.keras.archive import check_archive

    # 40 MiB of weights stored 1:1, and a config recompressed 30:1: what real files do
    weights = np.random.default_rng(0).integers(0, 256, 40 << 20, dtype=np.uint8).tobytes()
    path = tmp_path / "big.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.weights.h5", weights)
        archive.writestr("config.json", _CONFIG * 2000, compress_type=zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(path) as archive:
        check_archive(path, archive)  # no refusal


# -- 9a: refusals that name what they found ------------------------------------------


def _config_with(layer: dict[str, Any]) -> str:
    config = json.loads(_CONFIG)
    config["config"]["layers"].append(layer)
    return json.dumps(config)


_MARSHALLED = {"class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAA"}}
_RISKY = {
    "torch module": (
        {"class_name": "TorchModuleWrapper", "config": {"name": "wrapped", "module": "gASV"}},
        "a pickled torch module (TorchModuleWrapper layer 'wrapped')",
    ),
    "vocabulary path": (
        {"class_name": "StringLookup", "config": {"name": "words", "vocabulary": "/etc/passwd"}},
        "a StringLookup layer 'words' whose vocabulary is read from the file path '/etc/passwd'",
    ),
    "savedmodel": (
        {"class_name": "TFSMLayer", "config": {"name": "sm", "filepath": "/tmp/evil"}},
        "a TFSMLayer layer 'sm' that loads the external SavedModel '/tmp/evil'",
    ),
    "lambda": (
        {"class_name": "Lambda", "config": {"name": "double", "function": _MARSHALLED}},
        "a Lambda layer 'double' whose Python code runs when loaded",
    ),
    "escape in a name": (
        {"class_name": "StringLookup", "config": {"name": "\x1b]0;owned\x07", "vocabulary": "/x"}},
        "layer '\\x1b]0;owned\\x07'",
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(_RISKY), ids=list(_RISKY))
def test_each_refusal_names_what_it_found(tmp_path: Path, kind: str) -> None:
    layer, words = _RISKY[kind]
    path = _zip(tmp_path / "risky.keras", [_stored("config.json", _config_with(layer))])
    with pytest.raises(UntrustedModel) as refused:
        seewhy.load_model(str(path))
    message = _one_line(refused.value)
    assert words in message and "--trust-model" in message
    assert "\x1b" not in message
    if kind != "lambda":
        assert "Lambda" not in message


_KERAS_SCRIPT = r"""
import base64, io, json, os, sys, zipfile
from pathlib import Path
import torch, keras
import seewhy
from seewhy.errors import SeewhyError, UntrustedModel

folder = Path(sys.argv[1])
marker = folder / "payload-ran"

class Payload:
    def __reduce__(self):
        return os.makedirs, (str(marker),)

inputs = keras.Input((4,))
linear = torch.nn.Linear(4, 2)
wrapped = keras.layers.TorchModuleWrapper(linear, name="wrapped", output_shape=(None, 2))
keras.Model(inputs, wrapped(inputs)).save(str(folder / "genuine.keras"))

# the attacker's edit: the module's pickle replaced by one that runs code
buffer = io.BytesIO()
torch.save(Payload(), buffer)
with zipfile.ZipFile(folder / "genuine.keras") as src:
    parts = {info.filename: src.read(info) for info in src.infolist()}
config = json.loads(parts["config.json"])
layer = next(l for l in config["config"]["layers"] if l["class_name"] == "TorchModuleWrapper")
assert "module" in layer["config"]  # Keras itself stores the module as a pickle
layer["config"]["module"] = base64.b64encode(buffer.getvalue()).decode()
parts["config.json"] = json.dumps(config).encode()
with zipfile.ZipFile(folder / "evil.keras", "w") as out:
    for name, data in parts.items():
        out.writestr(name, data)

results = {}
for name in ("genuine.keras", "evil.keras"):
    try:
        seewhy.load_model(str(folder / name))
        results[name] = "loaded"
    except UntrustedModel as exc:
        results[name] = "refused:" + str(exc)
results["ran_untrusted"] = marker.exists()
try:
    seewhy.load_model(str(folder / "evil.keras"), trust=True)
except Exception:
    pass
results["ran_trusted"] = marker.exists()
print(json.dumps(results))
"""


keras_script("torch-module-pickle", _KERAS_SCRIPT)


def test_a_genuine_torch_module_pickle_in_a_keras_file_is_refused_by_name(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    results = keras_script_result("torch-module-pickle", tmp_path_factory)
    for name in ("genuine.keras", "evil.keras"):  # Keras pickles every wrapped module
        assert results[name].startswith("refused:"), results
        assert "pickled torch module (TorchModuleWrapper layer 'wrapped')" in results[name]
        assert "Lambda" not in results[name] and "\n" not in results[name]
    assert results["ran_untrusted"] is False
    assert results["ran_trusted"] is True  # the file really runs code when trusted


# -- 8c: a picture that claims far more pixels than it stores -----------------------------


@pytest.fixture(scope="module")
def claims(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """9000 x 9000 pictures of a few hundred KB: 1-bit, grey and palette PNGs."""
    folder = tmp_path_factory.mktemp("claims")
    pixels = np.zeros((9000, 9000), dtype=bool)
    pixels[::250, :] = True
    pixels[:, ::250] = True
    picture = Image.fromarray(pixels)
    out = {"bit": folder / "bit.png", "grey": folder / "grey.png", "palette": folder / "pal.png"}
    picture.save(out["bit"])
    picture.convert("L").save(out["grey"])
    picture.convert("P").save(out["palette"])
    return out


def test_a_9000_square_1_bit_png_costs_what_is_explained(claims: dict[str, Path]) -> None:
    assert all(p.stat().st_size < 1 << 20 for p in claims.values())
    growth = _peak_growth(list(claims.values()))
    # Before: 633 MiB (1-bit, grey) and 929 MiB (palette). Now Pillow's own decode
    # (1 byte a pixel, 77 MiB) and a 2250 x 2250 picture.
    assert all(mib < 200 for mib in growth.values()), growth


def test_shrinking_first_changes_the_model_input_by_a_grey_level_or_two(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    base = Image.fromarray(rng.integers(0, 256, (40, 62, 3), dtype=np.uint8))
    big = np.asarray(base.resize((6200, 4000), Image.Resampling.BICUBIC))
    picture = Image.fromarray(big // 2 + rng.integers(0, 60, big.shape, dtype=np.uint8))
    pre = seewhy.Preprocess(size=(224, 224), resize=256)
    exif = picture.getexif()
    exif[0x0112] = 6  # taken sideways: turned upright either way
    for fmt in ("PNG", "JPEG"):
        buffer = io.BytesIO()
        picture.save(buffer, fmt, exif=exif.tobytes())
        data = buffer.getvalue()
        whole = load_image(data)
        shrunk = load_named(data, "x", pre)
        # PNG: area-averaged 3x in Pillow; JPEG: decoded at half size (DCT scaling), nothing more
        expected = (2067, 1333, 3) if fmt == "PNG" else (3100, 2000, 3)
        assert whole.shape == (6200, 4000, 3) and shrunk.shape == expected
        difference = np.abs(
            resize_for_model(whole, pre).astype(int) - resize_for_model(shrunk, pre).astype(int)
        )
        # 6200 is no multiple of 3: two roundings (a factor dividing both sides: one, max 1)
        assert difference.max() <= 3 and difference.mean() < 0.5, (fmt, difference.mean())


def test_the_callers_own_pil_picture_is_left_as_it_was() -> None:
    picture = Image.new("P", (7000, 5000), 3)
    picture.putpalette(list(range(256)) * 3)
    picture.info["transparency"] = 3  # transparent: shown on white
    shrunk = load_named(picture, "p", seewhy.Preprocess(size=(224, 224), resize=256))
    assert shrunk.shape == (1667, 2333, 3) and (shrunk == 255).all()
    assert picture.size == (7000, 5000) and picture.mode == "P"
