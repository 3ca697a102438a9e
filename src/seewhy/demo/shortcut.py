"""``seewhy demo shortcut``: catch a model that learnt a watermark instead of the object.

Two tiny CNNs are trained on synthetic shapes (:mod:`seewhy.synthetic`): one
on clean pictures, one on pictures whose corner patch names the class. Both
are tested where the shortcut holds and where it lies. Accuracy alone shows
the damage only once the shortcut breaks; the explanation shows it before:
the shortcut model's Grad-CAM puts little of its energy on the object. The
report (``index.html`` with PNGs) shows accuracies, the energy-in-object
scores and, per example, where each model looks.

Runs in about half a minute on a laptop CPU; nothing is downloaded.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..provenance import HTML_START, MARK, png_mark

__all__ = ["DemoResult", "check_examples", "run_shortcut_demo"]


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured and where it wrote the report.

    ``accuracy[model][test]`` for models ``"clean"``/``"shortcut"`` and tests
    ``"shortcut_holds"``/``"shortcut_broken"``; ``energy`` is the mean share of
    Grad-CAM energy inside the object's box on the broken test set, ``chance``
    what a map blind to the object would score there (the boxes' mean area
    share), and ``flagged`` marks models with ``energy < chance``.

    Attributes
    ----------
    out_dir : Path
        The folder the report is in.
    report : Path
        Its ``index.html``.
    images : tuple of Path
        The pictures the page shows (examples, scores).
    framework : str
        ``"torch"`` or ``"keras"``: what trained the models.
    accuracy : dict
        ``accuracy[model][test]``, 0 to 1.
    energy : dict
        Per model, the mean share of the map's energy inside the object's box.
    pointing : dict
        Per model, the pointing game's hit rate on the object's mask.
    chance : float
        What a map blind to the object scores on ``energy``.
    flagged : dict
        Per model, whether its ``energy`` is below ``chance``.
    seconds : float
        How long the demo took.
    models : dict
        The two trained models, ``"clean"`` and ``"shortcut"``, to explore further.
    """

    out_dir: Path
    report: Path
    images: tuple[Path, ...]
    framework: str
    accuracy: dict[str, dict[str, float]]
    energy: dict[str, float]
    pointing: dict[str, float]
    chance: float
    flagged: dict[str, bool]
    seconds: float
    models: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no models)."""
        return {
            "report": str(self.report),
            "images": [str(p) for p in self.images],
            "framework": self.framework,
            "accuracy": self.accuracy,
            "energy_in_object": self.energy,
            "pointing_game": self.pointing,
            "chance": self.chance,
            "flagged": self.flagged,
            "seconds": round(self.seconds, 2),
        }


def run_shortcut_demo(
    out_dir: str | Path,
    *,
    framework: str = "torch",
    seed: int = 0,
    n_train: int = 2000,
    n_test: int = 400,
    epochs: int = 10,
    shortcut: str = "patch",
    method: str = "gradcam",
    examples: int = 6,
) -> DemoResult:
    """Train a clean and a shortcut model, test both, and write the report to ``out_dir``.

    ``shortcut`` is ``"patch"`` (a corner watermark) or ``"tint"`` (a
    background tint). The shortcut model sees the shortcut agree with the
    label on every training picture; the broken test set's shortcut always
    names a wrong class.

    Parameters
    ----------
    out_dir : str or Path
        Where the report goes; made when missing.
    framework : str
        ``"torch"`` or ``"keras"``: what trains the two models.
    seed : int
        Seeds the data and the training, so a run can be repeated.
    n_train : int
        Training pictures per model.
    n_test : int
        Pictures per test set.
    epochs : int
        Training epochs per model.
    shortcut : str
        ``"patch"`` or ``"tint"``.
    method : str
        The method that explains both models.
    examples : int
        Test pictures shown in the report, 1 to ``n_test``.

    Returns
    -------
    DemoResult
        The numbers, the report's paths and the models.

    Raises
    ------
    InvalidInput
        An unknown framework or shortcut, or an ``examples`` count out of range.
    """
    from .. import synthetic
    from ..api import explain
    from ..backends.base import check_native_framework
    from ..metrics.localisation import energy_in_box, pointing_game

    framework = check_native_framework(framework)
    if shortcut not in ("patch", "tint"):
        raise InvalidInput(f"shortcut: expected 'patch' or 'tint', got {shortcut!r}")
    check_examples(examples, n_test)
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    train_clean = synthetic.make_shapes(n_train, seed=seed)
    train_short = synthetic.make_shapes(n_train, seed=seed, shortcut=shortcut, shortcut_rate=1.0)
    tests = {
        "shortcut_holds": synthetic.make_shapes(
            n_test, seed=seed + 1, shortcut=shortcut, shortcut_rate=1.0
        ),
        "shortcut_broken": synthetic.make_shapes(
            n_test, seed=seed + 1, shortcut=shortcut, shortcut_rate=0.0
        ),
    }
    models = {
        "clean": synthetic.train(train_clean, framework=framework, epochs=epochs, seed=seed),
        "shortcut": synthetic.train(train_short, framework=framework, epochs=epochs, seed=seed),
    }
    accuracy = {
        name: {test: synthetic.accuracy(model, data) for test, data in tests.items()}
        for name, model in models.items()
    }
    broken = tests["shortcut_broken"]
    explanations = {name: explain(model, broken.images, method) for name, model in models.items()}
    energy = {name: energy_in_box(ex, boxes=broken.boxes).mean for name, ex in explanations.items()}
    pointing = {
        name: pointing_game(ex, masks=broken.masks).mean for name, ex in explanations.items()
    }
    box_area = (broken.boxes[:, 2] - broken.boxes[:, 0]) * (broken.boxes[:, 3] - broken.boxes[:, 1])
    chance = float(np.mean(box_area / float(broken.size * broken.size)))
    flagged = {name: value < chance for name, value in energy.items()}

    pictures = (
        _write_examples(out / "examples.png", broken, explanations, examples),
        _write_chart(out / "scores.png", accuracy, energy, chance),
    )
    seconds = time.perf_counter() - start
    result = DemoResult(
        out_dir=out,
        report=out / "index.html",
        images=pictures,
        framework=framework,
        accuracy=accuracy,
        energy=energy,
        pointing=pointing,
        chance=chance,
        flagged=flagged,
        seconds=seconds,
        models=models,
    )
    result.report.write_text(_html(result, shortcut, method, n_train, n_test), encoding="utf-8")
    return result


def check_examples(examples: int, n_test: int) -> None:
    """Both demos draw ``examples`` of their ``n_test`` test pictures: refuse any other count."""
    if isinstance(examples, bool) or not isinstance(examples, int) or not 1 <= examples <= n_test:
        raise InvalidInput(f"examples: expected 1..{n_test}, got {examples!r}")


# --------------------------------------------------------------------------- pictures


def _write_examples(path: Path, data: Any, explanations: dict[str, Any], count: int) -> Path:
    """Grid: picture with its box | clean model's map | shortcut model's map, per row."""
    from PIL import Image, ImageDraw

    from ..viz import overlay

    scale = 3
    size = data.size * scale
    gap = 6
    names = list(explanations)
    header = 22
    canvas = Image.new(
        "RGB",
        ((1 + len(names)) * (size + gap) - gap, header + count * (size + gap + 16)),
        (255, 255, 255),
    )
    draw = ImageDraw.Draw(canvas)
    for col, title in enumerate(["picture (object box)", *[f"{n} model" for n in names]]):
        draw.text((col * (size + gap) + 4, 4), title, fill=(0, 0, 0))
    for row in range(count):
        top = header + row * (size + gap + 16)
        picture = Image.fromarray(data.images[row]).resize((size, size), Image.Resampling.NEAREST)
        x0, y0, x1, y1 = (int(v) * scale for v in data.boxes[row])
        ImageDraw.Draw(picture).rectangle(
            (x0, y0, x1 - 1, y1 - 1), outline=(255, 255, 255), width=2
        )
        canvas.paste(picture, (0, top))
        draw.text((4, top + size + 2), f"true: {data.classes[data.labels[row]]}", fill=(0, 0, 0))
        for col, name in enumerate(names, start=1):
            ex = explanations[name]
            blended = Image.fromarray(overlay(data.images[row], ex.maps[row], alpha=0.45))
            canvas.paste(
                blended.resize((size, size), Image.Resampling.BILINEAR), (col * (size + gap), top)
            )
            guess = ex.target_labels[row]
            mark = "ok" if int(ex.targets[row]) == int(data.labels[row]) else "wrong"
            draw.text(
                (col * (size + gap) + 4, top + size + 2),
                f"says {guess} ({mark})",
                fill=(0, 0, 0) if mark == "ok" else (200, 0, 0),
            )
    canvas.save(path, pnginfo=png_mark())
    return path


def _write_chart(
    path: Path, accuracy: dict[str, dict[str, float]], energy: dict[str, float], chance: float
) -> Path:
    """Bars: accuracy with the shortcut holding / broken, and energy inside the object."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    names = list(accuracy)
    xs = np.arange(len(names))
    for k, (test, label) in enumerate(
        (("shortcut_holds", "shortcut holds"), ("shortcut_broken", "shortcut broken"))
    ):
        left.bar(xs + (k - 0.5) * 0.38, [accuracy[n][test] for n in names], 0.38, label=label)
    left.set_xticks(xs, [f"{n} model" for n in names])
    left.set_ylim(0, 1.25)
    left.set_yticks(np.linspace(0, 1, 6))
    left.set_ylabel("test accuracy")
    left.legend(fontsize=8, ncol=2, loc="upper center")
    colours = ["C2" if energy[n] >= chance else "C3" for n in names]
    right.bar(xs, [energy[n] for n in names], 0.5, color=colours)
    right.axhline(chance, color="0.3", linestyle="--", label="object's share of the picture")
    right.set_xticks(xs, [f"{n} model" for n in names])
    right.set_ylim(0, 1)
    right.set_ylabel("map energy inside the object")
    right.legend(fontsize=8)
    fig.savefig(path, dpi=100, metadata={"Software": MARK})
    return path


