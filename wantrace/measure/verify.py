"""wantrace verify: run the same wan_reference model for real and check the analytic report module by module.

(a) FLOPs: torch's FlopCounterMode per module (and a dispatch counter with the same formulas per functional
    scope), against the report's `torch` convention; they must agree.
(b) Time: CUDA events (perf_counter on CPU) per module and scope, beside the analytic FLOPs and bytes as
    achieved TFLOP/s and GB/s; peak allocated memory beside the report's parameter + activation bytes.
(c) Counters (--counters, CUDA + ncu): see wantrace/measure/counters.py.
(d) Predicted time (CUDA, with the hardware profile of the GPU or --gpu): the whole forward's wall time, and
    each category's GPU kernel time measured with torch.profiler (wantrace/measure/kernels.py), against the
    time predictor; a category holding at least 5% of the measured kernel time, or the forward, off by more
    than the time tolerance fails."""

from __future__ import annotations

import copy
import dataclasses
import shutil
import statistics
from collections import Counter, defaultdict
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from wan_reference import build_model, get_policy, make_inputs
from wan_reference.config import read_config

from ..timing.predictor import Estimate, Predictor
from ..timing.profile import Profile, load_profile, profile_for
from ..work.analysis import analyze
from ..work.categories import CATEGORIES, category_of
from ..work.experts import is_pipeline
from ..work.report import ModuleRow, Report
from ..work.roles import role_of
from ..work.trace import ROOT, NodeCost
from ..work.workload import resolve
from .device import VerifyError, check_device, check_gpu, device_info, provenance
from .probe import Probe, timed

ATTENTION_KERNELS = (
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_flash_attention_for_cpu",  # unregistered in torch 2.13: counts 0 without this
)


def _attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """Every SDPA kernel takes q, k, v as [B, H, S, D] first: QK^T + PV at 2 per multiply-add."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def attention_formulas() -> dict:
    return {getattr(torch.ops.aten, name): _attention_flops for name in ATTENTION_KERNELS
            if hasattr(torch.ops.aten, name)}


class ScopeFlops(TorchDispatchMode):
    """FlopCounterMode's formulas, attributed to the innermost module *or functional scope* of the probe."""

    def __init__(self, probe: Probe, registry: dict):
        super().__init__()
        self.probe = probe
        self.registry = registry
        self.flops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = self.registry.get(func._overloadpacket)
        if formula is not None:
            self.flops[self.probe.current] += formula(*args, **kwargs, out_val=out)
        return out


@dataclasses.dataclass
class Row:
    id: str
    kind: str  # "module" or "scope"
    category: str
    analytic_flops: int  # torch convention, inclusive
    measured_flops: int
    analytic_flops_full: int
    analytic_bytes: int
    time_ms: float | None = None

    @property
    def rel_error(self) -> float:
        if self.analytic_flops == 0:
            return 0.0 if self.measured_flops == 0 else float("inf")
        return abs(self.measured_flops - self.analytic_flops) / self.analytic_flops

    def to_dict(self, tolerance: float) -> dict:
        d = dataclasses.asdict(self)
        d["rel_error"] = self.rel_error if self.rel_error != float("inf") else "inf"
        d["pass"] = self.rel_error <= tolerance
        if self.time_ms:
            d["achieved_tflops"] = round(self.analytic_flops / self.time_ms / 1e9, 3)
            d["achieved_tflops_full"] = round(self.analytic_flops_full / self.time_ms / 1e9, 3)
            d["achieved_gbs"] = round(self.analytic_bytes / self.time_ms / 1e6, 3)
        return d


