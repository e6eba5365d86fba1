"""Normalisations. WanRMSNorm is not one op: its pieces (pow, mean, add, rsqrt, mul) are costed by the
elementwise and reduction rules."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import FULL_CONSTANTS, Cost, OpCall, moved, rule


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


@rule(F.normalize, family="norm")
def normalize(call: OpCall):
    """x / max(||x||_p, eps) along `dim` (the Wan VAE's RMS_norm). Eager it is three kernels: the norm
    (square and add per element), clamp_min on the norms, and the division; so per element a square, an add
    and a divide, per norm a sqrt and a clamp. Bytes: x is read twice (norm, divide), the norms written by the
    first two kernels and read by the last two."""
    x = call.args[0] if call.args else call.kwargs["input"]
    if call.arg(1, "p", 2.0) != 2.0:
        raise NotImplementedError("normalize with p != 2")
    dim = call.arg(2, "dim", 1)
    norms = x.numel // x.shape[dim] if x.shape[dim] else 0
    per_element = 2 * FULL_CONSTANTS["elementwise"] + FULL_CONSTANTS["reduction"]
    full = per_element * x.numel + 2 * FULL_CONSTANTS["elementwise"] * norms
    norm_bytes = norms * x.dtype.itemsize
    return Cost(0, full, 2 * x.nbytes + 2 * norm_bytes, call.bytes_written + 2 * norm_bytes)
