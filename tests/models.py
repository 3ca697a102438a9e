"""The test models, all in one place: tiny torch nets, tiny Keras nets, one trained CNN.

Plain functions (import them: ``from models import tiny_cnn``); the shared
fixtures over them are in ``conftest.py``. Frameworks are imported inside the
builders, so importing this module costs nothing and works in the Keras
sub-processes too; the Keras builders take the ``keras`` module as argument
(the backend is fixed per process).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

# -- torch --------------------------------------------------------------------------


def tiny_cnn(
    classes: int = 5,
    seed: int = 0,
    *,
    widths: tuple[int, int] = (8, 16),
    stride: int = 2,
    inplace: bool = True,
    dtype: Any = None,
) -> Any:
    """conv-relu-conv-relu, global average pooling, linear: a CAM-compatible head.

    The second convolution has ``stride``; float64 (``dtype``, default
    float32) suits checks against finite differences and plain loops.
    """
    import torch
    from torch import nn

    torch.manual_seed(seed)
    first, second = widths
    return (
        nn.Sequential(
            nn.Conv2d(3, first, 3, padding=1),
            nn.ReLU(inplace=inplace),
            nn.Conv2d(first, second, 3, padding=1, stride=stride),
            nn.ReLU(inplace=inplace),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(second, classes),
        )
        .to(torch.float32 if dtype is None else dtype)
        .eval()
    )


def one_conv(width: int, classes: int, seed: int = 0) -> Any:
    """conv-relu, global average pooling, linear, in eval mode: ``width`` sets the activation."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, classes),
    ).eval()


def with_spec(model: Any, size: tuple[int, int], labels: Sequence[str], name: str = "tiny") -> Any:
    """``model`` carrying a ``seewhy_spec`` (input size and labels), as a saved model may."""
    import seewhy

    model.seewhy_spec = seewhy.ModelSpec(
        name=name, preprocess=seewhy.Preprocess(size=size), labels=tuple(labels)
    )
    return model


def audit_model(
    size: tuple[int, int] | None = (32, 32), labels: tuple[str, ...] = ("a", "b")
) -> Any:
    """conv-relu, GAP, linear to ``len(labels)`` classes, in eval mode: the audit tests' model.

    ``size`` (H, W) and ``labels`` go into its ``seewhy_spec``; ``size=None``
    leaves the spec out (a plain module, as a user's saved file would be).
    """
    model = one_conv(4, len(labels))
    return model if size is None else with_spec(model, size, labels)


def raising_model(inner: Any) -> Any:
    """``inner`` wrapped so that its forward raises once it has run ``fail_after`` times.

    ``fail_after`` is None (never raise) until a test sets it; 0 raises at once.
    """
    from torch import nn

    class Raising(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner
            self.fail_after: int | None = None
            self.calls = 0

        def forward(self, x: Any) -> Any:
            out = self.inner(x)
            if self.fail_after is not None:
                self.calls += 1
                if self.calls > self.fail_after:
                    raise RuntimeError("the model failed on purpose")
            return out

    return Raising().eval()


def _stripes_cnn(classes: int, width: int) -> Any:
    """Conv-ReLU stack with global average pooling: ``features`` ends in an 8x8 map."""
    import torch
    from torch import nn

    class StripesCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Conv2d(width, 2 * width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Conv2d(2 * width, 2 * width, 3, padding=1),
                nn.ReLU(inplace=True),
            )
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head = nn.Linear(2 * width, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.flatten(self.pool(self.features(x)), 1))

    return StripesCNN()


@lru_cache(maxsize=4)
def trained_torch_cnn(
    *, n: int = 1000, epochs: int = 4, seed: int = 0, width: int = 16
) -> tuple[Any, float]:
    """A small CNN trained on ``make_stripes(n, seed=seed)``, in eval mode, and its accuracy.

    Accuracy is measured on a separate set drawn from ``seed + 1000``. Cached:
    callers must not change the model (seewhy promises never to).
    """
    import torch
    from torch import nn

    from seewhy.synthetic import STRIPES, make_stripes

    torch.manual_seed(seed)
    data = make_stripes(n, seed=seed)
    x = torch.from_numpy(data.inputs()).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(data.labels)
    model = _stripes_cnn(len(STRIPES), width)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread is fastest, and cores are shared
    try:
        model.train()
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, 50):
                idx = order[start : start + 50]
                opt.zero_grad(set_to_none=True)
                loss_fn(model(x[idx]), y[idx]).backward()
                opt.step()
        model.eval()
        for p in model.parameters():
            p.grad = None
        test = make_stripes(600, seed=seed + 1000)
        with torch.no_grad():
            xt = torch.from_numpy(test.inputs()).permute(0, 3, 1, 2).contiguous()
            accuracy = float((model(xt).argmax(1).numpy() == test.labels).mean())
    finally:
        torch.set_num_threads(threads)
    return model, accuracy


