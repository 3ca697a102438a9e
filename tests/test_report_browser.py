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
from collections.abc import Iterator
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
def page(report: Path) -> Iterator[_Page]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="seewhy-chromium-")
    pw: Any = None
    try:
        pw = importlib.import_module("playwright.sync_api")
    except ImportError:
        pass
    if pw is not None:
        with pw.sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                args=FLAGS,
                headless=True,
                viewport={"width": 1200, "height": 900},
            )
            tab = context.new_page()
            errors: list[str] = []
            tab.on("pageerror", lambda e: errors.append(str(e)))

            def on_dialog(d: Any) -> None:  # an alert() would mean injected code ran
                errors.append("dialog " + d.message)
                d.dismiss()

            tab.on("dialog", on_dialog)
            tab.goto(report.as_uri())
            yield _Page("playwright", tab)
            context.close()
        assert not errors, errors
    else:
        webdriver = pytest.importorskip(
            "selenium.webdriver", reason="neither playwright nor selenium is installed"
        )
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in [*FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options)
        try:
            driver.get(report.as_uri())
            yield _Page("selenium", driver)
        finally:
            driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


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
