"""The whole generation: every component a Wan pipeline runs, each traced on meta and costed like the DiT, in one
tree whose top level is the components (docs/pipeline.md says what runs per task, and where upstream calls it).

    model                       the generation (= totals.generation)
    ├─ text_encoder   x2        umT5-XXL on the prompt, and on the negative prompt under CFG
    ├─ image_encoder  x1        CLIP ViT-H/14 on the conditioning image(s) (i2v, flf2v)
    ├─ vae.encode     x1        the conditioning video (i2v, flf2v)
    ├─ dit            xN        the DiT's forwards; its module ids unchanged beneath `dit`
    ├─ scheduler      xsteps    the CFG combine and the UniPC step on the latents
    └─ vae.decode     x1        the sampled latents to the video

Each component is traced once per call shape, rolled up by module id (wantrace.work.analysis.roll_up) and scaled
by its calls: a parent's metrics are the sum of its children's, exactly, down from the root. The components
table (`plan`) is the one place that says what runs; an encoder whose tracer is not part of this build is listed
under `not_modelled`, never guessed. The VAE's calls, the largest component and independent of the DiT's trace,
are traced in a forked child beside it where a second core is free (wantrace.work.beside): the same report."""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from wan_reference import WanConfig, build_vae, get_policy
from wan_reference.config import ConfigError, read_config
from wan_reference.precision import PrecisionPolicy
from wan_reference.vae_config import VAEConfig, load_vae_config

from .analysis import Timing, analyze, roll_up
from .beside import Beside
from .experts import is_pipeline, merged_ledger, prefixed, read_pipeline
from .lean import lean_meta_run
from .metrics import ZERO, Metrics
from .parallel import Plan, memory_plan
from .report import GENERATION_SCHEMA_VERSION, ModuleRow, Report
from .sampler import DEFAULT_GUIDE, DEFAULT_SHIFT, trace_sampler
from .trace import NodeCost
from .vae import VAEChunks, expand, trace_chunks
from .workload import Workload, resolve

MODELS = Path(__file__).resolve().parents[2] / "models"  # the shipped configs (a source checkout)
DEFAULT_CONFIGS = {
    "vae": MODELS / "wan2.1-vae" / "vae" / "config.json",
    "text_encoder": MODELS / "wan2.1-umt5-xxl" / "text_encoder" / "config.json",
    "image_encoder": MODELS / "wan2.1-clip-vit-h-14" / "image_encoder" / "config.json",
}
ORDER = ("text_encoder", "image_encoder", "vae.encode", "dit", "scheduler", "vae.decode")
SOURCES = {  # where the official pipeline runs each component (Wan-Video/Wan2.1)
    "text_encoder": "wan/text2video.py, image2video.py, first_last_frame2video.py generate(): "
                    "self.text_encoder([input_prompt]) and self.text_encoder([n_prompt])",
    "image_encoder": "wan/image2video.py generate(): self.clip.visual([img]); first_last_frame2video.py: "
                     "self.clip.visual([first_frame, last_frame])",
    "vae.encode": "wan/image2video.py, first_last_frame2video.py generate(): self.vae.encode([video]) of the "
                  "conditioning frames followed by zero frames, as long as the output",
    "dit": "the sampling loop: self.model(...) for the conditional and, under CFG, the unconditional prediction",
    "scheduler": "the sampling loop: noise_pred_uncond + guide_scale * (noise_pred_cond - noise_pred_uncond), then "
                 "sample_scheduler.step (wan/utils/fm_solvers_unipc.py)",
    "vae.decode": "the end of generate(): self.vae.decode(x0)",
}
ENCODER_TRACERS = {  # component -> (tracer module, its function, config module, its loader): the encoders' seam
    "text_encoder": ("wantrace.work.text_encoder", "trace_text_encoder", "wan_reference.t5_config", "load_t5_config"),
    "image_encoder": ("wantrace.work.image_encoder", "trace_image_encoder", "wan_reference.clip_config",
                      "load_clip_config"),
}


@dataclass(frozen=True)
class Step:
    """One entry of the components table: what runs, how often per generation, and if it cannot be costed here,
    why (then it is listed in `not_modelled`, with no numbers)."""

    id: str
    calls: int
    missing: str = ""


