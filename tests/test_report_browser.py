"""The audit report in a real headless Chromium: grid, sorting, filter, large view, escaping.

Drives Debian's ``/usr/bin/chromium`` (or ``$SEEWHY_CHROMIUM``) through Playwright, or
through Selenium and chromedriver when Playwright is not installed.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from seewhy.audit.summary import summarize
from seewhy.report import write_audit_report
from seewhy.report.audit import safe_json

CHROMIUM = (
    os.environ.get("SEEWHY_CHROMIUM")
    or shutil.which("chromium")
    or shutil.which("chromium-browser")
)
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
EVIL_NAME = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">.png'
EVIL_LABEL = "</script><script>window.__pwned=3</script>"
METHODS = ["gradcam", "layercam"]


def test_safe_json_cannot_close_its_script() -> None:
    text = safe_json({"a": EVIL_LABEL + "<!-- & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": EVIL_LABEL + "<!-- & \u2028"}


def _record(
    i: int, name: str, true: str, pred: str, conf: float, flags: list[str]
) -> dict[str, Any]:
    return {
        "index": i,
        "name": name,
        "path": f"/data/{name}",
        "status": "ok",
        "reason": "",
        "true_label": true,
        "true_index": 0,
        "pred_label": pred,
        "pred_index": 1,
        "confidence": conf,
        "true_probability": 0.1,
        "correct": "wrong" not in flags,
        "top": [[pred, 1, conf]],
        "width": 64,
        "height": 48,
        "has_object": False,
        "energies": {m: {"object": None, "border": 0.2} for m in METHODS},
        "flags": flags,
        "notes": [],
        "suspicion": (1 + conf if "wrong" in flags else 0.1),
        "shard": 0,
        "row": i,
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    records = [
        _record(0, "b.jpg", "cat", "cat", 0.9, []),
        _record(1, EVIL_NAME, EVIL_LABEL, "dog", 0.6, ["wrong"]),
        _record(2, "a.jpg", "cat", "cat", 0.3, []),
        _record(3, "c.jpg", "dog", "cat", 0.99, ["wrong", "border"]),
        {
            **_record(4, "broken <b>.jpg", "dog", "", 0, ["unreadable"]),
            "status": "error",
            "reason": "not an image <i>really</i>",
            "pred_label": None,
            "confidence": None,
        },
    ]
    (out / "images").mkdir()
    rng = np.random.default_rng(0)
    for r in records[:4]:
        for suffix in ("jpg", "m0.jpg", "m1.jpg"):
            pixels = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(out / "images" / f"{r['index']:07d}.{suffix}")
    meta = {
        "title": "t <b>",
        "model": "tiny",
        "methods": METHODS,
        "layer": None,
        "class_rule": "name",
        "notes": [EVIL_LABEL],
    }
    write_audit_report(out, records, summarize(records), meta)
    return out / "index.html"


class _Page:
    """The few browser actions the test needs, over Playwright or Selenium."""

    def __init__(self, backend: str, handle: Any) -> None:
        self.backend, self.handle = backend, handle

    def eval(self, js: str) -> Any:
        if self.backend == "playwright":
            return self.handle.evaluate(f"() => ({js})")
        return self.handle.execute_script(f"return ({js});")

    def click(self, css: str) -> None:
        if self.backend == "playwright":
            self.handle.click(css)
        else:
            from selenium.webdriver.common.by import By

            self.handle.find_element(By.CSS_SELECTOR, css).click()

    def choose(self, css: str, value: str) -> None:
        if self.backend == "playwright":
            self.handle.select_option(css, value)
        else:
            self.eval(
                f"(function(s){{s.value={json.dumps(value)};"
                "s.dispatchEvent(new Event('change'));return 1})"
                f"(document.querySelector({json.dumps(css)}))"
            )

    def wait(self, js: str) -> None:
        if self.backend == "playwright":
            self.handle.wait_for_function(f"() => ({js})", timeout=10_000)
        else:
            from selenium.webdriver.support.ui import WebDriverWait

            WebDriverWait(self.handle, 10).until(lambda d: d.execute_script(f"return ({js});"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Callable[[Path], _Page]]:
    """Opens a report in a fresh tab; no page may raise or open a dialog."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="seewhy-chromium-")
    pw: Any = None
    try:
        pw = importlib.import_module("playwright.sync_api")
    except ImportError:
        pass
    if pw is not None:
        errors: list[str] = []
        with pw.sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                args=FLAGS,
                headless=True,
                viewport={"width": 1200, "height": 900},
            )

            def on_dialog(d: Any) -> None:  # an alert() would mean injected code ran
                errors.append("dialog " + d.message)
                d.dismiss()

            def open_tab(path: Path) -> _Page:
                tab = context.new_page()
                tab.on("pageerror", lambda e: errors.append(str(e)))
                tab.on("dialog", on_dialog)
                tab.goto(path.as_uri())
                return _Page("playwright", tab)

            yield open_tab
            context.close()
        assert not errors, errors
    else:
        webdriver = pytest.importorskip(
            "selenium.webdriver", reason="neither playwright nor selenium is installed"
        )
        drivers: list[Any] = []

        def open_window(path: Path) -> _Page:
            options = webdriver.ChromeOptions()
            options.binary_location = CHROMIUM
            folder = tempfile.mkdtemp(prefix="p", dir=profile)
            for flag in [*FLAGS, f"--user-data-dir={folder}", "--window-size=1200,900"]:
                options.add_argument(flag)
            drivers.append(webdriver.Chrome(options=options))
            drivers[-1].get(path.as_uri())
            return _Page("selenium", drivers[-1])

        try:
            yield open_window
        finally:
            for driver in drivers:
                driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page(browser: Callable[[Path], _Page], report: Path) -> _Page:
    return browser(report)


