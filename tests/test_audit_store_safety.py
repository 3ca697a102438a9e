"""The audit's folder, attacked and damaged (issue 13, points 2, 6 and 7).

Each test is the accident or the attack: ``--out`` on the user's own folder,
``--overwrite`` next to the user's files, a truncated shard or records file, a
manifest removed, a shard copied under another number, a hostile ledger, a
model that gives NaN for one picture. The user's files must come out
byte-identical, a damaged store must be redone or named in one line, a foreign
one never adopted, and one NaN must not stop the report.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import seewhy
from models import tiny_cnn
from seewhy.audit import Store, audit, load_maps
from seewhy.errors import InvalidInput, SeewhyError

torch = pytest.importorskip("torch")

LABELS = ("cat", "dog", "bird")
SPEC = seewhy.ModelSpec(name="tiny", preprocess=seewhy.Preprocess(size=(32, 32)), labels=LABELS)


def tiny_model() -> Any:
    model = tiny_cnn(len(LABELS), 0, widths=(4, 4), inplace=False)
    model.seewhy_spec = SPEC
    return model


class NaNForGrey(torch.nn.Module):  # type: ignore[misc]
    """The tiny net, but NaN scores for a flat grey picture (a model gone wrong on one input)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_cnn(len(LABELS), 0, widths=(4, 4), inplace=False)

    def forward(self, x: Any) -> Any:
        out = self.net(x)
        flat = x.flatten(2).std(dim=2).amax(dim=1) < 1e-6  # every channel constant
        return torch.where(flat[:, None], torch.full_like(out, float("nan")), out)


