"""Normalisations. WanRMSNorm is not one op: its pieces (pow, mean, add, rsqrt, mul) are costed by the
elementwise and reduction rules."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import FULL_CONSTANTS, OpCall, moved, rule


@rule(F.layer_norm, torch.layer_norm, family="norm")
def layer_norm(call: OpCall):
    """Per element: 4 without affine, 5 with (fvcore / DeepSpeed); torch counts 0."""
    weight = call.arg(2, "weight")
    per = FULL_CONSTANTS["layer_norm_affine" if weight is not None else "layer_norm_plain"]
    return moved(call, 0, per * call.out.numel)


@rule(getattr(F, "rms_norm", "F.rms_norm"), family="norm")
def rms_norm(call: OpCall):
    """Fused RMSNorm (torch >= 2.4): square, mean, add eps, rsqrt, multiply (+ weight): 5, or 6 with a weight."""
    weight = call.arg(2, "weight")
    return moved(call, 0, (6 if weight is not None else 5) * call.out.numel)
