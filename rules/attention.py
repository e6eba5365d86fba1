"""Attention, costed at the call: never through its decomposition, and with flash-attention bytes."""

from __future__ import annotations

import math

import torch.nn.functional as F

from .base import FULL_CONSTANTS, Cost, Gemm, OpCall, rule


@rule(F.scaled_dot_product_attention, family="attention")
def sdpa(call: OpCall):
    """q [B, H, Sq, D], k [B, H, Sk, D], v [B, H, Sk, Dv]:
    torch 2·B·H·Sq·Sk·D (QKᵀ) + 2·B·H·Sq·Sk·Dv (PV), no causal discount (FlopCounterMode's sdpa_flop_count);
    full adds softmax at 5 per score. Bytes follow the flash-attention model: Q, K, V read once, O written
    once, no Sq x Sk score tensor."""
    q, k, v = call.arg(0, "query"), call.arg(1, "key"), call.arg(2, "value")
    if call.arg(4, "dropout_p", 0.0) or call.arg(3, "attn_mask") is not None:
        raise NotImplementedError("masked or dropout attention")
    *batch, sq, d = q.shape
    sk, dv = k.shape[-2], v.shape[-1]
    heads = math.prod(batch)
    gemms = (Gemm(heads, sq, sk, d), Gemm(heads, sq, dv, sk))  # S = Q Kᵀ, then O = P V
    torch_flops = sum(g.flops for g in gemms)
    full = torch_flops + FULL_CONSTANTS["softmax_per_score"] * heads * sq * sk
    return Cost(torch_flops, full, q.nbytes + k.nbytes + v.nbytes, call.bytes_written, gemms=gemms)


@rule("wan.attention_lse", family="attention")
def attention_lse(call: OpCall):
    """One ring step's attention, q [B, Sq, n, d] on a KV chunk [B, Sk, n, dv], returning the output (q's dtype)
    and its log-sum-exp (fp32): FLOPs as `sdpa` (the two products, softmax at 5 per score in `full`); bytes as a
    flash-attention forward: Q, K, V read, O and LSE written."""
    q, k, v = call.arg(0, "q"), call.arg(1, "k"), call.arg(2, "v")
    b, sq, n, d = q.shape
    sk, dv = k.shape[1], v.shape[-1]
    gemms = (Gemm(b * n, sq, sk, d), Gemm(b * n, sq, dv, sk))
    torch_flops = sum(g.flops for g in gemms)
    full = torch_flops + FULL_CONSTANTS["softmax_per_score"] * b * n * sq * sk
    return Cost(torch_flops, full, q.nbytes + k.nbytes + v.nbytes, call.bytes_written, gemms=gemms)
