"""An Explanation in consoles and notebooks: short repr, PNG and HTML of its panels, a figure,
and a real notebook run through nbclient on an ipykernel kernel."""

from __future__ import annotations

import base64
import io
import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seewhy import notebook
from seewhy.errors import InvalidInput
from seewhy.explanation import Explanation, Prediction
from seewhy.inputs import Failure

NOTEBOOK = Path(__file__).parent / "notebooks" / "explain.ipynb"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _explanation(
    n: int = 2, h: int = 20, w: int = 30, *, labels: tuple[str, ...] = ("tabby", "dog", "car")
) -> Explanation:
    """A hand-made Explanation (no model): a blob map per image, three classes."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    blob = np.exp(-(((yy - h / 2) / (h / 4)) ** 2 + ((xx - w / 2) / (w / 4)) ** 2))
    logits = rng.normal(size=(n, len(labels))).astype(np.float32)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    order = np.argsort(-logits, axis=1)
    predictions = tuple(
        tuple(
            Prediction(int(k), labels[k], float(probabilities[i, k]), float(logits[i, k]))
            for k in order[i]
        )
        for i in range(n)
    )
    return Explanation(
        maps=np.repeat(blob[None].astype(np.float32), n, axis=0),
        layer_maps=np.repeat(blob[None, ::2, ::2].astype(np.float32), n, axis=0),
        images=rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8),
        sources=tuple(f"photo{i}.jpg" for i in range(n)),
        targets=order[:, 0].astype(np.int64),
        target_labels=tuple(labels[k] for k in order[:, 0]),
        logits=logits,
        predictions=predictions,
        method="gradcam",
        layer="features.3",
        params={"guided": False},
        framework="torch",
        model_name="tiny",
    )


def _png(data: bytes) -> Image.Image:
    assert data.startswith(PNG_SIGNATURE)
    return Image.open(io.BytesIO(data))


# --------------------------------------------------------------------------- repr


def test_repr_is_one_short_line_with_method_layer_size_and_top1() -> None:
    ex = _explanation(n=5)
    text = repr(ex)
    assert "\n" not in text and len(text) < 300
    assert text.startswith("Explanation(method='gradcam', layer='features.3', images=5")
    assert "input=20x30" in text
    first = ex.predictions[0][0]
    assert f"{first.label} {100 * first.probability:.1f}%" in text
    assert "... 2 more" in text  # only the first three images are named
    assert "array(" not in text


def test_repr_of_scores_that_are_not_finite_and_of_failures() -> None:
    ex = _explanation(n=1)
    broken = replace(ex, predictions=((Prediction.not_finite(),),))
    assert "scores not finite" in repr(broken) and "nan%" not in repr(broken)
    assert "failures" not in repr(ex)
    unread = replace(ex, failures=(Failure("bad.jpg", "not an image"),))
    assert repr(unread).endswith("failures=1)")
    assert "bad.jpg: not an image" in unread._repr_html_()


# --------------------------------------------------------------------------- PNG


def test_png_stacks_the_panels_of_the_images() -> None:
    ex = _explanation(n=3)
    picture = _png(notebook.png_bytes(ex) or b"")
    panels = [ex.panel(i) for i in range(3)]
    assert picture.width == max(p.width for p in panels)
    assert picture.height == sum(p.height for p in panels) + 2 * 8
    # the top of the PNG is the first panel, pixel for pixel
    top = np.asarray(picture.convert("RGB"))[: panels[0].height, : panels[0].width]
    np.testing.assert_array_equal(top, np.asarray(panels[0].convert("RGB")))
    assert ex._repr_png_() == notebook.png_bytes(ex)


def test_png_shows_at_most_the_first_eight_images() -> None:
    ex = _explanation(n=notebook.SHOWN + 3)
    height = _png(notebook.png_bytes(ex) or b"").height
    panel = ex.panel(0).height
    assert height == notebook.SHOWN * panel + (notebook.SHOWN - 1) * 8
    assert _png(notebook.png_bytes(ex, limit=2) or b"").height == 2 * panel + 8


def test_wide_panels_are_scaled_down_for_the_page_keeping_their_aspect() -> None:
    ex = _explanation(n=1, h=40, w=900)
    panel = ex.panel(0)
    assert panel.width > 1024
    picture = _png(notebook.png_bytes(ex) or b"")
    assert picture.width == 1024
    assert abs(picture.height / picture.width - panel.height / panel.width) < 0.01


def test_no_image_gives_no_png_and_a_bad_limit_is_refused() -> None:
    ex = _explanation(n=1)
    empty = replace(
        ex,
        maps=ex.maps[:0],
        layer_maps=ex.layer_maps[:0],
        images=ex.images[:0],
        sources=(),
        targets=ex.targets[:0],
        target_labels=(),
        logits=ex.logits[:0],
        predictions=(),
    )
    assert empty._repr_png_() is None
    assert "0 images" in empty._repr_html_()
    assert "images=0" in repr(empty)
    with pytest.raises(InvalidInput, match="limit"):
        notebook.png_bytes(ex, limit=0)


# --------------------------------------------------------------------------- HTML


def _embedded_pngs(block: str) -> list[Image.Image]:
    found = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", block)
    return [_png(base64.b64decode(data)) for data in found]


def test_html_has_method_layer_panels_and_top_classes() -> None:
    ex = _explanation(n=2)
    block = ex._repr_html_()
    assert "<code>gradcam</code>" in block and "<code>features.3</code>" in block
    assert "torch tiny" in block and "guided=False" in block
    pictures = _embedded_pngs(block)
    assert [p.size for p in pictures] == [ex.panel(i).size for i in range(2)]
    for i in range(2):
        assert f"photo{i}.jpg" in block
        for p in ex.predictions[i]:
            assert f"{100 * p.probability:.1f}%" in block
    assert "Showing the first" not in block


def test_html_says_how_many_images_it_leaves_out() -> None:
    ex = _explanation(n=notebook.SHOWN + 4)
    block = ex._repr_html_()
    assert len(_embedded_pngs(block)) == notebook.SHOWN
    assert f"Showing the first {notebook.SHOWN} of {notebook.SHOWN + 4} images" in block


def test_html_escapes_labels_and_sources() -> None:
    ex = _explanation(n=1, labels=("<script>x</script>", "b&c", "d"))
    ex = replace(ex, sources=("<img src=x onerror=alert(1)>",))
    block = ex._repr_html_()
    assert "<script>" not in block and "<img src=x" not in block
    assert "&lt;script&gt;" in block and "b&amp;c" in block


# --------------------------------------------------------------------------- figure


def test_plot_returns_a_figure_with_one_panel_per_image() -> None:
    from matplotlib.figure import Figure

    ex = _explanation(n=3)
    fig = ex.plot()
    assert isinstance(fig, Figure)
    axes = fig.get_axes()
    assert len(axes) == 3
    shown = axes[1].get_images()[0].get_array()
    np.testing.assert_array_equal(np.asarray(shown), np.asarray(ex.panel(1).convert("RGB")))
    assert "photo1.jpg" in axes[1].get_title()
    assert len(ex.plot(indices=[2]).get_axes()) == 1
    drawn = _png(fig._repr_png_())  # a notebook draws it without pyplot
    expected = (fig.get_figwidth() * fig.dpi, fig.get_figheight() * fig.dpi)
    assert all(abs(got - want) <= 1 for got, want in zip(drawn.size, expected, strict=True))


def test_plot_passes_panel_options_and_checks_indices() -> None:
    ex = _explanation(n=2)
    gray = ex.plot(indices=[0], cmap="gray").get_axes()[0].get_images()[0].get_array()
    np.testing.assert_array_equal(np.asarray(gray), np.asarray(ex.panel(0, cmap="gray")))
    for bad in ([2], [-1], [True], ["0"]):
        with pytest.raises(InvalidInput, match="plot: indices"):
            ex.plot(indices=bad)
    with pytest.raises(InvalidInput, match="at least one image"):
        ex.plot(indices=[])


# --------------------------------------------------------------------------- a real notebook


def test_a_notebook_shows_the_explanation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")

    # a kernel spec of our own, on this interpreter, found before any installed one
    spec = tmp_path / "jupyter" / "kernels" / "seewhy-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "seewhy test", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "matplotlib"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="seewhy-test",
        timeout=120,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()

    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    shown = [out for out in code[1].outputs if out.output_type == "execute_result"]
    assert len(shown) == 1
    data = shown[0]["data"]
    picture = _png(base64.b64decode(data["image/png"]))
    assert picture.width > picture.height  # two panels of three parts, side by side
    assert "<code>gradcam</code>" in data["text/html"]
    assert "data:image/png;base64," in data["text/html"]
    assert data["text/plain"].startswith("Explanation(method='gradcam'")
    printed = "".join(out.get("text", "") for out in code[2].outputs)
    assert printed.startswith("Explanation(method='gradcam'") and "images=2" in printed
    figure = [out for out in code[3].outputs if "image/png" in out.get("data", {})]
    assert figure, code[3].outputs  # the matplotlib figure is drawn inline