def plan(task: str, cfg: bool, steps: int, forwards: int, release: str = "wan2.1") -> list[Step]:
    """The components of one generation of `task` (t2v, i2v, flf2v, vace, ti2v) with their calls."""
    conditioned = task in ("i2v", "flf2v")
    out = [Step("text_encoder", 2 if cfg else 1)]
    if conditioned:
        out += [Step("image_encoder", 1), Step("vae.encode", 1)]
    if task == "vace":
        out.append(Step("vae.encode", 2, "VACE's conditioning encode (wan/vace.py vace_encode_frames: the inactive "
                                         "and the reactive frames, each a VAE encode, and the masks) is not modelled"))
    out += [Step("dit", forwards), Step("scheduler", steps)]
    if task == "ti2v":
        out.append(Step("vae.decode", 1, "the Wan2.2 VAE (z_dim 48, patch 2) is not in wan_reference"))
    else:
        out.append(Step("vae.decode", 1))
    return out


@dataclass
class Component:
    id: str
    calls: int
    rows: list[ModuleRow]  # per generation, ids under the component's id, root first
    peak_activation_bytes: int  # of one call
    ledger: dict  # of one call (the scheduler: of every step)
    category_totals: dict[str, Metrics]  # per generation

    @property
    def total(self) -> Metrics:
        return self.rows[0].inclusive


def component_configs(vae: str | Path | None = None, text_encoder: str | Path | None = None,
                      image_encoder: str | Path | None = None) -> dict[str, Path | None]:
    """The config of each non-DiT model: the path given, else the shipped published config (None if this is not
    a source checkout: the VAE then takes the official defaults, an encoder is refused)."""
    given = {"vae": vae, "text_encoder": text_encoder, "image_encoder": image_encoder}
    return {k: Path(v) if v is not None else (DEFAULT_CONFIGS[k] if DEFAULT_CONFIGS[k].is_file() else None)
            for k, v in given.items()}


def _load_vae(path: Path | None) -> VAEConfig:
    return load_vae_config(path) if path is not None else VAEConfig()


def _encoder_tracer(component: str) -> tuple[Callable, Callable] | None:
    """The encoder's tracer and config loader, or None when this build has no such tracer."""
    module, name, config_module, loader = ENCODER_TRACERS[component]
    try:
        return (getattr(importlib.import_module(module), name),
                getattr(importlib.import_module(config_module), loader))
    except (ImportError, AttributeError):
        return None


def analyze_generation(
    config: WanConfig | str | Path,
    workload: str = "ci-tiny",
    *,
    strict: bool = False,
    replicate: bool = True,
    timing: Timing | None = None,
    parallel: Plan | None = None,
    vae: str | Path | None = None,
    text_encoder: str | Path | None = None,
    image_encoder: str | Path | None = None,
    **overrides,
) -> Report:
    """Cost one whole generation: the DiT report of wantrace.work.analysis.analyze (every option as there) with
    the other components beside it. `vae`, `text_encoder`, `image_encoder`: their config.json (default: the
    shipped published configs)."""
    configs = component_configs(vae, text_encoder, image_encoder)
    guess = _video_guess(config, workload, overrides)
    vae_job = Beside(functools.partial(_vae_calls, configs["vae"], guess, strict, replicate)) if (
        guess is not None and guess.directions) else None
    with vae_job or contextlib.nullcontext():
        dit = analyze(config, workload, strict=strict, replicate=replicate, timing=timing, parallel=parallel,
                      **overrides)
        return _generation(dit, config, configs, strict, replicate, timing, parallel,
                           vae_job if guess is not None and guess == _video_of(dit) else None)