def make_data(root: Path, per_class: int = 2) -> Path:
    """root/{cat,dog,bird}/*.png: small noise pictures, different per file."""
    rng = np.random.default_rng(0)
    for label in LABELS:
        (root / label).mkdir(parents=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{label}{k}.png")
    return root


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for folders)."""
    return {
        p.relative_to(root).as_posix(): (None if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert isinstance(exc.value, SeewhyError) and "\n" not in text and text
    return text


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_data(tmp_path / "data")


def run(data: Path, out: Path, **kw: Any) -> Any:
    kw.setdefault("batch_size", 2)
    return audit(data, kw.pop("model", None) or tiny_model(), out=out, **kw)


# --------------------------------------------------------------------------- point 2


@pytest.mark.parametrize("overwrite", [False, True])
def test_users_own_folder_is_refused_and_left_byte_identical(
    data: Path, tmp_path: Path, overwrite: bool
) -> None:
    users = tmp_path / "my-site"
    (users / "images").mkdir(parents=True)
    (users / "images" / "0000000.jpg").write_bytes(b"my holiday photo")
    (users / "images" / "cat.png").write_bytes(b"\x89PNG mine")
    (users / "index.html").write_text("<h1>my page</h1>")
    (users / "shards").mkdir()
    (users / "shards" / "0000000.json").write_text('{"mine": true}')
    (users / "notes.txt").write_text("do not lose")
    before = snapshot(users)
    with pytest.raises(InvalidInput) as exc:
        run(data, users, overwrite=overwrite)
    assert "holds no seewhy audit" in one_line(exc)
    assert snapshot(users) == before


@pytest.mark.parametrize("overwrite", [False, True])
def test_the_data_folder_as_out_is_refused_and_untouched(data: Path, overwrite: bool) -> None:
    before = snapshot(data)
    with pytest.raises(InvalidInput) as exc:
        run(data, data, overwrite=overwrite)
    one_line(exc)
    assert snapshot(data) == before


def test_out_inside_the_data_folder_is_refused(data: Path) -> None:
    before = snapshot(data)
    with pytest.raises(InvalidInput) as exc:
        run(data, data / "report")
    assert "inside the data folder" in one_line(exc)
    assert snapshot(data) == before


def test_a_users_json_named_audit_json_does_not_make_the_folder_seewhys(
    data: Path, tmp_path: Path
) -> None:
    users = tmp_path / "u"
    users.mkdir()
    (users / "audit.json").write_text('{"format": "my-own-audit", "fingerprint": "x"}')
    (users / "index.html").write_text("mine")
    before = snapshot(users)
    with pytest.raises(InvalidInput):
        run(data, users, overwrite=True)
    assert snapshot(users) == before


def test_overwrite_removes_only_what_seewhy_wrote(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(data, out, methods=["gradcam", "layercam"])
    assert (out / "images" / "0000000.m1.jpg").is_file()
    mine = {
        "my-notes.txt": b"notes",
        "images/mine.png": b"my picture",
        "images/0000000.backup.jpg": b"a copy I made",
        "shards/keep.txt": b"keep",
    }
    for rel, blob in mine.items():
        (out / rel).write_bytes(blob)
    result = run(data, out, methods=["gradcam"], overwrite=True)
    assert result.resumed_batches == 0 and result.summary["explained"] == 6
    for rel, blob in mine.items():
        assert (out / rel).read_bytes() == blob
    assert not (out / "images" / "0000000.m1.jpg").exists()  # the old run's, listed: gone
    assert (out / "images" / "0000000.m0.jpg").is_file()


def test_overwrite_of_a_finished_audit_keeps_a_users_folder_inside_it(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run(data, out)
    (out / "images" / "holiday").mkdir()
    (out / "images" / "holiday" / "0000001.jpg").write_bytes(b"mine")
    run(data, out, batch_size=3, overwrite=True)
    assert (out / "images" / "holiday" / "0000001.jpg").read_bytes() == b"mine"


def test_a_hostile_ledger_cannot_delete_outside_seewhys_names(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(data, out)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    (out / "precious.jpg").write_bytes(b"precious too")
    with (out / "files.jsonl").open("a") as fh:
        for path in ("../victim.txt", str(victim), "precious.jpg", "images/../../victim.txt"):
            fh.write(json.dumps({"path": path, "size": 8, "sha256": "0" * 64}) + "\n")
    run(data, out, batch_size=3, overwrite=True)
    assert victim.read_bytes() == b"precious"
    assert (out / "precious.jpg").read_bytes() == b"precious too"


def test_a_linked_images_folder_is_refused_and_its_target_untouched(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run(data, out)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "0000000.jpg").write_bytes(b"mine")
    shutil.rmtree(out / "images")
    (out / "images").symlink_to(photos)
    before = snapshot(photos)
    for overwrite in (False, True):
        with pytest.raises(InvalidInput) as exc:
            run(data, out, overwrite=overwrite)
        assert "link" in one_line(exc)
    assert snapshot(photos) == before


# --------------------------------------------------------------------------- point 6


def _truncate(path: Path) -> None:
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


@pytest.mark.parametrize("name", ["0000001.npz", "0000001.json"])
def test_a_truncated_shard_is_redone_and_said(data: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    first = run(data, out)
    ids, maps = load_maps(str(out))
    _truncate(out / "shards" / name)
    again = run(data, out)
    assert again.resumed_batches == 2 and again.summary == first.summary
    assert any(f"shards/{name}" in note and "redone" in note for note in again.notes)
    ids2, maps2 = load_maps(str(out))
    assert ids2.tolist() == ids.tolist()
    np.testing.assert_array_equal(maps2, maps)
    third = run(data, out)  # repaired for good: nothing left to redo
    assert third.resumed_batches == 3 and not any("redone" in n for n in third.notes)


def test_load_maps_names_a_damaged_shard_in_one_line(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(data, out)
    _truncate(out / "shards" / "0000002.npz")
    with pytest.raises(InvalidInput) as exc:
        load_maps(str(out))
    assert "shards/0000002.npz is damaged" in one_line(exc)


def test_a_shard_changed_in_place_at_the_same_size_is_redone(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run(data, out)
    records = out / "shards" / "0000000.json"
    text = records.read_text()
    records.write_text(text.replace('"status": "ok"', '"status": "OK"', 1))  # same length
    again = run(data, out)
    assert again.summary == first.summary and again.resumed_batches == 2


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_store_without_its_manifest_is_foreign_and_never_touched(
    data: Path, tmp_path: Path, overwrite: bool
) -> None:
    """Issue 23.3: a ledger is what anyone can write; only audit.json makes a folder seewhy's."""
    out = tmp_path / "out"
    run(data, out)  # 6 images
    (out / "audit.json").unlink()
    before = snapshot(out)
    with pytest.raises(InvalidInput) as exc:
        run(data, out, overwrite=overwrite)
    assert "holds no seewhy audit (a files.jsonl without audit.json is not one)" in one_line(exc)
    assert snapshot(out) == before


