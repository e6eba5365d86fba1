"""Convolutions (the patch embedding is a Conv3d with kernel == stride, i.e. a GEMM)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Gemm, OpCall, products, rule


@rule(F.conv1d, F.conv2d, F.conv3d, torch.conv1d, torch.conv2d, torch.conv3d, family="conv")
def conv(call: OpCall):
    """torch: 2 · B · prod(out spatial) · C_out · C_in/groups · prod(kernel), bias ignored
    (FlopCounterMode's conv_flop_count); full adds one FLOP per output element for a bias. As matrix
    products: per group, an implicit GEMM of (B · output positions) x C_out/groups over C_in/groups
    channels at each kernel tap."""
    x, w = call.arg(0, "input"), call.arg(1, "weight")
    bias, groups = call.arg(2, "bias"), call.arg(6, "groups", 1)
    out = call.out
    c_out, c_in_per_group, *kernel = w.shape
    gemm = Gemm(groups, x.shape[0] * math.prod(out.shape[2:]), c_out // groups, c_in_per_group, math.prod(kernel))
    return products(call, (gemm,), out.numel if bias is not None else 0)
