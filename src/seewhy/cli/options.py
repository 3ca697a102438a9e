"""Options that several commands take, each defined once: the ``--model`` group above all.

A command adds the options it needs; :func:`load_model` reads the model
group back, so every command loads a model the same way.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from typing import Any

from seewhy import PRECISIONS
from seewhy.loading import NATIVE_FRAMEWORKS

__all__ = [
    "add_explainer_options",
    "add_explaining_options",
    "add_force",
    "add_model_options",
    "add_recursive",
    "add_renamed",
    "chosen_target",
    "explainer_keywords",
    "load_model",
    "loading_keywords",
]


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The ``model`` group: which model, for which framework, with what weights."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default="efficientnet_lite0",
        help="bundled name, torchvision:NAME, timm:NAME, keras:NAME, "
        "open_clip:NAME:PRETRAINED (downloaded by open_clip when online; open_clip:NAME with "
        "--weights FILE offline; open_clip:NAME:random for random weights on purpose), a "
        "Hugging Face model folder (save_pretrained's: CLIP, SigLIP, LLaVA, Qwen2-VL, image "
        "classifiers; safetensors weights), yolo:FILE.pt (an ultralytics checkpoint: a "
        "pickle, only with --trust-model) or yolo:NAME.yaml (random weights), or a model file "
        "(.pt TorchScript, .pt2 torch.export, .keras, .onnx) [default: efficientnet_lite0]",
    )
    g.add_argument(
        "--framework",
        choices=NATIVE_FRAMEWORKS,
        default="torch",
        help="framework for a bundled model [default: torch]",
    )
    g.add_argument(
        "--weights", help="local weights file (state dict, .safetensors / Keras weights)"
    )
    g.add_argument(
        "--trust-model",
        action="store_true",
        help="allow model files that can run code (pickles, TorchScript, Keras lambdas, a "
        "Hugging Face folder's pytorch_model.bin); a folder's own Python code is never run",
    )
    g.add_argument(
        "--size",
        type=_size,
        metavar="H[,W]",
        help="the model's input size, where the model does not say it [default: the model's]",
    )
    g.add_argument(
        "--providers",
        help="ONNX Runtime execution providers for a .onnx model, comma-separated "
        "[default: CUDAExecutionProvider where present, then CPUExecutionProvider]",
    )


def _size(text: str) -> tuple[int, int]:
    """``"32"`` -> (32, 32); ``"96,128"`` -> (96, 128)."""
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected H or H,W (positive integers), got {text!r}")
    height = int(parts[0])
    return height, int(parts[-1])


def _output_choice(text: str) -> int | str:
    return int(text) if text.strip().isdigit() else text


def chosen_target(args: argparse.Namespace, model: Any) -> Any:
    """``--target`` (or ``--answer``) as ``explain`` takes it: a class, or a target.

    A prompt's text is the model's to read, so the model's labels are looked
    up only for the forms that name classes.
    """
    import seewhy
    from seewhy.errors import InvalidInput

    from .target_text import TEXT_FORMS, parse_target

    text = getattr(args, "target", None)
    answer = getattr(args, "answer", None)
    if answer is not None:
        if getattr(args, "prompt", None) is None:
            raise InvalidInput(
                "--answer: needs --prompt, the question the answer replies to "
                '(e.g. --prompt "What is in the picture?" --answer "a cat")'
            )
        if text is not None:
            raise InvalidInput("--answer and --target both say what to explain; give one")
        return seewhy.targets.Answer(answer, prompt=args.prompt)
    if text is None:
        return None
    kind = text.partition(":")[0].strip().lower()
    labels = None if kind in TEXT_FORMS else seewhy.model_spec(model).labels
    return parse_target(text, labels)


def loading_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The ``model`` group as :func:`seewhy.load_model`'s keywords (the audit loads it too)."""
    providers = getattr(args, "providers", None)
    return {
        "framework": args.framework,
        "weights": args.weights,
        "trust": args.trust_model,
        "providers": providers.split(",") if providers else None,
    }


