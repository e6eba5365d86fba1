"""The multi-GPU part of a report, as markdown lines (terminal and summary.md): layout, padding, what one rank
sends per forward, and what one GPU holds, against the GPU's memory when a profile was given."""

from __future__ import annotations

from ..work.report import Report
from .units import flops, nbytes, seconds


def parallel_lines(report: Report, gpu_memory: float | None = None, gpu_name: str | None = None) -> list[str]:
    p = report.parallel
    if p is None:
        return []
    fwd = report.forward
    flags = [f for f in ("dit_fsdp", "t5_fsdp", "t5_cpu") if p[f]] + (["offload_model"] if p["offload_model"] else [])
    lines = [
        f"## One rank of {p['world']} GPUs: Ulysses {p['ulysses']} x ring {p['ring']}"
        + (" x CFG 2" if p["cfg_parallel"] else ""),
        "",
        f"- flags: {', '.join('--' + f.replace('_', '-') for f in flags) or 'none'}",
        f"- tokens {p['tokens']:,} padded to seq_len {p['seq_len']:,} ({p['padding_tokens']} padding), "
        f"{p['tokens_per_rank']:,} per rank",
        f"- per rank and forward: {flops(fwd.flops_torch)} (torch), {nbytes(fwd.bytes)} moved, "
        f"{nbytes(fwd.comm_sent or 0)} sent and {nbytes(fwd.comm_received or 0)} received"
        + (f", {seconds(fwd.time_ns)} predicted" if fwd.time_ns is not None else ""),
        f"- forwards per step per rank: {p['forwards_per_step_per_rank']}"
        + (f"; CFG exchange {nbytes(p['cfg_exchange_per_step']['sent'])} per step" if p["cfg_parallel"] else ""),
        "",
        "| collective | calls per forward | sent per rank | received per rank |",
        "|---|---:|---:|---:|",
    ]
    for op, c in sorted(p["communication_per_forward"].items()):
        lines.append(f"| {op} | {c['calls']} | {nbytes(c['sent'])} | {nbytes(c['received'])} |")
    m = p["memory"]
    shard = f"1/{p['world']} shard" if p["dit_fsdp"] else "whole"
    lines += [
        "",
        "| per-GPU memory | bytes |",
        "|---|---:|",
        f"| DiT weights ({shard}) | {nbytes(m['dit_weights'])} |",
        f"| DiT FSDP gathered bf16 (root + 2 blocks) | {nbytes(m['dit_fsdp_gathered'])} |",
        f"| T5 while encoding / while sampling | {nbytes(m['t5_weights_encode'])} / "
        f"{nbytes(m['t5_weights_sampling'])} |",
        f"| activations (peak of one forward) | {nbytes(m['activations'])} |",
        f"| **peak** (max of encoding, sampling) | **{nbytes(m['peak'])}** |",
    ]
    if gpu_memory:
        verdict = "the DiT's part fits" if m["peak"] <= gpu_memory else "does NOT fit"
        lines += ["", f"On {gpu_name}: {nbytes(m['peak'])} of {nbytes(int(gpu_memory))} per GPU: **{verdict}** "
                      f"(not counted: {m['not_modelled']})."]
    return lines
