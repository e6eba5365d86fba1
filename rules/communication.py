"""Collectives of the sequence-parallel forward: 0 FLOPs; the bytes each rank sends to and receives from other
ranks (`comm_sent`, `comm_received`), beside the local bytes the collective's kernel reads and writes.

Rules are registered under the names the model's collectives carry (`op_name`), so the rule book needs no import
of the model. A group of `size` ranks:

* all_to_all: the input splits into `size` chunks, one per rank; the rank's own chunk stays, so it sends
  (size-1)/size of its input and receives as much.
* all_gather: the rank's tensor goes to each of the other size-1 ranks, and theirs come back: (size-1) x its bytes
  each way (also what a ring all-gather moves per rank).
* ring_pass: one ring step: the whole tensor to the next rank, one of the same size from the previous.
"""

from __future__ import annotations

from .base import Cost, OpCall, rule


def _sent(call: OpCall, sent: int) -> Cost:
    return Cost(0, 0, call.bytes_read, call.bytes_written, comm_sent=sent, comm_received=sent)


@rule("wan.all_to_all", family="communication")
def all_to_all(call: OpCall) -> Cost:
    """x split over `size` ranks: (size-1)/size of x's bytes each way."""
    x, size = call.args[0], call.arg(3, "size")
    return _sent(call, x.nbytes * (size - 1) // size)


@rule("wan.all_gather", family="communication")
def all_gather(call: OpCall) -> Cost:
    """x to every other rank of the group: (size-1) x x's bytes each way."""
    x, size = call.args[0], call.arg(2, "size")
    return _sent(call, x.nbytes * (size - 1))


@rule("wan.ring_pass", family="communication")
def ring_pass(call: OpCall) -> Cost:
    """x to the next rank, the previous rank's x in: x's bytes each way."""
    return _sent(call, call.args[0].nbytes)
