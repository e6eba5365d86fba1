"""A sweep's files: sweep.csv, sweep.json, the PNG plots and a summary.md that embeds them."""

from __future__ import annotations

import json
from pathlib import Path

from ..work.report import write_atomic
from ..work.sweep import Sweep
from .units import flops, nbytes, seconds

PLOTS = {"flops_vs_tokens.png": "FLOPs per forward vs tokens, by category",
         "self_attention_share.png": "Self-attention core share vs tokens"}


def summary_markdown(sweep: Sweep, command: str, plots: list[str]) -> str:
    s = sweep.source
    lines = [
        f"`{command}`",
        "",
        f"# wantrace sweep: Wan2.1 {sweep.config.model_type}, {len(sweep.rows)} workloads",
        "",
        f"- config: `{s['config']}` (sha256 `{(s['config_sha256'] or '')[:12]}`); base workload `{sweep.preset}`",
        "- per forward unless marked; shares are of one forward's total in each convention "
        "(docs/conventions.md); every row is also in `sweep.csv` and, with all categories, in `sweep.json`",
        "",
    ]
    lines += [f"![{PLOTS[name]}]({name})\n" for name in plots]
    timed = bool(sweep.rows) and all(row.timed for row in sweep.rows)
    lines += ["| workload | tokens | FLOPs (torch) | FLOPs (full) | bytes | FLOPs/generation (torch) | "
              "self-attn share (torch) | self-attn share (bytes) |"
              + (" time/forward | time/generation |" if timed else ""),
              "|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if timed else "")]
    for row in sweep.rows:
        f = row.forward
        time_cells = (f" {seconds(f.time_ns or 0)} | {seconds(row.generation.time_ns or 0)} |" if timed else "")
        lines.append(
            f"| {row.workload.id} | {row.geometry.tokens:,} | {flops(f.flops_torch)} | {flops(f.flops_full)} | "
            f"{nbytes(f.bytes)} | {flops(row.generation.flops_torch)} | "
            f"{100 * row.shares('torch')['self-attention core']:.1f}% | "
            f"{100 * row.shares('bytes')['self-attention core']:.1f}% |{time_cells}"
        )
    return "\n".join(lines) + "\n"


def write_sweep(sweep: Sweep, out: Path, command: str, plots: bool = True,
                rendered: dict[str, bytes] | None = None) -> list[Path]:
    """sweep.csv, sweep.json, the PNG plots (`rendered`, or drawn here) and summary.md; everything is rendered
    before the first file is written, and each file is written atomically."""
    files: dict[str, str | bytes] = {
        "sweep.csv": sweep.to_csv(),
        "sweep.json": json.dumps(sweep.to_dict(command), indent=1) + "\n",
    }
    if plots:
        from .plots import render_plots  # matplotlib: only when plots are asked for

        files.update(rendered if rendered is not None else render_plots(sweep))
    files["summary.md"] = summary_markdown(sweep, command, [name for name in PLOTS if name in files])
    for name, content in files.items():
        write_atomic(out / name, content)
    return [out / name for name in files]
