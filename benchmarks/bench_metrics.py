"""Deletion/insertion cost, measured side by side in one run per framework.

Targets (issue 5): for 16 images at 224 x 224 and 50 steps, deletion and
insertion cost at most 1.1x the forward passes they need, predicted in the
same batches; and deletion runs at least 7x faster than Quantus' PixelFlipping
on the same model, images and steps (when Quantus is installed).

The model is the bundled EfficientNet-Lite0, in PyTorch (``--framework torch``)
or Keras 3 on TensorFlow (``keras``, run in a child process with
``KERAS_BACKEND=tensorflow``: Quantus' Keras support is TensorFlow's);
``both`` (the default) runs one after the other.

How Quantus counts steps: ``features_in_step`` entries of the (C, H, W) input
are flipped per step, and it must divide H x W, the size of the map. A
one-channel map is broadcast over the three channels, so asking for 16 steps
(``features_in_step = H * W / 16``, as a user would) runs 48 predictions,
each pixel's channels leaving at different steps. The comparison is printed
twice: against seewhy at the steps the user asked for, and at the number of
curve points Quantus really computes. Forward passes are counted, not guessed.

Run:  PYTHONPATH=src python benchmarks/bench_metrics.py [--framework torch]
Prints ratios; timings are the best of ``--repeat`` interleaved runs. The second
ratio (time outside ``backend.predict``) is immune to load drift between runs: on
a shared, busy CPU trust it over the first.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class PredictMeter:
    """Wraps ``cls.predict`` while open: its wall time, calls and images add up here."""

    def __init__(self, cls: Any) -> None:
        self.cls, self.original = cls, cls.predict
        self.seconds, self.calls, self.images = 0.0, 0, 0

    def __enter__(self) -> PredictMeter:
        original = self.original

        def predict(backend: Any, x: np.ndarray, **kwargs: Any) -> np.ndarray:
            start = time.perf_counter()
            try:
                return original(backend, x, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1
                self.images += len(x)

        self.cls.predict = predict
        return self

    def __exit__(self, *exc: object) -> None:
        self.cls.predict = self.original


def sixteen_inputs(model: Any, count: int, size: int) -> np.ndarray:
    """``count`` distinct model inputs from the bundled sample photos (flips and crops)."""
    import dataclasses

    import seewhy
    from seewhy.inputs import prepare

    spec = seewhy.model_spec(model)
    pre = dataclasses.replace(spec.preprocess, size=(size, size))
    pictures = [seewhy.samples.load(name) for name in seewhy.samples.names()]
    variants = []
    for k in range(count):
        p = pictures[k % len(pictures)]
        h, w = p.shape[:2]
        cut = (k // len(pictures)) * 0.08
        crop = p[int(cut * h) : h - int(cut * h / 2), int(cut * w / 2) : w - int(cut * w)]
        variants.append(crop[:, ::-1] if k % 2 else crop)
    batch, _ = prepare(variants, pre, channels_first=True, strict=True)
    return batch.inputs


def load_model(framework: str) -> Any:
    import seewhy

    if framework == "torch":
        return seewhy.zoo.efficientnet_lite0()
    return seewhy.zoo.efficientnet_lite0_keras()


def forward_cost(model: Any, x: np.ndarray, ex: Any, args: argparse.Namespace) -> None:
    """Deletion and insertion against the forward passes they need, same batches."""
    from seewhy import metrics
    from seewhy.backends import backend_for

    backend = backend_for(model)
    n, steps = len(x), args.steps
    bs = args.batch_size or backend.preferred_batch_size(x)
    needed = n * (steps + 1)
    print(f"{n} images, {steps} steps, batch {bs}: {needed} forward passes per curve")
    pool = np.ascontiguousarray(np.resize(x, (bs, *x.shape[1:])))

    def forwards() -> None:
        done = 0
        while done < needed:
            take = min(bs, needed - done)
            backend.predict(pool[:take], batch_size=take)
            done += take

    forwards()  # warm up (and compile, on Keras)
    t_fwd, t_del, t_ins = [], [], []
    spent_del, spent_ins = [], []
    for _ in range(args.repeat):  # interleaved, so load drift hits all three alike
        t_fwd.append(timed(forwards))
        with PredictMeter(type(backend)) as meter:
            t_del.append(
                timed(lambda: metrics.deletion(model, ex, images=x, steps=steps, batch_size=bs))
            )
        spent_del.append(meter.seconds)
        with PredictMeter(type(backend)) as meter:
            t_ins.append(
                timed(lambda: metrics.insertion(model, ex, images=x, steps=steps, batch_size=bs))
            )
        spent_ins.append(meter.seconds)
    fwd = min(t_fwd)
    print(f"forward passes only      {fwd:8.2f} s   1.00x")
    for name, total, spent in (
        ("deletion", t_del, spent_del),
        ("insertion (blur)", t_ins, spent_ins),
    ):
        k = int(np.argmin(total))
        own = total[k] - spent[k]
        print(
            f"seewhy {name:<17} {total[k]:8.2f} s   {total[k] / fwd:.2f}x   "
            f"(target <= 1.1x); outside the forward passes {own:.2f} s = "
            f"{1 + own / spent[k]:.3f}x"
        )


class QuantusForwards:
    """Counts the images Quantus runs the model on (a torch pre-hook, or Keras' predict)."""

    def __init__(self, model: Any, framework: str) -> None:
        self.model, self.framework = model, framework
        self.calls, self.images = 0, 0

    def _add(self, count: int) -> None:
        self.calls += 1
        self.images += count

    def __enter__(self) -> QuantusForwards:
        if self.framework == "torch":
            handle = self.model.register_forward_pre_hook(lambda _m, a: self._add(len(a[0])))
            self._undo: Callable[[], None] = handle.remove
        else:
            import keras

            original = keras.Model.predict

            def predict(model_: Any, data: Any, *a: Any, **k: Any) -> Any:
                self._add(len(data))
                return original(model_, data, *a, **k)

            keras.Model.predict = predict  # Quantus calls its softmax model's predict

            def undo() -> None:
                keras.Model.predict = original

            self._undo = undo
        return self

    def __exit__(self, *exc: object) -> None:
        self._undo()


def quantus_comparison(
    model: Any, x: np.ndarray, ex: Any, framework: str, args: argparse.Namespace
) -> None:
    """Quantus' PixelFlipping against seewhy's deletion, same model, images and maps."""
    import quantus

    from seewhy import metrics
    from seewhy.backends import backend_for

    n = len(x)
    pixels = x.shape[1] * x.shape[2]
    # the divisor of H * W nearest to H * W / steps: a user's "steps" steps
    per_step = min(
        (f for f in range(1, pixels + 1) if pixels % f == 0),
        key=lambda f: abs(pixels / f - args.quantus_steps),
    )
    asked = pixels // per_step
    q_steps = 3 * asked  # Quantus flips (C, H, W) entries: 3x the steps
    channel_first = framework == "torch"
    x_q = np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if channel_first else x
    a = ex.maps[:, None].astype(np.float32)  # Quantus wants (N, 1, H, W) either way
    y = ex.targets.astype(np.int64)
    flip = quantus.PixelFlipping(
        features_in_step=per_step, perturb_baseline="black", normalise=False, disable_warnings=True
    )
    # (curves, not Quantus' own AUC: quantus 0.6 calls np.trapz, gone in numpy 2.4)
    extra = {"device": "cpu"} if framework == "torch" else {}

    def run_quantus() -> Any:
        return flip(
            model=model,
            x_batch=x_q,
            y_batch=y,
            a_batch=a,
            softmax=True,
            batch_size=n,
            channel_first=channel_first,
            **extra,
        )

    def ours(steps: int, precision: str = "float32") -> Callable[[], Any]:
        return lambda: metrics.deletion(
            model,
            ex,
            images=x,
            steps=steps,
            baseline="zeros",
            batch_size=args.batch_size,
            precision=precision,
        )

    runs: dict[str, Callable[[], Any]] = {
        "quantus": run_quantus,
        f"seewhy deletion, {asked} steps": ours(asked),
        f"seewhy deletion, {q_steps} steps": ours(q_steps),
    }
    if framework == "torch":
        runs[f"seewhy deletion, {asked} steps, bfloat16"] = ours(asked, "bfloat16")
    run_quantus()  # warm up (Quantus builds its softmax model on first use)
    ours(asked)()
    with QuantusForwards(model, framework) as theirs:
        run_quantus()
    with PredictMeter(type(backend_for(model))) as mine:
        ours(asked)()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):  # interleaved, as above
        for name, fn in runs.items():
            times[name].append(timed(fn))
    tq = min(times.pop("quantus"))
    print(
        f"--- Quantus {quantus.__version__} PixelFlipping, {n} images, features_in_step="
        f"{per_step} = H*W/{asked}, what a user writes for {asked} steps"
    )
    print(
        f"quantus PixelFlipping              {tq:7.2f} s   model run {theirs.calls} times on "
        f"{theirs.images} images: {q_steps} steps"
    )
    for name, spent in times.items():
        note = "target >= 7x" if name.endswith(f"{asked} steps") else "equal curve points"
        if name.endswith("bfloat16"):
            note = "reduced precision, opt-in"
        print(f"{name:<34} {min(spent):7.2f} s   {tq / min(spent):5.2f}x faster ({note})")
    print(
        f"  (seewhy at {asked} steps: {mine.calls} batches, {mine.images} images; Quantus "
        f"predicts its batch of {n} per step)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=["torch", "keras", "both"], default="both")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument(
        "--batch-size", type=int, help="seewhy's [default: the backend's preferred_batch_size]"
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--quantus-images", type=int, default=4)
    parser.add_argument("--quantus-steps", type=int, default=16, help="the steps a user asks for")
    parser.add_argument("--threads", type=int, help="torch intra-op threads [default: torch's]")
    parser.add_argument("--no-quantus", action="store_true")
    parser.add_argument("--quantus-only", action="store_true", help="skip the forward-pass part")
    args = parser.parse_args()

    if args.framework == "both":
        frameworks = ["torch"]
        if importlib.util.find_spec("keras") and importlib.util.find_spec("tensorflow"):
            frameworks.append("keras")
        else:
            print("keras: keras or tensorflow not installed, the Keras run is skipped")
        for framework in frameworks:  # one process each: TensorFlow and torch apart
            argv = [a for a in sys.argv[1:] if not a.startswith("--framework")]
            env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
            cmd = [sys.executable, __file__, "--framework", framework, *argv]
            subprocess.run(cmd, env=env, check=True)
        return
    run(args)


def run(args: argparse.Namespace) -> None:
    import seewhy

    framework = args.framework
    if framework == "torch":
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(f"=== PyTorch {torch.__version__}, {torch.get_num_threads()} threads, Lite0")
    else:
        import keras

        if keras.backend.backend() != "tensorflow":
            raise SystemExit("--framework keras: run with KERAS_BACKEND=tensorflow")
        print(f"=== Keras {keras.__version__} on TensorFlow, Lite0")
    model = load_model(framework)
    x = sixteen_inputs(model, args.images, args.size)
    ex = seewhy.explain(model, x, "gradcam")
    if not args.quantus_only:
        forward_cost(model, x, ex, args)
    if args.no_quantus:
        return
    if importlib.util.find_spec("quantus") is None:
        print("quantus: not installed, comparison skipped (pip install quantus)")
        return
    x_q = sixteen_inputs(model, args.quantus_images, args.size)
    quantus_comparison(model, x_q, seewhy.explain(model, x_q, "gradcam"), framework, args)


if __name__ == "__main__":
    main()