@dataclasses.dataclass
class VerifyResult:
    report: Report
    rows: list[Row]
    tolerance: float
    device: dict
    blocks: int | None
    forward_ms: float | None
    peak_allocated: int | None
    counted_total: int
    flop_counter_total: int
    categories: list[dict]
    counters: dict | None = None
    time: dict | None = None
    forward_runs: tuple[float, ...] = ()  # every timed forward's wall time, ms (forward_ms is the fastest)

    @property
    def offenders(self) -> list[Row]:
        return [r for r in self.rows if r.rel_error > self.tolerance]

    @property
    def passed(self) -> bool:
        counters_ok = self.counters is None or self.counters.get("pass", True)
        time_ok = self.time is None or self.time["pass"]
        return not self.offenders and self.counted_total == self.flop_counter_total and counters_ok and time_ok

    def to_dict(self) -> dict:
        r = self.report
        totals = r.totals
        return {
            "schema_version": 2,  # 2: the `time` section
            **provenance(self.device),
            "config": r.model["config"],
            "variant": r.model["variant"],
            "workload": r.workload,
            "tokens": r.geometry["tokens"],
            "precision": r.workload["precision"],
            "blocks": {"run": self.blocks or r.model["dims"]["num_layers"], "of": self.full_layers,
                       "note": None if not self.blocks else "only the first N blocks (plus embeddings and head) "
                       "ran; analytic values are for the same N"},
            "compared": {
                "flops": "FlopCounterMode per module and a dispatch counter with its formulas per functional "
                         "scope, against the report's torch convention (inclusive)",
                "tolerance": self.tolerance,
                "time": "CUDA events per module and scope (inclusive); achieved = analytic / measured time"
                        if self.device["type"] == "cuda" else "wall time per module and scope (CPU, informational)",
            },
            "pass": self.passed,
            "summary": summary(self.rows, self.tolerance, self.flop_counter_total, self.counted_total,
                               totals["forward"].flops_torch, self.forward_runs, self.peak_allocated,
                               totals["param_bytes"], totals["activation_bytes"]),
            "categories": self.categories,
            "counters": self.counters,
            "time": self.time,
            "modules": [row.to_dict(self.tolerance) for row in self.rows],
        }

    full_layers: int = 0


def summary(rows: list[Row], tolerance: float, flop_counter_total: int, counted_total: int, analytic_total: int,
            forward_runs: tuple[float, ...], peak_allocated: int | None, param_bytes: int,
            activation_bytes: int) -> dict:
    """verify.json's summary (a DiT forward or a component's call): the FLOP verdict, time (the fastest of the
    timed forwards, their count and median), memory."""
    analytic_peak = param_bytes + activation_bytes
    forward_ms = min(forward_runs) if forward_runs else None
    return {
        "modules_compared": len(rows),
        "offenders": [r.id for r in rows if r.rel_error > tolerance],
        "max_rel_error": max((r.rel_error for r in rows), default=0.0),
        "flop_counter_total": flop_counter_total,
        "scope_counter_total": counted_total,
        "analytic_total": analytic_total,
        "forward_ms": forward_ms,
        "forward_runs": len(forward_runs),
        "forward_median_ms": round(statistics.median(forward_runs), 3) if forward_runs else None,
        "achieved_tflops": round(analytic_total / forward_ms / 1e9, 3) if forward_ms else None,
        "peak_allocated_bytes": peak_allocated,
        "analytic_param_bytes": param_bytes,
        "analytic_activation_bytes": activation_bytes,
        "analytic_peak_bytes": analytic_peak,
        "peak_ratio": round(peak_allocated / analytic_peak, 4) if peak_allocated is not None else None,
    }