def _names(page: _Page) -> list[str]:
    return list(
        page.eval(
            "Array.from(document.querySelectorAll('#grid .card .name')).map(e => e.textContent)"
        )
    )


def test_grid_renders_with_pictures(page: _Page) -> None:
    page.wait("window.seewhyReport && window.seewhyReport.ready")
    page.wait("Array.from(document.querySelectorAll('#grid img')).every(i => i.complete)")
    assert page.eval("document.querySelectorAll('#grid .card').length") == 4
    assert page.eval(
        "Array.from(document.querySelectorAll('#grid img')).every(i => i.naturalWidth === 48)"
    )
    assert _names(page)[:2] == ["c.jpg", EVIL_NAME]  # most suspicious first
    assert "not an image <i>really</i>" in page.eval(
        "document.getElementById('failures').nextElementSibling.textContent"
    )


def test_sorting_and_filtering(page: _Page) -> None:
    page.choose("#sort", "name")
    assert _names(page) == sorted(_names(page))
    page.choose("#sort", "confidence-asc")
    conf = page.eval(
        "Array.from(document.querySelectorAll('#grid .card .pred'))"
        ".map(e => parseFloat(e.textContent.split(' ').pop()))"
    )
    assert conf == sorted(conf) and len(conf) == 4
    page.click("#f-wrong")
    assert sorted(_names(page)) == sorted(["c.jpg", EVIL_NAME])
    page.click("#f-wrong")
    assert len(_names(page)) == 4