def _html(result: DemoResult, shortcut: str, method: str, n_train: int, n_test: int) -> str:
    """A self-contained page that points at the two PNGs next to it."""
    esc = html.escape
    what = "a coloured patch in the top-left corner" if shortcut == "patch" else "a background tint"
    rows = []
    for name in result.accuracy:
        flag = (
            "<b style='color:#c00'>shortcut suspected</b>"
            if result.flagged[name]
            else "looks at the object"
        )
        rows.append(
            f"<tr><td>{esc(name)} model</td>"
            f"<td>{result.accuracy[name]['shortcut_holds']:.1%}</td>"
            f"<td>{result.accuracy[name]['shortcut_broken']:.1%}</td>"
            f"<td>{result.energy[name]:.2f}</td><td>{result.pointing[name]:.1%}</td>"
            f"<td>{flag}</td></tr>"
        )
    return f"""{HTML_START}\
<html lang="en"><head><meta charset="utf-8"><title>seewhy: shortcut demo</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; }}
th {{ background: #f3f3f3; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>Did the model learn the shape, or the watermark?</h1>
<p>Two small CNNs ({esc(result.framework)}) were trained on {n_train} synthetic pictures of
shapes. For the <i>shortcut</i> model every training picture also carried {what} whose colour
named the class. Both were tested on {n_test} new pictures, once with the shortcut telling the
truth and once with it always naming a wrong class.</p>
<table>
<tr><th>model</th><th>accuracy, shortcut holds</th><th>accuracy, shortcut broken</th>
<th>{esc(method)} energy in object</th><th>pointing game</th><th>verdict</th></tr>
{"".join(rows)}
</table>
<p>Energy in object: the share of the map's total inside the object's box (1 = all of it).
A map that ignored the object would score {result.chance:.2f}, the boxes' share of the
picture; a model scoring less is flagged. The explanation flags the shortcut model even where
its accuracy still looks perfect.</p>
<img src="scores.png" alt="accuracy and energy in object per model">
<h2>Where each model looks (broken test set)</h2>
<img src="examples.png" alt="pictures with each model's {esc(method)} map">
<p style="color:#777">seewhy demo shortcut, {result.seconds:.1f} s.</p>
</body></html>
"""