def verify(
    config_path: str | Path,
    workload: str = "ci-tiny",
    *,
    device: str = "cpu",
    precision: str | None = None,
    tolerance: float = 0.05,
    blocks: int | None = None,
    counters: bool = False,
    counter_metrics: str = "all",
    counter_replay: str = "application",
    gpu: str | None = None,
    time_tolerance: float = 0.15,
    host_overheads: bool = False,
    repeats: int = 3,
    seed: int = 0,
    progress=None,
    **overrides,
) -> VerifyResult:
    """Run one forward of the same model for real and compare, module by module, with the analytic report."""
    step = progress or (lambda message: None)
    if not counters and (counter_metrics, counter_replay) != ("all", "application"):
        raise VerifyError("--counter-metrics and --counter-replay choose how --counters runs; add --counters")
    dev = check_device(device)
    if counters and dev.type != "cuda":
        raise VerifyError("--counters needs --device cuda (Nsight Compute reads GPU hardware counters)")
    if counters and shutil.which("ncu") is None:
        raise VerifyError("--counters: Nsight Compute (ncu) is not on PATH")
    check_gpu(gpu, dev)
    if not 0 < time_tolerance < 10:
        raise VerifyError(f"--time-tolerance: a relative error such as 0.15, got {time_tolerance}")
    profile = gpu_profile(gpu, dev)
    if is_pipeline(config_path):
        raise VerifyError(f"--config: {config_path} is a two-expert checkpoint; verify runs one model: give one "
                          "expert's config.json (high_noise_model/config.json; both experts run the same graph)")
    host = None
    if host_overheads:
        if profile is None or profile.calibrated is None or dev.type != "cuda":
            raise VerifyError("--host-overheads re-measures a calibrated profile's CPU figures on this host: it "
                              "needs --device cuda and a calibrated --gpu profile")
        step("CPU overheads of this host (what issuing each op costs here)")
        profile, host = on_this_host(profile, Path(config_path).resolve().parent.parent)
    config, _ = read_config(config_path)
    full_layers = config.num_layers
    if blocks is not None:
        if not 1 <= blocks <= config.num_layers:
            raise VerifyError(f"--blocks: must be between 1 and {config.num_layers}, got {blocks}")
        config = config.with_layers(blocks)
    if precision is not None:
        overrides["precision"] = precision
    wl, geo = resolve(workload, config, **overrides)
    policy = get_policy(wl.precision)

    step("analytic report" + (f" and predicted time on {profile.name}" if profile else ""))
    capture = Capture(Predictor(profile)) if profile else None
    report = analyze(config, wl, timing=capture)
    report.model["config"] = str(config_path)

    step(f"building the {config.model_type} model ({config.num_layers} blocks, {wl.precision}) on {dev}")
    model = build_model(config, policy, device=dev, seed=seed)
    inputs = make_inputs(config, geo.latent, policy, batch=wl.batch, device=dev, seed=seed + 1)

    m = measure_forward(model, inputs, dev, repeats, step)
    per_module, times = m.per_module, m.times

    kernel_ns = None
    if dev.type == "cuda":
        from .kernels import measure

        step("GPU kernel time per module and category (torch.profiler)")
        kernel_ns = measure(model, inputs)

    # a container that is never called itself (the `blocks` ModuleList) measures as the sum of its children
    fill_from_children(report.modules, per_module)
    fill_from_children(report.modules, times)
    rows = compare_rows(report.modules, per_module, m.scope_flops, times)
    result = VerifyResult(
        report=report, rows=rows, tolerance=tolerance, device=device_info(dev), blocks=blocks,
        forward_ms=m.forward_ms, forward_runs=m.forwards.runs, peak_allocated=m.peak_allocated,
        counted_total=sum(m.scope_flops.values()), flop_counter_total=m.flop_counter_total,
        categories=_categories(report, m.scope_flops, times, kernel_ns), full_layers=full_layers,
    )
    if capture is not None and kernel_ns is not None:
        result.time = compare_time(capture, kernel_ns, m.forwards, time_tolerance)
        if host is not None:
            result.time["host_overheads"] = host
    if counters:
        from ..work.trace import replicate_blocks, trace_model, traced_layers
        from .counters import run_counters

        del model, inputs  # the profiled child builds its own copy; leave it the device memory
        torch.cuda.empty_cache()
        n = traced_layers(config)
        traced = trace_model(config.with_layers(n), policy, geo.latent, wl.batch)
        records = replicate_blocks(traced.records, config.num_layers) if n < config.num_layers else traced.records
        result.counters = run_counters(config_path, wl, blocks, seed, records, metric_set=counter_metrics,
                                       replay=counter_replay, progress=step)
    return result


@dataclasses.dataclass
class Measured:
    """What one verify measures of a model's forward, before any comparison."""

    per_module: dict[str, int]  # FlopCounterMode's inclusive FLOPs per module id (0 for a called module without any)
    scope_flops: Counter[str]  # the dispatch counter's exclusive FLOPs per module or scope id
    flop_counter_total: int
    times: dict[str, float]  # inclusive ms per module and scope id, the fastest of the repeats
    forwards: ForwardTimes  # the whole forwards, no hooks
    peak_allocated: int | None  # CUDA: the most bytes allocated during the whole forwards (weights and inputs too)

    @property
    def forward_ms(self) -> float:
        return self.forwards.fastest