def test_a_store_of_another_data_set_is_refused(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(data, out)
    shutil.rmtree(data / "bird")
    with pytest.raises(InvalidInput) as exc:
        run(data, out)
    assert "other images or settings" in one_line(exc)


def test_extra_shard_numbers_never_duplicate_rows(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run(data, out)
    for suffix in ("json", "npz"):  # as if a bigger run's, or a copy, lay there
        shutil.copy(out / "shards" / f"0000000.{suffix}", out / "shards" / f"0000007.{suffix}")
        shutil.copy(out / "shards" / f"0000000.{suffix}", out / "shards" / f"0000001.{suffix}")
    again = run(data, out)
    assert again.summary == first.summary and again.summary["images"] == 6
    ids, _ = load_maps(str(out))
    assert ids.tolist() == sorted(set(ids.tolist())) == list(range(6))
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 6


def test_a_torn_ledger_line_from_a_kill_is_survived(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run(data, out)
    (out / "shards" / "0000002.json").unlink()  # the kill came before the records
    with (out / "files.jsonl").open("a") as fh:
        fh.write('{"path": "shards/0000002.js')  # ... and in the middle of a ledger line
    again = run(data, out)
    assert again.summary == first.summary and again.resumed_batches == 2
    last = (out / "files.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in last)


def test_a_lost_thumbnail_or_a_lost_ledger_means_redo_never_trust(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = run(data, out)
    (out / "images" / "0000003.m0.jpg").unlink()
    again = run(data, out)
    assert again.resumed_batches == 2 and (out / "images" / "0000003.m0.jpg").is_file()
    assert any("images/0000003.m0.jpg was missing" in note for note in again.notes)
    (out / "files.jsonl").unlink()  # nothing on disk can be checked any more ...
    before = snapshot(out)
    for overwrite in (False, True):  # ... so nothing on disk is written over or removed
        with pytest.raises(InvalidInput) as exc:
            run(data, out, overwrite=overwrite)
        assert "(or seewhy never did)" in one_line(exc) and "nothing was removed" in str(exc.value)
        assert snapshot(out) == before
    assert first.summary["images"] == 6


@pytest.mark.parametrize("overwrite", [False, True])
def test_an_old_format_audit_cannot_be_checked_so_nothing_is_removed(
    data: Path, tmp_path: Path, overwrite: bool
) -> None:
    """Issue 23.3: a first-format audit has no ledger, so a planted one would delete by name."""
    out = tmp_path / "out"
    run(data, out)
    manifest = json.loads((out / "audit.json").read_text())
    manifest["format"] = "seewhy-audit/1"
    (out / "audit.json").write_text(json.dumps(manifest))
    (out / "files.jsonl").unlink()
    (out / "index.html").write_text("<h1>my own page, not seewhy's</h1>")
    before = snapshot(out)
    with pytest.raises(InvalidInput) as exc:
        run(data, out, overwrite=overwrite)
    assert "older seewhy" in one_line(exc) and "will not remove them" in str(exc.value)
    assert snapshot(out) == before


# --------------------------------------------------------------------------- point 7


def _strict(text: str) -> Any:
    def refuse(token: str) -> Any:
        raise AssertionError(f"{token} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_one_nan_image_is_flagged_and_the_report_still_written(data: Path, tmp_path: Path) -> None:
    Image.new("RGB", (40, 36), (128, 128, 128)).save(data / "dog" / "grey.png")
    model = NaNForGrey()
    model.seewhy_spec = SPEC
    out = tmp_path / "out"
    result = run(data, out, model=model)
    page = (out / "index.html").read_text(encoding="utf-8")
    blob = page.split('id="seewhy-data">', 1)[1].split("</script>", 1)[0]
    items = {it["name"]: it for it in _strict(blob)["items"]}
    grey = items["dog/grey.png"]
    assert grey["status"] == "error" and grey["flags"] == ["non-finite"]
    assert grey["pred_label"] is None and grey["confidence"] is None
    assert "non-finite scores" in page
    assert result.summary["explained"] == 6 and result.summary["flags"]["non-finite"] == 1
    _strict((out / "summary.json").read_text())
    for shard in (out / "shards").glob("*.json"):
        _strict(shard.read_text())
    again = run(data, out, model=model)  # a rerun resumes and writes the report again
    assert again.summary == result.summary and again.resumed_batches == 4


def test_an_image_the_api_refuses_fails_alone(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = seewhy.Explainer.explain

    def refuse_cat1(self: Any, images: Any, **kw: Any) -> Any:
        if any(name.endswith("cat1.png") for name in images.sources):
            raise InvalidInput("images: cat1.png cannot be explained")
        return real(self, images, **kw)

    monkeypatch.setattr(seewhy.Explainer, "explain", refuse_cat1)
    result = run(data, tmp_path / "out")
    records = {r["name"]: r for r in Store(tmp_path / "out").records()}
    assert records["cat/cat1.png"]["reason"] == "images: cat1.png cannot be explained"
    assert records["cat/cat0.png"]["status"] == "ok"
    assert result.summary["explained"] == 5 and result.summary["failed"] == 1
