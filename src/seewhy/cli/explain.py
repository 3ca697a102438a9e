"""``seewhy explain``: explain images and write one overlay panel per image and method.

A bad image is reported and the others are still explained (exit code 3).
Every source gets its own panel file, decided before the model loads (see
:func:`output_plan`): the JSON points each source at its own file, and no
panel, ``--grid`` or ``--json`` file lands on an input or on each other
(:mod:`.outputs`).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput
from ..inputs.decoding import SAMPLE_PREFIX
from ..provenance import png_mark
from ..terminal import one_line, printable
from ._common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PARTIAL,
    Progress,
    check_methods,
    sources,
    write_json,
)
from .options import (
    add_explaining_options,
    add_force,
    add_recursive,
    add_renamed,
    chosen_target,
    explainer_keywords,
    load_model,
)
from .outputs import OutputPlan, input_paths, picture_format, same_file_key
from .settings import method_settings

if TYPE_CHECKING:
    from seewhy import Explainer, Explanation

__all__ = ["HELP", "add_explain_arguments", "explain_command", "output_plan"]

HELP = "explain images and write overlay panels"

#: Images per chunk when --batch-size is not given.
_CHUNK = 16

#: How a panel's three pictures are placed (``Explanation.panel(arrangement=)``).
ARRANGEMENTS = ("horizontal", "vertical")


def add_explain_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``seewhy explain``."""
    add_explaining_options(
        p,
        batch_size="images per pass, and perturbed or noisy copies per pass [default: 16; "
        "copies: chosen by model and device]",
    )
    p.add_argument("--out", default=".", help="folder for the panels [default: .]")
    p.add_argument(
        "--cmap",
        help="matplotlib colormap, or cv2:jet / cv2:viridis for OpenCV's exact tables "
        "[default: viridis; bwr with --signed]",
    )
    p.add_argument("--alpha", type=float, default=0.5, help="image weight in the overlay")
    add_renamed(
        p,
        "--arrangement",
        "--layout",
        dest="arrangement",
        choices=ARRANGEMENTS,
        default="horizontal",
        help="the panel's three pictures side by side or stacked [default: horizontal]",
    )
    p.add_argument(
        "--view",
        choices=("original", "input"),
        default="original",
        help="draw on the photo at its own size and aspect, or on the model's input "
        "[default: original]",
    )
    p.add_argument(
        "--signed",
        action="store_true",
        help="pixel attributions with their sign, in a diverging colormap",
    )
    p.add_argument(
        "--grid",
        metavar="FILE",
        help="also write one picture of every image (rows) by every method (columns)",
    )
    add_recursive(p)
    p.add_argument("--json", metavar="FILE", help="write predictions and file names as JSON")
    add_force(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar, no listing")


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


#: The longest file name most file systems take, in bytes.
_NAME_MAX = 255


def _place(source: str, folders: Sequence[Path]) -> tuple[PurePath, str]:
    """(sub-folder below ``--out``, stem) of a source's panels.

    A file found in a named folder keeps its sub-folder below it (``cat/1.jpg``
    and ``dog/1.jpg`` stay apart); a file named directly, or a sample, goes at
    the top. Nothing can climb out of ``--out``.
    """
    if source.startswith(SAMPLE_PREFIX):
        name = PurePath(source[len(SAMPLE_PREFIX) :]).name
        return PurePath(), name if name not in ("", ".", "..") else "sample"
    path = Path(source)
    for folder in folders:
        try:
            below = path.relative_to(folder).parent
        except ValueError:
            continue
        if ".." not in below.parts:
            return below, path.stem or path.name
    return PurePath(), path.stem or path.name


def _fitted(stem: str, ending: str) -> str:
    """``stem + ending``, the stem shortened so the name fits the file system's limit."""
    while stem and len(os.fsencode(stem + ending)) > _NAME_MAX:
        stem = stem[:-1]
    return stem + ending


def output_plan(
    found: Sequence[str],
    named: Sequence[str],
    methods: Sequence[str],
    out: Path,
    plan: OutputPlan | None = None,
) -> dict[str, dict[str, Path]]:
    """Each source's panel per method: distinct files below ``out``, claimed in ``plan``.

    Two sources whose names would give the same file (``cat/1.jpg`` and
    ``dog/1.jpg`` named directly, ``1.jpg`` and ``1.png``) get ``-2``, ``-3``
    on the later ones, and so does a name that is an input of the run: a panel
    is never written over a picture. ``plan`` defaults to one whose inputs are
    ``found``.
    """
    plan = plan if plan is not None else OutputPlan(found)
    folders = [Path(n) for n in named if not n.startswith(SAMPLE_PREFIX) and Path(n).is_dir()]
    several = len(methods) > 1
    panels: dict[str, dict[str, Path]] = {}
    for source in found:
        below, stem = _place(source, folders)
        for n in itertools.count(1):
            base = stem if n == 1 else f"{stem}-{n}"
            names = {m: f".{m}.seewhy.png" if several else ".seewhy.png" for m in methods}
            paths = {m: out / below / _fitted(base, ending) for m, ending in names.items()}
            distinct = len({same_file_key(p) for p in paths.values()}) == len(paths)
            if distinct and all(plan.conflict(p) is None for p in paths.values()):
                break
        what = f"the panel of {printable(source)}"
        panels[source] = {m: plan.claim(p, what, option="--out") for m, p in paths.items()}
    return panels


def _claim_outputs(
    args: argparse.Namespace, found: Sequence[str], methods: Sequence[str]
) -> tuple[OutputPlan, dict[str, dict[str, Path]]]:
    """Every file this run writes, claimed before the model loads (or one line refusing)."""
    plan = OutputPlan(input_paths(args, found), force=args.force)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise InvalidInput(f"--out: {printable(args.out)} is a file; name a folder for the panels")
    panels = output_plan(found, args.images, methods, Path(args.out), plan)
    if args.grid:
        picture_format(args.grid, "--grid", _pillow_formats())  # a typo fails now
        plan.claim(args.grid, "--grid", option="--grid")
    if args.json and args.json != "-":
        plan.claim(args.json, "--json", option="--json")
    plan.check()
    return plan, panels


def _pillow_formats() -> dict[str, str]:
    """Endings Pillow can write -> its format name."""
    from PIL import Image

    Image.init()
    return {e: f for e, f in Image.registered_extensions().items() if f in Image.SAVE}


def explain_command(args: argparse.Namespace) -> int:
    """Explain every image with every method; panels in ``--out``, records in ``--json``."""
    import seewhy
    from seewhy import NonFiniteScoresWarning

    methods = check_methods(args.method)
    settings = method_settings(args, methods)
    found = sources(args.images, args.recursive)
    plan, panels = _claim_outputs(args, found, methods)
    model = load_model(args)
    args.target = chosen_target(args, model)  # --target parsed once: a class or a target
    chosen = explainer_keywords(args)
    explainers = {m: seewhy.Explainer(model, m, **chosen, **settings[m]) for m in methods}
    _check_target(next(iter(explainers.values())), args.target)
    records: list[dict[str, Any]] = []
    failures: list[tuple[str, str]] = []
    explained: list[Explanation] | None = [] if args.grid else None
    total = len(found) * len(methods)
    bar = Progress(args.quiet or total < 2 or not sys.stderr.isatty(), unit="img", leave=False)
    bar(0, total)
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        bar(done, total)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonFiniteScoresWarning)  # listed once, below
            for chunk in _chunks(found, args.batch_size or _CHUNK):
                chunk_records, chunk_failures = _explain_chunk(
                    list(chunk), explainers, (plan, panels), args, advance, explained
                )
                records.extend(chunk_records)
                failures.extend(chunk_failures)
    finally:
        bar.close()
    for source, reason in failures:
        shown = reason if source in reason else f"{source}: {reason}"
        print(f"seewhy: skipped: {one_line(shown)}", file=sys.stderr)
    not_finite = [r["source"] for r in records if not r["scores_finite"]]
    if not_finite:
        names = printable(", ".join(not_finite))
        print(
            f"seewhy: warning: the model gave NaN or infinite scores for {len(not_finite)} "
            f"image(s), which have no prediction: {names}",
            file=sys.stderr,
        )
    if explained:
        _write_grid(explained, args, plan)
    if args.json:
        payload = {
            "model": args.model,
            "methods": methods,
            "precision": args.precision or "float32",
            "settings": {m: _settings(e) for m, e in explainers.items()},
            "images": records,
            "failures": [{"source": s, "reason": r} for s, r in failures],
        }
        write_json(payload, args.json, plan)
    if failures and not records:
        return EXIT_ERROR
    return EXIT_PARTIAL if failures else EXIT_OK


