"""Issue 23, point 3: ``--overwrite`` against a planted ledger and the user's own edits.

The ledger (files.jsonl) is a claim anyone can write. Each test plants one
that names the user's files (inside ``--out``, outside it by ``../``, an
absolute path or a link) or edits a file seewhy wrote, and then runs the
audit with ``overwrite=True``: every user file must come out byte-identical,
and the user is told in one line what was kept or why the run was refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from seewhy.audit import Store
from seewhy.errors import InvalidInput
from test_audit_store_safety import make_data, one_line, run, snapshot


def _entry(path: str, blob: bytes) -> str:
    """A ledger line claiming ``path`` with the exact size and checksum of ``blob``."""
    digest = hashlib.sha256(blob).hexdigest()
    return json.dumps({"path": path, "size": len(blob), "sha256": digest, "batch": 0})


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_data(tmp_path / "data")


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """The user's precious file, outside every folder the audit is given."""
    path = tmp_path / "home" / "thesis.txt"
    path.parent.mkdir()
    path.write_bytes(b"four years of work")
    return path


def _plant_ledger(out: Path, victim: Path) -> None:
    """Claims on the user's files, each with the checksum that would pass a naive check."""
    mine = (out / "index.html").read_bytes()
    secret = victim.read_bytes()
    lines = [
        _entry("index.html", mine),
        _entry("../home/thesis.txt", secret),
        _entry(str(victim), secret),
        _entry("images/../../home/thesis.txt", secret),
        _entry("shards/0000099.json", secret),  # a link there points at the thesis
        _entry("images/0000050.jpg", b"another photo"),  # the user's own, other bytes
    ]
    (out / "files.jsonl").write_text("\n".join(lines) + "\n")


def test_a_planted_ledger_without_a_manifest_deletes_nothing(
    data: Path, tmp_path: Path, victim: Path
) -> None:
    users = tmp_path / "site"
    (users / "images").mkdir(parents=True)
    (users / "shards").mkdir()
    (users / "index.html").write_text("<h1>my page</h1>")
    (users / "images" / "0000050.jpg").write_bytes(b"my photo")
    (users / "shards" / "0000099.json").symlink_to(victim)
    _plant_ledger(users, victim)
    before, outside = snapshot(users), snapshot(victim.parent)
    with pytest.raises(InvalidInput) as exc:
        run(data, users, overwrite=True)
    assert "holds no seewhy audit" in one_line(exc)
    assert snapshot(users) == before and snapshot(victim.parent) == outside


def test_a_planted_ledger_in_a_seewhy_folder_deletes_only_seewhys_files(
    data: Path, tmp_path: Path, victim: Path
) -> None:
    """Even with seewhy's own manifest, a claim whose file differs (or is a link) is kept."""
    out = tmp_path / "out"
    first = run(data, out)
    (out / "images" / "0000050.jpg").write_bytes(b"my photo")
    (out / "shards" / "0000099.json").symlink_to(victim)  # the claim's checksum is the thesis's
    old_ledger = (out / "files.jsonl").read_text()
    _plant_ledger(out, victim)
    with (out / "files.jsonl").open("a") as fh:
        fh.write(old_ledger)  # seewhy's own entries after the planted ones
    outside = snapshot(victim.parent)
    again = run(data, out, overwrite=True)
    assert snapshot(victim.parent) == outside
    assert (out / "images" / "0000050.jpg").read_bytes() == b"my photo"
    link = out / "shards" / "0000099.json"
    assert link.is_symlink() and link.resolve() == victim.resolve()
    kept = [n for n in again.notes if n.startswith("--overwrite kept")]
    assert len(kept) == 1 and "\n" not in kept[0]
    assert "images/0000050.jpg" in kept[0] and "shards/0000099.json" in kept[0]
    assert again.resumed_batches == 0 and again.summary == first.summary


def test_an_edited_results_csv_is_kept_and_the_run_refused_before_removing_anything(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run(data, out)
    table = out / "results.csv"
    table.write_text(table.read_text() + "my own note,,,\n")
    before = snapshot(out)
    for overwrite in (True, False):  # --overwrite, and a plain resume that rewrites the table
        with pytest.raises(InvalidInput) as exc:
            run(data, out, overwrite=overwrite)
        line = one_line(exc)
        assert line.startswith("out: results.csv in ") and "move it out of the folder" in line
        assert snapshot(out) == before


def test_an_edited_file_the_new_run_does_not_write_is_kept_and_named(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run(data, out, batch_size=1)  # six shards
    edited = out / "shards" / "0000005.json"
    edited.write_text('{"my": "notes"}')
    result = run(data, out, batch_size=3, overwrite=True)  # two shards
    assert edited.read_text() == '{"my": "notes"}'
    assert not (out / "shards" / "0000004.json").exists()  # unchanged, listed: removed
    kept = [n for n in result.notes if n.startswith("--overwrite kept")]
    assert kept == [
        "--overwrite kept 1 file(s) listed in files.jsonl that changed since seewhy wrote "
        "them: shards/0000005.json"
    ]
    assert len(Store(out).records()) == 6


def test_a_directory_or_link_at_a_report_name_is_never_replaced(
    data: Path, tmp_path: Path, victim: Path
) -> None:
    out = tmp_path / "out"
    run(data, out)
    (out / "summary.json").unlink()
    (out / "summary.json").symlink_to(victim)
    before, outside = snapshot(out), snapshot(victim.parent)
    with pytest.raises(InvalidInput) as exc:
        run(data, out, overwrite=True)
    assert "summary.json" in one_line(exc)
    assert snapshot(out) == before and snapshot(victim.parent) == outside


def test_a_kill_between_listing_a_new_report_and_writing_it_still_resumes(
    data: Path, tmp_path: Path
) -> None:
    """The ledger names the next index.html, the disk holds the previous one: both seewhy's."""
    out = tmp_path / "out"
    first = run(data, out)
    with (out / "files.jsonl").open("a") as fh:
        for name in ("index.html", "results.csv", "summary.json"):
            fh.write(_entry(name, b"the version the killed run was about to write") + "\n")
    again = run(data, out)
    assert again.resumed_batches == 3 and again.summary == first.summary
    fresh = run(data, out, batch_size=3, overwrite=True)  # the previous versions are removable
    assert fresh.resumed_batches == 0 and not any("kept" in n for n in fresh.notes)
