"""Data movement: casts, copies, concatenation, padding, and reshapes that cannot be views.
Zero FLOPs; bytes read and written. When the result aliases its input (a cast to the same dtype, a
reshape of a contiguous tensor) nothing moves and the op is metadata."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import FULL_CONSTANTS, METADATA, Cost, OpCall, moved, rule


@rule("Tensor.to", "Tensor.float", "Tensor.double", "Tensor.half", "Tensor.bfloat16", "Tensor.type",
      "Tensor.type_as", "Tensor.long", "Tensor.int", "Tensor.bool", family="cast")
def cast(call: OpCall):
    """A dtype conversion: reads the input in its dtype, writes it in the new one; free when a no-op."""
    if call.aliases_input:
        return METADATA
    source = call.args[0]  # in x.type_as(other) or x.to(other), `other` only lends its dtype
    return Cost(0, 0, source.nbytes, call.bytes_written)


@rule("Tensor.contiguous", "Tensor.clone", torch.clone, "Tensor.reshape", torch.reshape, "Tensor.flatten",
      torch.flatten, family="memory")
def copy_unless_view(call: OpCall):
    """A copy when the layout forces one (e.g. flattening a permuted tensor), else a view."""
    return METADATA if call.aliases_input else moved(call)


@rule(torch.cat, torch.concat, torch.stack, F.pad, family="memory")
def concatenate(call: OpCall):
    """cat / stack / pad: every input read once, the result written once."""
    return moved(call)


@rule(F.interpolate, family="memory")
def interpolate(call: OpCall):
    """Nearest / nearest-exact resampling (the Wan VAE's 2x upsample): each output element is a copy of one
    input element, so 0 FLOPs. Bicubic (CLIP's resize to 224): a 4x4 neighbourhood per output element, `full`
    35 FLOPs each; torch counts 0. The input is read once (a downscale by less than 4x touches every input
    row and column), the output written once."""
    mode = call.arg(3, "mode", "nearest")
    if mode in ("nearest", "nearest-exact"):
        return moved(call)
    if mode == "bicubic" and len(call.out.shape) == 4 and not call.arg(6, "antialias", False):
        return moved(call, 0, FULL_CONSTANTS["bicubic"] * call.out.numel)
    raise NotImplementedError(f"interpolate mode {mode!r}")


@rule(torch.zeros_like, torch.zeros, "Tensor.new_zeros", "Tensor.new_ones", torch.full_like, torch.full,
      torch.arange, family="memory")
def fill(call: OpCall):
    """A new tensor filled with a constant or a range (the VAE's cache, the sequence-parallel padding, T5's
    positions and bucket limit): written once, nothing read (the prototype lends only its shape)."""
    return Cost(0, 0, 0, call.bytes_written)


@rule(F.embedding, family="memory")
def embedding(call: OpCall):
    """A table lookup (token and relative-position embeddings): the indices and the gathered rows are read,
    the output written; 0 FLOPs. Not the whole table: a 512-token prompt reads 512 of umT5's 256,384 rows."""
    indices, weight = call.arg(0, "input"), call.arg(1, "weight")
    return Cost(0, 0, indices.nbytes + call.out.numel * weight.dtype.itemsize, call.bytes_written)
