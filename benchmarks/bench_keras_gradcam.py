"""Grad-CAM on a Keras ResNet50 (TensorFlow backend, CPU): seewhy against its floor.

One run, side by side, batch 16 at 224 x 224, ``keras.applications.ResNet50(
weights=None)`` (random weights: speed does not depend on them):

* forward      compiled forward pass (``tf.function``), the cost of one prediction;
* floor        the bare compiled Grad-CAM: one ``tf.function`` with a
               GradientTape to ``conv5_block3_out``, channel weights, weighted
               sum, ReLU, bilinear upsampling and per-image min-max, all in graph;
* seewhy       ``seewhy.Explainer(model, "gradcam").explain(x)`` (maps upsampled
               and normalised, predictions included);
* tf-keras-vis ``tf_keras_vis.gradcam.Gradcam`` with ``ReplaceToLinear`` (as its
               docs recommend), when installed.

Prints images/s and ratios. Targets: seewhy >= 3x tf-keras-vis, <= 1.25x the floor.

    KERAS_BACKEND=tensorflow python benchmarks/bench_keras_gradcam.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

import seewhy

LAYER = "conv5_block3_out"


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds per call after one warm-up call (which also traces/compiles)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def floor_fn(model: Any) -> Callable[[tf.Tensor], tf.Tensor]:
    """The least work a compiled Grad-CAM can do: what seewhy is measured against."""
    dense = model.get_layer("predictions")
    probe = keras.Model(model.inputs, [model.get_layer(LAYER).output, dense.input])

    @tf.function
    def gradcam(x: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:  # records through the weights; graph mode prunes
            acts, features = probe(x, training=False)
            logits = features @ dense.kernel + dense.bias  # pre-softmax
            top = tf.argmax(logits, axis=1)
            score = tf.reduce_sum(tf.gather(logits, top, axis=1, batch_dims=1))
        grads = tape.gradient(score, acts)
        weights = tf.reduce_mean(grads, axis=(1, 2))
        cam = tf.nn.relu(tf.einsum("nc,nhwc->nhw", weights, acts))
        cam = tf.image.resize(cam[..., None], x.shape[1:3])[..., 0]
        lo = tf.reduce_min(cam, axis=(1, 2), keepdims=True)
        hi = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        return tf.math.divide_no_nan(cam - lo, hi - lo)

    return gradcam


def tf_keras_vis_fn(model: Any, x: np.ndarray) -> Callable[[], Any] | None:
    try:
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
        from tf_keras_vis.utils.scores import CategoricalScore
    except ImportError:
        return None
    try:
        gradcam = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
        classes = list(np.asarray(model(x[:1])).argmax(1)) * len(x)
        score = CategoricalScore(classes)
        gradcam(score, x, penultimate_layer=LAYER)
    except Exception as exc:  # an incompatible tf-keras-vis / Keras pair
        print(f"tf-keras-vis   could not run: {type(exc).__name__}: {str(exc)[:120]}")
        return None
    return lambda: gradcam(score, x, penultimate_layer=LAYER)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if keras.backend.backend() != "tensorflow":
        raise SystemExit("run with KERAS_BACKEND=tensorflow")

    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None)
    x = np.random.default_rng(0).normal(size=(args.batch, 224, 224, 3)).astype(np.float32)
    xt = tf.constant(x)

    forward = tf.function(lambda t: model(t, training=False))
    floor = floor_fn(model)
    explainer = seewhy.Explainer(model, "gradcam", layer=LAYER, batch_size=args.batch)

    results: dict[str, float] = {}
    results["forward"] = timed(lambda: forward(xt).numpy(), args.repeats)
    results["floor"] = timed(lambda: floor(xt).numpy(), args.repeats)
    results["seewhy"] = timed(lambda: explainer.explain(x), args.repeats)
    vis = tf_keras_vis_fn(model, x)
    if vis is not None:
        results["tf-keras-vis"] = timed(vis, max(1, args.repeats // 2))

    # the same maps? (seewhy's vs the floor's, same random model)
    ours = explainer.explain(x).maps
    theirs = floor(xt).numpy()
    corr = min(np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(ours, theirs, strict=True))

    versions = f"TensorFlow {tf.__version__}, Keras {keras.__version__}"
    print(f"ResNet50, batch {args.batch}, 224 px, {versions}")
    for name, seconds in results.items():
        print(f"{name:14s} {seconds * 1000:8.0f} ms   {args.batch / seconds:7.1f} images/s")
    print(f"seewhy / floor          {results['seewhy'] / results['floor']:.2f}x  (target <= 1.25)")
    print(f"seewhy / forward        {results['seewhy'] / results['forward']:.2f}x")
    if "tf-keras-vis" in results:
        speedup = results["tf-keras-vis"] / results["seewhy"]
        print(f"tf-keras-vis / seewhy   {speedup:.2f}x  (target >= 3)")
    print(f"map agreement with the floor: min correlation {corr:.5f}")


if __name__ == "__main__":
    main()
