"""wantrace verify for a pipeline component beside the DiT (today the umT5 text encoder): the checks of
verify.py on the component's own trace. FlopCounterMode per module and a dispatch counter with its formulas
per functional scope against the report's `torch` convention; wall or CUDA-event time per module and scope;
peak allocated memory beside the analytic parameter + activation bytes. There is no predicted-time check
here: the time model's categories are the DiT's."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from wan_reference.precision import get_policy
from wan_reference.t5 import build_t5
from wan_reference.t5_config import TEXT_LEN, load_t5_config

from ..work.analysis import roll_up
from ..work.text_encoder import trace_text_encoder
from ..work.trace import Trace
from .device import VerifyError, check_device, device_info
from .probe import Probe, timed
from .verify import (
    Row,
    ScopeFlops,
    _sync,
    _time_forward,
    attention_formulas,
    compare_rows,
    fill_from_children,
    module_counts,
)


@dataclasses.dataclass
class ComponentResult:
    component: str
    setup: dict  # what ran: config, precision, shapes
    rows: list[Row]
    tolerance: float
    device: dict
    forward_ms: float
    peak_allocated: int | None
    counted_total: int  # the dispatch counter, per scope
    flop_counter_total: int
    analytic_total: int
    param_bytes: int
    activation_bytes: int

    @property
    def offenders(self) -> list[Row]:
        return [r for r in self.rows if r.rel_error > self.tolerance]

    @property
    def passed(self) -> bool:
        return not self.offenders and self.counted_total == self.flop_counter_total == self.analytic_total

    def to_dict(self) -> dict:
        return {
            "schema_version": 2,
            "component": self.component,
            "date": datetime.date.today().isoformat(),
            "device": self.device,
            "torch": torch.__version__,
            **self.setup,
            "compared": {
                "flops": "FlopCounterMode per module and a dispatch counter with its formulas per functional "
                         "scope, against the component trace's torch convention (inclusive)",
                "tolerance": self.tolerance,
                "time": "CUDA events per module and scope (inclusive)" if self.device["type"] == "cuda"
                        else "wall time per module and scope (CPU, informational)",
            },
            "pass": self.passed,
            "summary": {
                "modules_compared": len(self.rows),
                "offenders": [r.id for r in self.offenders],
                "max_rel_error": max((r.rel_error for r in self.rows), default=0.0),
                "flop_counter_total": self.flop_counter_total,
                "scope_counter_total": self.counted_total,
                "analytic_total": self.analytic_total,
                "forward_ms": self.forward_ms,
                "achieved_tflops": round(self.analytic_total / self.forward_ms / 1e9, 3) if self.forward_ms else None,
                "peak_allocated_bytes": self.peak_allocated,
                "analytic_param_bytes": self.param_bytes,
                "analytic_activation_bytes": self.activation_bytes,
            },
            "modules": [row.to_dict(self.tolerance) for row in self.rows],
        }


def run_component(component: str, trace: Trace, model: torch.nn.Module, inputs: dict, dev: torch.device, *,
                  setup: dict, tolerance: float, repeats: int, step: Callable[[str], None]) -> ComponentResult:
    """Run `model` (the component, real weights on `dev`) on `inputs` and compare it with `trace`, whose ids
    are the model's module paths and scopes."""
    modules = roll_up(trace.records, trace.model)
    step("warm-up forward")
    with torch.no_grad():
        model(**inputs)
    _sync(dev)
    step("counting FLOPs (FlopCounterMode)")
    probe = Probe(model)
    with torch.no_grad(), probe.active():
        with FlopCounterMode(display=False, custom_mapping=attention_formulas()) as counter:
            with ScopeFlops(probe, counter.flop_registry) as scope_counter:
                model(**inputs)
    per_module = module_counts(counter, model)
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
    forward_ms = _time_forward(model, inputs, dev, repeats)
    peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    fill_from_children(modules, per_module)
    fill_from_children(modules, times)
    return ComponentResult(
        component=component, setup=setup, rows=compare_rows(modules, per_module, scope_counter.flops, times),
        tolerance=tolerance, device=device_info(dev), forward_ms=forward_ms, peak_allocated=peak,
        counted_total=sum(scope_counter.flops.values()), flop_counter_total=counter.get_total_flops(),
        analytic_total=modules[0].inclusive.flops_torch, param_bytes=modules[0].param_bytes,
        activation_bytes=trace.peak_activation_bytes,
    )


def verify_text_encoder(config_path: str | Path, *, device: str = "cpu", precision: str | None = None,
                        text_len: int | None = None, batch: int | None = None, tolerance: float = 0.05,
                        repeats: int = 3, seed: int = 0, progress=None) -> ComponentResult:
    """One call of the umT5 encoder for real (seeded random weights in the policy's text dtype) on `batch`
    prompts of `text_len` tokens: a quarter of them real, the rest padding, as the tokenizer pads every prompt
    (the cost does not depend on how many are real)."""
    step = progress or (lambda message: None)
    dev = check_device(device)
    text_len = TEXT_LEN if text_len is None else text_len
    batch = 1 if batch is None else batch
    for name, value in (("--text-len", text_len), ("--batch", batch), ("--repeats", repeats)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise VerifyError(f"{name}: a positive integer, got {value!r}")
    config = load_t5_config(config_path)
    policy = get_policy(precision or "bf16")
    step(f"analytic trace ({config.num_layers} layers, {text_len} tokens, {policy.name})")
    trace = trace_text_encoder(config, policy, text_len=text_len, batch=batch)
    step(f"building the text encoder ({policy.text}) on {dev}")
    model = build_t5(config, policy.text, device=dev, seed=seed)
    gen = torch.Generator(device=dev).manual_seed(seed + 1)
    ids = torch.randint(1, config.vocab, (batch, text_len), generator=gen, device=dev)
    mask = torch.zeros(batch, text_len, dtype=torch.int64, device=dev)
    mask[:, : max(1, text_len // 4)] = 1
    ids = ids * mask  # padding is token 0
    setup = {"config": str(config_path), "variant": "umt5 text encoder", "precision": policy.name,
             "dtype": str(policy.text).removeprefix("torch."), "text_len": text_len, "batch": batch,
             "layers": config.num_layers}
    return run_component("text_encoder", trace, model, {"ids": ids, "mask": mask}, dev, setup=setup,
                         tolerance=tolerance, repeats=repeats, step=step)
