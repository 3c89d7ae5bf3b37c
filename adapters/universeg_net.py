"""The UniverSeg network (Butoi et al., ICCV 2023) in plain torch, checkpoint-compatible.

UniverSeg segments a query image from a support set of (image, mask) pairs.
It is a U-Net in which every block keeps two streams: the query's features
(one map) and the features of each support pair (S maps). A block does:

1. **CrossConv**: for every support member ``s``, one 3x3 convolution over
   the channel concatenation ``[query, support_s]``, giving an interaction
   map ``z_s`` (no non-linearity after it).
2. The new query is the mean of the interactions over the support set,
   ``mean_s z_s``; each support member keeps its own ``z_s``.
3. Each stream goes through its own 3x3 convolution and a LeakyReLU (slope
   0.01): one convolution shared by all support members, one for the query.

The encoder has four blocks (64 channels each), with 2x2 max pooling between
them; the decoder has three, each fed the bilinear (corner-aligned) 2x
upsampling of the previous block concatenated with the encoder's output at
that scale, in both streams. A 1x1 convolution maps the query's last
features to one logit map. Inputs: query ``(B, 1, H, W)``, support images
and masks ``(B, S, 1, H, W)``, with ``H = W = 128`` and values in [0, 1].

The CrossConv is computed here as ``W_q * query + W_s * support_s + b``
(the convolution of a concatenation split by input channels), so the query
term is computed once per block instead of once per support member; the
weights are stored as one tensor, as in the released checkpoint. Module and
parameter names follow the released checkpoint
(``universeg_v1_nf64_ss64_STA.pt``): ``enc_blocks.i`` / ``dec_blocks.i``
with ``cross.cross_conv``, ``target.vmapped.conv`` and
``support.vmapped.conv``, then ``out_conv.conv``.

This module imports torch at import time: import it only once torch is known
to be installed (:mod:`bench.adapters.universeg` does).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: The released model's channels per encoder block (the decoder mirrors them).
V1_FEATURES: tuple[int, ...] = (64, 64, 64, 64)
LEAKY_SLOPE = 0.01


class _Conv(nn.Module):
    """A convolution named ``conv`` (the checkpoint's ``ConvOp``), with an optional LeakyReLU."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, activate: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, kernel, padding=kernel // 2)
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return F.leaky_relu(y, LEAKY_SLOPE) if self.activate else y


class _PerMember(nn.Module):
    """Applies ``vmapped`` to every member of a ``(B, S, C, H, W)`` stack (the checkpoint's
    ``Vmap``)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.vmapped = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, members = x.shape[:2]
        y = self.vmapped(x.flatten(0, 1))
        return y.unflatten(0, (batch, members))


class _CrossConv(nn.Module):
    """Step 1-2 of a block: interactions ``z_s`` and their mean (the new query)."""

    def __init__(self, query_channels: int, support_channels: int, channels_out: int) -> None:
        super().__init__()
        self.query_channels = query_channels
        self.cross_conv = nn.Conv2d(query_channels + support_channels, channels_out, 3,
                                    padding=1)

    def forward(self, query: torch.Tensor, support: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        # query (B, 1, Cq, H, W), support (B, S, Cs, H, W)
        weight, bias = self.cross_conv.weight, self.cross_conv.bias
        split = self.query_channels
        batch, members = support.shape[:2]
        from_query = F.conv2d(query[:, 0], weight[:, :split], bias, padding=1)
        from_support = F.conv2d(support.flatten(0, 1), weight[:, split:], None, padding=1)
        interaction = from_support.unflatten(0, (batch, members)) + from_query[:, None]
        return interaction.mean(dim=1, keepdim=True), interaction


class _Block(nn.Module):
    """One UniverSeg block: CrossConv, then a convolution per stream."""

    def __init__(self, query_channels: int, support_channels: int, features: int) -> None:
        super().__init__()
        self.cross = _CrossConv(query_channels, support_channels, features)
        self.target = _PerMember(_Conv(features, features, 3, activate=True))
        self.support = _PerMember(_Conv(features, features, 3, activate=True))

    def forward(self, query: torch.Tensor, support: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        query, support = self.cross(query, support)
        return self.target(query), self.support(support)


def _per_member(fn, x: torch.Tensor) -> torch.Tensor:
    batch, members = x.shape[:2]
    return fn(x.flatten(0, 1)).unflatten(0, (batch, members))


def _pool(x: torch.Tensor) -> torch.Tensor:
    return _per_member(lambda t: F.max_pool2d(t, 2, 2), x)


def _upsample(x: torch.Tensor) -> torch.Tensor:
    # torch.nn.UpsamplingBilinear2d, as the released model uses: corners aligned.
    return _per_member(lambda t: F.interpolate(t, scale_factor=2, mode="bilinear",
                                               align_corners=True), x)


class UniverSegNet(nn.Module):
    """The UniverSeg architecture; ``features`` are the encoder blocks' channels.

    ``forward(query, support_images, support_masks)`` returns the query's
    logits ``(B, 1, H, W)``; H and W must be divisible by
    ``2 ** (len(features) - 1)``.
    """

    def __init__(self, features: Sequence[int] = V1_FEATURES) -> None:
        super().__init__()
        features = tuple(int(f) for f in features)
        self.enc_blocks = nn.ModuleList()
        self.dec_blocks = nn.ModuleList()
        query_in, support_in = 1, 2  # the query image; a support image and its mask
        for width in features:
            self.enc_blocks.append(_Block(query_in, support_in, width))
            query_in = support_in = width
        for skip in features[-2::-1]:
            # the decoder mirrors the encoder: same widths, in reverse, without the bottom
            self.dec_blocks.append(_Block(query_in + skip, support_in + skip, skip))
            query_in = support_in = skip
        self.out_conv = _Conv(query_in, 1, 1, activate=False)

    def forward(self, query: torch.Tensor, support_images: torch.Tensor,
                support_masks: torch.Tensor) -> torch.Tensor:
        q = query[:, None]                                       # (B, 1, 1, H, W)
        s = torch.cat([support_images, support_masks], dim=2)   # (B, S, 2, H, W)
        skips = []
        for depth, block in enumerate(self.enc_blocks):
            q, s = block(q, s)
            if depth < len(self.enc_blocks) - 1:
                skips.append((q, s))
                q, s = _pool(q), _pool(s)
        for block in self.dec_blocks:
            q_skip, s_skip = skips.pop()
            q = torch.cat([_upsample(q), q_skip], dim=2)
            s = torch.cat([_upsample(s), s_skip], dim=2)
            q, s = block(q, s)
        return self.out_conv(q[:, 0])


def init_weights(model: nn.Module, seed: int) -> None:
    """Random weights for smoke tests: Kaiming-normal convolutions, zero biases, seeded.

    As the released code initialises its layers (kaiming normal, leaky-ReLU
    gain); the numbers mean nothing either way.
    """
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if name.endswith("bias"):
                param.zero_()
            else:
                fan_in = param[0].numel()
                gain = (2.0 / (1 + LEAKY_SLOPE ** 2)) ** 0.5
                param.copy_(torch.randn(param.shape, generator=generator) * gain / fan_in ** 0.5)