def load_model(args: argparse.Namespace) -> Any:
    """The model the ``model`` group names."""
    import seewhy

    model = seewhy.load_model(args.model, **loading_keywords(args))
    size = getattr(args, "size", None)
    if size is not None:  # the model was loaded here: its spec is ours to set
        model.seewhy_spec = seewhy.model_spec(model).at_size(size)
    return model


def add_explaining_options(
    p: argparse.ArgumentParser, *, skip: tuple[str, ...] = (), **helps: str
) -> None:
    """What every explaining command takes: images, the model group, method, target, Explainer.

    ``skip`` and ``helps`` go to :func:`add_explainer_options`.
    """
    p.add_argument("images", nargs="+", help="image files, folders, or sample:NAME")
    add_model_options(p)
    p.add_argument(
        "--method",
        default="gradcam",
        help="method or comma-separated methods (see `seewhy methods`) [default: gradcam]",
    )
    p.add_argument(
        "--target",
        help="what to explain: a class index or name, labels:A,B (sigmoid labels), output:N, "
        "box:x0,y0,x1,y1[:label] (detectors; input pixels), region:CLASS:mask.png "
        '(segmenters), "prompt:a red car" (CLIP/SigLIP: their image-text logit), '
        '"prompt:a cat|a dog|a car" (zero-shot: the FIRST text is explained, as its softmax '
        "share among them; the predictions rank them all) "
        "[default: top-1; a detector: each detection]",
    )
    p.add_argument(
        "--answer",
        metavar="TEXT",
        help="vision-language models (LLaVA, Qwen2-VL...): explain this answer to --prompt "
        "(its teacher-forced log-probability) [default: the answer the model generates]",
    )
    add_explainer_options(p, skip=skip, **helps)


#: Each Explainer keyword the command line sets: (flag, argparse settings). A new
#: ``Explainer`` option is one row here, and every explaining command has it.
_EXPLAINER_OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "layer": (
        "--layer",
        {
            "help": "layer for CAM methods (see `seewhy layers`); several, comma-separated "
            "(layer3,layer4): their maps are fused"
        },
    ),
    "fuse": (
        "--fuse",
        {"choices": ("mean", "max"), "help": "how several layers' maps combine"},
    ),
    "layout": (
        "--layer-layout",
        {
            "dest": "layer_layout",
            "help": "how the layer's output is laid out, when the guess (see `seewhy layers`) "
            "is wrong: nchw, nhwc, tokens, tokens:K (K leading class/register tokens), "
            "tokens:K:HxW",
        },
    ),
    "output": (
        "--output",
        {
            "type": _output_choice,
            "help": "which output of a model returning several (index, key or name)",
        },
    ),
    "head": (
        "--head",
        {
            "choices": ("softmax", "sigmoid"),
            "help": "sigmoid: independent labels (found by itself for a final sigmoid, "
            "PyTorch or Keras, or a one-output model)",
        },
    ),
    "score": (
        "--score",
        {"choices": ("logit", "probability"), "help": "what is explained of the target"},
    ),
    "top_k": ("--top-k", {"type": int, "metavar": "K", "help": "classes kept per image"}),
    "batch_size": (
        "--batch-size",
        {"type": int, "help": "images per pass, and perturbed or noisy copies per pass"},
    ),
    "precision": (
        "--precision",
        {
            "choices": PRECISIONS,
            "help": "forward passes of the methods that only predict (PyTorch; "
            "`seewhy methods NAME` says what a method needs)",
        },
    ),
    "prompt": (
        "--prompt",
        {
            "metavar": "TEXT",
            "help": "vision-language models (LLaVA, Qwen2-VL...): the question; without "
            "--answer the model answers it and that answer is explained (and recorded)",
        },
    ),
    "tokenizer": (
        "--tokenizer",
        {
            "metavar": "FOLDER",
            "help": "a Hugging Face tokenizer folder, where the model's own folder has none "
            "[default: the model's]",
        },
    ),
    "processor": (
        "--processor",
        {
            "metavar": "FOLDER",
            "help": "a Hugging Face processor folder (chat template, image processor, "
            "tokenizer), where the model's own folder has none [default: the model's]",
        },
    ),
}

