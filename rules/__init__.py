"""The rule book: one small cost rule per op family, registered by the op it costs (installed as
`wantrace.rules`). Rules turn an `OpCall` (shapes and dtypes of one graph node) into a `Cost`: FLOPs in
two conventions (`torch`, as FlopCounterMode counts; `full`, every op with the constants of
`FULL_CONSTANTS`) and bytes read and written by an unfused eager kernel. They import neither the model
(`wan_reference`) nor the machinery (`wantrace`); docs/conventions.md documents every constant."""

from . import activations, attention, communication, conv, elementwise, matmul, memory, norms, views  # noqa: F401
from .base import FULL_CONSTANTS, METADATA, RULES, Cost, Gemm, OpCall, Rule, TensorSpec, lookup, rule

__all__ = ["FULL_CONSTANTS", "METADATA", "RULES", "Cost", "Gemm", "OpCall", "Rule", "TensorSpec", "lookup", "rule"]
