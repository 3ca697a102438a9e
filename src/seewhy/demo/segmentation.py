"""``seewhy demo segmentation``: where a segmenter looks for each object it outlines.

A tiny segmenter is trained on synthetic shapes; each test object's ``Region``
target is explained with Grad-CAM, and the report shows how much of each map
lies inside its object against what an even map would put there.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..provenance import HTML_START, png_mark
from .shortcut import check_examples

__all__ = ["SegmentationDemoResult", "run_segmentation_demo"]


@dataclass(frozen=True)
class SegmentationDemoResult:
    """What the segmentation demo measured and where it wrote the report.

    ``mass_inside`` is each test picture's share of its ``Region`` map inside
    the object (the energy pointing game); ``chance`` what a map spread evenly
    would score (the objects' mean share of the picture).

    Attributes
    ----------
    out_dir : Path
        The folder the report is in.
    report : Path
        Its ``index.html``.
    images : tuple of Path
        The picture the page shows.
    pixel_accuracy : float
        The segmenter's share of test pixels classified right.
    mass_inside : numpy.ndarray
        (N,) each test picture's share of its map inside the object.
    chance : float
        What a map spread evenly scores.
    method : str
        The method that explained the segmenter.
    layer : str or None
        The layer it read.
    seconds : float
        How long the demo took.
    model : object
        The trained segmenter (PyTorch), to explore further.
    """

    out_dir: Path
    report: Path
    images: tuple[Path, ...]
    pixel_accuracy: float
    mass_inside: np.ndarray
    chance: float
    method: str
    layer: str | None
    seconds: float
    model: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no model)."""
        return {
            "report": str(self.report),
            "images": [str(p) for p in self.images],
            "pixel_accuracy": self.pixel_accuracy,
            "mass_inside": float(self.mass_inside.mean()),
            "chance": self.chance,
            "method": self.method,
            "layer": self.layer,
            "seconds": round(self.seconds, 2),
        }


def run_segmentation_demo(
    out_dir: str | Path,
    *,
    seed: int = 0,
    n_train: int = 600,
    n_test: int = 60,
    epochs: int = 6,
    method: str = "gradcam",
    layer: str | None = "head.0",
    examples: int = 6,
) -> SegmentationDemoResult:
    """Train a tiny segmenter on synthetic shapes and explain each object's ``Region``.

    Each test picture's target is ``Region(its shape's class, its object mask)``:
    the segmenter's scores for that class summed over the object. A faithful
    map lies inside the object; the demo reports how much of it does. The
    default ``layer`` is the full-resolution block the per-pixel classifier reads.
    About 10-20 s on a laptop CPU (PyTorch); nothing is downloaded.

    Parameters
    ----------
    out_dir, seed, examples
        As in :func:`run_shortcut_demo`.
    n_train : int
        Training pictures.
    n_test : int
        Test pictures, each explained.
    epochs : int
        Training epochs.
    method : str
        The method that explains each object's ``Region``.
    layer : str or None
        The layer a layer method reads; None lets seewhy choose.

    Returns
    -------
    SegmentationDemoResult
        The numbers, the report's paths and the model.

    Raises
    ------
    InvalidInput
        An ``examples`` count out of range.
    """
    from .. import synthetic
    from ..api import explain
    from ..synthetic.segmentation import pixel_labels, predict_pixels, train_torch_segmenter
    from ..targets import Region

    check_examples(examples, n_test)
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = synthetic.make_shapes(n_train, seed=seed)
    test = synthetic.make_shapes(n_test, seed=seed + 1)
    model = train_torch_segmenter(train, epochs=epochs, seed=seed)
    targets = [
        Region(int(label) + 1, mask) for label, mask in zip(test.labels, test.masks, strict=True)
    ]
    ex = explain(model, test.images, method, target=targets, layer=layer)
    predicted = predict_pixels(model, test)
    accuracy = float((predicted == pixel_labels(test)).mean())
    inside = synthetic.mass_inside(ex.maps, test.masks)
    chance = float(synthetic.box_share(test.masks).mean())
    picture = _write_region_examples(out / "regions.png", test, ex, examples)
    result = SegmentationDemoResult(
        out_dir=out,
        report=out / "index.html",
        images=(picture,),
        pixel_accuracy=accuracy,
        mass_inside=inside,
        chance=chance,
        method=method,
        layer=ex.layer,
        seconds=time.perf_counter() - start,
        model=model,
    )
    result.report.write_text(_segmentation_html(result, n_train, n_test), encoding="utf-8")
    return result


def _write_region_examples(path: Path, data: Any, ex: Any, count: int) -> Path:
    """Rows: picture with the object outlined | its Region map, with the share inside."""
    from PIL import Image, ImageDraw

    from ..synthetic import mass_inside
    from ..viz import overlay

    scale, gap, header = 3, 6, 22
    size = data.size * scale
    canvas = Image.new("RGB", (2 * size + gap, header + count * (size + gap + 16)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), "picture (object outlined)", fill=(0, 0, 0))
    draw.text((size + gap + 4, 4), f"{ex.method} map of the object's Region", fill=(0, 0, 0))
    shares = mass_inside(ex.maps[:count], data.masks[:count])
    for row in range(count):
        top = header + row * (size + gap + 16)
        mask = data.masks[row]
        edge = mask & ~(
            np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1)
        )
        picture = data.images[row].copy()
        picture[edge] = (255, 255, 255)
        big = Image.fromarray(picture).resize((size, size), Image.Resampling.NEAREST)
        canvas.paste(big, (0, top))
        blended = Image.fromarray(overlay(data.images[row], ex.maps[row], alpha=0.5))
        canvas.paste(blended.resize((size, size), Image.Resampling.BILINEAR), (size + gap, top))
        draw.text((4, top + size + 2), data.classes[data.labels[row]], fill=(0, 0, 0))
        draw.text((size + gap + 4, top + size + 2), f"{shares[row]:.0%} inside", fill=(0, 0, 0))
    canvas.save(path, pnginfo=png_mark())
    return path


def _segmentation_html(result: SegmentationDemoResult, n_train: int, n_test: int) -> str:
    """A self-contained page that points at the PNG next to it."""
    esc = html.escape
    return f"""{HTML_START}\
<html lang="en"><head><meta charset="utf-8"><title>seewhy: segmentation demo</title>
<style>body {{ font-family: system-ui, sans-serif; max-width: 50rem; margin: 2rem auto; }}
img {{ max-width: 100%; }}</style></head><body>
<h1>Does a segmenter's explanation stay on the object?</h1>
<p>A tiny segmenter (PyTorch) was trained on {n_train} synthetic pictures of shapes to label
each pixel background or shape ({result.pixel_accuracy:.1%} of the pixels of {n_test} new
pictures right). Each new picture was explained with
<code>seewhy.targets.Region(its class, its object mask)</code>: the class's scores summed over
the object, by {esc(result.method)} at layer <code>{esc(str(result.layer))}</code>.</p>
<p><b>{result.mass_inside.mean():.1%}</b> of each map lies inside the object on average; a map
spread evenly would put {result.chance:.1%} there (the objects' share of the picture).</p>
<img src="regions.png" alt="pictures and their Region maps">
<p style="color:#777">seewhy demo segmentation, {result.seconds:.1f} s.</p>
</body></html>
"""
