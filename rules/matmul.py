"""Matrix products: 2 FLOPs per multiply-add in both conventions (FlopCounterMode's 2·M·N·K);
`full` adds one FLOP per output element for a bias."""

from __future__ import annotations

import operator
import re

import torch
import torch.nn.functional as F

from .base import METADATA, OpCall, moved, rule


@rule(F.linear, family="matmul")
def linear(call: OpCall):
    """x [..., K] @ w[N, K]^T (+ b): torch 2·M·N·K (bias ignored, as FlopCounterMode's addmm);
    full 2·M·N·K + M·N with a bias."""
    x, bias = call.arg(0, "input"), call.arg(2, "bias")
    macs = call.out.numel * x.shape[-1]
    return moved(call, 2 * macs, 2 * macs + (call.out.numel if bias is not None else 0))


@rule(torch.matmul, operator.matmul, torch.bmm, torch.mm, "Tensor.matmul", "Tensor.bmm", "Tensor.mm",
      family="matmul")
def matmul(call: OpCall):
    """a [..., M, K] @ b [..., K, N]: 2·K per output element (vector operands: a dot product)."""
    a = call.args[0]
    k = a.shape[-1]
    return moved(call, 2 * call.out.numel * k, 2 * call.out.numel * k)


@rule(torch.addmm, torch.baddbmm, "Tensor.addmm", "Tensor.baddbmm", family="matmul")
def addmm(call: OpCall):
    """bias + a @ b: torch 2·M·N·K (the add is not counted); full adds M·N."""
    a = call.args[1]
    macs = call.out.numel * a.shape[-1]
    return moved(call, 2 * macs, 2 * macs + call.out.numel)


@rule(torch.einsum, family="matmul")
def einsum(call: OpCall):
    """One operand: a permutation (a view, or a copy). Two operands: the bmm FlopCounterMode decomposes
    it into, 2 · product of every index size."""
    equation, *operands = call.args
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = list(operands[0])
    if len(operands) == 1:
        return METADATA if call.aliases_input else moved(call)
    if len(operands) != 2:
        raise NotImplementedError("einsum with more than two operands")
    inputs = re.sub(r"\s", "", equation).split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for letters, spec in zip(inputs, operands, strict=True):
        for letter, n in zip(letters, spec.shape, strict=True):
            sizes[letter] = max(sizes.get(letter, 1), n)
    flops = 2
    for n in sizes.values():
        flops *= n
    return moved(call, flops, flops)
