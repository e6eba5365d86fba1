"""wantrace verify for a pipeline component beside the DiT: the umT5 text encoder, the CLIP image encoder and the
Wan VAE (encode or decode, its chunked schedule with the feature cache as upstream runs it). The checks of
verify.py on the component's own trace: FlopCounterMode per module and a dispatch counter with its formulas per
functional scope against the trace's `torch` convention; wall or CUDA-event time per module and scope; peak
allocated memory beside the analytic parameter + peak activation bytes (informational); on CUDA, the call's
predicted time on the GPU's profile (or --gpu) beside the measured, informational: the time gate and its
categories are the DiT's."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch

from wan_reference.clip import build_clip
from wan_reference.clip_config import is_clip_config, load_clip_config
from wan_reference.precision import get_policy
from wan_reference.t5 import build_t5
from wan_reference.t5_config import TEXT_LEN, is_t5_config, load_t5_config
from wan_reference.vae import build_vae
from wan_reference.vae_config import is_vae_config, load_vae_config

from ..timing.predictor import Predictor
from ..work.analysis import roll_up
from ..work.image_encoder import ImageEncoderWorkloadError, trace_image_encoder
from ..work.text_encoder import trace_text_encoder
from ..work.trace import Trace
from ..work.vae import DIRECTIONS, VAETrace, VAEWorkloadError, latent_shape, trace_vae
from ..work.workload import PRESETS
from .device import VerifyError, check_device, device_info, provenance
from .verify import Row, compare_rows, fill_from_children, gpu_profile, measure_forward, summary

COMPONENTS = ("text_encoder", "image_encoder", "vae")


def component_of(config_path: str | Path) -> str | None:
    """Which pipeline component a config.json describes (None: not one of them, e.g. a DiT's)."""
    if is_t5_config(config_path):
        return "text_encoder"
    if is_clip_config(config_path):
        return "image_encoder"
    if is_vae_config(config_path):
        return "vae"
    return None


@dataclasses.dataclass
class ComponentResult:
    component: str
    setup: dict  # what ran: config, precision, shapes
    rows: list[Row]
    tolerance: float
    device: dict
    forward_runs: tuple[float, ...]  # every timed call's wall time, ms
    peak_allocated: int | None
    counted_total: int  # the dispatch counter, per scope
    flop_counter_total: int
    analytic_total: int
    param_bytes: int
    activation_bytes: int
    predicted_ms: float | None = None  # the call on `profile` (CUDA only)
    profile: str | None = None

    @property
    def offenders(self) -> list[Row]:
        return [r for r in self.rows if r.rel_error > self.tolerance]

    @property
    def passed(self) -> bool:
        return not self.offenders and self.counted_total == self.flop_counter_total == self.analytic_total

    def _predicted(self) -> dict:
        if self.predicted_ms is None:
            return {}
        measured = min(self.forward_runs) if self.forward_runs else None
        return {"profile": self.profile, "predicted_ms": round(self.predicted_ms, 3),
                "time_ratio": round(self.predicted_ms / measured, 4) if measured else None}

    def to_dict(self) -> dict:
        return {
            "schema_version": 2,
            "component": self.component,
            **provenance(self.device),
            **self.setup,
            "compared": {
                "flops": "FlopCounterMode per module and a dispatch counter with its formulas per functional "
                         "scope, against the component trace's torch convention (inclusive)",
                "tolerance": self.tolerance,
                "time": "CUDA events per module and scope (inclusive)" if self.device["type"] == "cuda"
                        else "wall time per module and scope (CPU, informational)",
                "memory": "peak allocated (torch.cuda.max_memory_allocated over the timed calls, the weights and "
                          "inputs resident) against analytic parameter + peak activation bytes; informational, "
                          "not gated: the allocator's rounding and the kernels' workspaces are not in the trace",
            },
            "pass": self.passed,
            "summary": {**summary(self.rows, self.tolerance, self.flop_counter_total, self.counted_total,
                                  self.analytic_total, self.forward_runs, self.peak_allocated, self.param_bytes,
                                  self.activation_bytes), **self._predicted()},
            "modules": [row.to_dict(self.tolerance) for row in self.rows],
        }


def run_component(component: str, trace: Trace | VAETrace, model: torch.nn.Module, inputs: dict, dev: torch.device, *,
                  setup: dict, tolerance: float, repeats: int, step: Callable[[str], None],
                  gpu: str | None = None) -> ComponentResult:
    """Run `model` (the component, real weights on `dev`) on `inputs` and compare it with `trace`, whose ids
    are the model's module paths and scopes; on CUDA, predict the call's time on `gpu` (a profile name or path;
    default: the profile whose `match` names the device, if any)."""
    profile = gpu_profile(gpu, dev) if dev.type == "cuda" else None
    predicted = sum(Predictor(profile)(trace.records).ns) / 1e6 if profile is not None else None
    modules = roll_up(trace.records, trace.model)
    m = measure_forward(model, inputs, dev, repeats, step)
    fill_from_children(modules, m.per_module)
    fill_from_children(modules, m.times)
    return ComponentResult(
        component=component, setup=setup, rows=compare_rows(modules, m.per_module, m.scope_flops, m.times),
        tolerance=tolerance, device=device_info(dev), forward_runs=m.forwards.runs, peak_allocated=m.peak_allocated,
        counted_total=sum(m.scope_flops.values()), flop_counter_total=m.flop_counter_total,
        analytic_total=modules[0].inclusive.flops_torch, param_bytes=modules[0].param_bytes,
        activation_bytes=trace.peak_activation_bytes, predicted_ms=predicted,
        profile=profile.name if profile is not None else None,
    )


def _video_size(workload: str, frames: int | None, height: int | None,
                width: int | None) -> tuple[int, int, int, str | None]:
    """--frames/--height/--width, each defaulting to the --workload preset's; the preset's id when it is exact."""
    if workload not in PRESETS:
        raise VerifyError(f"--workload: unknown preset {workload!r}")
    preset = PRESETS[workload]
    size = (preset.frames if frames is None else frames, preset.height if height is None else height,
            preset.width if width is None else width)
    return (*size, workload if size == (preset.frames, preset.height, preset.width) else None)


def _video_call(device: str, gpu: str | None, workload: str, frames: int | None, height: int | None,
                width: int | None, batch: int | None,
                repeats: int) -> tuple[torch.device, tuple[int, int, int, str | None], int]:
    """The checked device, video size (see _video_size) and batch (default 1) of an image encoder or VAE call."""
    dev = check_device(device, gpu)
    size = _video_size(workload, frames, height, width)
    batch = 1 if batch is None else batch
    _positive(batch=batch, repeats=repeats)
    return dev, size, batch


def _positive(**values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise VerifyError(f"--{name.replace('_', '-')}: a positive integer, got {value!r}")


def verify_text_encoder(config_path: str | Path, *, device: str = "cpu", precision: str | None = None,
                        text_len: int | None = None, batch: int | None = None, tolerance: float = 0.05,
                        repeats: int = 3, seed: int = 0, gpu: str | None = None, progress=None) -> ComponentResult:
    """One call of the umT5 encoder for real (seeded random weights in the policy's text dtype) on `batch`
    prompts of `text_len` tokens: a quarter of them real, the rest padding, as the tokenizer pads every prompt
    (the cost does not depend on how many are real)."""
    step = progress or (lambda message: None)
    dev = check_device(device, gpu)
    text_len = TEXT_LEN if text_len is None else text_len
    batch = 1 if batch is None else batch
    _positive(text_len=text_len, batch=batch, repeats=repeats)
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
             "dtype": str(policy.text).removeprefix("torch."),
             "call": f"{batch} x {text_len} tokens, {config.num_layers} layers",
             "tokens": batch * text_len, "text_len": text_len, "batch": batch, "layers": config.num_layers}
    return run_component("text_encoder", trace, model, {"ids": ids, "mask": mask}, dev, setup=setup,
                         tolerance=tolerance, repeats=repeats, step=step, gpu=gpu)


def verify_image_encoder(config_path: str | Path, *, device: str = "cpu", workload: str = "ci-tiny",
                         height: int | None = None, width: int | None = None, batch: int | None = None,
                         precision: str | None = None, tolerance: float = 0.05, repeats: int = 3, seed: int = 0,
                         gpu: str | None = None, progress=None) -> ComponentResult:
    """One call of the CLIP image encoder for real (seeded random weights in the policy's image-encoder dtype:
    fp16 under the default wan-official, as the official CLIPModel runs) on `batch` conditioning images (1: i2v,
    2: flf2v) of the workload's frame size (or --height x --width), resized to the tower's input on the device."""
    dev, (_, height, width, preset), batch = _video_call(device, gpu, workload, None, height, width, batch,
                                                         repeats)
    step = progress or (lambda message: None)
    config = load_clip_config(config_path)
    policy = get_policy(precision or "wan-official")
    step(f"analytic trace ({batch} x {height} x {width}, {config.run_layers} blocks, {policy.name})")
    try:
        trace = trace_image_encoder(config, policy, batch, height, width)
    except ImageEncoderWorkloadError as exc:
        raise VerifyError(f"--{exc}") from None  # names height or width
    step(f"building the image encoder ({policy.image_encoder}) on {dev}")
    model = build_clip(config, policy, device=dev, seed=seed)
    gen = torch.Generator(device=dev).manual_seed(seed + 1)
    images = torch.rand(batch, 3, height, width, generator=gen, device=dev) * 2 - 1  # fp32 in [-1, 1]
    setup = {"config": str(config_path), "variant": "clip vit image encoder", "precision": policy.name,
             "dtype": str(policy.image_encoder).removeprefix("torch."), "workload": preset,
             "call": f"{batch} x {height} x {width} image{'s' if batch > 1 else ''} -> {batch} x {config.tokens} "
                     f"tokens, {config.run_layers} of {config.num_layers} blocks",
             "tokens": batch * config.tokens, "batch": batch, "height": height, "width": width,
             "layers": config.run_layers}
    return run_component("image_encoder", trace, model, {"images": images}, dev, setup=setup, tolerance=tolerance,
                         repeats=repeats, step=step, gpu=gpu)


def verify_vae(config_path: str | Path, *, device: str = "cpu", direction: str = "decode", workload: str = "ci-tiny",
               frames: int | None = None, height: int | None = None, width: int | None = None,
               batch: int | None = None, precision: str | None = None, tolerance: float = 0.05, repeats: int = 3,
               seed: int = 0, gpu: str | None = None, progress=None) -> ComponentResult:
    """One encode or decode of the Wan VAE for real (seeded random weights in the policy's VAE dtype), through
    its whole chunk schedule with the feature cache, on a video of `workload`'s size (or --frames, --height,
    --width): encode reads that video, decode writes it from its latents."""
    if direction not in DIRECTIONS:
        raise VerifyError(f"--direction: 'encode' or 'decode', got {direction!r}")
    dev, (frames, height, width, preset), batch = _video_call(device, gpu, workload, frames, height, width, batch,
                                                             repeats)
    step = progress or (lambda message: None)
    config = load_vae_config(config_path)
    policy = get_policy(precision or "wan-official")
    step(f"analytic trace ({direction}, {frames} x {height} x {width}, {policy.name})")
    try:
        trace = trace_vae(config, policy, frames, height, width, direction, batch=batch)
    except VAEWorkloadError as exc:
        raise VerifyError(f"--{exc}") from None  # names frames, height or width
    step(f"building the VAE ({policy.vae}) on {dev}")
    model = build_vae(config, policy.vae, device=dev, seed=seed)
    gen = torch.Generator(device=dev).manual_seed(seed + 1)
    if direction == "encode":  # a video in [-1, 1]
        x = torch.rand(trace.input_shape, generator=gen, device=dev, dtype=torch.float32) * 2 - 1
    else:  # normalised latents
        x = torch.randn(trace.input_shape, generator=gen, device=dev, dtype=torch.float32)
    chunks = sum(1 for c in trace.chunks if c.frames_in)
    setup = {"config": str(config_path), "variant": "wan-vae", "precision": policy.name,
             "dtype": str(policy.vae).removeprefix("torch."), "workload": preset,
             "call": f"{direction} {batch} x {frames} x {height} x {width} ({chunks} chunks)",
             "direction": direction, "batch": batch, "frames": frames, "height": height, "width": width,
             "latent": list(latent_shape(config, frames, height, width)), "input_shape": list(trace.input_shape),
             "output_shape": list(trace.output_shape), "chunks": chunks}
    return run_component(f"vae.{direction}", trace, model, {"x": x.to(policy.vae), "direction": direction}, dev,
                         setup=setup, tolerance=tolerance, repeats=repeats, step=step, gpu=gpu)


VERIFIERS: dict[str, Callable[..., ComponentResult]] = {
    "text_encoder": verify_text_encoder, "image_encoder": verify_image_encoder, "vae": verify_vae}


def verify_component(component: str, config_path: str | Path, **options) -> ComponentResult:
    """The verify of `component` (one of COMPONENTS, e.g. from `component_of`) with its own options."""
    return VERIFIERS[component](config_path, **options)
