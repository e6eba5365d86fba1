"""analyze(config, workload) -> Report: trace, cost, roll up by module path, scale to step and generation."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch

from wan_reference import WanConfig, get_policy
from wan_reference.config import read_config

from .. import __version__
from ..rules import FULL_CONSTANTS
from .categories import categories_for, category_of
from .experts import analyze_experts, is_pipeline
from .metrics import ZERO, Metrics
from .parallel import Plan, parallel_section, trace_rank
from .report import SCHEMA_VERSION, ModuleRow, Report
from .trace import ROOT, ModuleTable, NodeCost, module_table, replicate_blocks, trace_model, traced_layers
from .workload import Workload, check, resolve

CONVENTIONS = {
    "torch": "what torch.utils.flop_counter.FlopCounterMode counts: 2 FLOPs per multiply-add in matmuls, "
             "convolutions and attention (QK^T and PV, no causal discount, biases ignored); everything else 0",
    "full": "every op with the rule book's per-element constants (docs/conventions.md): matmul and attention as "
            "in `torch` plus bias adds and softmax, norms, activations, elementwise arithmetic, complex "
            "multiplies (6 per element), transcendentals and reductions",
    "bytes": "unfused eager kernels: each op reads its inputs and writes its outputs in their dtypes; views and "
             "no-op casts move nothing; attention follows flash-attention (Q, K, V read, O written)",
    "constants": FULL_CONSTANTS,
}


class TimeEstimate(Protocol):
    """What a time predictor (wantrace.timing) gives for one forward's records, in execution order."""

    @property
    def ns(self) -> Sequence[int]:
        """Each record's share of the forward's wall time; they sum to the forward."""

    @property
    def kernel_ns(self) -> Sequence[int]:
        """Each record's GPU kernel time (0 for what launches none)."""

    @property
    def info(self) -> dict:
        """The profile and the model's assumptions, as the report records them."""


class Timing(Protocol):
    def __call__(self, records: list[NodeCost], weights: list[int] | None = None) -> TimeEstimate: ...


def analyze(
    config: WanConfig | str | Path,
    workload: str | Workload = "ci-tiny",
    *,
    strict: bool = False,
    replicate: bool = True,
    timing: Timing | None = None,
    parallel: Plan | None = None,
    **overrides,
) -> Report:
    """Cost one Wan2.1 generation. `config` is a WanConfig or a config.json path; `workload` a preset name
    (with overrides such as frames=33, cfg=False, precision="wan-official") or a resolved Workload.
    `replicate` traces blocks 0 and 1 and copies block 1 for the rest (identical graphs): same result as a
    full trace, faster. `timing` (a predictor on a hardware profile, wantrace.timing) adds predicted time to
    every module, category and total. `parallel` (a multi-GPU plan) costs one rank of it: its sequence-parallel
    graph with the collectives, per-rank totals, and the `parallel` section (docs/multi-gpu.md). A two-expert
    (Wan2.2 A14B) checkpoint folder gives the generation of both experts (wantrace.work.experts)."""
    if not isinstance(config, WanConfig) and is_pipeline(config):
        return analyze_experts(config, workload, analyze, strict=strict, replicate=replicate, timing=timing,
                               **overrides)
    config, source = load_config_source(config)
    if isinstance(workload, Workload):
        workload, geo = check(workload, config)
    else:
        workload, geo = resolve(workload, config, **overrides)
    policy = get_policy(workload.precision)

    traced = traced_layers(config, replicate)
    traced_config = config.with_layers(traced)
    if parallel is not None:
        parallel.check(config, workload.cfg)
    if parallel is None or parallel.sp == 1:  # one GPU per forward: the single-GPU graph
        trace, seq_len = trace_model(traced_config, policy, geo.latent, workload.batch, strict), geo.tokens
    else:
        trace, seq_len = trace_rank(traced_config, policy, geo.latent, workload.batch, parallel.layout(), strict)
    records = replicate_blocks(trace.records, config.num_layers) if traced < config.num_layers else trace.records

    estimate = timing(records) if timing is not None else None
    ns = estimate.ns if estimate is not None else None
    modules = roll_up(records, module_table(config, policy, traced), ns)
    forward = modules[0].inclusive
    forwards_per_step = workload.forwards_per_step
    if parallel is None:
        step = forward.times(forwards_per_step)
    else:
        section = parallel_section(config, policy, parallel, workload, geo, seq_len, records,
                                   trace.peak_activation_bytes)
        forwards_per_step = section["forwards_per_step_per_rank"]
        step = forward.times(forwards_per_step) + section.pop("cfg_exchange")
    params = modules[0].params
    param_bytes = modules[0].param_bytes
    return Report(
        schema_version=SCHEMA_VERSION,
        tool={"name": "wantrace", "version": __version__, "torch": torch.__version__.split("+")[0]},
        model={
            **source,
            "variant": config.model_type,
            "dims": config.to_dict(),
            "params": params,
            "param_bytes": param_bytes,
        },
        workload=workload.to_dict(),
        geometry={
            "latent": list(geo.latent),
            "grid": list(geo.grid),
            "tokens": geo.tokens,
            "text_tokens": config.text_len,
            "image_tokens": config.image_tokens,
        },
        conventions=CONVENTIONS,
        modules=modules,
        categories=categorize(records, times=ns),
        totals={
            "forward": forward,
            "step": step,
            "generation": step.times(workload.steps),
            "forwards_per_step": forwards_per_step,
            "forwards_per_generation": forwards_per_step * workload.steps,
            "params": params,
            "param_bytes": param_bytes,
            "activation_bytes": trace.peak_activation_bytes,
        },
        ledger=ledger(records),
        traced_blocks=traced,
        time=time_section(records, estimate) if estimate is not None else None,
        parallel=section if parallel is not None else None,
    )


