"""The numbers on top of the report: accuracy, classes, the worst images."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["summarize"]

FLAG_NAMES = ("wrong", "off-object", "off-box", "border", "odd", "unreadable", "non-finite")


def _finite(value: Any) -> float:
    """A sort key that a NaN (a record of a model gone wrong) cannot scramble."""
    number = float(value or 0.0)
    return number if math.isfinite(number) else 0.0


def summarize(records: Sequence[Mapping[str, Any]], *, suspicious: int = 24) -> dict[str, Any]:
    """Counts, accuracy over images whose true class is known, per-class table."""
    ok = [r for r in records if r["status"] == "ok"]
    judged = [r for r in ok if r.get("correct") is not None]
    correct = sum(1 for r in judged if r["correct"])
    flags = Counter(f for r in records for f in r.get("flags") or ())
    classes: dict[str, dict[str, Any]] = {}
    confusions: dict[str, Counter[str]] = {}
    for r in ok:
        key = r.get("true_label")
        if key is None:
            continue
        row = classes.setdefault(
            key, {"label": key, "index": r.get("true_index"), "images": 0, "correct": 0}
        )
        row["images"] += 1
        if r.get("correct"):
            row["correct"] += 1
        elif r.get("correct") is False:
            confusions.setdefault(key, Counter())[str(r.get("pred_label"))] += 1
    for key, row in classes.items():
        judged_here = row["index"] is not None
        row["accuracy"] = row["correct"] / row["images"] if judged_here and row["images"] else None
        common = confusions.get(key)
        row["confused_with"] = common.most_common(1)[0][0] if common else None
    predicted = Counter(str(r["pred_label"]) for r in ok)
    ranked = sorted(ok, key=lambda r: (-_finite(r.get("suspicion")), int(r["index"])))
    return {
        "images": len(records),
        "explained": len(ok),
        "failed": len(records) - len(ok),
        "with_truth": len(judged),
        "correct": correct,
        "accuracy": correct / len(judged) if judged else None,
        "flags": {name: flags.get(name, 0) for name in FLAG_NAMES},
        "classes": sorted(
            classes.values(),
            key=lambda c: (c["accuracy"] is None, c["accuracy"] or 0.0, c["label"]),
        ),
        "predicted": [{"label": k, "images": v} for k, v in predicted.most_common()],
        "most_suspicious": [
            int(r["index"])
            for r in ranked
            if set(r.get("flags") or ()) & {"wrong", "off-object", "off-box", "border"}
        ][:suspicious],
    }