def _generation(dit: Report, config: WanConfig | str | Path, configs: dict[str, Path | None], strict: bool,
                replicate: bool, timing: Timing | None, parallel: Plan | None,
                vae_job: Beside[dict[str, VAEChunks]] | None) -> Report:
    """The generation around a DiT report; the VAE's calls from `vae_job` where it traced them (beside the DiT)."""
    wl = dit.workload
    dims = dit.model["dims"]
    task = dit.model["variant"].removesuffix("-a14b")
    policy = get_policy(wl["precision"])
    steps = plan(task, wl["cfg"], wl["steps"], dit.totals["forwards_per_generation"], dims.get("release", "wan2.1"))
    latent = (wl["batch"], dims["out_dim"], *dit.geometry["latent"])
    shift: float = wl["shift"] if wl.get("shift") is not None else DEFAULT_SHIFT
    guide = wl["guide_scale"][-1] if wl.get("guide_scale") else DEFAULT_GUIDE

    components: list[Component] = []
    not_modelled: list[dict] = []
    sampler_kinds: dict = {}
    with lean_meta_run():  # meta kernels without importing torch._dynamo, as the DiT's trace
        for step in steps:
            if step.missing:
                not_modelled.append({"id": step.id, "calls": step.calls, "reason": step.missing})
                continue
            if step.id == "dit":
                components.append(_dit_component(dit))
                continue
            if step.id in ENCODER_TRACERS:
                tracer = _encoder_tracer(step.id)
                if tracer is None:
                    not_modelled.append({"id": step.id, "calls": step.calls,
                                         "reason": f"{ENCODER_TRACERS[step.id][0]} is not part of this build"})
                    continue
                path = configs[step.id]
                if path is None:
                    raise ConfigError(f"--{step.id.replace('_', '-')}: give the {step.id}'s config.json (no shipped "
                                      "config in this installation)")
                records, model, peak = _trace_encoder(step.id, tracer, path, policy, wl, task, dims["text_len"],
                                                      strict)
                rolled = _rolled(records, model, peak, timing)
            elif step.id == "scheduler":
                trace = trace_sampler(latent, wl["steps"], wl["cfg"], shift, guide, strict)
                rolled = _rolled(trace.records, trace.model, trace.peak_activation_bytes, timing)
                sampler_kinds = {f"cfg={int(k[0])},corrector={k[1]},predictor={k[2]}": v
                                 for k, v in trace.kinds.items()}
            else:  # vae.encode, vae.decode
                direction = step.id.split(".")[1]
                done = vae_job.result() if vae_job is not None else {}
                chunks = done[direction] if direction in done else _vae_calls(
                    configs["vae"], _video_of(dit), strict, replicate, (direction,))[direction]
                trace_v = expand(chunks)
                rolled = _rolled(trace_v.records, trace_v.model, trace_v.peak_activation_bytes, timing)
            # the scheduler's records are every step's already: scaled by 1, called once per step
            components.append(_component(step.id, step.calls, rolled, times=1 if step.id == "scheduler" else
                                         step.calls))
    with lean_meta_run():  # building on meta runs meta kernels too
        vae_bytes = 0
        if any(c.id.startswith("vae.") for c in components):  # the whole VAE sits on the GPU, whatever runs of it
            vae_bytes = sum(p.numel() * p.element_size() for p in build_vae(_load_vae(configs["vae"]),
                                                                             policy.vae).parameters())
        clip_bytes = _clip_resident_bytes(configs["image_encoder"], policy) if any(
            c.id == "image_encoder" for c in components) else 0
        return _report(dit, components, not_modelled, sampler_kinds, shift, guide, configs, parallel, policy,
                       config, vae_bytes, clip_bytes)


def _clip_resident_bytes(path: Path | None, policy: PrecisionPolicy) -> int:
    """CLIP's weights on the GPU (wantrace.work.image_encoder.resident_weight_bytes: the official CLIPModel holds
    its text tower too)."""
    found = _encoder_tracer("image_encoder")
    module = importlib.import_module(ENCODER_TRACERS["image_encoder"][0])
    assert found is not None and path is not None
    return module.resident_weight_bytes(found[1](path), policy)


IMAGES = {"i2v": 1, "flf2v": 2}  # conditioning images CLIP encodes in its one call (flf2v: first and last frame)


def _trace_encoder(component: str, found: tuple[Callable, Callable], path: Path, policy: PrecisionPolicy, wl: dict,
                   task: str, text_len: int, strict: bool) -> tuple[list[NodeCost], torch.nn.Module, int]:
    tracer, load = found
    if component == "text_encoder":  # the prompt padded to text_len tokens, one prompt per video
        trace = tracer(load(path), policy, text_len=text_len, batch=wl["batch"], strict=strict)
    else:
        trace = tracer(load(path), policy, batch=wl["batch"] * IMAGES[task], height=wl["height"], width=wl["width"],
                       strict=strict)
    return trace.records, trace.model, trace.peak_activation_bytes


@dataclass
class Rolled:
    """One call of a component, rolled up by module id (ids as traced, metrics of one call)."""

    rows: list[ModuleRow]
    ledger: dict
    peak_activation_bytes: int


def _rolled(records: list[NodeCost], model: torch.nn.Module, peak: int, timing: Timing | None) -> Rolled:
    ns = timing(records).ns if timing is not None else None
    return Rolled(roll_up(records, model, ns), _ledger(records), peak)


def _component(ident: str, calls: int, rolled: Rolled, times: int) -> Component:
    """The call's rows under `ident`, scaled by `times`; categories: the whole component is one."""
    scaled = prefixed(rolled.rows, ident, times)
    scaled[0].calls = calls
    return Component(ident, calls, scaled, rolled.peak_activation_bytes, rolled.ledger, {ident: scaled[0].inclusive})


