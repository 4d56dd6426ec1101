"""R(2+1)D video student (Tran et al., CVPR 2018), laid out as the CCL reference builds it.

Module names follow the reference (`conv1`, `conv2`..`conv5` with `block1` and `blocks`,
`linear`), so a reference checkpoint's state dict loads unchanged. The reference's "depth 18"
is one block per stage (``r2plus1d-10``), not torchvision's (2, 2, 2, 2).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

ARCH_BLOCKS: dict[str, tuple[int, int, int, int]] = {
    "r2plus1d-10": (1, 1, 1, 1),
    "r2plus1d-18": (2, 2, 2, 2),
    "r2plus1d-34": (3, 4, 6, 3),
}


def _triple(value: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (value, value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def intermediate_channels(in_ch: int, out_ch: int, kernel: tuple[int, int, int]) -> int:
    """Channels between the spatial and temporal convolution, chosen so the (2+1)D pair has
    the parameter count of a full 3D convolution (Tran et al. 2018, section 3.5)."""
    t, h, w = kernel
    return math.floor(t * h * w * in_ch * out_ch / (h * w * in_ch + t * out_ch))


class SpatioTemporalConv(nn.Module):
    """A (1, k, k) spatial convolution, BN and ReLU, then a (k, 1, 1) temporal convolution."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] = 0,
    ) -> None:
        super().__init__()
        k, s, p = _triple(kernel), _triple(stride), _triple(padding)
        mid = intermediate_channels(in_ch, out_ch, k)
        self.spatial_conv = nn.Conv3d(
            in_ch, mid, (1, k[1], k[2]), stride=(1, s[1], s[2]), padding=(0, p[1], p[2]), bias=False
        )
        self.bn = nn.BatchNorm3d(mid)
        self.relu = nn.ReLU(inplace=True)
        self.temporal_conv = nn.Conv3d(
            mid, out_ch, (k[0], 1, 1), stride=(s[0], 1, 1), padding=(p[0], 0, 0), bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal_conv(self.relu(self.bn(self.spatial_conv(x))))


class ResBlock(nn.Module):
    """Basic residual block of two (2+1)D convolutions; the first strides by 2 when
    downsampling, and the shortcut is then a strided 1x1x1 (2+1)D convolution with BN."""

    def __init__(self, in_ch: int, out_ch: int, downsample: bool = False) -> None:
        super().__init__()
        stride = 2 if downsample else 1
        self.downsample = downsample
        if downsample:
            self.downsampleconv = SpatioTemporalConv(in_ch, out_ch, 1, stride=2)
            self.downsamplebn = nn.BatchNorm3d(out_ch)
        self.conv1 = SpatioTemporalConv(in_ch, out_ch, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm3d(out_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = SpatioTemporalConv(out_ch, out_ch, 3, padding=1)
        self.bn2 = nn.BatchNorm3d(out_ch)
        self.outrelu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        if self.downsample:
            x = self.downsamplebn(self.downsampleconv(x))
        return self.outrelu(x + res)


class ResStage(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, num_blocks: int, downsample: bool) -> None:
        super().__init__()
        self.block1 = ResBlock(in_ch, out_ch, downsample)
        self.blocks = nn.ModuleList(ResBlock(out_ch, out_ch) for _ in range(num_blocks - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block1(x)
        for block in self.blocks:
            x = block(x)
        return x


class StudentOutput(NamedTuple):
    logits: torch.Tensor  # (B, num_classes)
    feature: torch.Tensor  # (B, feature_dim), globally average-pooled


FEATURE_LAYERS = ("last-stage", "expand")


class R2Plus1D(nn.Module):
    """R(2+1)D: stem (3,7,7)/(1,2,2), four stages of widths 64-128-256-512 (times
    ``width``), stride 2 in space and time in stages 3-5, global average pool, linear head.

    ``feature_dim`` sets the pooled feature's size, which the composition and contrastive
    terms compare with a teacher's feature (so a narrow student must still match a teacher's
    width). ``feature_layer="last-stage"`` widens the last stage to ``feature_dim``;
    ``"expand"`` keeps the last stage ``512 x width`` wide and adds a 1x1x1 convolution, BN
    and ReLU to ``feature_dim`` before the pool (X3D's head, Feichtenhofer, CVPR 2020): the
    feature is still a pooled ReLU output, at a small part of the wide stage's cost."""

    def __init__(
        self,
        num_classes: int,
        blocks: tuple[int, int, int, int] = (1, 1, 1, 1),
        width: float = 1.0,
        feature_dim: int | None = None,
        feature_layer: str = "last-stage",
    ) -> None:
        super().__init__()
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"blocks must be four positive counts, got {blocks}")
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        if feature_layer not in FEATURE_LAYERS:
            raise ValueError(f"feature_layer must be in {FEATURE_LAYERS}, got {feature_layer!r}")
        c1, c2, c3, c4 = (max(1, round(c * width)) for c in (64, 128, 256, 512))
        expand = feature_dim is not None and feature_layer == "expand" and feature_dim != c4
        last_stage = feature_dim if feature_dim is not None and not expand else c4
        self.feature_dim = feature_dim if feature_dim is not None else c4
        self.conv1 = SpatioTemporalConv(3, c1, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3))
        self.bn1 = nn.BatchNorm3d(c1)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = ResStage(c1, c1, blocks[0], downsample=False)
        self.conv3 = ResStage(c1, c2, blocks[1], downsample=True)
        self.conv4 = ResStage(c2, c3, blocks[2], downsample=True)
        self.conv5 = ResStage(c3, last_stage, blocks[3], downsample=True)
        self.expand: nn.Module = nn.Identity()
        if expand:
            self.expand = nn.Sequential(
                nn.Conv3d(last_stage, self.feature_dim, 1, bias=False),
                nn.BatchNorm3d(self.feature_dim),
                nn.ReLU(inplace=True),
            )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.linear = nn.Linear(self.feature_dim, num_classes)

    def forward(self, clip: torch.Tensor) -> StudentOutput:
        """``clip``: (B, 3, T, H, W) normalised float tensor."""
        x = self.relu1(self.bn1(self.conv1(clip)))
        x = self.expand(self.conv5(self.conv4(self.conv3(self.conv2(x)))))
        feature = self.pool(x).flatten(1)
        return StudentOutput(logits=self.linear(feature), feature=feature)


def build_student(
    arch: str,
    num_classes: int,
    *,
    width: float = 1.0,
    feature_dim: int | None = None,
    feature_layer: str = "last-stage",
) -> R2Plus1D:
    """Build a student by name: ``r2plus1d-10`` (the reference's "depth 18"), ``-18``, ``-34``."""
    if arch not in ARCH_BLOCKS:
        raise ValueError(f"unknown student arch {arch!r}; choose from {sorted(ARCH_BLOCKS)}")
    return R2Plus1D(
        num_classes,
        ARCH_BLOCKS[arch],
        width=width,
        feature_dim=feature_dim,
        feature_layer=feature_layer,
    )
