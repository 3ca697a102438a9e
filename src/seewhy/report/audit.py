"""The audit report: summary on top, then a sortable, filterable grid of maps."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from .finite import finite_json

__all__ = ["render_audit_report", "safe_json", "write_audit_report"]

#: Fields of a record the page needs (the tables keep everything).
_FIELDS = (
    "index",
    "name",
    "path",
    "status",
    "true_label",
    "pred_label",
    "confidence",
    "true_probability",
    "top",
    "energies",
    "flags",
    "notes",
    "suspicion",
    "width",
    "height",
    "objects",
)
_SUSPICIOUS_SHOWN = 12
_CLASSES_OPEN = 30


def _static(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text("utf-8")


def safe_json(data: Any) -> str:
    """JSON that cannot end its ``<script>`` block or open a comment inside it.

    NaN and infinities become ``null`` (see :mod:`.finite`): one image with
    non-finite scores must not stop the page.
    """
    text = json.dumps(finite_json(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def _tile(value: str, key: str, bad: bool = False) -> str:
    cls = "tile bad" if bad else "tile"
    return (
        f'<div class="{cls}"><div class="v">{escape(value)}</div>'
        f'<div class="k">{escape(key)}</div></div>'
    )


def _summary_html(
    records: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], meta: Mapping[str, Any]
) -> str:
    flags = summary["flags"]
    parts = ['<section id="summary" aria-label="Summary"><div class="tiles">']
    parts.append(_tile(str(summary["images"]), "images"))
    parts.append(_tile(str(summary["explained"]), "explained"))
    parts.append(_tile(str(flags["unreadable"]), "unreadable", bad=flags["unreadable"] > 0))
    if flags.get("non-finite"):
        parts.append(_tile(str(flags["non-finite"]), "non-finite model scores", bad=True))
    if summary["accuracy"] is not None:
        parts.append(
            _tile(
                _pct(summary["accuracy"]),
                f"accuracy ({summary['correct']} of {summary['with_truth']})",
            )
        )
        parts.append(_tile(str(flags["wrong"]), "wrong predictions", bad=flags["wrong"] > 0))
    if any(r.get("has_object") for r in records):
        parts.append(
            _tile(
                str(flags["off-object"]), "maps mostly off the object", bad=flags["off-object"] > 0
            )
        )
    if flags.get("off-box"):  # detections explained from outside their own boxes
        parts.append(_tile(str(flags["off-box"]), "maps mostly outside the box", bad=True))
    parts.append(_tile(str(flags["border"]), "maps mostly on the border", bad=flags["border"] > 0))
    parts.append(_tile(str(flags["odd"]), "odd images"))
    parts.append("</div>")
    notes = list(meta.get("notes") or [])
    if meta.get("class_rule"):
        notes.insert(0, f"true classes matched to the model's labels by {meta['class_rule']}")
    if notes:
        parts.append(
            '<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>"
        )
    by_index = {int(r["index"]): r for r in records}
    worst = [by_index[i] for i in summary["most_suspicious"][:_SUSPICIOUS_SHOWN] if i in by_index]
    if worst:
        parts.append('<h2>Most suspicious</h2><div class="strip">')
        for r in worst:
            i = int(r["index"])
            caption = f"{r['pred_label']} {_pct(r['confidence'])}"
            parts.append(
                f'<button type="button" data-open="{i}" title="{escape(str(r["name"]))}">'
                f'<img loading="lazy" src="images/{i:07d}.m0.jpg" alt="{escape(str(r["name"]))}">'
                f'<div class="cap">{escape(caption)}</div>'
                f'<div class="cap">{escape(", ".join(r["flags"]))}</div></button>'
            )
        parts.append("</div>")
    classes = summary["classes"]
    if classes:
        opened = " open" if len(classes) <= _CLASSES_OPEN else ""
        parts.append(
            f"<details{opened}><summary>Per class ({len(classes)} true classes, "
            'worst first)</summary><table class="t"><thead><tr><th>true class</th>'
            "<th>images</th><th>correct</th><th>accuracy</th><th>most often taken for"
            "</th></tr></thead><tbody>"
        )
        for c in classes:
            parts.append(
                f'<tr><td>{escape(str(c["label"]))}</td><td class="n">{c["images"]}</td>'
                f'<td class="n">{c["correct"]}</td><td class="n">{_pct(c["accuracy"])}</td>'
                f"<td>{escape(str(c['confused_with'] or ''))}</td></tr>"
            )
        parts.append("</tbody></table></details>")
    predicted = summary["predicted"]
    if predicted:
        parts.append(
            f"<details><summary>Predicted classes ({len(predicted)})</summary>"
            '<table class="t"><thead><tr><th>predicted class</th><th>images</th>'
            "</tr></thead><tbody>"
        )
        parts.extend(
            f'<tr><td>{escape(p["label"])}</td><td class="n">{p["images"]}</td></tr>'
            for p in predicted
        )
        parts.append("</tbody></table></details>")
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        parts.append(
            f'<h2 id="failures">Images not explained ({len(failed)})</h2>'
            '<table class="t"><thead><tr><th>file</th><th>reason</th></tr></thead>'
            "<tbody>"
        )
        parts.extend(
            f"<tr><td>{escape(str(r['name']))}</td><td>{escape(str(r['reason']))}</td></tr>"
            for r in failed
        )
        parts.append("</tbody></table>")
    parts.append("</section>")
    return "".join(parts)


def render_audit_report(
    records: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    meta: Mapping[str, Any],
) -> str:
    """The whole page as one string; pictures are referenced under ``images/``."""
    from seewhy import __version__

    css, js = _static("audit.css"), _static("audit.js")
    template = _static("audit.html")
    data = {
        "methods": list(meta["methods"]),
        "items": [{k: r.get(k) for k in _FIELDS} for r in records],
    }
    csp = (
        "default-src 'none'; img-src 'self' data:; "
        f"style-src {_sha256(css)}; script-src {_sha256(js)}; "
        "base-uri 'none'; form-action 'none'"
    )
    methods = ", ".join(meta["methods"])
    line = f"model {meta['model']} · {methods}"
    if meta.get("layer"):
        line += f" at layer {meta['layer']}"
    line += f" · {summary['images']} images"
    values = {
        "CSP": escape(csp),
        "VERSION": escape(__version__),
        "TITLE": escape(str(meta["title"])),
        "META": escape(line),
        "CSS": css,
        "JS": js,
        "SUMMARY": _summary_html(records, summary, meta),
        "DATA": safe_json(data),
    }
    # One pass over the template's markers: substituted text is never rescanned.
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda m: values[m.group(1)], template)


def write_audit_report(
    out: str | Path,
    records: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    meta: Mapping[str, Any],
) -> Path:
    """Write ``out/index.html`` atomically and return its path."""
    import os
    import tempfile

    target = Path(out) / "index.html"
    page = render_audit_report(records, summary, meta).encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=".index.html.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
