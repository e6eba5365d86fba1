"""Matrix products: 2 FLOPs per multiply-add in both conventions (FlopCounterMode's 2·M·N·K);
`full` adds one FLOP per output element for a bias."""

from __future__ import annotations

import math
import operator
import re

import torch
import torch.nn.functional as F

from .base import METADATA, Gemm, OpCall, moved, products, rule


@rule(F.linear, family="matmul")
def linear(call: OpCall):
    """x [..., K] @ w[N, K]^T (+ b): torch 2·M·N·K (bias ignored, as FlopCounterMode's addmm);
    full 2·M·N·K + M·N with a bias."""
    x, w, bias = call.arg(0, "input"), call.arg(1, "weight"), call.arg(2, "bias")
    n = w.shape[0] if len(w.shape) == 2 else 1
    gemm = Gemm(1, call.out.numel // n, n, x.shape[-1])
    return products(call, (gemm,), call.out.numel if bias is not None else 0)


@rule(torch.matmul, operator.matmul, torch.bmm, torch.mm, "Tensor.matmul", "Tensor.bmm", "Tensor.mm",
      family="matmul")
def matmul(call: OpCall):
    """a [..., M, K] @ b [..., K, N]: 2·K per output element (vector operands: a dot product)."""
    a, b = call.args[0], call.args[1]
    m = a.shape[-2] if len(a.shape) >= 2 else 1
    n = b.shape[-1] if len(b.shape) >= 2 else 1
    return products(call, (_batched(call.out.numel, m, n, a.shape[-1]),))


@rule(torch.addmm, torch.baddbmm, "Tensor.addmm", "Tensor.baddbmm", family="matmul")
def addmm(call: OpCall):
    """bias + a @ b: torch 2·M·N·K (the add is not counted); full adds M·N."""
    a, b = call.args[1], call.args[2]
    gemm = _batched(call.out.numel, a.shape[-2], b.shape[-1], a.shape[-1])
    return products(call, (gemm,), call.out.numel)


@rule(torch.einsum, family="matmul")
def einsum(call: OpCall):
    """One operand: a permutation (a view, or a copy). Two operands: the bmm FlopCounterMode decomposes
    it into, 2 · product of every index size; when every contracted index has size 1 (the UniPC solver's
    `k,bkc...` over one earlier output), ATen runs it as an elementwise mul: torch 0, full one per output."""
    equation, *operands = call.args
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = list(operands[0])
    if len(operands) == 1:
        return METADATA if call.aliases_input else moved(call)
    if len(operands) != 2:
        raise NotImplementedError("einsum with more than two operands")
    lhs, arrow, out = re.sub(r"\s", "", equation).partition("->")
    a, b = lhs.split(",")
    if not arrow:  # implicit output: the letters seen once, in alphabetical order
        out = "".join(sorted(c for c in set(a + b) if (a + b).count(c) == 1))
    sizes: dict[str, int] = {}
    for letters, spec in zip((a, b), operands, strict=True):
        for letter, n in zip(letters, spec.shape, strict=True):
            sizes[letter] = max(sizes.get(letter, 1), n)

    def size(letters) -> int:
        return math.prod(sizes[c] for c in letters)

    batch = [c for c in sizes if c in a and c in b and c in out]
    rows = [c for c in sizes if c in a and c not in b and c in out]
    cols = [c for c in sizes if c in b and c not in a and c in out]
    depth = [c for c in sizes if c not in batch + rows + cols]  # contracted (or summed away)
    if size(depth) == 1:  # ATen squeezes size-1 contractions and multiplies elementwise: no product to count
        return moved(call, 0, call.out.numel)
    return products(call, (Gemm(size(batch), size(rows), size(cols), size(depth)),))


def _batched(out_numel: int, m: int, n: int, k: int) -> Gemm:
    return Gemm(out_numel // (m * n) if m * n else 0, m, n, k)
