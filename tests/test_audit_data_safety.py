"""Issue 13, points 8-11 (data side), as the accidents and attacks they are.

Names that are not UTF-8, masks that would go to the wrong image, box files
full of NaN, booleans or binary data, list files with Unicode line
separators, folders holding pipes, devices, dangling links and links out of
the data folder: each must cost at most that one entry, with a reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import seewhy
from seewhy.audit.boxes import MAX_NOTES, read_boxes
from seewhy.audit.dataset import Item, collect
from seewhy.audit.flags import box_notes, object_mask
from seewhy.errors import InvalidInput
from seewhy.inputs import load_image
from seewhy.inputs.files import display_path

CAFE = b"caf\xe9.png"  # Latin-1 bytes: not UTF-8
PRE = seewhy.Preprocess(size=(32, 32))


def _png(path: str | bytes | Path, value: int = 120, size: tuple[int, int] = (40, 50)) -> None:
    rgb = np.full((*size, 3), value, np.uint8)
    rgb[size[0] // 4 : size[0] // 2, size[1] // 4 : size[1] // 2] = 255 - value
    with open(path, "wb") as fh:
        Image.fromarray(rgb).save(fh, format="PNG")


def _bytes_path(folder: Path, name: bytes) -> bytes:
    return os.fsencode(folder) + b"/" + name


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text, text
    return text


# --------------------------------------------------------------------------- point 8


def test_a_name_that_is_not_utf8_is_kept_openable_and_shown_safely(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _png(data / "a.png")
    _png(_bytes_path(data, CAFE), value=30)
    ds = collect(data)
    cafe = next(i for i in ds.items if i.name != "a.png")
    assert cafe.name == "caf\\xe9.png" and cafe.path.endswith("caf\\xe9.png")
    # the report's text is UTF-8 clean, the file behind it is the exact one on disk
    for item in ds.items:
        json.dumps(item.to_json(), ensure_ascii=False).encode("utf-8")
        assert Item.from_json(json.loads(json.dumps(item.to_json()))) == item
    assert os.fsencode(cafe.file).endswith(CAFE)
    assert load_image(cafe.file)[0, 0, 0] == 30
    # the data given as bytes works the same way
    by_bytes = collect(os.fsencode(data))
    assert [i.name for i in by_bytes.items] == [i.name for i in ds.items]
    assert collect([_bytes_path(data, CAFE)]).items[0].file == cafe.file


def test_non_utf8_class_folders_labels_and_boxes_keys(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "cat").mkdir(parents=True)
    os.mkdir(_bytes_path(data, b"d\xf6g"))
    _png(data / "cat" / "c.png")
    _png(_bytes_path(data, b"d\xf6g/" + CAFE))
    boxes = tmp_path / "b.json"
    boxes.write_text(json.dumps({"d\\xf6g/caf\\xe9.png": [1, 2, 30, 20]}), encoding="utf-8")
    ds = collect(data, labels=["cat", "dog"], boxes=boxes)
    odd = ds.items[1]
    assert odd.true_label == "d\\xf6g" and odd.boxes == ((1.0, 2.0, 30.0, 20.0),)
    json.dumps([i.to_json() for i in ds.items], ensure_ascii=False).encode("utf-8")
    for note in ds.notes:
        note.encode("utf-8")


# --------------------------------------------------------------------------- point 9


def test_absolute_paths_in_a_list_never_make_an_image_its_own_mask(tmp_path: Path) -> None:
    data = tmp_path / "data"
    masks = tmp_path / "masks"
    data.mkdir()
    masks.mkdir()
    _png(data / "a.png")
    _png(data / "b.png")
    _png(masks / "a.png", value=0)
    listing = tmp_path / "lists" / "list.txt"  # the images lie outside the list's folder
    listing.parent.mkdir()
    listing.write_text(f"{data / 'a.png'}\n{data / 'b.png'}\n", encoding="utf-8")
    ds = collect(listing, masks=masks)
    assert [i.mask for i in ds.items] == [None, None]  # outside the list's folder: no mirror
    assert any("outside the data folder" in n for n in ds.notes)
    # inside the list's folder an absolute path mirrors like a relative one
    inside = data / "list.txt"
    inside.write_text(f"{data / 'a.png'}\nb.png\n", encoding="utf-8")
    ds = collect(inside, masks=masks)
    assert ds.items[0].mask == os.fspath(masks / "a.png") and ds.items[1].mask is None
    # the masks folder given as the data folder: an image is never its own mask
    ds = collect(data, masks=data)
    assert [i.mask for i in ds.items] == [None, None]
    assert any("the image itself" in n for n in ds.notes)


@pytest.mark.parametrize("name", ["b*.png", "[a].png", "?.png", "b[!x].png"])
def test_glob_characters_in_a_name_never_take_another_images_mask(
    tmp_path: Path, name: str
) -> None:
    data = tmp_path / "data"
    masks = tmp_path / "masks"
    data.mkdir()
    masks.mkdir()
    for n in (name, "a.png", "bx.png", "b.png"):
        _png(data / n)
    for n in ("a.png", "bx.png", "b.png"):
        _png(masks / n, value=0)
    ds = collect(data, masks=masks)
    got = {i.name: i.mask for i in ds.items}
    assert got[name] is None  # no mask of its own; glob would have found a.png or bx.png
    assert got["a.png"] == os.fspath(masks / "a.png")
    _png(masks / Path(name).with_suffix(".jpg").name, value=0)  # its own, in another format
    ds = collect(data, masks=masks)
    own = next(i.mask for i in ds.items if i.name == name)
    assert own == os.fspath(masks / Path(name).with_suffix(".jpg").name)


# --------------------------------------------------------------------------- point 10

BAD_BOXES: list[Any] = [
    [float("nan"), 0, 10, 10],
    [0, 0, float("inf"), 10],
    [True, 0, 10, 10],
    [0, 0, 0, 10],  # zero width
    [5, 5, 5, 5],
    [10, 0, 5, 10],  # inverted
    [0, 0, 10],
    [0, 0, "x", 10],
    [0, 0, None, 10],
    [0, 0, [1], 10],
    {"x": 1},
]


def test_bad_boxes_cost_only_themselves_with_one_note_each(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _png(data / "a.png")
    good = [2, 3, 20, 30]
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps({"a.png": [good, *BAD_BOXES]}), encoding="utf-8")
    read = read_boxes(path)
    assert read.table == {"a.png": [(2.0, 3.0, 20.0, 30.0)]}
    assert len(read.notes) == len(BAD_BOXES)
    for note in read.notes:
        assert "\n" not in note and note.endswith("box ignored") and "'a.png'" in note
    ds = collect(data, boxes=path)
    assert ds.items[0].boxes == ((2.0, 3.0, 20.0, 30.0),)
    assert set(read.notes) <= set(ds.notes)
    # many bad boxes: the first few named, the rest counted
    path.write_text(json.dumps({"a.png": [[0, 0, 0, 0]] * 100}), encoding="utf-8")
    notes = read_boxes(path).notes
    assert len(notes) == MAX_NOTES + 1 and notes[-1].startswith("boxes: 80 more")


def test_bad_boxes_in_a_csv_are_notes_too(tmp_path: Path) -> None:
    path = tmp_path / "boxes.csv"
    path.write_text(
        "file,x0,y0,x1,y1\na.png,nan,0,4,4\na.png,0,0,4,4\nb.png,1,1,1,9\nb.png,True,0,4,4\n"
        "b.png,0,0,1e400,4\n",
        encoding="utf-8",
    )
    read = read_boxes(path)
    assert read.table == {"a.png": [(0.0, 0.0, 4.0, 4.0)], "b.png": []}
    assert len(read.notes) == 4


@pytest.mark.parametrize(
    ("suffix", "content"),
    [
        (".json", b"5"),
        (".json", b'"a.png"'),
        (".json", b"null"),
        (".json", b'{"a.png": 5}'),
        (".json", b'{"a.png": "0 0 1 1"}'),
        (".json", b'{"a.png": {"box": 3}}'),
        (".json", b'{"a.png": [[0, 0, 1, 1], 7]}'),
        (".json", b"[5]"),
        (".json", b'[{"file": 3, "box": [0, 0, 1, 1]}]'),
        (".json", b'[{"file": "a.png"}]'),
        (".json", b"[" * 100_000 + b"]" * 100_000),
        (".json", b"{not json"),
        (".json", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary"),
        (".csv", b"\xff\xfe\x00f\x00i\x00l\x00e"),
        (".csv", b"file,x0,y0,x1,y1\na.png,0,0,\x00,1\n"),
        (".csv", b"name,left\na.png,3\n"),
        (".csv", b""),
    ],
)
def test_a_file_that_is_no_box_file_is_one_invalid_input_line(
    tmp_path: Path, suffix: str, content: bytes
) -> None:
    path = tmp_path / f"boxes{suffix}"
    path.write_bytes(content)
    with pytest.raises(InvalidInput) as info:
        read_boxes(path)
    assert _one_line(info.value).startswith("boxes: ")


def test_a_pipe_or_a_folder_as_the_box_file_is_refused_without_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "boxes.json"
    os.mkfifo(fifo)  # reading it would block for ever
    for bad in (fifo, tmp_path, tmp_path / "missing.json"):
        with pytest.raises(InvalidInput) as info:
            read_boxes(bad)
        _one_line(info.value)


def test_boxes_outside_the_picture_are_ignored_or_clipped_and_said_so() -> None:
    size = (40, 50)  # (H, W)
    outside = [(60, 0, 80, 10), (-30, -30, -10, -10)]
    for box in outside:  # no object in the picture: nothing to call "off-object"
        assert object_mask(size, PRE, boxes=[box]) is None
    notes = box_notes([*outside, (-5, -5, 20, 20), (5, 5, 20, 20)], size)
    assert len(notes) == 3
    assert "ignored" in notes[0] and "ignored" in notes[1] and "clipped" in notes[2]
    clipped = object_mask(size, PRE, boxes=[(-5, -5, 25, 20)])
    assert clipped is not None and clipped[:15, :15].all() and not clipped[:, 18:].any()
    # a box ending left of the picture does not wrap round to cover it
    mixed = object_mask(size, PRE, boxes=[(-40, 0, -1, 40), (45, 30, 50, 40)])
    assert mixed is not None and mixed.mean() < 0.05


def test_a_nan_box_does_not_make_a_good_image_unreadable(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    del torch
    from models import audit_model

    data = tmp_path / "data"
    data.mkdir()
    _png(data / "a.png")
    _png(data / "b.png")
    boxes = tmp_path / "boxes.json"
    boxes.write_text('{"a.png": [NaN, 0, 4, 4], "b.png": [[0, 0, 0, 0], [0, 0, 1e9, 1e9]]}')
    result = seewhy.audit.audit(data, audit_model(), out=tmp_path / "out", object_boxes=boxes)
    assert result.summary["explained"] == 2 and result.summary["failed"] == 0
    records = {r["name"]: r for r in seewhy.audit.Store(tmp_path / "out").records()}
    assert "off-object" not in records["a.png"]["flags"]  # its only box was ignored
    assert any("NaN" in n or "finite" in n for n in result.notes)


# --------------------------------------------------------------------------- point 11: lists


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0c", "\x1c", "\x0b"])
def test_list_files_split_on_real_line_ends_only(tmp_path: Path, separator: str) -> None:
    data = tmp_path
    _png(data / "a.png")
    _png(data / "b.png")
    listing = tmp_path / "list.csv"
    listing.write_text(
        f"path,label\na.png,cat{separator}dog\r\nb.png,dog\rc.png,bird\n", encoding="utf-8"
    )
    ds = collect(listing)
    assert [i.name for i in ds.items] == ["a.png", "b.png", "c.png"]
    shown = ds.items[0].true_label or ""
    assert shown.startswith("cat") and shown.endswith("dog") and "\n" not in shown
    json.dumps([i.to_json() for i in ds.items], ensure_ascii=False).encode("utf-8")


def test_a_list_file_with_names_that_are_not_utf8(tmp_path: Path) -> None:
    _png(_bytes_path(tmp_path, CAFE), value=40)
    listing = tmp_path / "list.txt"
    listing.write_bytes(CAFE + b",cat\n")
    (item,) = collect(listing).items
    assert item.name == "caf\\xe9.png" and load_image(item.file)[0, 0, 0] == 40


# --------------------------------------------------------------------------- point 11: walks


def _hostile_folder(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    secret = tmp_path / "private"
    data.mkdir()
    secret.mkdir()
    _png(data / "a.png")
    _png(secret / "passport.png", value=7)
    os.mkfifo(data / "pipe.jpg")
    os.symlink(data / "gone.png", data / "dangling.png")
    (data / "folder.jpg").mkdir()
    (data / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    os.symlink(secret / "passport.png", data / "out.png")  # a link out of the folder
    os.symlink(secret, data / "outdir")
    os.symlink(data / "a.png", data / "same.png")  # a link inside: fine
    os.symlink(data, data / "loop")  # a loop, when links are followed
    return data, secret


def test_the_walk_reports_what_it_skipped_and_why(tmp_path: Path) -> None:
    data, _ = _hostile_folder(tmp_path)
    ds = collect(data)
    reasons = {i.name: i.skipped for i in ds.items}
    assert reasons.pop("a.png") is None
    if "phone.heic" in reasons and reasons["phone.heic"] is None:
        reasons.pop("phone.heic")  # this Pillow decodes HEIC: a picture like any other
    assert set(reasons) >= {"pipe.jpg", "dangling.png", "folder.jpg"}
    assert "pipe" in str(reasons["pipe.jpg"]) and "dangling" in str(reasons["dangling.png"])
    assert all(r for r in reasons.values())  # every entry left out says why
    assert "same.png" not in reasons  # the inside link is a.png again, listed once
    assert not any("passport" in i.name or "out" in i.name for i in ds.items)
    assert any("links lead out of the data folder" in n for n in ds.notes)
    # asked for, the links out are followed (and the loop ends)
    followed = collect(data, follow_links=True)
    assert any(i.skipped is None and load_image(i.file)[0, 0, 0] == 7 for i in followed.items)
    assert not any("links lead out" in n for n in followed.notes)


def test_a_class_folder_that_is_a_link_out_is_not_followed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "cat").mkdir(parents=True)
    _png(data / "cat" / "c.png")
    elsewhere = tmp_path / "home" / "dog"
    elsewhere.mkdir(parents=True)
    _png(elsewhere / "holiday.png")
    os.symlink(elsewhere, data / "dog")
    ds = collect(data, labels_from="folders")
    assert [i.name for i in ds.items] == ["cat/c.png"]
    assert (
        collect(data, labels_from="folders", follow_links=True).items[-1].name == "dog/holiday.png"
    )


def test_walk_images_never_opens_what_it_skips(tmp_path: Path) -> None:
    """A FIFO with no writer blocks any open(): the walk must end all the same."""
    data, _ = _hostile_folder(tmp_path)
    code = textwrap.dedent(
        f"""
        from seewhy.inputs.files import walk_images
        w = walk_images([{str(data)!r}], recursive=True, follow_links=False)
        print(len(w.files), len(w.skipped))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    files, skipped = map(int, done.stdout.split())
    assert files == 1 and skipped >= 5


