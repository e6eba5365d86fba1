"""The Report: what analyze returns and report.json holds (schema in docs/report-schema.md)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .metrics import Metrics

SCHEMA_VERSION = 2  # 2: optional predicted time (time_ns/time_s, `time`); docs/report-schema.md
GENERATION_SCHEMA_VERSION = 3  # 3: the whole generation (components at the top level, `generation`); a DiT-only
# report (--only dit) keeps schema 2, unchanged
READABLE_SCHEMAS = (1, 2, 3)  # what compare accepts (a generation report only against another)


@dataclass
class ModuleRow:
    id: str
    parent: str | None
    type: str  # module class name, or "scope" for named functional work
    category: str  # one of categories.CATEGORIES for leaves and scopes, "mixed" for containers
    calls: int
    params: int
    param_bytes: int
    exclusive: Metrics
    inclusive: Metrics
    output_bytes: int  # bytes of what the module returns, summed over its calls
    children: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "parent": self.parent,
            "type": self.type,
            "category": self.category,
            "calls": self.calls,
            "params": self.params,
            "param_bytes": self.param_bytes,
            **self.inclusive.to_dict(),
            "output_bytes": self.output_bytes,
            "exclusive": self.exclusive.to_dict(),
            "children": self.children,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModuleRow:
        """A module entry of report.json back to a row (compare reads reports from disk)."""
        return cls(
            id=d["id"], parent=d["parent"], type=d["type"], category=d["category"], calls=d["calls"],
            params=d["params"], param_bytes=d["param_bytes"], exclusive=Metrics.from_dict(d["exclusive"]),
            inclusive=Metrics.from_dict(d), output_bytes=d["output_bytes"], children=list(d["children"]),
        )


@dataclass
class Report:
    schema_version: int
    tool: dict
    model: dict
    workload: dict
    geometry: dict
    conventions: dict
    modules: list[ModuleRow]
    categories: dict[str, Metrics]
    totals: dict
    ledger: dict
    traced_blocks: int = 0
    time: dict | None = None  # the hardware profile and time model, when time was predicted
    parallel: dict | None = None  # one rank of a multi-GPU run: layout, padding, communication, memory
    experts: dict | None = None  # Wan2.2 A14B: the expert split (wantrace.work.experts); modules per generation
    generation: dict | None = None  # whole generation (wantrace.work.generation); modules, categories per generation

    def module(self, module_id: str) -> ModuleRow:
        for row in self.modules:
            if row.id == module_id:
                return row
        raise KeyError(module_id)

    @property
    def forward(self) -> Metrics:
        return self.totals["forward"]

    def category_shares(self, convention: str = "torch") -> dict[str, float]:
        key = "flops_torch" if convention == "torch" else "flops_full"
        total = getattr(self.forward, key)
        return {c: (getattr(m, key) / total if total else 0.0) for c, m in self.categories.items()}

    @property
    def whole(self) -> Metrics:
        """What shares are of: one forward, or a generation report's generation."""
        return self.totals["generation"] if self.generation is not None else self.forward

    def to_dict(self) -> dict:
        forward = self.whole
        categories = []
        for name, m in self.categories.items():
            categories.append({
                "category": name,
                **m.to_dict(),
                "share": {
                    "torch": _share(m.flops_torch, forward.flops_torch),
                    "full": _share(m.flops_full, forward.flops_full),
                    "bytes": _share(m.bytes, forward.bytes),
                    **({"time": _share(m.time_ns or 0, forward.time_ns)} if forward.time_ns is not None else {}),
                },
            })
        totals = {k: (v.to_dict() if isinstance(v, Metrics) else v) for k, v in self.totals.items()}
        return {
            "schema_version": self.schema_version,
            "tool": self.tool,
            "model": self.model,
            "workload": self.workload,
            "geometry": self.geometry,
            "conventions": self.conventions,
            "trace": {"traced_blocks": self.traced_blocks, "replicated": self.traced_blocks
                      < self.model["dims"]["num_layers"]},
            "totals": totals,
            "categories": categories,
            "modules": [row.to_dict() for row in self.modules],
            "ledger": self.ledger,
            **({"time": self.time} if self.time is not None else {}),
            **({"parallel": self.parallel} if self.parallel is not None else {}),
            **({"experts": self.experts} if self.experts is not None else {}),
            **({"generation": self.generation} if self.generation is not None else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write to a temp file beside `path`, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