@dataclass(frozen=True)
class Video:
    """What the VAE's calls depend on in a generation: the task (which calls), the video and its precision."""

    task: str
    release: str
    frames: int
    height: int
    width: int
    batch: int
    precision: str

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(s.id.split(".")[1] for s in plan(self.task, False, 1, 1, self.release)
                     if s.id.startswith("vae.") and not s.missing)


def _video_of(dit: Report) -> Video:
    wl = dit.workload
    return Video(dit.model["variant"].removesuffix("-a14b"), dit.model["dims"].get("release", "wan2.1"),
                 wl["frames"], wl["height"], wl["width"], wl["batch"], wl["precision"])


def _video_guess(config: WanConfig | str | Path, workload: str | Workload, overrides: dict) -> Video | None:
    """The video the DiT's analysis will resolve, read ahead so that the VAE can be traced beside it; checked
    against the DiT's report before use. None where it cannot be read: the DiT's analysis then says why."""
    try:
        dit = _dit_config(config)
        wl = workload if isinstance(workload, Workload) else resolve(workload, dit, **overrides)[0]
    except Exception:  # noqa: BLE001  (a guess: whatever fails here fails again, with its message, in analyze)
        return None
    return Video(dit.model_type, dit.release, wl.frames, wl.height, wl.width, wl.batch, wl.precision)


def _dit_config(config: WanConfig | str | Path) -> WanConfig:
    """The DiT's config from a config, its config.json, or a two-expert folder (its first expert's: the experts
    share their shapes)."""
    if isinstance(config, WanConfig):
        return config
    pipeline = read_pipeline(config) if is_pipeline(config) else None
    return pipeline.experts[0].config if pipeline else read_config(Path(config))[0]


def _vae_calls(path: Path | None, video: Video, strict: bool, replicate: bool,
               directions: tuple[str, ...] | None = None) -> dict[str, VAEChunks]:
    """The VAE's calls in a generation of `video` (`directions`: those only), traced: what the child beside the
    DiT sends back (the copies of the middle chunks and the roll-up are made here, balancing the two)."""
    config, policy = _load_vae(path), get_policy(video.precision)
    with lean_meta_run():  # building the VAE on meta runs meta kernels too
        return {direction: trace_chunks(config, policy, video.frames, video.height, video.width, direction,
                                        batch=video.batch, strict=strict, replicate=replicate)
                for direction in directions or video.directions}


def _dit_component(dit: Report) -> Component:
    """The DiT report's tree beneath `dit`: one forward times the forwards (a two-expert report is already per
    generation: its experts' subtrees sit beneath `dit` as they are)."""
    forwards = dit.totals["forwards_per_generation"] if dit.parallel is None else (
        dit.totals["forwards_per_step"] * dit.workload["steps"])
    scale = 1 if dit.experts is not None else forwards
    rows = prefixed(dit.modules, "dit", scale)
    rows[0].calls = forwards
    categories = {name: m.times(scale) for name, m in dit.categories.items()}
    return Component("dit", forwards, rows, dit.totals["activation_bytes"], dit.ledger, categories)


def _ledger(records: list[NodeCost]) -> dict:
    from .analysis import ledger

    return ledger(records)