def test_click_opens_large_view_with_every_method(page: _Page) -> None:
    page.choose("#sort", "name")
    page.click("#grid .card[data-index='2']")
    page.wait("document.getElementById('viewer').open")
    assert page.eval("document.getElementById('v-title').textContent") == "a.jpg"
    captions = page.eval(
        "Array.from(document.querySelectorAll('#v-images figcaption')).map(e => e.textContent)"
    )
    assert captions == ["input", *METHODS]
    page.wait(
        "Array.from(document.querySelectorAll('#v-images img'))"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    page.click("#v-close")
    assert not page.eval("document.getElementById('viewer').open")


def test_markup_in_names_is_shown_as_text_never_run(page: _Page) -> None:
    page.click("#grid .card[data-index='1']")
    page.wait("document.getElementById('viewer').open")
    assert page.eval("document.getElementById('v-title').textContent") == EVIL_NAME
    body = page.eval("document.body.innerText")
    assert EVIL_LABEL in body and "broken <b>.jpg" in body
    assert page.eval("document.title") == "t <b>"
    assert page.eval("typeof window.__pwned") == "undefined"
    assert page.eval("document.scripts.length") == 2  # the data block and the page's own
    assert page.eval("document.querySelectorAll('img[src=\"x\"], b, i').length") == 0
    page.click("#v-close")


# --------------------------------------------------------------------------- ground truth

ORIGINAL = (80, 60)  # (width, height) of the audited files
BOX = (8.0, 6.0, 40.0, 51.0)  # a.png's box, original pixels
MASK = (44, 30, 76, 54)  # b.png's mask rectangle (x0, y0, x1, y1), original pixels
PICTURE = (64, 64)  # what the model sees: a plain stretch, so fractions carry over


def _audit(root: Path, *, objects: bool) -> Path:
    """A real audit of three files: a.png with a box, b.png with a mask, c.png with neither."""
    pytest.importorskip("torch")
    from models import audit_model
    from seewhy.audit import audit

    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(3)
    for name in ("a.png", "b.png", "c.png"):
        pixels = rng.integers(0, 255, (ORIGINAL[1], ORIGINAL[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(data / name)
    boxes = masks = None
    if objects:
        boxes = root / "boxes.json"
        boxes.write_text(json.dumps({"a.png": list(BOX)}))
        masks = root / "masks"
        masks.mkdir()
        shape = np.zeros((ORIGINAL[1], ORIGINAL[0]), np.uint8)
        shape[MASK[1] : MASK[3], MASK[0] : MASK[2]] = 255
        Image.fromarray(shape).save(masks / "b.png")
    model = audit_model(PICTURE[::-1], ("x", "y"))
    result = audit(
        data,
        model,
        out=root / "out",
        methods=METHODS,
        object_boxes=boxes,
        object_masks=masks,
        title="gt",
    )
    return result.report


@pytest.fixture(scope="module")
def boxed(browser: Callable[[Path], _Page], tmp_path_factory: pytest.TempPathFactory) -> _Page:
    page = browser(_audit(tmp_path_factory.mktemp("boxed"), objects=True))
    page.wait("window.seewhyReport && window.seewhyReport.ready")
    return page


def _rects(page: _Page, scope: str, shape: str) -> list[dict[str, Any]]:
    """Each picture's rect under ``scope`` with the rects of its ``shape`` elements."""
    found: list[dict[str, Any]] = page.eval(
        f"Array.from(document.querySelectorAll({json.dumps(scope)})).map(function (f) {{"
        "  var r = function (e) { var b = e.getBoundingClientRect();"
        "    return {x: b.left, y: b.top, w: b.width, h: b.height}; };"
        f"  return {{img: r(f.querySelector('img')), shapes: Array.from("
        f"    f.querySelectorAll({json.dumps(shape)})).map(r)}};"
        "})"
    )
    return found


def _assert_placed(found: dict[str, Any], box: tuple[float, ...], size: tuple[int, int]) -> None:
    """The one shape covers ``box`` (in a ``size`` picture) scaled onto the image, within 2 px."""
    img = found["img"]
    assert img["w"] > 100 and len(found["shapes"]) == 1, found
    shape = found["shapes"][0]
    sx, sy = img["w"] / size[0], img["h"] / size[1]
    expected = {
        "x": img["x"] + box[0] * sx,
        "y": img["y"] + box[1] * sy,
        "w": (box[2] - box[0]) * sx,
        "h": (box[3] - box[1]) * sy,
    }
    for key, value in expected.items():
        assert shape[key] == pytest.approx(value, abs=2.0), (key, shape, expected)


def _open(page: _Page, index: int) -> None:
    page.eval("document.getElementById('viewer').close() || 1")  # left open by a failure
    page.click(f"#grid .card[data-index='{index}']")
    page.wait("document.getElementById('viewer').open")
    page.wait(
        "Array.from(document.querySelectorAll('#v-images img'))"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )


def test_large_view_draws_the_box_over_every_picture(boxed: _Page) -> None:
    _open(boxed, 0)
    assert boxed.eval("document.getElementById('v-title').textContent") == "a.png"
    figures = _rects(boxed, "#v-images figure", "svg.objects rect.gt-box")
    assert len(figures) == 1 + len(METHODS)  # the input and one map per method
    for found in figures:
        _assert_placed(found, BOX, ORIGINAL)
    assert boxed.eval("document.querySelectorAll('#v-images path.gt-mask').length") == 0
    boxed.click("#v-close")


def test_large_view_outlines_the_mask(boxed: _Page) -> None:
    from seewhy import Preprocess
    from seewhy.audit.flags import object_mask

    _open(boxed, 1)
    assert boxed.eval("document.getElementById('v-title').textContent") == "b.png"
    # the outline follows the mask the scores used: the file's, resized as the picture was
    shape = np.zeros((ORIGINAL[1], ORIGINAL[0], 3), np.uint8)
    shape[MASK[1] : MASK[3], MASK[0] : MASK[2]] = 255
    mask_file = Path(tempfile.mkdtemp(prefix="mask-")) / "m.png"
    Image.fromarray(shape).save(mask_file)
    mask = object_mask(ORIGINAL[::-1], Preprocess(size=PICTURE[::-1]), mask_path=str(mask_file))
    assert mask is not None
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    extent = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    figures = _rects(boxed, "#v-images figure", "svg.objects path.gt-mask")
    assert len(figures) == 1 + len(METHODS)
    for found in figures:
        _assert_placed(found, extent, PICTURE)
    assert boxed.eval("document.querySelectorAll('#v-images rect.gt-box').length") == 0
    boxed.click("#v-close")


def test_thumbnails_carry_a_thin_outline_that_can_be_hidden(boxed: _Page) -> None:
    assert boxed.eval("document.querySelectorAll('#grid svg.objects').length") == 2
    card = _rects(boxed, "#grid .card[data-index='0'] .thumb", "rect.gt-box")
    _assert_placed(card[0], BOX, ORIGINAL)
    width = boxed.eval(
        "parseFloat(getComputedStyle(document.querySelector('#grid rect.gt-box')).strokeWidth)"
    )
    assert 0 < width < 2
    assert not boxed.eval("document.getElementById('objects-toggle').hidden")
    boxed.click("#show-objects")
    hidden = "getComputedStyle(document.querySelector('#grid svg.objects')).display"
    assert boxed.eval(hidden) == "none"
    boxed.click("#show-objects")
    assert boxed.eval(hidden) != "none"


def test_the_suspicious_strip_outlines_objects_too(boxed: _Page) -> None:
    shown = boxed.eval(
        "Array.from(document.querySelectorAll('.strip [data-open]'))"
        ".map(b => Number(b.getAttribute('data-open')))"
    )
    assert 0 in shown and 1 in shown, shown  # a.png (box) and b.png (mask) are off-object
    strip = _rects(boxed, ".strip [data-open='0'] .thumb", "rect.gt-box")
    _assert_placed(strip[0], BOX, ORIGINAL)
    assert (
        boxed.eval("document.querySelectorAll(\".strip [data-open='1'] path.gt-mask\").length") == 1
    )
    if 2 in shown:  # c.png has no object: nothing drawn
        assert boxed.eval("document.querySelectorAll(\".strip [data-open='2'] svg\").length") == 0


def test_an_audit_without_boxes_draws_none(
    browser: Callable[[Path], _Page], tmp_path_factory: pytest.TempPathFactory
) -> None:
    page = browser(_audit(tmp_path_factory.mktemp("plain"), objects=False))
    page.wait("window.seewhyReport && window.seewhyReport.ready")
    assert page.eval("document.querySelectorAll('#grid .card').length") == 3
    _open(page, 0)
    assert page.eval("document.querySelectorAll('#v-images figure').length") == 1 + len(METHODS)
    assert page.eval("document.querySelectorAll('svg.objects, .gt-box, .gt-mask').length") == 0
    assert page.eval("document.getElementById('objects-toggle').hidden")