def _check_target(explainer: Explainer, target: Any) -> None:
    """A target a vision-language model cannot take fails the run here, in one line.

    Its binding (a prompt's tokenizer and text tower, an answer's) does not
    depend on the images; left to the chunks, its error would be reported as
    every image being unreadable. The texts it encodes are kept for the run.
    """
    if explainer.adapted is not None:
        explainer.adapted.bind(target)


def _explain_chunk(
    chunk: list[str],
    explainers: dict[str, Explainer],
    outputs: tuple[OutputPlan, dict[str, dict[str, Path]]],
    args: argparse.Namespace,
    advance: Callable[[int], None],
    explained: list[Explanation] | None = None,
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Explain one chunk with every method, write its panels; (records, failures).

    The first method reports the predictions and the images that failed;
    ``explained`` (for ``--grid``) collects the explanations.
    """
    import seewhy

    plan, panels = outputs
    records: dict[str, dict[str, Any]] = {}
    failures: list[tuple[str, str]] = []
    for m, explainer in explainers.items():
        try:
            ex = explainer.explain(chunk, target=args.target)
        except seewhy.InvalidInput as exc:  # every image of the chunk was bad
            if not records:
                failures.extend((s, str(exc)) for s in chunk)
            advance(len(chunk))
            break
        if not records:
            records = {s: _record(ex, i) for i, s in enumerate(ex.sources)}
            failures.extend((f.source, f.reason) for f in ex.failures)
            _print_predictions(ex, quiet=args.quiet)
        if explained is not None:
            explained.append(ex)
        for i, source in enumerate(ex.sources):
            path = panels[source][m]
            with plan.open(path) as handle:
                ex.panel(i, **_panel_options(args, ex)).save(
                    handle, format="PNG", pnginfo=png_mark()
                )
            records[source]["outputs"][m] = str(path)
            if not args.quiet:
                print(f"  wrote {printable(str(path))}")
        advance(len(chunk))
    return list(records.values()), failures


def _panel_options(args: argparse.Namespace, ex: Explanation) -> dict[str, Any]:
    """The picture options of the command line, as keywords of ``Explanation.panel``.

    ``--signed`` applies to the pixel attribution methods; the others have no sign.
    """
    from seewhy.viz import is_pixel_method

    signed = bool(args.signed) and is_pixel_method(ex)
    return {
        "cmap": args.cmap,
        "alpha": args.alpha,
        "at": args.view,
        "arrangement": args.arrangement,
        "signed": signed,
    }


def _write_grid(explained: list[Explanation], args: argparse.Namespace, plan: OutputPlan) -> None:
    """``--grid``: every image by every method in one picture (a PNG marked as seewhy's)."""
    from seewhy.viz import grid

    path = Path(args.grid)
    picture = grid(explained, cmap=args.cmap, alpha=args.alpha, at=args.view, signed=args.signed)
    kind = picture_format(path, "--grid", _pillow_formats())
    marked = {"pnginfo": png_mark()} if kind == "PNG" else {}
    if kind == "JPEG" and picture.mode not in ("RGB", "L"):  # JPEG has no alpha
        picture = picture.convert("RGB")
    with plan.open(path) as handle:
        picture.save(handle, format=kind, **marked)
    if not args.quiet:
        print(f"  wrote {printable(str(path))}")


def _settings(explainer: Explainer) -> dict[str, Any]:
    """Every setting of the explainer's method, as the JSON records it (defaults included)."""
    return dict(explainer.method.params)


def _record(ex: Explanation, i: int) -> dict[str, Any]:
    """The JSON record of image ``i``: target, top-k predictions, panels written.

    An image whose scores are not finite has ``scores_finite`` false and no
    predictions (strict JSON has no NaN).
    """
    finite = bool(ex.scores_finite[i])
    spec = ex.params.get("target")  # a seewhy.targets target's JSON form (from_json loads it)
    return {
        "source": ex.sources[i],
        "target": int(ex.targets[i]),
        "target_label": ex.target_labels[i],
        **({"target_spec": spec[i] if isinstance(spec, list) else spec} if spec else {}),
        "scores_finite": finite,
        "predictions": [
            {"index": p.index, "label": p.label, "probability": round(p.probability, 6)}
            for p in ex.predictions[i]
            if finite
        ],
        "outputs": {},
    }


def _print_predictions(ex: Explanation, *, quiet: bool) -> None:
    if quiet:
        return
    for i, source in enumerate(ex.sources):
        print(printable(source))
        if not ex.scores_finite[i]:
            print("  scores not finite (the model gave NaN or infinite logits)")
            continue
        if not ex.predictions[i]:  # no classes (a VLM's answer): what was explained instead
            print(f"  explained: {printable(ex.target_labels[i])}")
        for rank, p in enumerate(ex.predictions[i], start=1):
            label = printable(p.label)
            print(f"  {rank}. {label:<30} {100 * p.probability:6.2f}%  (class {p.index})")