def measure_forward(model: torch.nn.Module, inputs: dict, dev: torch.device, repeats: int, step) -> Measured:
    """A warm-up forward, one counted by FlopCounterMode and the scope counter, `repeats` timed per module and
    scope, and at least `repeats` whole forwards (their peak memory; see _time_forward)."""
    step("warm-up forward")
    with torch.no_grad():
        model(**inputs)
    _sync(dev)
    step("counting FLOPs (FlopCounterMode)")
    called: set[str] = set()
    probe = Probe(model, on_enter=called.add)
    with torch.no_grad(), probe.active():
        with FlopCounterMode(display=False, custom_mapping=attention_formulas()) as counter:
            with ScopeFlops(probe, counter.flop_registry) as scope_counter:
                model(**inputs)
    # FlopCounterMode lists only modules that ran a counted op: a called SiLU or Dropout counts 0, so that a
    # container never called itself (the VAE's `residual` Sequentials) still sums its children
    modules = {name or ROOT for name, _ in model.named_modules()}
    per_module = {ident: 0 for ident in called & modules} | module_counts(counter, model)
    times: dict[str, float] = {}
    for i in range(repeats):
        step(f"timing modules and scopes ({i + 1}/{repeats})")
        with torch.no_grad(), timed(model, dev) as timer:
            model(**inputs)
        for ident, ms in timer.totals_ms().items():
            times[ident] = min(times.get(ident, float("inf")), ms)
    step("timing whole forwards")
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    forwards = _time_forward(model, inputs, dev, repeats, min_seconds=FORWARD_MIN_SECONDS if dev.type == "cuda" else 0)
    peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    return Measured(per_module, scope_counter.flops, counter.get_total_flops(), times, forwards, peak)


def on_this_host(profile: Profile, models: Path) -> tuple[Profile, dict]:
    """The profile with its CPU figures (per-class issue overhead, the model's Python per node) measured again
    here. A launch-bound forward (ci-tiny) runs at the pace of the host's CPU, which differs between machines
    with the same GPU: on two H200 hosts the 14B's ci-tiny forward took 48 and 80 ms with the same kernels."""
    from .calibrate import MODELS, TINY, fit_python, overhead_jobs

    tiny = next((p for p in (MODELS / TINY / "config.json", models / TINY / "config.json") if p.exists()), None)
    if tiny is None:
        raise VerifyError(f"--host-overheads fits the model's Python on {TINY}, found neither in {MODELS} nor in "
                          f"{models} (the folder of --config's folder)")
    doc = copy.deepcopy(profile.doc)
    measured = {job.key: round(job.run()[1], 1) for job in overhead_jobs()}
    doc["calibrated"]["overhead_ns"].update(measured)
    doc["calibrated"]["overhead_ns"]["python"] = fit_python(doc, tiny)
    was = profile.calibrated["overhead_ns"] if profile.calibrated else {}
    note = {"profile": dict(was), "this_host": dict(doc["calibrated"]["overhead_ns"])}
    return Profile(profile.name, profile.path, doc), note


class Capture:
    """A predictor that keeps the records and estimate analyze hands it, to compare per category and role."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.records: list[NodeCost] = []
        self.estimate: Estimate | None = None

    def __call__(self, records: list[NodeCost], weights: list[int] | None = None) -> Estimate:
        self.records = records
        self.estimate = self.predictor(records, weights)
        return self.estimate


def gpu_profile(gpu: str | None, dev: torch.device) -> Profile | None:
    """--gpu's profile, or on CUDA the one whose `match` names the device (None: no prediction to check)."""
    if gpu is not None:
        return load_profile(gpu)
    if dev.type == "cuda":
        return profile_for(torch.cuda.get_device_name(dev))
    return None


SHARE_GATED = 0.05  # a category holding at least this share of the measured kernel time is gated


def _ratio(predicted: int, measured: int) -> float | None:
    return round(predicted / measured, 4) if measured else None


