"""What a rule sees (`TensorSpec`, `OpCall`), what it returns (`Cost`), and the registry that maps an op
(a torch callable, or "Tensor.<method>") to its rule, in the manner of torch.utils.flop_counter."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

# Per-element constants of the `full` convention; docs/conventions.md gives each one's source.
FULL_CONSTANTS = {
    "softmax_per_score": 5,  # max, subtract, exp, sum, divide (google-research/electra flops_computation.py)
    "layer_norm_plain": 4,  # fvcore / DeepSpeed: 4 without affine ...
    "layer_norm_affine": 5,  # ... 5 with an affine transform
    "gelu": 8,  # Electra's count of the tanh formula; the erf form is given the same constant
    "silu": 5,  # neg, exp, add, divide (sigmoid), multiply
    "elementwise": 1,  # add, sub, mul, div, neg, pow, sin, cos, exp, rsqrt, sqrt: one per output element
    "complex_mul": 6,  # (a+bi)(c+di): 4 multiplies + 2 adds
    "complex_add": 2,
    "reduction": 1,  # sum / mean: one add per input element
    "bicubic": 35,  # per output element: 4 row and 1 column 4-tap cubic convolutions of 4 mul + 3 add (torch's kernel)
}


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: torch.dtype
    stride: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of memory the tensor spans: broadcast (stride-0) dimensions are stored once."""
        distinct = math.prod(n for n, s in zip(self.shape, self.stride, strict=True) if s != 0)
        return distinct * self.dtype.itemsize

    @property
    def is_complex(self) -> bool:
        return self.dtype.is_complex


@dataclass(frozen=True)
class OpCall:
    """One graph node: its op, its arguments (tensors replaced by TensorSpecs), its outputs, and whether the
    result shares storage with an input (a view, or a no-op cast), in which case no data moved."""

    name: str
    args: tuple
    kwargs: dict
    outputs: tuple[TensorSpec, ...]
    aliases_input: bool = False

    @property
    def inputs(self) -> list[TensorSpec]:
        found: list[TensorSpec] = []

        def walk(value):
            if isinstance(value, TensorSpec):
                found.append(value)
            elif isinstance(value, (list, tuple)):
                for v in value:
                    walk(v)
            elif isinstance(value, dict):
                for v in value.values():
                    walk(v)

        walk(self.args)
        walk(self.kwargs)
        return found

    def arg(self, index: int, name: str, default=None):
        if len(self.args) > index:
            return self.args[index]
        return self.kwargs.get(name, default)

    @property
    def out(self) -> TensorSpec:
        return self.outputs[0]

    @property
    def bytes_read(self) -> int:
        return sum(t.nbytes for t in self.inputs)

    @property
    def bytes_written(self) -> int:
        return sum(t.nbytes for t in self.outputs)


@dataclass(frozen=True)
class Gemm:
    """One matrix product an op is made of, `count` times: an [m, k·taps] x [k·taps, n] product, where `m`
    indexes output rows (tokens, output positions, queries), `n` output columns (features, channels, keys)
    and the reduction runs over `taps` filter taps of `k` each (taps = 1 but for convolutions). The torch
    convention counts 2 FLOPs per multiply-add; the machinery pads these dimensions to the tiles a GPU
    kernel ran with to predict the tensor-core work it executes."""

    count: int
    m: int
    n: int
    k: int
    taps: int = 1

    @property
    def flops(self) -> int:
        return 2 * self.count * self.m * self.n * self.k * self.taps


@dataclass(frozen=True)
class Cost:
    flops_torch: int = 0  # what torch.utils.flop_counter.FlopCounterMode counts
    flops_full: int = 0  # every op, with the rule book's constants
    bytes_read: int = 0
    bytes_written: int = 0
    metadata: bool = False  # a zero-cost metadata op (view, no-op cast, getattr): goes to the ledger
    gemms: tuple[Gemm, ...] = ()  # matrix products (matmul, conv, attention); their FLOPs are flops_torch
    comm_sent: int = 0  # a collective: bytes this rank sends to other ranks (rules/communication.py)
    comm_received: int = 0  # ... and receives from them

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written


METADATA = Cost(metadata=True)


def moved(call: OpCall, flops_torch: int = 0, flops_full: int = 0) -> Cost:
    """An unfused eager kernel: reads every input once, writes every output once."""
    return Cost(flops_torch, flops_full, call.bytes_read, call.bytes_written)


def products(call: OpCall, gemms: tuple[Gemm, ...], extra_full: int = 0) -> Cost:
    """An unfused matrix-product kernel: `torch` FLOPs are the products', `full` adds `extra_full`."""
    flops = sum(g.flops for g in gemms)
    return Cost(flops, flops + extra_full, call.bytes_read, call.bytes_written, gemms=gemms)


@dataclass(frozen=True)
class Rule:
    name: str
    family: str  # matmul, conv, attention, norm, activation, elementwise, reduction, cast, memory, view
    fn: Callable[[OpCall], Cost]

    def __call__(self, call: OpCall) -> Cost:
        return self.fn(call)


RULES: dict[object, Rule] = {}


def rule(*targets, family: str):
    """Register `fn` as the rule for each target: a torch callable, or "Tensor.<method>"."""

    def register(fn):
        r = Rule(fn.__name__, family, fn)
        for target in targets:
            if target in RULES and RULES[target].fn is not fn:
                raise ValueError(f"two rules for {target!r}")
            RULES[target] = r
        return fn

    return register


def lookup(kind: str, target) -> Rule | None:
    """The rule for an FX node (`kind` is its op: call_function or call_method)."""
    key = f"Tensor.{target}" if kind == "call_method" else target
    try:
        found = RULES.get(key)
    except TypeError:  # unhashable target
        return None
    # a function that names its op (`fn.op_name`, e.g. the model's collectives, which the rule book may not
    # import) is looked up by that name
    name = getattr(target, "op_name", None)
    return found if found is not None or not isinstance(name, str) else RULES.get(name)
