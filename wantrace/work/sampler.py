"""The sampler's latent arithmetic over a whole generation, traced on meta and costed node by node.

Each step's graph (wan_reference.scheduler.SamplerStep) depends on the step index only through its kind: CFG or
not, the corrector's order (none on the first step, then the previous predictor's) and the predictor's order
(1 on the first and the last step, 2 between). Each kind is traced once; every step's records are its kind's,
with call keys of their own, so a generation of 50 steps costs exactly 50 traced steps (the coefficients are
constants in the graph and do not change any op or shape)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx

from wan_reference.scheduler import SamplerStep, StepPlan, step_inputs, step_plans

from .cache import cached
from .lean import lean_meta_run
from .trace import CostInterpreter, NodeCost, WanTracer, _replaced

ARGUMENTS = ("sample", "cond", "uncond", "m1", "m2", "last", "rhos_p", "rhos_c")
DEFAULT_SHIFT = 5.0  # generate.py's --sample_shift default (3.0 for i2v at 480p, 16 for flf2v): no cost depends on it
DEFAULT_GUIDE = 5.0  # generate.py's --sample_guide_scale default: no cost depends on it either


@dataclass
class SamplerTrace:
    model: torch.nn.Module  # no parameters: the sampler holds no weights
    records: list[NodeCost]  # every step's, in order
    step_of: list[int]  # per record: its step
    kinds: dict[tuple[bool, int, int], list[int]]  # (CFG, corrector order, predictor order) -> the steps of that kind
    # the largest step's: its inputs (latents, the DiT's outputs, the solver's state) and temporaries
    peak_activation_bytes: int


def trace_step(plan: StepPlan, latent: tuple[int, ...], strict: bool = False) -> tuple[list[NodeCost], int]:
    """One step of `plan`'s kind on fp32 latents of shape `latent` ([B, C, F, H, W]): records and peak bytes."""
    module = SamplerStep(plan)
    inputs = step_inputs(plan)
    concrete = {name: None for name in ARGUMENTS if name not in inputs}
    graph = WanTracer().trace(module, concrete_args=concrete)
    gm = torch.fx.GraphModule(module, graph)
    values = {name: torch.empty(latent, device="meta", dtype=torch.float32) for name in inputs}
    for name, update in (("rhos_p", plan.predictor), ("rhos_c", plan.corrector)):
        if name in values and update is not None:
            values[name] = torch.empty(update.rhos.shape, device="meta", dtype=torch.float32)
    interpreter = CostInterpreter(gm, strict)
    count = sum(n.op == "placeholder" for n in gm.graph.nodes)
    order = [name for name in ARGUMENTS if name in inputs or name in concrete][:count]
    with lean_meta_run():
        interpreter.run(*(values.get(name) for name in order))
    return interpreter.records, interpreter.peak_activation_bytes()


def trace_sampler(latent: tuple[int, ...], steps: int, cfg: bool, shift: float | None = None,
                  guide_scale: float | None = None, strict: bool = False) -> SamplerTrace:
    """Every step of a `steps`-step generation on latents of shape `latent` ([B, C, F', H/8, W/8])."""
    plans = step_plans(steps, shift if shift is not None else DEFAULT_SHIFT,
                       (guide_scale if guide_scale is not None else DEFAULT_GUIDE) if cfg else None)
    records, step_of, kinds, peak = cached("sampler", (tuple(latent), steps, cfg, shift, guide_scale, strict),
                                           lambda: _costed(plans, latent, strict))
    return SamplerTrace(SamplerStep(plans[0]), records, step_of, kinds, peak)


def _costed(plans: list[StepPlan], latent: tuple[int, ...],
            strict: bool) -> tuple[list[NodeCost], list[int], dict[tuple[bool, int, int], list[int]], int]:
    """Every step's records, their steps, the steps of each kind and the peak: what the disk cache keeps."""
    traced: dict[tuple[bool, int, int], tuple[list[NodeCost], int]] = {}
    kinds: dict[tuple[bool, int, int], list[int]] = {}
    records: list[NodeCost] = []
    step_of: list[int] = []
    for plan in plans:
        if plan.kind not in traced:
            traced[plan.kind] = trace_step(plan, latent, strict)
        kinds.setdefault(plan.kind, []).append(plan.index)
        for r in traced[plan.kind][0]:
            records.append(_replaced(r, index=len(records), stack=tuple(f"{key}@step{plan.index}" for key in r.stack)))
            step_of.append(plan.index)
    return records, step_of, kinds, max(peak for _, peak in traced.values())
