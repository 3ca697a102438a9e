"""ONNX Runtime and black-box models against the PyTorch model they came from.

Run: python benchmarks/bench_onnx.py [--images 2] [--repeats 3] [--samples 150]

Everything is timed in this one process, the candidates in turn each round:
  lime, occlusion    seewhy.explain on the bundled EfficientNet-Lite0 (PyTorch) and on
                     its ONNX export (legacy exporter, dynamic batch; made in a temporary
                     folder), each with its backend's own batch. Target: ONNX <= 1.1x.
  black box          the same perturbed inputs scored by the black-box backend
                     (seewhy.BlackBox over an ONNX Runtime session's run) against the
                     function's own calls on the same batches. Target: overhead <= 5%.
Numbers move with the machine's load; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _timing import medians

import seewhy
from seewhy.backends import backend_for


def export(model: torch.nn.Module, folder: Path) -> Path:
    """The model as ONNX with a dynamic batch axis (the legacy exporter)."""
    path = folder / "efficientnet_lite0.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            torch.zeros(1, 3, 224, 224),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
        )
    return path


def methods(model: Any, session: Any, images: list[np.ndarray], args: argparse.Namespace) -> None:
    pre = model.seewhy_spec.preprocess  # the same preprocessing for both
    settings = {
        "lime": {"samples": args.samples},
        "occlusion": {"window": 32, "stride": 16},
    }
    print(f"{len(images)} image(s) 224 px, torch threads {torch.get_num_threads()}")
    print(f"{'method':<11}{'pytorch s':>11}{'onnx s':>9}{'onnx/pytorch':>14}  target <= 1.10")
    for method, params in settings.items():
        got = medians(
            {
                "pytorch": lambda m=method, p=params: seewhy.explain(
                    model, images, m, preprocess=pre, **p
                ),
                "onnx": lambda m=method, p=params: seewhy.explain(
                    session, images, m, preprocess=pre, **p
                ),
            },
            args.repeats,
        )
        ratio = got["onnx"] / got["pytorch"]
        print(f"{method:<11}{got['pytorch']:>11.2f}{got['onnx']:>9.2f}{ratio:>14.2f}")


def blackbox_overhead(session: Any, args: argparse.Namespace) -> None:
    name = session.get_inputs()[0].name

    def scores(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {name: batch})[0]  # type: ignore[no-any-return]

    box = seewhy.BlackBox(scores, channels_first=True, batch_size=args.batch)
    backend = backend_for(box)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.inputs, 224, 224, 3)).astype(np.float32)
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    chunks = [nchw[i : i + args.batch] for i in range(0, len(x), args.batch)]
    got = medians(
        {
            "own calls": lambda: [scores(c) for c in chunks],
            "black box": lambda: backend.predict(x),
        },
        args.repeats,
    )
    overhead = got["black box"] / got["own calls"] - 1
    print(
        f"black box  {args.inputs} inputs in batches of {args.batch}: own calls "
        f"{got['own calls']:.3f} s, through seewhy {got['black box']:.3f} s, overhead "
        f"{100 * overhead:+.1f}%  target <= +5%"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=150, help="LIME samples per image")
    parser.add_argument("--inputs", type=int, default=64, help="inputs for the black-box check")
    parser.add_argument("--batch", type=int, default=16, help="black-box batch size")
    args = parser.parse_args()
    model = seewhy.zoo.load("efficientnet_lite0")
    names = ("chelsea", "coffee", "astronaut", "rocket")
    images = [seewhy.samples.load(names[i % len(names)]) for i in range(args.images)]
    with tempfile.TemporaryDirectory() as folder:
        session = seewhy.load_model(str(export(model, Path(folder))))
        print(f"ONNX Runtime providers: {', '.join(session.get_providers())}")
        methods(model, session, images, args)
        blackbox_overhead(session, args)


if __name__ == "__main__":
    main()
