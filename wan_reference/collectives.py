"""The collectives of the sequence-parallel forward, as small functions that stay single graph nodes.

Each function is registered with `torch.fx.wrap` by the module that calls it (`parallel`), so an FX trace records
it as one `call_function` node instead of tracing into torch.distributed, and a cost rule can price it. Each
names its op (`fn.op_name`): the rule book, which may not import the model, registers its rules under these
names. On meta tensors a collective only returns a tensor of the right shape, so one rank's graph runs on meta
without a process group; on real tensors it calls torch.distributed on the group registered under its name
(`set_group`). Group sizes are explicit arguments, so a node says how many ranks it spans.

`count()` records what every real call hands to torch.distributed: the bytes this rank sends to other ranks and
receives from them (its own chunk of an all-to-all or all-gather never leaves it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

_GROUPS: dict[str, dist.ProcessGroup | None] = {}
_RANKS: dict[str, list[int]] = {}  # global ranks of each group, in group-rank order


def set_group(name: str, group: dist.ProcessGroup | None, ranks: list[int]) -> None:
    """Register the process group a collective named `name` runs on (its global ranks, in order)."""
    _GROUPS[name] = group
    _RANKS[name] = list(ranks)


def clear_groups() -> None:
    _GROUPS.clear()
    _RANKS.clear()


@dataclass(frozen=True)
class Sent:
    """One real collective call, as this rank handed it to torch.distributed."""

    op: str
    group: str
    bytes_sent: int
    bytes_received: int


_records: list[Sent] | None = None


@contextmanager
def count() -> Iterator[list[Sent]]:
    """Record every real collective call made in the body (meta calls move nothing and are not recorded)."""
    global _records
    previous, _records = _records, []
    try:
        yield _records
    finally:
        _records = previous


def _record(op: str, group: str, sent: int, received: int) -> None:
    if _records is not None:
        _records.append(Sent(op, group, sent, received))


F = TypeVar("F", bound=Callable[..., torch.Tensor])


def _named(op_name: str) -> Callable[[F], F]:
    def mark(fn: F) -> F:
        fn.op_name = op_name  # type: ignore[attr-defined]
        return fn

    return mark


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


@_named("wan.all_to_all")
def all_to_all(x: torch.Tensor, scatter_dim: int, gather_dim: int, size: int, group: str) -> torch.Tensor:
    """Split `x` into `size` chunks along `scatter_dim`, send chunk j to group rank j, and concatenate what
    arrives along `gather_dim` in group-rank order (Ulysses: [B, s, n, d] <-> [B, s*size, n/size, d])."""
    shape = list(x.shape)
    if shape[scatter_dim] % size:
        raise ValueError(f"all_to_all: dim {scatter_dim} of {tuple(x.shape)} does not split {size} ways")
    out_shape = list(shape)
    out_shape[scatter_dim] //= size
    out_shape[gather_dim] *= size
    if x.is_meta or size == 1:
        return x.new_empty(out_shape) if x.is_meta else x
    # [..., size, chunk, ...] on the scatter dim, moved to the front: chunk j is contiguous block j
    parts = x.unflatten(scatter_dim, (size, shape[scatter_dim] // size)).movedim(scatter_dim, 0).contiguous()
    received = torch.empty_like(parts)
    dist.all_to_all_single(received, parts, group=_GROUPS[group])
    _record("all_to_all", group, _nbytes(parts) * (size - 1) // size, _nbytes(received) * (size - 1) // size)
    # received[j] is rank j's chunk: put the source-rank axis just before the gather dim and merge
    return received.movedim(0, gather_dim).flatten(gather_dim, gather_dim + 1)


@_named("wan.all_gather")
def all_gather(x: torch.Tensor, dim: int, size: int, group: str) -> torch.Tensor:
    """Every rank's `x`, concatenated along `dim` in group-rank order."""
    out_shape = list(x.shape)
    out_shape[dim] *= size
    if x.is_meta or size == 1:
        return x.new_empty(out_shape) if x.is_meta else x
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.contiguous(), group=_GROUPS[group])
    _record("all_gather", group, _nbytes(x) * (size - 1), _nbytes(x) * (size - 1))
    return torch.cat(parts, dim=dim)


@_named("wan.ring_pass")
def ring_pass(x: torch.Tensor, size: int, group: str) -> torch.Tensor:
    """One ring step: send `x` to the next group rank, receive the previous rank's tensor of the same shape."""
    if x.is_meta or size == 1:
        return torch.empty_like(x) if x.is_meta else x
    ranks = _RANKS[group]
    me = ranks.index(dist.get_rank())
    x = x.contiguous()
    received = torch.empty_like(x)
    ops = [dist.P2POp(dist.isend, x, ranks[(me + 1) % size], _GROUPS[group]),
           dist.P2POp(dist.irecv, received, ranks[(me - 1) % size], _GROUPS[group])]
    for request in dist.batch_isend_irecv(ops):
        request.wait()
    _record("ring_pass", group, _nbytes(x), _nbytes(received))
    return received


COLLECTIVES = (all_to_all, all_gather, ring_pass)