def compare_time(capture: Capture, measured: Counter, forwards: ForwardTimes, tolerance: float) -> dict:
    """Predicted against measured: the forward's wall time, and kernel time per category and per role."""
    assert capture.estimate is not None
    predicted_cat: Counter[str] = Counter()
    predicted_role: Counter[str] = Counter()
    forward_ns = sum(capture.estimate.ns)
    for r, k in zip(capture.records, capture.estimate.kernel_ns, strict=True):
        if r.kind == "costed":
            predicted_cat[category_of(r.module, r.family)] += k
            predicted_role[role_of(r.module) + (" (casts)" if r.family == "cast" else "")] += k
    measured_cat: Counter[str] = Counter()
    measured_role: Counter[str] = Counter()
    for (ident, cast), ns in measured.items():
        measured_cat["dtype casts" if cast else category_of(ident)] += ns
        measured_role[role_of(ident) + (" (casts)" if cast else "")] += ns
    total = sum(measured_cat.values())
    measured_forward = int(round(forwards.fastest * 1e6))

    def off(p: int, m: int) -> bool:
        return m == 0 or abs(p / m - 1) > tolerance

    categories = []
    for name in CATEGORIES:
        p, m = predicted_cat.get(name, 0), measured_cat.get(name, 0)
        gated = total > 0 and m / total >= SHARE_GATED
        categories.append({"category": name, "predicted_kernel_ns": p, "measured_kernel_ns": m,
                           "measured_share": round(m / total, 4) if total else 0.0, "ratio": _ratio(p, m),
                           "gated": gated, "pass": not (gated and off(p, m))})
    roles = [{"role": role, "predicted_kernel_ns": predicted_role.get(role, 0),
              "measured_kernel_ns": measured_role.get(role, 0),
              "ratio": _ratio(predicted_role.get(role, 0), measured_role.get(role, 0))}
             for role in sorted(set(predicted_role) | set(measured_role),
                                key=lambda k: -max(predicted_role.get(k, 0), measured_role.get(k, 0)))]
    forward_pass = not off(forward_ns, measured_forward)
    return {
        **capture.estimate.info,
        "tolerance": tolerance,
        "compared": "forward: predicted wall time against the fastest timed forward (no hooks; at least 1 s of "
                    "forwards are timed); categories and "
                    "roles: predicted GPU kernel time against torch.profiler's kernel durations, casts charged "
                    f"to dtype casts; categories holding >= {SHARE_GATED:.0%} of measured kernel time are gated",
        "forward": {"predicted_ns": forward_ns, "measured_ns": measured_forward,
                    "ratio": _ratio(forward_ns, measured_forward), "pass": forward_pass,
                    "runs": len(forwards.runs), "measured_median_ns": int(round(forwards.median * 1e6))},
        "kernels": {"predicted_ns": sum(predicted_cat.values()), "measured_ns": total,
                    "ratio": _ratio(sum(predicted_cat.values()), total)},
        "categories": categories,
        "roles": roles,
        "pass": forward_pass and all(c["pass"] for c in categories),
    }


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


FORWARD_MIN_SECONDS = 1.0  # a short forward is timed until this much wall time has passed...
FORWARD_MAX_RUNS = 50  # ...or this many forwards ran


@dataclasses.dataclass(frozen=True)
class ForwardTimes:
    """Whole forwards' wall times, in ms, in the order they ran."""

    runs: tuple[float, ...]

    @property
    def fastest(self) -> float:
        return min(self.runs)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


def _time_forward(model, inputs, dev, repeats: int, before=None, min_seconds: float = 0.0) -> ForwardTimes:
    """At least `repeats` whole forwards, then more until `min_seconds` of them have run (at most
    FORWARD_MAX_RUNS). A launch-bound forward (ci-tiny, ~50 ms) runs at the pace of a shared host's CPU, whose
    run-to-run spread on the lent H200 hosts was 1.5x (fastest 41.7 ms, median 65.4 ms over 32 forwards of the
    1.3B): the fastest of 3 is then a draw, the fastest of 20 the host's own pace, which is what the time model
    predicts. `before` (a barrier, under torchrun) runs ahead of each; there every rank must run the same
    count, so min_seconds stays 0."""
    import time

    runs: list[float] = []
    with torch.no_grad():
        while len(runs) < repeats or (sum(runs) < min_seconds * 1e3 and len(runs) < FORWARD_MAX_RUNS):
            if before is not None:
                before()
            _sync(dev)
            start = time.perf_counter()
            model(**inputs)
            _sync(dev)
            runs.append((time.perf_counter() - start) * 1e3)
    return ForwardTimes(tuple(runs))


