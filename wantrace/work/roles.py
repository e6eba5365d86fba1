"""Roles: a module path with the block index replaced by `*` (`blocks.*.self_attn.attention`), summed over
the N identical blocks. The top 10 modules of 40 identical blocks say nothing; the top 10 roles do.

This is the one place that knows what a role is; hotspots, compare and the collapsed tree use it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from wan_reference.config import EXPERT_FOLDERS

from .metrics import ZERO, Metrics
from .report import ModuleRow

# a block index, in the main or VACE blocks, of the model or of one A14B expert subtree; in a generation report
# beneath its component (`dit.blocks.3`, `dit.low_noise_model.blocks.3`, `text_encoder.blocks.3`)
_BLOCK = re.compile(rf"^((?:(?:dit|text_encoder)\.)?(?:(?:{'|'.join(EXPERT_FOLDERS)})\.)?(?:blocks|vace_blocks))"
                    r"\.\d+(?=\.|$)")


def role_of(module_id: str) -> str:
    """`blocks.17.self_attn.q` -> `blocks.*.self_attn.q` (VACE: `vace_blocks.*...`); ids outside the blocks are
    their own role."""
    return _BLOCK.sub(r"\1.*", module_id)


@dataclass(frozen=True)
class Role:
    id: str  # role id, or a module id when listing individual modules
    category: str
    count: int  # modules summed (40 for a role of every block of the 14B; 1 for a module)
    calls: int  # calls per forward, summed
    metrics: Metrics  # per forward, summed

    @property
    def label(self) -> str:
        return f"{self.id} x{self.count}" if self.count > 1 else self.id


def work_rows(rows: Iterable[ModuleRow]) -> list[tuple[ModuleRow, Metrics]]:
    """The rows that do work, each with the work it does itself, so that nothing counts twice: leaves and
    scopes with their inclusive metrics, and any container with its exclusive (own-node) metrics when it has
    some. Summed, they are the forward total exactly."""
    out = []
    for row in rows:
        if not row.children:
            out.append((row, row.inclusive))
        elif row.exclusive != ZERO:
            out.append((row, row.exclusive))
    return out


def aggregate(rows: Iterable[ModuleRow], by_module: bool = False) -> list[Role]:
    """Roles (or, with `by_module`, the individual modules) of the working rows, in first-seen order."""
    roles: dict[str, Role] = {}
    for row, m in work_rows(rows):
        key = row.id if by_module else role_of(row.id)
        seen = roles.get(key)
        if seen is None:
            roles[key] = Role(key, row.category, 1, row.calls, m)
        else:
            category = seen.category if seen.category == row.category else "mixed"
            roles[key] = Role(key, category, seen.count + 1, seen.calls + row.calls, seen.metrics + m)
    return list(roles.values())
