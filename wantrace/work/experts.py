"""Wan2.2 A14B: one generation of two experts. The high-noise expert runs the steps whose timestep is at or
above the boundary, the low-noise expert the rest (wantrace.work.schedule); both have the Wan2.1-14B shape.

The report of a two-expert checkpoint holds both experts as top-level subtrees (`high_noise_model`,
`low_noise_model`), each with the forwards it runs in one generation (its steps times the forwards per step),
so its module tree and categories are per generation, and the root equals `totals.generation`. `experts` says
which steps each expert runs, its guide scale, the parameters in total and active per step, and the resident
weight bytes with both experts on the GPU or with the idle one offloaded (official `--offload_model`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wan_reference import ConfigError, WanConfig
from wan_reference.config import EXPERT_FOLDERS, read_config

from .metrics import ZERO, Metrics
from .report import ModuleRow, Report
from .schedule import expert_split
from .workload import PRESETS, Workload, WorkloadError, resolve

DIFFUSERS_EXPERTS = ("transformer", "transformer_2")  # WanPipeline: transformer runs t >= boundary
# the official schedule of each task when the workload names none (wan/configs/wan_{t2v,i2v}_A14B.py)
OFFICIAL_SCHEDULE = {"t2v": PRESETS["t2v-a14b-720p"], "i2v": PRESETS["i2v-a14b-720p"]}


@dataclass(frozen=True)
class Expert:
    name: str  # high_noise_model / low_noise_model (the official folder names)
    path: Path  # its config.json
    config: WanConfig
    config_format: str


@dataclass(frozen=True)
class Pipeline:
    path: Path
    experts: tuple[Expert, Expert]  # high-noise first
    boundary: float | None  # what the checkpoint says (diffusers model_index.json boundary_ratio)


def read_pipeline(path: str | Path) -> Pipeline | None:
    """A two-expert checkpoint, or None when `path` is a single model's config.json. Official: a folder with
    high_noise_model/ and low_noise_model/; diffusers: a folder (or its model_index.json) with transformer/ and
    transformer_2/."""
    path = Path(path)
    folder = path.parent if path.name == "model_index.json" else path
    if not folder.is_dir():
        return None
    boundary = None
    if all((folder / name / "config.json").is_file() for name in EXPERT_FOLDERS):
        subfolders = EXPERT_FOLDERS
    elif all((folder / name / "config.json").is_file() for name in DIFFUSERS_EXPERTS):
        subfolders = DIFFUSERS_EXPERTS
        try:
            boundary = json.loads((folder / "model_index.json").read_text()).get("boundary_ratio")
        except (OSError, json.JSONDecodeError, AttributeError):
            raise ConfigError(f"model_index.json: {folder} has no readable model_index.json") from None
    else:
        raise ConfigError(f"config: {folder} is a folder but holds neither {' and '.join(EXPERT_FOLDERS)} nor "
                          f"{' and '.join(DIFFUSERS_EXPERTS)} configs; give a config.json")
    experts = []
    for name, sub in zip(EXPERT_FOLDERS, subfolders, strict=True):
        config, fmt = read_config(folder / sub / "config.json")
        if config.release != "wan2.2":
            raise ConfigError(f"config: {folder / sub} is not a Wan2.2 expert (no boundary_ratio in model_index.json)")
        experts.append(Expert(name, folder / sub / "config.json", config, fmt))
    if experts[0].config != experts[1].config:
        raise ConfigError(f"config: the two experts of {folder} differ in architecture")
    return Pipeline(folder, (experts[0], experts[1]), boundary)


def schedule_of(pipeline: Pipeline, workload: Workload) -> Workload:
    """The workload with the shift, boundary and guide scales the sampler uses: the workload's own, else the
    checkpoint's boundary, else the official defaults of the task."""
    official = OFFICIAL_SCHEDULE.get(pipeline.experts[0].config.model_type)
    if official is None:
        raise WorkloadError("workload: A14B experts are t2v or i2v models")
    return dataclasses.replace(
        workload,
        shift=workload.shift if workload.shift is not None else official.shift,
        boundary=workload.boundary if workload.boundary is not None else (pipeline.boundary or official.boundary),
        guide_scale=workload.guide_scale if workload.guide_scale is not None else official.guide_scale,
    )


def is_pipeline(path: str | Path) -> bool:
    """A folder or a model_index.json: what `read_pipeline` reads (a single model is its config.json)."""
    return Path(path).is_dir() or Path(path).name == "model_index.json"


