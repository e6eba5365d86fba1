"""Elementwise arithmetic (modulation, gates, residuals, RMSNorm pieces), RoPE's complex multiply,
transcendentals and reductions. torch counts 0 for all of them."""

from __future__ import annotations

import operator

import torch

from .base import FULL_CONSTANTS, OpCall, moved, rule

_ARITH = [operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul,
          torch.div, "Tensor.add", "Tensor.sub", "Tensor.mul", "Tensor.div",
          "Tensor.add_", "Tensor.sub_", "Tensor.mul_", "Tensor.div_"]  # in place: still a read and a write
_MULTIPLICATIVE = {"mul", "truediv", "div", "mul_", "div_"}


@rule(*_ARITH, family="elementwise")
def arithmetic(call: OpCall):
    """One FLOP per output element; on complex tensors (RoPE) a multiply is 6 real FLOPs
    (4 mul + 2 add) and an add 2."""
    per = FULL_CONSTANTS["elementwise"]
    if call.out.is_complex:
        per = FULL_CONSTANTS["complex_mul" if call.name in _MULTIPLICATIVE else "complex_add"]
    return moved(call, 0, per * call.out.numel)


@rule(operator.neg, torch.neg, "Tensor.neg", torch.pow, "Tensor.pow", operator.pow, torch.rsqrt,
      "Tensor.rsqrt", torch.sqrt, "Tensor.sqrt", torch.exp, "Tensor.exp", torch.sin, "Tensor.sin", torch.cos,
      "Tensor.cos", torch.tanh, "Tensor.tanh", torch.sigmoid, "Tensor.sigmoid", torch.clamp, "Tensor.clamp",
      "Tensor.clamp_", torch.abs, "Tensor.abs", torch.log, "Tensor.log", family="elementwise")
def unary(call: OpCall):
    """Negation, absolute value, powers, transcendentals (a MUFU op on the GPU) and clamps (the VAE's output,
    in place or not: the tensor is still read and written): one per output element."""
    return moved(call, 0, FULL_CONSTANTS["elementwise"] * call.out.numel)


_COMPARE = [operator.gt, operator.lt, operator.ge, operator.le, operator.eq, operator.ne, torch.gt, torch.lt,
            torch.ge, torch.le, torch.eq, torch.ne, "Tensor.gt", "Tensor.lt", "Tensor.ge", "Tensor.le", "Tensor.eq",
            "Tensor.ne"]
_SELECT = [torch.where, torch.minimum, torch.maximum, torch.min, torch.max, "Tensor.masked_fill",
           "Tensor.masked_fill_", torch.masked_fill]


@rule(*_COMPARE, family="elementwise")
def compare(call: OpCall):
    """A comparison to a bool tensor (T5's relative-position buckets, its padding mask == 0): one per output
    element."""
    return moved(call, 0, FULL_CONSTANTS["elementwise"] * call.out.numel)


@rule(*_SELECT, family="elementwise")
def select(call: OpCall):
    """Elementwise choice between operands: where(cond, a, b), masked_fill (in place or not), the binary
    min / max / minimum / maximum (T5's bucket clamp): one per output element. The reducing forms of min and
    max (one operand, or a dim) are not this op."""
    if call.name in ("min", "max") and (len(call.inputs) != 2 or len(call.args) > 2 or call.kwargs):
        raise NotImplementedError(f"{call.name} as a reduction")
    return moved(call, 0, FULL_CONSTANTS["elementwise"] * call.out.numel)


@rule(torch.outer, "Tensor.outer", family="elementwise")
def outer(call: OpCall):
    """a ⊗ b: one multiply per output element (the sinusoidal time embedding's angles)."""
    return moved(call, 0, FULL_CONSTANTS["elementwise"] * call.out.numel)


@rule(torch.mean, "Tensor.mean", torch.sum, "Tensor.sum", family="reduction")
def reduction(call: OpCall):
    """sum / mean over some dims: one add per input element."""
    return moved(call, 0, FULL_CONSTANTS["reduction"] * call.args[0].numel)


LOGADDEXP = 4  # max, subtract, exp, log1p per element: the stable formula torch's kernel evaluates


@rule(torch.logaddexp, "Tensor.logaddexp", family="elementwise")
def logaddexp(call: OpCall):
    """log(exp(a) + exp(b)) (ring attention's merge of log-sum-exps): 4 per output element in `full`."""
    return moved(call, 0, LOGADDEXP * call.out.numel)
