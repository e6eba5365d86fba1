"""wantrace verify --end-to-end: a whole generation run for real and set beside the generation report.

Every component the workload's task runs is built on the device with seeded random weights, in the dtypes the
report's precision policy gives it (the builders the traces use), and called in the official generate()'s order:
the text encoder on the prompt (and the negative prompt under CFG), CLIP and the VAE encode of the conditioning
video (i2v, flf2v), N sampler steps (the DiT's conditional and unconditional forward, then
wan_reference.scheduler's SamplerStep: the CFG combine and the UniPC step, the code the report traces), and the
VAE decode of the latents. The N steps are the first N of the workload's S (its timesteps, its solver orders).

The loop runs twice. The first run counts each component's FLOPs with FlopCounterMode (and warms up); they must
equal the report's torch FLOPs of the same work. The second is timed: each call with the device synchronised
around it (wall clock), and peak allocated memory per component on CUDA. With a hardware profile, the measured
generation (once-per-generation components as measured, the DiT and the scheduler per step x S) is compared with
the report's predicted generation time."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from wan_reference import build_clip, build_model, build_t5, build_vae, get_policy, load_clip_config, load_t5_config
from wan_reference.build import make_inputs
from wan_reference.config import read_config
from wan_reference.scheduler import FlowUniPC
from wan_reference.vae_config import VAEConfig, load_vae_config

from ..timing.predictor import Predictor
from ..work.experts import is_pipeline
from ..work.generation import IMAGES, ORDER, analyze_generation
from ..work.report import Report
from ..work.sampler import trace_sampler
from ..work.workload import resolve
from .device import VerifyError, check_device, device_info, provenance
from .verify import _sync, attention_formulas, gpu_profile

PER_STEP = ("dit", "scheduler")  # run N of S steps: measured x S / N is the generation's


@dataclasses.dataclass
class Measured:
    """One component over one run of the loop: summed over its calls."""

    calls: int = 0
    ms: float = 0.0
    flops: int = 0
    peak_bytes: int | None = None  # most bytes allocated during any of its calls (CUDA)
    resident_bytes: int | None = None  # allocated as its first call began: every model built, the tensors kept


class Parts:
    """Every component of the generation, built for real on `dev`, and the inputs the loop starts from."""

    def __init__(self, report: Report, config_path: str | Path, dev: torch.device, seed: int):
        wl, dims = report.workload, report.model["dims"]
        configs = section(report)["configs"]
        self.report, self.dev = report, dev
        self.policy = policy = get_policy(wl["precision"])
        self.batch, self.cfg, self.steps = wl["batch"], wl["cfg"], wl["steps"]
        self.task = report.model["variant"]
        self.notes: list[str] = []
        config, _ = read_config(Path(config_path))
        latent = tuple(report.geometry["latent"])
        gen = torch.Generator(device=dev).manual_seed(seed)

        def randn(*shape: int) -> torch.Tensor:
            return torch.randn(shape, generator=gen, device=dev)

        t5_config = load_t5_config(configs["text_encoder"])
        self.t5 = build_t5(t5_config, policy.text, device=dev, seed=seed)
        text_len = dims["text_len"]
        self.ids = [torch.randint(1, t5_config.vocab, (self.batch, text_len), generator=gen, device=dev)
                    for _ in range(2 if self.cfg else 1)]
        self.mask = torch.zeros(self.batch, text_len, dtype=torch.int64, device=dev)
        self.mask[:, : max(1, text_len // 4)] = 1  # a quarter real tokens: the cost does not depend on it
        self.ids = [ids * self.mask for ids in self.ids]  # padding is token 0
        vae_config = load_vae_config(configs["vae"]) if configs["vae"] else VAEConfig()
        self.vae = build_vae(vae_config, policy.vae, device=dev, seed=seed)
        self.z_dim = vae_config.z_dim
        self.clip = None
        if self.task in IMAGES:
            self.clip = build_clip(load_clip_config(configs["image_encoder"]), policy, device=dev, seed=seed)
            images = IMAGES[self.task] * self.batch
            self.images = randn(images, 3, wl["height"], wl["width"]).clamp_(-1, 1)
            self.video = torch.zeros(self.batch, 3, wl["frames"], wl["height"], wl["width"], device=dev)
            self.video[:, :, 0] = randn(self.batch, 3, wl["height"], wl["width"]).clamp_(-1, 1)
            if self.task == "flf2v":
                self.video[:, :, -1] = randn(self.batch, 3, wl["height"], wl["width"]).clamp_(-1, 1)
        self.dit = build_model(config, policy, device=dev, seed=seed)
        self.inputs = make_inputs(config, latent, policy, batch=self.batch, device=dev, seed=seed + 1)
        self.noise = randn(self.batch, config.out_dim, *latent)  # the official latents: fp32
        self.latents_dtype = policy.latents
        sampler = section(report)["sampler"]
        self.shift, self.guide = sampler["shift"], sampler["guide_scale"]

    def feed(self, ident: str, out: torch.Tensor) -> torch.Tensor:
        """A component's output as the DiT's input it becomes (the published models' widths agree); a tiny
        config whose widths differ gets the seeded random input of the DiT's own shape instead (same costs)."""
        name = {"text_encoder": "context", "image_encoder": "clip_fea", "vae.encode": "y"}[ident]
        want = self.inputs[name]
        if ident == "vae.encode" and out.shape[1] + 4 == want.shape[1]:
            mask = torch.zeros(out.shape[0], 4, *out.shape[2:], device=out.device, dtype=out.dtype)
            mask[:, :, 0] = 1  # official image2video.py: the conditioning frame's mask, then the latents
            if self.task == "flf2v":
                mask[:, :, -1] = 1
            out = torch.cat([mask, out], dim=1)
        if out.numel() == want.numel():
            return out.reshape(want.shape).to(want.dtype)
        note = f"{ident}'s output {tuple(out.shape)} does not fit the DiT's {name} {tuple(want.shape)}: random"
        if note not in self.notes:
            self.notes.append(note)
        return want


def run_loop(parts: Parts, steps: int, call: Callable[[str, Callable[[], torch.Tensor]], torch.Tensor]) -> None:
    """One generation in the official order, each component through `call(component, fn)`."""
    dit, inputs, policy = parts.dit, parts.inputs, parts.policy
    with torch.no_grad():
        contexts = [parts.feed("text_encoder", call("text_encoder", functools.partial(parts.t5, ids, parts.mask)))
                    for ids in parts.ids]
        extra = {}
        if parts.clip is not None:
            clip = parts.clip
            extra["clip_fea"] = parts.feed("image_encoder", call("image_encoder", lambda: clip(parts.images)))
            extra["y"] = parts.feed("vae.encode", call("vae.encode", lambda: parts.vae.encode(parts.video)))
        sampler = FlowUniPC(parts.steps, parts.shift, parts.guide if parts.cfg else None)
        x = parts.noise.clone()
        for i in range(steps):
            t = torch.full_like(inputs["t"], float(sampler.timesteps[i]))
            latents = x.to(parts.latents_dtype)
            outs = [call("dit", functools.partial(dit, latents, t, c, **extra)).float() for c in contexts]
            x = call("scheduler", functools.partial(sampler.step, outs[0], x, *outs[1:]))
        z = x if x.shape[1] == parts.z_dim else torch.zeros(x.shape[0], parts.z_dim, *x.shape[2:], device=x.device)
        call("vae.decode", lambda: parts.vae.decode(z.to(policy.vae)))
    if x.shape[1] != parts.z_dim and "vae.decode" not in " ".join(parts.notes):
        parts.notes.append(f"vae.decode: the VAE's z_dim {parts.z_dim} is not the DiT's {x.shape[1]} latent "
                           "channels: it decodes zero latents of its own width (same costs)")


def counted_run(parts: Parts, steps: int) -> dict[str, Measured]:
    """The loop under FlopCounterMode, one counter per call: each component's torch FLOPs."""
    out: dict[str, Measured] = {}
    formulas = attention_formulas()

    def call(ident: str, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        with FlopCounterMode(display=False, custom_mapping=formulas) as counter:
            result = fn()
        m = out.setdefault(ident, Measured())
        m.calls += 1
        m.flops += counter.get_total_flops()
        return result

    run_loop(parts, steps, call)
    _sync(parts.dev)
    return out


def timed_run(parts: Parts, steps: int) -> tuple[dict[str, Measured], float]:
    """The loop with the device synchronised around every call: wall ms and peak bytes per component, and the
    whole loop's wall ms."""
    out: dict[str, Measured] = {}
    dev = parts.dev
    cuda = dev.type == "cuda"

    def call(ident: str, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        m = out.setdefault(ident, Measured())
        _sync(dev)
        if cuda:
            if m.resident_bytes is None:
                m.resident_bytes = torch.cuda.memory_allocated(dev)
            torch.cuda.reset_peak_memory_stats(dev)
        start = time.perf_counter()
        result = fn()
        _sync(dev)
        m.ms += (time.perf_counter() - start) * 1e3
        m.calls += 1
        if cuda:
            m.peak_bytes = max(m.peak_bytes or 0, torch.cuda.max_memory_allocated(dev))
        return result

    _sync(dev)
    start = time.perf_counter()
    run_loop(parts, steps, call)
    _sync(dev)
    return out, (time.perf_counter() - start) * 1e3


@dataclasses.dataclass
class GenerationResult:
    report: Report
    steps: int  # run
    measured: dict[str, Measured]
    counted: dict[str, Measured]
    analytic_flops: dict[str, int]  # torch FLOPs of the work run (N steps), per component
    loop_ms: float
    device: dict
    time_tolerance: float
    notes: list[str]
    profile: str | None

    @property
    def scale(self) -> float:
        return self.report.workload["steps"] / self.steps

    def rows(self) -> list[dict]:
        """Per component: calls run, predicted (whole generation) and measured ms (per-step components scaled
        to S steps), their ratio, FLOPs counted against analytic, memory."""
        rows = {r.id: r for r in self.report.modules}
        out = []
        for ident in ORDER:
            if ident not in self.measured:
                continue
            m, scaled = self.measured[ident], ident in PER_STEP
            ns = rows[ident].inclusive.time_ns
            measured_ms = m.ms * self.scale if scaled else m.ms
            out.append({
                "component": ident, "calls": m.calls, "calls_per_generation": rows[ident].calls,
                "scaled": scaled, "measured_ms_run": round(m.ms, 3), "measured_ms": round(measured_ms, 3),
                "predicted_ms": None if ns is None else round(ns / 1e6, 3),
                "ratio": None if ns is None or not measured_ms else round(ns / 1e6 / measured_ms, 4),
                "flops_counted": self.counted[ident].flops, "flops_analytic": self.analytic_flops[ident],
                "flops_equal": self.counted[ident].flops == self.analytic_flops[ident],
                "peak_allocated_bytes": m.peak_bytes, "resident_bytes_before": m.resident_bytes,
                "analytic_peak_activation_bytes": next(c["peak_activation_bytes"] for c in
                                                       section(self.report)["components"] if c["id"] == ident),
            })
        return out

    def generation(self) -> dict:
        rows = self.rows()
        measured = sum(r["measured_ms"] for r in rows)
        ns = self.report.totals["generation"].time_ns
        predicted = None if ns is None else ns / 1e6
        ok = predicted is None or (measured > 0 and abs(predicted / measured - 1) <= self.time_tolerance)
        return {"measured_ms": round(measured, 3), "predicted_ms": None if predicted is None else round(predicted, 3),
                "ratio": None if predicted is None else round(predicted / measured, 4), "pass": ok}

    @property
    def flops_pass(self) -> bool:
        return all(r["flops_equal"] for r in self.rows())

    @property
    def passed(self) -> bool:
        return self.flops_pass and self.generation()["pass"]

    def to_dict(self) -> dict:
        r = self.report
        return {
            "schema_version": 1,
            "kind": "end-to-end",
            **provenance(self.device),
            "config": r.model["config"],
            "variant": r.model["variant"],
            "workload": r.workload,
            "precision": r.workload["precision"],
            "components_configs": section(r)["configs"],
            "profile": self.profile,
            "steps": {"run": self.steps, "of": r.workload["steps"]},
            "compared": {
                "flops": "FlopCounterMode per component over the first run of the loop (N steps) against the "
                         "report's torch FLOPs of the same work (dit: per step x N; scheduler: its first N steps); "
                         "they must be equal",
                "time": "wall clock with the device synchronised around each call, second run of the loop; "
                        "dit and scheduler (scaled: true) measured over N steps x S / N, the others once per "
                        "generation; predicted: the generation report's time per component on the profile",
                "time_tolerance": self.time_tolerance,
                "memory": "peak allocated during the component's calls (CUDA), every model built on the device "
                          "at once; resident_bytes_before: allocated as its first call began",
            },
            "pass": self.passed,
            "components": self.rows(),
            "generation": self.generation(),
            "loop": {"measured_ms": round(self.loop_ms, 3),
                     "note": f"the whole timed loop of {self.steps} steps, unscaled, glue between components "
                             "included"},
            "notes": self.notes,
        }


def verify_generation(
    config_path: str | Path,
    workload: str = "ci-tiny",
    *,
    steps: int = 1,
    device: str = "cuda",
    gpu: str | None = None,
    time_tolerance: float = 0.15,
    vae: str | Path | None = None,
    text_encoder: str | Path | None = None,
    image_encoder: str | Path | None = None,
    workload_steps: int | None = None,
    seed: int = 0,
    progress=None,
    **overrides,
) -> GenerationResult:
    """Run `steps` sampler steps of one generation of `workload` for real, with every component, and compare it
    with the generation report (predicted time needs a hardware profile: --gpu, or on CUDA the device's).
    `workload_steps` overrides the workload's step count S; `overrides` its other fields (frames, cfg, ...)."""
    step = progress or (lambda message: None)
    dev = check_device(device, gpu)
    if not 0 < time_tolerance < 10:
        raise VerifyError(f"--time-tolerance: a relative error such as 0.15, got {time_tolerance}")
    if is_pipeline(config_path):
        raise VerifyError(f"--end-to-end: {config_path} is a two-expert checkpoint; give one expert's config.json "
                          "(the boundary split between the experts is not run end to end)")
    if workload_steps is not None:
        overrides["steps"] = workload_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise VerifyError(f"--steps: a positive integer, got {steps!r}")
    total = resolve(workload, read_config(Path(config_path))[0], **overrides)[0].steps
    if steps > total:
        raise VerifyError(f"--steps: at most the workload's {total} steps, got {steps}")
    profile = gpu_profile(gpu, dev)
    step("generation report" + (f" and predicted time on {profile.name}" if profile else ""))
    report = analyze_generation(config_path, workload, timing=Predictor(profile) if profile else None, vae=vae,
                                text_encoder=text_encoder, image_encoder=image_encoder, **overrides)
    report.model["config"] = str(config_path)
    missing = section(report)["not_modelled"]
    if missing:
        raise VerifyError(f"--end-to-end: {missing[0]['id']} of this generation is not modelled "
                          f"({missing[0]['reason']}); the generation cannot be compared")
    if section(report)["configs"]["text_encoder"] is None or (report.model["variant"] in IMAGES and
                                                                section(report)["configs"]["image_encoder"] is None):
        raise VerifyError("--end-to-end: give --text-encoder and --image-encoder config.json (none shipped here)")

    step(f"building every component ({report.workload['precision']}) on {dev}")
    parts = Parts(report, config_path, dev, seed)
    step(f"counting FLOPs over {steps} of {total} steps (FlopCounterMode; also the warm-up)")
    counted = counted_run(parts, steps)
    step(f"timing {steps} of {total} steps")
    measured, loop_ms = timed_run(parts, steps)
    return GenerationResult(report, steps, measured, counted, analytic_flops(report, steps), loop_ms,
                            device_info(dev), time_tolerance, parts.notes, profile.name if profile else None)


def section(report: Report) -> dict:
    """The generation section of a whole-generation report."""
    if report.generation is None:
        raise VerifyError("--end-to-end: the report has no generation section")
    return report.generation


def analytic_flops(report: Report, steps: int) -> dict[str, int]:
    """The report's torch FLOPs of the work the loop runs: once-per-generation components as reported, the DiT
    per step x `steps` (every step runs the same forwards), the scheduler's first `steps` steps (their kinds
    differ: the first and the last step are order 1) from the same trace the report sums."""
    rows = {r.id: r for r in report.modules}
    wl, total = report.workload, report.workload["steps"]
    out = {c["id"]: rows[c["id"]].inclusive.flops_torch for c in section(report)["components"]}
    per_step, rest = divmod(out["dit"], total)
    assert rest == 0, "the DiT's FLOPs are steps x forwards x one forward's"
    out["dit"] = per_step * steps
    sampler = section(report)["sampler"]
    latent = (wl["batch"], report.model["dims"]["out_dim"], *report.geometry["latent"])
    trace = trace_sampler(latent, total, wl["cfg"], sampler["shift"], sampler["guide_scale"])
    assert sum(r.cost.flops_torch for r in trace.records) == out["scheduler"]
    out["scheduler"] = sum(r.cost.flops_torch for r, s in zip(trace.records, trace.step_of, strict=True) if s < steps)
    return out


__all__ = ["GenerationResult", "Measured", "analytic_flops", "verify_generation"]
