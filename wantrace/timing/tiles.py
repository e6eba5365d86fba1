"""Tensor-core work a GPU kernel executes, predicted from the analytic matrix products and the tile shape in
the kernel's name.

A tensor-core kernel computes its output in whole tiles and its reduction in whole steps, so a product whose
dimensions are not multiples of the tile runs padded multiply-adds that Nsight Compute's tensor counters
count and the analytic (useful-work) FLOPs do not: 5120 columns in 168-wide tiles execute 31 x 168 = 5208.
`verify --counters` compares the counters with this prediction, so that padding the kernel chose is told
apart from a wrong count. Only name formats seen on Hopper are read; any other kernel predicts no padding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..rules import Gemm


@dataclass(frozen=True)
class Tile:
    """Padding granularity along a product's output rows (m), output columns (n) and reduction (k)."""

    m: int
    n: int
    k: int


def _ceil(x: int, tile: int) -> int:
    return -(-x // tile) * tile


def executed(gemm: Gemm, tile: Tile) -> int:
    """Tensor FLOPs of `gemm` run in `tile`s (convolutions pad each tap's channels to the reduction step)."""
    return 2 * gemm.count * _ceil(gemm.m, tile.m) * _ceil(gemm.n, tile.n) * _ceil(gemm.k, tile.k) * gemm.taps


# cuBLAS computes torch's row-major C = A·B as the column-major Cᵀ = Bᵀ·Aᵀ, so the first tile size in its
# kernel names runs along torch's columns (n), the second along its rows (m):
# nvjet_sm90_tst_168x128_64x5_...: 168 columns x 128 rows, reduction steps of 64.
_NVJET = re.compile(r"nvjet_\w*?_(\d+)x(\d+)_(\d+)x\d+")
# cuDNN implicit-GEMM convolution: rows are output positions, columns output channels, the reduction runs
# over input channels one kernel tap at a time.
_XMMA_CONV = re.compile(r"xmma_fprop_implicit_gemm_\w*?tilesize(\d+)x(\d+)x(\d+)")
# cuDNN flash attention: query tile x key/value tile x head dimension.
_SDPA = re.compile(r"sdpa_\w*?flash_fprop\w*?_(\d+)x(\d+)x(\d+)_")


def tiles_for(kernel: str, gemms: tuple[Gemm, ...]) -> tuple[Tile, ...] | None:
    """One tile per product of the op that ran in `kernel`; None when the name is not one we can read."""
    if (match := _NVJET.search(kernel)) is not None:
        cols, rows, depth = map(int, match.groups())
        return tuple(Tile(rows, cols, depth) for _ in gemms)
    if (match := _XMMA_CONV.search(kernel)) is not None:
        rows, cols, depth = map(int, match.groups())
        return tuple(Tile(rows, cols, depth) for _ in gemms)
    if (match := _SDPA.search(kernel)) is not None and len(gemms) == 2:
        q, kv, d = map(int, match.groups())
        return Tile(q, kv, d), Tile(q, d, kv)  # S = Q Kᵀ: queries x keys over d; O = P V: queries x d over keys
    return None


def predict(gemms: tuple[Gemm, ...], kernel: str | None) -> tuple[int, bool]:
    """(tensor FLOPs `kernel` executes for these products, whether its tile was known). An unknown kernel
    predicts the useful FLOPs."""
    tiles = tiles_for(kernel, gemms) if kernel else None
    if tiles is None:
        return sum(g.flops for g in gemms), False
    return sum(executed(g, t) for g, t in zip(gemms, tiles, strict=True)), True
