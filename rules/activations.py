"""Activations and softmax: torch counts 0; full uses the per-element constants of rules.base."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import FULL_CONSTANTS, OpCall, moved, rule


@rule(F.gelu, "Tensor.gelu", family="activation")
def gelu(call: OpCall):
    """GELU, tanh or erf form: 8 per element (Electra)."""
    return moved(call, 0, FULL_CONSTANTS["gelu"] * call.out.numel)


@rule(F.silu, "Tensor.silu", family="activation")
def silu(call: OpCall):
    """SiLU x·sigmoid(x): 5 per element."""
    return moved(call, 0, FULL_CONSTANTS["silu"] * call.out.numel)


@rule(F.softmax, torch.softmax, "Tensor.softmax", family="activation")
def softmax(call: OpCall):
    """Softmax: 5 per element (max, subtract, exp, sum, divide)."""
    return moved(call, 0, FULL_CONSTANTS["softmax_per_score"] * call.out.numel)
