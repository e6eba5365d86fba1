"""Exact cost arithmetic: Python ints only, so every roll-up is exact and order-independent.

`time_ns` is the predicted time on a hardware profile (wantrace.timing), in integer nanoseconds so that a
parent's time is the sum of its children's exactly; None when no profile was asked for, and then it never
appears in what a report writes. `comm_sent` / `comm_received` are the bytes a rank of a sequence-parallel
forward sends to and receives from other ranks; None where no collective ran, and then never written either."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metrics:
    flops_torch: int = 0
    flops_full: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    time_ns: int | None = None
    comm_sent: int | None = None
    comm_received: int | None = None

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written

    def __add__(self, other: Metrics) -> Metrics:
        if self.time_ns is None and other.time_ns is None:
            time_ns = None
        else:
            time_ns = (self.time_ns or 0) + (other.time_ns or 0)
        return Metrics(
            self.flops_torch + other.flops_torch,
            self.flops_full + other.flops_full,
            self.bytes_read + other.bytes_read,
            self.bytes_written + other.bytes_written,
            time_ns,
            _add(self.comm_sent, other.comm_sent),
            _add(self.comm_received, other.comm_received),
        )

    def times(self, k: int) -> Metrics:
        return Metrics(self.flops_torch * k, self.flops_full * k, self.bytes_read * k, self.bytes_written * k,
                       None if self.time_ns is None else self.time_ns * k,
                       None if self.comm_sent is None else self.comm_sent * k,
                       None if self.comm_received is None else self.comm_received * k)

    def to_dict(self) -> dict:
        d = {
            "flops": {"torch": self.flops_torch, "full": self.flops_full},
            "bytes": self.bytes,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
        }
        if self.time_ns is not None:
            d["time_ns"] = self.time_ns
            d["time_s"] = self.time_ns / 1e9
        if self.comm_sent is not None or self.comm_received is not None:
            d["comm"] = {"sent": self.comm_sent or 0, "received": self.comm_received or 0}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Metrics:
        comm = d.get("comm")
        return cls(d["flops"]["torch"], d["flops"]["full"], d["bytes_read"], d["bytes_written"], d.get("time_ns"),
                   comm["sent"] if comm else None, comm["received"] if comm else None)


def _add(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)


ZERO = Metrics()