def analyze_experts(path: str | Path, workload: str | Workload, analyze: Callable[..., Report],
                    **options) -> Report:
    """One A14B generation: each expert analyzed at the workload by `analyze` (wantrace.work.analysis, which
    dispatches here for a two-expert checkpoint), scaled by the forwards it runs."""
    pipeline = read_pipeline(path)
    if pipeline is None:
        raise ConfigError(f"config: {path} is not a two-expert (A14B) checkpoint folder")
    timing = options.pop("timing", None)
    strict = options.pop("strict", False)
    replicate = options.pop("replicate", True)
    base = workload if isinstance(workload, Workload) else resolve(workload, pipeline.experts[0].config,
                                                                   **options)[0]
    wl = schedule_of(pipeline, base)
    assert wl.shift is not None and wl.boundary is not None and wl.guide_scale is not None
    split = expert_split(wl.steps, wl.shift, wl.boundary)
    reports = [analyze(e.path, wl, strict=strict, replicate=replicate, timing=timing) for e in pipeline.experts]
    steps_of = {"high_noise_model": split.high, "low_noise_model": split.low}
    guide = {"high_noise_model": wl.guide_scale[-1], "low_noise_model": wl.guide_scale[0]}  # (low, high)
    fps = wl.forwards_per_step

    modules = [ModuleRow(id="model", parent=None, type="A14B", category="mixed", calls=1, params=0, param_bytes=0,
                         exclusive=ZERO if timing is None else Metrics(time_ns=0), inclusive=ZERO,
                         output_bytes=0, children=[])]
    categories: dict[str, Metrics] = {}
    entries = []
    for expert, report in zip(pipeline.experts, reports, strict=True):
        forwards = len(steps_of[expert.name]) * fps
        rows = prefixed(report.modules, expert.name, forwards)
        modules[0].children.append(expert.name)
        modules[0].inclusive = modules[0].inclusive + rows[0].inclusive
        modules[0].params += rows[0].params
        modules[0].param_bytes += rows[0].param_bytes
        modules.extend(rows)
        for name, m in report.categories.items():
            categories[name] = categories.get(name, ZERO) + m.times(forwards)
        entries.append({
            "id": expert.name, "config": str(expert.path), "format": expert.config_format,
            "steps": list(steps_of[expert.name]), "step_count": len(steps_of[expert.name]), "forwards": forwards,
            "guide_scale": guide[expert.name], "params": report.totals["params"],
            "param_bytes": report.totals["param_bytes"],
            "generation": report.forward.times(forwards).to_dict(),
        })
    high, low = reports
    forward = high.forward
    if (forward.flops_full, forward.bytes) != (low.forward.flops_full, low.forward.bytes):
        raise AssertionError("the two experts' forwards differ")
    expert_bytes = [r.totals["param_bytes"] for r in reports]
    experts = {
        "boundary": wl.boundary, "shift": wl.shift, **split.to_dict(), "experts": entries,
        "params_total": sum(r.totals["params"] for r in reports),
        "params_active_per_step": max(r.totals["params"] for r in reports),
        "resident_weight_bytes": {
            "both_loaded": sum(expert_bytes),
            "offload_idle": max(expert_bytes),
        },
        # --offload_model: each expert that runs is copied host -> GPU once, when the sampler first needs it
        "offload_host_to_device_bytes": sum(b for b, e in zip(expert_bytes, entries, strict=True) if e["steps"]),
    }
    generation = modules[0].inclusive
    step = forward.times(fps)
    digest = hashlib.sha256(b"".join(e.path.read_bytes() for e in pipeline.experts)).hexdigest()
    return Report(
        schema_version=high.schema_version,
        tool=high.tool,
        model={**high.model, "config": str(pipeline.path), "config_sha256": digest,
               "variant": f"{high.model['variant']}-a14b", "params": modules[0].params,
               "param_bytes": modules[0].param_bytes},
        workload=wl.to_dict(),
        geometry=high.geometry,
        conventions=high.conventions,
        modules=modules,
        categories=categories,
        totals={**high.totals, "forward": forward, "step": step, "generation": generation,
                "forwards_per_generation": fps * wl.steps, "params": modules[0].params,
                "param_bytes": modules[0].param_bytes,
                "activation_bytes": max(r.totals["activation_bytes"] for r in reports)},
        ledger=merged_ledger([(e.name, r.ledger) for e, r in zip(pipeline.experts, reports, strict=True)]),
        traced_blocks=high.traced_blocks,
        time=high.time,
        experts=experts,
    )


def prefixed(rows: list[ModuleRow], prefix: str, forwards: int) -> list[ModuleRow]:
    """Module rows of one forward or call under `prefix` (the root becomes `prefix`, its parent the report's
    root), each metric and call count times the `forwards` (or calls) it runs: an expert, a generation's component."""
    def rename(i: str) -> str:
        return prefix if i == "model" else f"{prefix}.{i}"

    return [dataclasses.replace(
        row, id=rename(row.id), parent="model" if row.parent is None else rename(row.parent),
        calls=row.calls * forwards, exclusive=row.exclusive.times(forwards), inclusive=row.inclusive.times(forwards),
        output_bytes=row.output_bytes * forwards, children=[rename(c) for c in row.children],
    ) for row in rows]


def merged_ledger(ledgers: list[tuple[str, dict]]) -> dict:
    """The experts' ledgers of one forward each, summed; unknown ops name their expert."""
    out: dict = {"nodes": 0, "costed": 0, "unknown": [], "zero_cost": {}, "structural": {}}
    for name, ledger in ledgers:
        out["nodes"] += ledger["nodes"]
        out["costed"] += ledger["costed"]
        out["unknown"] += [{**u, "module": f"{name}.{u['module']}"} for u in ledger["unknown"]]
        for key in ("zero_cost", "structural"):
            for op, n in ledger[key].items():
                out[key][op] = out[key].get(op, 0) + n
    out["zero_cost"] = dict(sorted(out["zero_cost"].items()))
    out["structural"] = dict(sorted(out["structural"].items()))
    return out