#: Options whose value names a folder that is read into an object for the Explainer.
_LOADED = ("tokenizer", "processor")


def add_explainer_options(p: Any, *, skip: tuple[str, ...] = (), **helps: str) -> None:
    """Every :class:`seewhy.Explainer` option, and ``--set`` for the methods' own settings.

    Left out, an option is not passed and the Explainer's default applies (its
    signature's, shown in the help). ``skip`` names options the command gives
    another meaning (``evaluate``'s ``--precision`` is its metrics'); ``helps``
    replace an option's help where the command widens its meaning.
    """
    from seewhy import Explainer

    from .settings import add_set_option

    defaults = inspect.signature(Explainer.__init__).parameters
    for keyword, (flag, settings) in _EXPLAINER_OPTIONS.items():
        if keyword in skip:
            continue
        options = {**settings, "help": helps.get(keyword, settings["help"])}
        default = defaults[keyword].default
        if default is not None and keyword not in helps:
            options["help"] += f" [default: {default}]"
        p.add_argument(flag, **options)
    add_set_option(p)


def explainer_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`seewhy.Explainer` keywords the command line gave (explain, evaluate, sanity,
    audit alike): only those given, so the Explainer's defaults stay its own.

    ``--tokenizer`` / ``--processor`` folders are read (once per run) into the
    objects the Explainer takes; without either, a vision-language model's own
    (beside its folder, or open_clip's for its name) is passed.
    """
    chosen = {}
    read = vars(args).setdefault("_read_once", {})  # each folder read once per run
    for keyword, (flag, settings) in _EXPLAINER_OPTIONS.items():
        value = getattr(args, settings.get("dest", flag[2:].replace("-", "_")), None)
        if value is not None and keyword in _LOADED:
            if (keyword, value) not in read:
                read[(keyword, value)] = _read_folder(value, keyword)
            value = read[(keyword, value)]
        if value is not None:
            chosen[keyword] = value
    model = getattr(args, "model", None)
    if not any(k in chosen for k in _LOADED) and isinstance(model, str):
        if ("model", model) not in read:
            from seewhy.loading import text_keywords

            read[("model", model)] = text_keywords(model)
        chosen.update(read[("model", model)])
    return chosen


def _read_folder(path: str, kind: str) -> Any:
    """A ``--tokenizer`` / ``--processor`` folder as the object the Explainer takes."""
    from seewhy.loading import load_processor

    return load_processor(path, kind=kind)


def add_recursive(p: argparse.ArgumentParser) -> None:
    """``--recursive``: walk sub-folders of the named folders."""
    p.add_argument("--recursive", action="store_true", help="walk sub-folders")


def add_force(p: argparse.ArgumentParser) -> None:
    """``--force``: overwrite existing files seewhy did not write (see ``cli/outputs.py``)."""
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite existing output files that seewhy did not write (never an input of "
        "the run, nor one output with another)",
    )


class _Renamed(argparse.Action):
    """An option's old spelling: sets the new one's value, and says so once on stderr."""

    def __init__(self, *args: Any, new: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.new = new
        self.said = False

    def __call__(self, parser: Any, namespace: Any, values: Any, option: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        if not self.said:
            self.said = True
            print(
                f"seewhy: warning: {option} is deprecated and will be removed in the next "
                f"release; use {self.new} (the same values)",
                file=sys.stderr,
            )


def add_renamed(p: Any, new: str, old: str, **settings: Any) -> None:
    """``new`` with its settings, and its ``old`` spelling kept one release (hidden in ``--help``).

    ``settings`` need a ``dest`` and a ``help``; the help names the old spelling.
    """
    p.add_argument(new, **{**settings, "help": f"{settings['help']} (old name: {old})"})
    hidden = {k: v for k, v in settings.items() if k in ("dest", "choices", "metavar", "type")}
    p.add_argument(old, action=_Renamed, new=new, help=argparse.SUPPRESS, **hidden)