def test_display_path_is_one_line_of_utf8() -> None:
    for raw in (b"a\nb.png", b"caf\xe9.png", "x\u2028y.png", "tab\there.png", b"\x1b[31mred"):
        shown = display_path(raw)
        assert "\n" not in shown and "\u2028" not in shown and "\x1b" not in shown
        shown.encode("utf-8")


def _snapshot(root: Path, skip: Path | None = None) -> dict[str, bytes]:
    """Every entry under ``root`` (links as their target, files as their bytes)."""
    out: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if skip is not None and Path(dirpath) == skip:
            dirnames.clear()
            continue
        dirnames[:] = [d for d in dirnames if skip is None or Path(dirpath, d) != skip]
        for name in filenames + dirnames:
            p = Path(dirpath, name)
            if p.is_symlink():
                out[os.fspath(p)] = os.fsencode(os.readlink(p))
            elif p.is_file():
                out[os.fspath(p)] = p.read_bytes()
            else:
                out[os.fspath(p)] = b"<%o>" % p.lstat().st_mode
    return out


def test_the_audit_of_a_hostile_folder_finishes_and_leaks_nothing(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from models import audit_model

    data, _ = _hostile_folder(tmp_path)
    _png(_bytes_path(data, CAFE), value=60)
    (data / "new\nline.png").write_bytes((data / "a.png").read_bytes())
    out = tmp_path / "out"
    before = _snapshot(tmp_path)
    result = seewhy.audit.audit(data, audit_model(), out=out)
    assert _snapshot(tmp_path, skip=out) == before  # the user's files, byte for byte
    records = seewhy.audit.Store(out).records()
    names = [r["name"] for r in records]
    assert "caf\\xe9.png" in names and "new\\nline.png" in names
    assert {"pipe.jpg", "dangling.png", "folder.jpg"} <= set(names)
    by_name = {r["name"]: r for r in records}
    assert by_name["caf\\xe9.png"]["status"] == "ok"  # explained, not merely listed
    assert by_name["new\\nline.png"]["status"] == "ok"
    for r in records:
        if r["name"] in ("pipe.jpg", "dangling.png", "folder.jpg"):
            assert r["status"] == "error" and r["reason"]
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "passport" not in html and "private" not in html
    assert result.summary["explained"] >= 1
    for p in out.rglob("*.json"):
        json.loads(p.read_text(encoding="utf-8"))


def test_follow_links_reaches_the_audit_only_when_asked(tmp_path: Path) -> None:
    """``--follow-links`` / ``follow_links=True`` take the linked-out class; else it is left out."""
    pytest.importorskip("torch", reason="the audit runs a PyTorch test model")
    import argparse

    from models import audit_model
    from seewhy.cli.audit import add_audit_arguments

    data = tmp_path / "data"
    (data / "cat").mkdir(parents=True)
    _png(data / "cat" / "c.png")
    elsewhere = tmp_path / "home" / "dog"
    elsewhere.mkdir(parents=True)
    _png(elsewhere / "holiday.png")
    os.symlink(elsewhere, data / "dog")
    parser = argparse.ArgumentParser()
    add_audit_arguments(parser)
    assert parser.parse_args(["data"]).follow_links is False
    assert parser.parse_args(["data", "--follow-links"]).follow_links is True
    for follow, expected in ((False, 1), (True, 2)):
        result = seewhy.audit.audit(
            data, audit_model(), out=tmp_path / f"out{follow}", follow_links=follow
        )
        assert result.summary["images"] == expected, result.summary


def test_devices_and_deep_trees(tmp_path: Path) -> None:
    data = tmp_path / "data"
    deep = data.joinpath(*["d"] * 300)
    deep.mkdir(parents=True)
    _png(deep / "bottom.png")
    os.symlink("/dev/zero", data / "zero.jpg")  # reading it never ends
    code = textwrap.dedent(
        f"""
        import sys
        from seewhy.inputs.files import walk_images
        sys.setrecursionlimit(150)  # the tree is deeper than the stack
        w = walk_images([{str(data)!r}], recursive=True, follow_links=True)
        print([p.name for p in w.files], [(s.path.name, s.reason) for s in w.skipped])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "['bottom.png'] [('zero.jpg', 'a device, not an image file')]"
    ds = collect(data, labels_from="none", follow_links=True)
    assert ds.items[-1].skipped == "a device, not an image file"