def resident_memory(dit: Report, components: list[Component], policy: PrecisionPolicy, parallel: Plan | None,
                    config: WanConfig | str | Path, vae_w: int, clip_w: int) -> dict:
    """Bytes on the GPU (rank 0) while each component runs, under the official placement flags: the DiT and T5
    figures of wantrace.work.parallel.memory_plan, plus the VAE (built on the GPU, fp32, never offloaded) and CLIP
    (built on the GPU; moved to the CPU after its call with --offload_model) weights, plus the component's peak
    activations."""
    plan_ = parallel or Plan()
    by_id = {c.id: c for c in components}
    dit_config = _dit_config(config)
    t5_bytes = by_id["text_encoder"].rows[0].param_bytes if "text_encoder" in by_id else None
    plan_mem = memory_plan(dit_config, policy, plan_, dit.totals["activation_bytes"], t5_bytes)
    dit_weights = dit.totals["param_bytes"] if dit.experts is None else \
        dit.experts["resident_weight_bytes"]["offload_idle" if plan_.offload else "both_loaded"]
    if plan_.dit_fsdp:
        dit_weights = plan_mem["dit_weights"] + plan_mem["dit_fsdp_gathered"]
    t5_encode, t5_sampling = plan_mem["t5_weights_encode"], plan_mem["t5_weights_sampling"]
    # the DiT's placement before sampling: t2v moves it to the GPU when built; i2v/flf2v build it on the CPU
    # (init_on_cpu) unless FSDP or USP; with --offload_model it goes back to the CPU before the decode
    early_dit = dit_weights if dit.model["variant"].startswith("t2v") or plan_.world > 1 or plan_.dit_fsdp else 0
    clip_after = 0 if plan_.offload else clip_w
    phases = {}
    for c in components:
        if c.id == "text_encoder":  # i2v/flf2v build CLIP on the GPU: there until its first offload
            resident = t5_encode + clip_w + vae_w + early_dit
        elif c.id == "image_encoder":
            resident = t5_sampling + clip_w + vae_w + early_dit
        elif c.id == "vae.encode":
            resident = t5_sampling + clip_after + vae_w + early_dit
        elif c.id in ("dit", "scheduler"):
            resident = t5_sampling + clip_after + vae_w + dit_weights
        else:  # vae.decode
            resident = t5_sampling + clip_after + vae_w + (0 if plan_.offload else dit_weights)
        phases[c.id] = {"weights": resident, "activations": c.peak_activation_bytes,
                        "peak": resident + c.peak_activation_bytes}
    return {
        "flags": {"offload_model": plan_.offload, "t5_cpu": plan_.t5_cpu, "t5_fsdp": plan_.t5_fsdp,
                  "dit_fsdp": plan_.dit_fsdp, "world": plan_.world},
        "weights": {"dit": dit_weights, "text_encoder": plan_mem["t5_weights_unsharded"], "image_encoder": clip_w,
                    "vae": vae_w},
        "phases": phases,
        "peak": max(p["peak"] for p in phases.values()),
        "peak_phase": max(phases, key=lambda k: (phases[k]["peak"], k)),
        "not_modelled": "CUDA context, cuDNN workspace, allocator fragmentation; the latents and text embeddings "
                        "kept between components (MBs)",
    }


def _report(dit: Report, components: list[Component], not_modelled: list[dict], sampler_kinds: dict, shift: float,
            guide: float, configs: dict, parallel: Plan | None, policy: PrecisionPolicy,
            config: WanConfig | str | Path, vae_bytes: int, clip_bytes: int) -> Report:
    timed = dit.forward.time_ns is not None
    root = ModuleRow(id="model", parent=None, type="generation", category="mixed", calls=1, params=0, param_bytes=0,
                     exclusive=ZERO if not timed else Metrics(time_ns=0), inclusive=ZERO if not timed else
                     Metrics(time_ns=0), output_bytes=0, children=[])
    components.sort(key=lambda c: ORDER.index(c.id))
    modules = [root]
    categories: dict[str, Metrics] = {}
    for c in components:
        root.children.append(c.id)
        root.inclusive = root.inclusive + c.total
        root.params += c.rows[0].params
        root.param_bytes += c.rows[0].param_bytes
        modules.extend(c.rows)
        for name, m in c.category_totals.items():
            categories[name] = categories.get(name, ZERO) + m
    generation = root.inclusive
    entries = []
    for c in components:
        total = c.total
        share = {"torch": _share(total.flops_torch, generation.flops_torch),
                 "full": _share(total.flops_full, generation.flops_full),
                 "bytes": _share(total.bytes, generation.bytes)}
        if timed:
            share["time"] = _share(total.time_ns or 0, generation.time_ns or 0)
        entries.append({"id": c.id, "calls": c.calls, "source": SOURCES[c.id], "params": c.rows[0].params,
                        "param_bytes": c.rows[0].param_bytes, "peak_activation_bytes": c.peak_activation_bytes,
                        "generation": total.to_dict(), "share": share})
    memory = resident_memory(dit, components, policy, parallel, config, vae_bytes, clip_bytes)
    section = {
        "components": entries,
        "not_modelled": not_modelled,
        "configs": {k: (str(v) if v is not None else None) for k, v in configs.items()},
        "sampler": {"solver": "unipc", "solver_order": 2, "shift": shift, "guide_scale": guide,
                    "steps_by_kind": sampler_kinds},
        "memory": memory,
    }
    totals = {
        **dit.totals,
        "generation": generation,
        "params": root.params,
        "param_bytes": root.param_bytes,
        "activation_bytes": max(c.peak_activation_bytes for c in components),
    }
    ledger = merged_ledger([(c.id, c.ledger) for c in components])
    return Report(
        schema_version=GENERATION_SCHEMA_VERSION, tool=dit.tool, model=dit.model, workload=dit.workload,
        geometry=dit.geometry, conventions=dit.conventions, modules=modules, categories=categories, totals=totals,
        ledger=ledger, traced_blocks=dit.traced_blocks, time=dit.time, parallel=dit.parallel, experts=dit.experts,
        generation=section,
    )


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0