def fill_from_children(modules: list[ModuleRow], values: dict) -> None:
    for row in reversed(modules):  # children before parents
        if row.id not in values and row.children and all(c in values for c in row.children):
            values[row.id] = sum(values[c] for c in row.children)


def module_counts(counter: FlopCounterMode, model: torch.nn.Module) -> dict[str, int]:
    """FlopCounterMode's inclusive count per module, under report ids (WanModel.blocks.0.q -> blocks.0.q)."""
    root = type(model).__name__
    counts = {}
    for name, ops in counter.get_flop_counts().items():
        if name == root:
            counts[ROOT] = sum(ops.values())
        elif name.startswith(root + "."):
            counts[name[len(root) + 1:]] = sum(ops.values())
    return counts


def compare_rows(modules: list[ModuleRow], per_module: dict, scope_flops: Counter, times: dict) -> list[Row]:
    """One Row per module and scope of the roll-up: analytic against measured FLOPs, and time."""
    rows_by_id = {row.id: row for row in modules}
    inclusive_scope: Counter[str] = Counter()
    for ident, n in scope_flops.items():  # roll the dispatch counter's exclusive counts up the id tree
        while True:
            inclusive_scope[ident] += n
            if ident == ROOT:
                break
            ident = rows_by_id[ident].parent if ident in rows_by_id else ROOT
    rows = []
    for row in modules:
        is_scope = row.type == "scope"
        measured = inclusive_scope.get(row.id, 0) if is_scope else per_module.get(row.id, 0)
        rows.append(Row(
            id=row.id, kind="scope" if is_scope else "module", category=row.category,
            analytic_flops=row.inclusive.flops_torch, measured_flops=measured,
            analytic_flops_full=row.inclusive.flops_full, analytic_bytes=row.inclusive.bytes,
            time_ms=round(times[row.id], 4) if row.id in times else None,
        ))
    return rows


def _categories(report: Report, scope_flops: Counter, times: dict, kernel_ns: Counter | None = None) -> list[dict]:
    """Per category: analytic FLOPs and bytes, measured FLOPs (exclusive dispatch counts by the category of the
    id they ran in) and time: on a GPU the profiler's kernel time, casts in `dtype casts` with their bytes; on
    the CPU each id's exclusive wall time, by its category (a container's own time is `other`)."""
    rows = {row.id: row for row in report.modules}
    measured: Counter[str] = Counter()
    for ident, n in scope_flops.items():
        measured[category_of(ident)] += n
    exclusive_time: dict[str, float] = defaultdict(float)
    for ident, ms in times.items():
        if ident not in rows:
            continue
        own = ms - sum(times.get(child, 0.0) for child in rows[ident].children)
        exclusive_time[rows[ident].category if rows[ident].category != "mixed" else "other"] += max(own, 0.0)
    if kernel_ns is not None:
        exclusive_time = defaultdict(float)
        for (ident, cast), ns in kernel_ns.items():
            exclusive_time["dtype casts" if cast else category_of(ident)] += ns / 1e6
    out = []
    for name in CATEGORIES:
        m = report.categories[name]
        ms = exclusive_time.get(name, 0.0)
        out.append({
            "category": name,
            "analytic_flops": m.flops_torch,
            "measured_flops": measured.get(name, 0),
            "analytic_flops_full": m.flops_full,
            "analytic_bytes": m.bytes,
            "time_ms": round(ms, 4) if times else None,
            "achieved_tflops": round(m.flops_torch / ms / 1e9, 3) if ms and m.flops_torch else None,
            "achieved_gbs": round(m.bytes / ms / 1e6, 3) if ms else None,
        })
    return out

