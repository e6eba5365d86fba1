"""A measured curve, time against size, read between and beyond its points.

Between two points: straight lines in log-log (throughput changes smoothly with size). Below the smallest:
the smallest point's time (a kernel never runs faster than the smallest measured launch of its kind). Above
the largest: the largest point's throughput, so time grows in proportion (past the knee, work per second is
flat)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence


class Series:
    def __init__(self, points: Sequence[Sequence[float]]):
        pts = sorted((float(s), float(t)) for s, t in points)
        self.sizes = [s for s, _ in pts]
        self.times = [t for _, t in pts]
        self._log_s = [math.log(s) for s in self.sizes]
        self._log_t = [math.log(t) for t in self.times]

    def __call__(self, size: float) -> float:
        s, t = self.sizes, self.times
        if size <= s[0]:
            return t[0]
        if size >= s[-1]:
            return t[-1] * size / s[-1]
        i = bisect.bisect_right(s, size)
        x = math.log(size)
        w = (x - self._log_s[i - 1]) / (self._log_s[i] - self._log_s[i - 1])
        return math.exp(self._log_t[i - 1] + w * (self._log_t[i] - self._log_t[i - 1]))

    def throughput(self) -> float:
        """Size per nanosecond at the largest point: the curve's asymptote."""
        return self.sizes[-1] / self.times[-1]
