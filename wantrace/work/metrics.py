"""Exact cost arithmetic: Python ints only, so every roll-up is exact and order-independent."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metrics:
    flops_torch: int = 0
    flops_full: int = 0
    bytes_read: int = 0
    bytes_written: int = 0

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written

    def __add__(self, other: Metrics) -> Metrics:
        return Metrics(
            self.flops_torch + other.flops_torch,
            self.flops_full + other.flops_full,
            self.bytes_read + other.bytes_read,
            self.bytes_written + other.bytes_written,
        )

    def times(self, k: int) -> Metrics:
        return Metrics(self.flops_torch * k, self.flops_full * k, self.bytes_read * k, self.bytes_written * k)

    def to_dict(self) -> dict:
        return {
            "flops": {"torch": self.flops_torch, "full": self.flops_full},
            "bytes": self.bytes,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Metrics:
        return cls(d["flops"]["torch"], d["flops"]["full"], d["bytes_read"], d["bytes_written"])


ZERO = Metrics()
