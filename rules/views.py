"""Metadata ops: they change how memory is viewed, never what it holds. Counted by kind in the ledger."""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F

from .base import METADATA, OpCall, moved, rule

_VIEWS = [
    "Tensor.view", "Tensor.unflatten", "Tensor.transpose", "Tensor.permute", "Tensor.expand", "Tensor.narrow",
    "Tensor.chunk", "Tensor.split", "Tensor.unsqueeze", "Tensor.squeeze", "Tensor.t", "Tensor.view_as",
    "Tensor.expand_as", "Tensor.unbind", "Tensor.size", "Tensor.dim", "Tensor.detach",
    torch.transpose, torch.permute, torch.narrow, torch.chunk, torch.split, torch.unsqueeze, torch.squeeze,
    torch.view_as_complex, torch.view_as_real, torch.unbind, getattr,
]


@rule(*_VIEWS, family="view")
def view(call: OpCall):
    """Shape, stride and dtype bookkeeping: 0 FLOPs, 0 bytes."""
    return METADATA


@rule(operator.getitem, family="view")
def getitem(call: OpCall):
    """Indexing: a slice is a view (metadata); an index that gathers (a copy) moves the selected data."""
    if call.aliases_input or not call.outputs or not call.inputs:
        return METADATA  # a view, or picking an item out of a tuple or a shape
    return moved(call)


@rule(F.dropout, family="view")
def dropout(call: OpCall):
    """Dropout in eval mode returns its input (the Wan VAE keeps nn.Dropout(0.0) in every residual block)."""
    if call.arg(2, "training", True) and call.arg(1, "p", 0.5):
        raise NotImplementedError("dropout in training mode")
    return METADATA if call.aliases_input else moved(call)