def time_section(records: list[NodeCost], estimate: TimeEstimate) -> dict:
    """The report's `time`: the profile, and GPU kernel time beside the wall time it is part of."""
    kernel = {c: 0 for c in categories_for(r.family for r in records)}
    for r, k in zip(records, estimate.kernel_ns, strict=True):
        if r.kind == "costed":
            kernel[category_of(r.module, r.family)] += k
    return {**estimate.info, "forward_kernel_ns": sum(kernel.values()), "kernel_ns_by_category": kernel}


def load_config_source(config: WanConfig | str | Path) -> tuple[WanConfig, dict]:
    """The config, and where it came from as reports record it (path, sha256, format)."""
    if isinstance(config, WanConfig):
        return config, {"config": None, "config_sha256": None, "format": "official"}
    path = Path(config)
    config, fmt = read_config(path)
    return config, {"config": str(config_path_display(path)),
                    "config_sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "format": fmt}


def config_path_display(path: Path) -> Path:
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def roll_up(records: list[NodeCost], model: torch.nn.Module | ModuleTable,
            times: Sequence[int] | None = None) -> list[ModuleRow]:
    """One row per module path and functional scope; inclusive = exclusive + children, exactly. `times`, one per
    record, adds predicted time."""
    table = model if isinstance(model, ModuleTable) else ModuleTable.of(model)
    exclusive: dict[str, Metrics] = {}
    first_seen: dict[str, int] = {}
    calls: Counter[str] = Counter()
    output_bytes: Counter[str] = Counter()
    # A call of a module (or scope) is a run of consecutive nodes under one call key; what the call returns
    # is the result of the run's last node.
    last: dict[str, NodeCost] = {}

    def close(key: str) -> None:
        output_bytes[_path_of(key)] += last.pop(key).output_bytes

    previous: tuple[str, ...] = ()
    for i, r in enumerate(records):
        exclusive[r.module] = exclusive.get(r.module, ZERO) + metrics_of(r, times[i] if times is not None else None)
        first_seen.setdefault(r.module, r.index)
        current = set(r.stack)
        for key in previous:
            if key not in current:
                close(key)
        for key in r.stack:
            if key not in last:
                calls[_path_of(key)] += 1
                first_seen.setdefault(_path_of(key), r.index)
            last[key] = r
        previous = r.stack
    for key in list(last):
        close(key)
    output_bytes[ROOT] = records[-1].output_bytes  # the graph's output node

    types, params = table.types, table.params
    ids = set(types) | set(exclusive) | set(first_seen)
    children: dict[str, list[str]] = {i: [] for i in ids}
    registration = {name: i for i, name in enumerate(types)}
    for ident in ids:
        if ident != ROOT:
            children[_parent(ident, ids)].append(ident)
    for kids in children.values():
        kids.sort(key=lambda k: (first_seen.get(k, 1 << 62), registration.get(k, 1 << 62), k))

    rows: list[ModuleRow] = []

    def visit(i: str, parent: str | None) -> ModuleRow:
        row = ModuleRow(
            id=i,
            parent=parent,
            type=types.get(i, "scope"),
            category="",
            calls=calls.get(i, 0) if i != ROOT else 1,
            params=params.get(i, (0, 0))[0],
            param_bytes=params.get(i, (0, 0))[1],
            exclusive=exclusive.get(i, ZERO),
            inclusive=exclusive.get(i, ZERO),
            output_bytes=output_bytes.get(i, 0),
            children=list(children[i]),
        )
        rows.append(row)
        for kid in children[i]:
            child = visit(kid, i)
            row.inclusive = row.inclusive + child.inclusive
            row.params += child.params
            row.param_bytes += child.param_bytes
        row.category = category_of(i) if not row.children else "mixed"
        return row

    visit(ROOT, None)
    return rows


def metrics_of(r: NodeCost, time_ns: int | None = None) -> Metrics:
    if r.family == "communication":
        return Metrics(r.cost.flops_torch, r.cost.flops_full, r.cost.bytes_read, r.cost.bytes_written, time_ns,
                       r.cost.comm_sent, r.cost.comm_received)
    return Metrics(r.cost.flops_torch, r.cost.flops_full, r.cost.bytes_read, r.cost.bytes_written, time_ns)


def _path_of(key: str) -> str:
    return key.split("#scope")[0].split("@")[0]


def _parent(i: str, ids: set[str]) -> str:
    head = i
    while "." in head:
        head = head.rpartition(".")[0]
        if head in ids:
            return head
    return ROOT


def categorize(records: list[NodeCost], weights: list[int] | None = None,
               times: Sequence[int] | None = None) -> dict[str, Metrics]:
    """Category totals; `weights` (from replication_weights) counts each record that many times; `times`, one
    per record, adds predicted time (a metadata node's time, the wait it causes, goes to its module's category)."""
    totals = {c: ZERO if times is None else Metrics(time_ns=0) for c in categories_for(r.family for r in records)}
    for i, r in enumerate(records):
        if r.kind == "metadata" and times is not None and times[i]:
            c = category_of(r.module)
            totals[c] = totals[c] + Metrics(time_ns=times[i])
        if r.kind == "costed":
            c = category_of(r.module, r.family)
            m = metrics_of(r).times(weights[i]) if weights else metrics_of(r)
            if times is not None:  # a record's time already counts every repeat of it
                m = m + Metrics(time_ns=times[i])
            totals[c] = totals[c] + m
    return totals


def forward_total(records: list[NodeCost], weights: list[int]) -> Metrics:
    """The root's inclusive metrics of roll_up, without building the rows: every record, weighted."""
    total = ZERO
    for r, w in zip(records, weights, strict=True):
        total = total + metrics_of(r).times(w)
    return total


def ledger(records: list[NodeCost]) -> dict:
    zero: Counter[str] = Counter()
    structural: Counter[str] = Counter()
    unknown: dict[tuple[str, str, str], list[int]] = {}
    for r in records:
        if r.kind == "metadata":
            zero[r.name] += 1
        elif r.kind == "structural":
            structural[r.op] += 1
        elif r.kind == "unknown":
            entry = unknown.setdefault((r.name, r.module, r.note), [0, 0])
            entry[0] += 1
            entry[1] += r.output_bytes
    return {
        "nodes": len(records),
        "costed": sum(r.kind == "costed" for r in records),
        "unknown": [
            {"op": op, "module": module, "count": n, "output_bytes": b, "note": note}
            for (op, module, note), (n, b) in sorted(unknown.items())
        ],
        "zero_cost": dict(sorted(zero.items())),
        "structural": dict(sorted(structural.items())),
    }