# -- Keras (pass the keras module; the backend is fixed per process) ----------------


def conv_stack(keras: Any, prefix: str = "", data_format: str = "channels_last") -> list[Any]:
    """conv-relu-conv-relu, the feature extractor of every tiny Keras model here."""
    layers = keras.layers
    return [
        layers.Conv2D(4, 3, padding="same", data_format=data_format, name=f"{prefix}conv1"),
        layers.ReLU(name=f"{prefix}relu1"),
        layers.Conv2D(6, 3, strides=2, data_format=data_format, name=f"{prefix}conv2"),
        layers.Activation("relu", name=f"{prefix}act"),
    ]


def gap_model(keras: Any, classes: int = 5, seed: int = 0) -> Any:
    """Functional: conv stack, global average pooling, Dense with softmax."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12, 12, 3), name="image")
    x = inputs
    for layer in conv_stack(keras):
        x = layer(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, out, name="gap_model")


def flatten_model(keras: Any, classes: int = 5, seed: int = 1) -> Any:
    """Sequential: conv stack, Flatten, Dense with softmax.

    Through Flatten the gradient differs position by position, so HiResCAM,
    LayerCAM and Grad-CAM++ give different maps; it equals the Dense kernel
    column, reshaped, which makes an exact reference.
    """
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            *conv_stack(keras),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(classes, activation="softmax", name="head"),
        ],
        name="flatten_model",
    )


def nested_model(keras: Any, classes: int = 5, seed: int = 2) -> Any:
    """A functional base inside a Sequential, as with a keras.applications base."""
    keras.utils.set_random_seed(seed)
    base_in = keras.Input((12, 12, 3))
    x = base_in
    for layer in conv_stack(keras):
        x = layer(x)
    base = keras.Model(base_in, x, name="base")
    return keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            base,
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(classes, activation="softmax", name="head"),
        ],
        name="nested_model",
    )


def subclassed_model(keras: Any, classes: int = 5, seed: int = 3) -> Any:
    """A subclassed model: no graph to walk (the best-effort path)."""
    keras.utils.set_random_seed(seed)

    class Net(keras.Model):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__(name="subclassed")
            self.conv1, self.relu1, self.conv2, self.act = conv_stack(keras)
            self.gap = keras.layers.GlobalAveragePooling2D(name="gap")
            self.head = keras.layers.Dense(classes, activation="softmax", name="head")

        def call(self, x: Any) -> Any:
            x = self.act(self.conv2(self.relu1(self.conv1(x))))
            return self.head(self.gap(x))

    model = Net()
    model(np.zeros((1, 12, 12, 3), np.float32))
    return model


def raising_keras_model(keras: Any, classes: int = 5, seed: int = 0) -> Any:
    """:func:`gap_model`'s layers with a tripwire after the features: it raises while armed.

    Arm it (``model.get_layer("tripwire").armed = True``) before seewhy first
    runs the model, so a traced function cannot skip the check.
    """

    class Tripwire(keras.layers.Layer):  # type: ignore[misc,name-defined]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.armed = False

        def call(self, x: Any) -> Any:
            if self.armed:
                raise RuntimeError("the model failed on purpose")
            return x

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12, 12, 3), name="image")
    x = inputs
    for layer in conv_stack(keras):
        x = layer(x)
    x = Tripwire(name="tripwire")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, out, name="raising_model")
