"""The `wantrace` command line: a thin layer over the Python API."""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from wan_reference import POLICIES

from . import __version__
from .measure.ncu_metrics import METRIC_SETS, REPLAY_MODES
from .work.workload import PRESETS

# A command runs once and exits: what is loaded now (torch and the modules above, some 170,000 objects) lives
# until then, so the collector need not walk it again in every full collection and at exit (about 0.2 s
# a command on 2 cores). Each command imports what only it needs.
gc.freeze()


class OutError(ValueError):
    """--out names a place that cannot be written; the message names the option."""


def writable_dir(path: str | Path, option: str = "--out") -> Path:
    """Say now, before any work and without creating anything, why `path` (a folder) could not be written."""
    out = Path(path)
    probe = out
    while not probe.exists():
        if probe.is_symlink():
            raise OutError(f"{option}: cannot create {out}: {probe} is a broken link")
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        why = "exists and is not a folder" if probe == out else f"{probe} is a file, not a folder"
        raise OutError(f"{option}: cannot create {out}: {why}" if probe != out else f"{option}: {out} {why}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutError(f"{option}: cannot create {out}: {probe} is not writable")
    return out


# Bad input a user can cause, by the module that defines it. Only a loaded module can have raised its errors, so
# the modules a command never needs are not imported to catch them.
USER_ERRORS = {
    "wan_reference.config": ("ConfigError",),
    "wan_reference.geometry": ("GeometryError",),
    "wan_reference.checkpoint": ("CheckpointError",),
    "wantrace.work.workload": ("WorkloadError",),
    "wantrace.work.trace": ("UnknownOpError",),
    "wantrace.measure.device": ("VerifyError",),
    "wantrace.work.compare": ("CompareError",),
    "wantrace.work.sweep": ("SweepError",),
    "wantrace.timing.profile": ("ProfileError",),
    "wantrace.work.parallel": ("PlanError",),
    "wantrace.work.vae": ("VAEWorkloadError",),
    "wantrace.work.text_encoder": ("TextEncoderWorkloadError",),
    "wantrace.work.image_encoder": ("ImageEncoderWorkloadError",),
}


def user_errors() -> tuple[type[BaseException], ...]:
    return (OutError, FileNotFoundError, *(getattr(sys.modules[module], name) for module, names in USER_ERRORS.items()
                                           if module in sys.modules for name in names))


def one_line_errors(fn):
    """Bad input: one line on stderr and exit 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not isinstance(exc, user_errors()):
                raise
            click.echo(f"wantrace: error: {exc}", err=True)
            sys.exit(2)

    return wrapper


def collector_off(fn):
    """The cyclic collector off while the command runs: what an analysis makes (records, graphs, rows: a few
    hundred thousand objects) lives until its report is written, and the collector's passes over it were
    0.2-0.4 s of a whole generation's 1.5 s, for about 10 MB of cycles left to the exit. Not for the commands
    that hold CUDA tensors (verify, calibrate)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        was = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was:
                gc.enable()

    return wrapper


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.2f} {unit}" if unit != "B" else f"{n} B"
        value /= 1000
    raise AssertionError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wantrace")
def main() -> None:
    """What does a Wan2.1 generation cost? Exact FLOPs and bytes, from the model itself."""


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="config.json of a checkpoint (official WanModel or diffusers format).")
@click.option("--precision", type=click.Choice(list(POLICIES)), default="bf16", show_default=True)
@click.option("--role", "pattern", default=None, metavar="TEXT",
              help="Only roles whose id contains TEXT (e.g. self_attn, ffn).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@one_line_errors
def formula(config_path: str, precision: str, pattern: str | None, fmt: str) -> None:
    """Every role's FLOPs and bytes per forward as a formula of batch, frames and resolution."""
    from wan_reference.config import read_config

    from .views.formula import print_formulas, to_dict
    from .work.formula import role_formulas

    config, source = read_config(config_path)
    formulas = [f for f in role_formulas(config, precision) if pattern is None or pattern in f.role]
    if pattern is not None and not formulas:
        raise click.UsageError(f"--role: no role contains {pattern!r}")
    if fmt == "json":
        click.echo(json.dumps(to_dict(formulas, {"config": config_path, "variant": config.model_type}, precision),
                              indent=1))
        return
    print_formulas(formulas, Console(), f"Wan2.1 {config.model_type} {config_path} ({precision}): cost per forward")


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="config.json of a checkpoint (official WanModel or diffusers format).")
@click.option("--checkpoint", type=click.Path(), default=None,
              help="Also check a safetensors checkpoint (file, index or folder) against the model: "
                   "names and shapes only, no weight is read.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@one_line_errors
def model(config_path: str, checkpoint: str | None, fmt: str) -> None:
    """Variant, parameter count and weight bytes under each precision policy."""
    from rich.table import Table

    from wan_reference import build_model, check_checkpoint

    from .work.inventory import inventory_from_file

    inv = inventory_from_file(config_path)
    if checkpoint:
        check_checkpoint(build_model(inv.config, "bf16"), checkpoint)
    c = inv.config
    if fmt == "json":
        doc = {
            "config": config_path,
            "format": inv.config_format,
            "variant": c.model_type,
            "architecture": c.to_dict(),
            "params": inv.params,
            "params_by_group": inv.params_by_group,
            "params_per_block": inv.params_per_block,
            "weight_bytes": inv.weight_bytes,
            "checkpoint": {"path": checkpoint, "matches": True} if checkpoint else None,
        }
        click.echo(json.dumps(doc, indent=2))
        return
    console = Console()
    release = c.release.replace("wan", "Wan")
    console.print(f"[bold]{release} {c.model_type}[/]  {config_path}  ({inv.config_format} format)")
    split = "/".join(str(n) for n in c.rope_split)
    console.print(
        f"dim {c.dim} · ffn {c.ffn_dim} · {c.num_heads} heads x {c.head_dim} · {c.num_layers} blocks · "
        f"in {c.in_dim} -> out {c.out_dim} · text {c.text_len} rows"
        + (f" · image {c.image_tokens} tokens" if c.image_tokens else "")
        + (f" · VACE blocks at {list(c.vace_layers)}, {c.vace_in_dim} control channels" if c.vace_layers else "")
        + f" · RoPE split {split}"
    )
    table = Table(title="Parameters", title_justify="left")
    table.add_column("group")
    table.add_column("params", justify="right")
    table.add_column("share", justify="right")
    for group, n in inv.params_by_group.items():
        label = f"{group} ({c.num_layers} x {inv.params_per_block:,})" if group == "blocks" else group
        if group == "vace_blocks":
            label = f"{group} ({len(c.vace_layers)})"
        table.add_row(label, f"{n:,}", f"{100 * n / inv.params:.2f}%")
    table.add_row("[bold]total[/]", f"[bold]{inv.params:,}[/]", "100.00%")
    console.print(table)
    weights = Table(title="Weight bytes by precision policy", title_justify="left")
    weights.add_column("policy")
    weights.add_column("bytes", justify="right")
    weights.add_column("", justify="right")
    weights.add_column("what it models")
    for name, nbytes in inv.weight_bytes.items():
        weights.add_row(name, f"{nbytes:,}", human_bytes(nbytes), POLICIES[name].summary)
    console.print(weights)
    if checkpoint:
        console.print(f"[green]checkpoint {checkpoint}: every name and shape matches[/]")


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(),
              help="config.json of a checkpoint (official WanModel or diffusers format), or a Wan2.2 A14B folder "
                   "(high_noise_model/ and low_noise_model/, or a diffusers model_index.json) for both experts.")
@click.option("--workload", default="ci-tiny", show_default=True, type=click.Choice(list(PRESETS)),
              help="Workload preset; the options below override its fields.")
@click.option("--frames", type=int, help="Video frames (4n+1).")
@click.option("--height", type=int, help="Height in pixels (multiple of 16).")
@click.option("--width", type=int, help="Width in pixels (multiple of 16).")
@click.option("--steps", type=int, help="Denoising steps.")
@click.option("--cfg/--no-cfg", default=None, help="Classifier-free guidance: two forwards per step.")
@click.option("--batch", type=int, help="Videos per forward.")
@click.option("--precision", type=click.Choice(list(POLICIES)), help="Precision policy (preset default: bf16).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write report.json and summary.md here (default: a new folder under runs/).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table: tree and totals on the terminal; json: the report on stdout.")
@click.option("--depth", type=int, default=3, show_default=True, help="Tree depth shown.")
@click.option("--expand-blocks", is_flag=True, help="Show every block instead of one blocks.0-N row.")
@click.option("--hotspots-by-module", "by_module", is_flag=True,
              help="Hotspots list individual modules (blocks.17.ffn.0) instead of roles summed over the blocks "
                   "(blocks.*.ffn.0 x40).")
@click.option("--strict", is_flag=True, help="An op the rule book cannot cost is an error.")
@click.option("--full-trace", is_flag=True, help="Trace every block instead of tracing two and replicating.")
@click.option("--gpu", default=None, metavar="NAME|PATH",
              help="Also predict time on this GPU: a profile in hardware/ (h200, h100-sxm, a100-80gb-sxm, l40s, "
                   "rtx-4090, b200) or a profile JSON's path.")
@click.option("--ulysses", type=int, default=1, show_default=True,
              help="Multi-GPU: Ulysses degree (official --ulysses_size); must divide the heads.")
@click.option("--ring", type=int, default=1, show_default=True, help="Multi-GPU: ring degree (official --ring_size).")
@click.option("--cfg-parallel", is_flag=True, help="Multi-GPU: the two CFG forwards on two halves of the GPUs.")
@click.option("--gpus", type=int, default=None, help="Multi-GPU: the GPU count, checked against the layout.")
@click.option("--dit-fsdp", is_flag=True, help="Memory: the DiT sharded with FSDP (official --dit_fsdp).")
@click.option("--t5-fsdp", is_flag=True, help="Memory: the T5 sharded with FSDP (official --t5_fsdp).")
@click.option("--offload-model/--no-offload-model", default=None,
              help="Memory: official --offload_model [default: on for one GPU, off for several].")
@click.option("--t5-cpu", is_flag=True, help="Memory: the T5 on the CPU (official --t5_cpu).")
@click.option("--only", type=click.Choice(["dit"]), default=None,
              help="dit: the DiT alone, one forward's tree (the schema-2 report); default: the whole generation.")
@click.option("--vae", "vae_path", type=click.Path(), default=None,
              help="The VAE's config.json [default: the shipped Wan2.1 VAE].")
@click.option("--text-encoder", "text_encoder_path", type=click.Path(), default=None,
              help="The text encoder's config.json [default: the shipped umT5-XXL].")
@click.option("--image-encoder", "image_encoder_path", type=click.Path(), default=None,
              help="The image encoder's config.json [default: the shipped CLIP ViT-H/14].")
@one_line_errors
@collector_off
def analyze(config_path, workload, frames, height, width, steps, cfg, batch, precision, out_dir, fmt, depth,
            expand_blocks, by_module, strict, full_trace, gpu, ulysses, ring, cfg_parallel, gpus, dit_fsdp, t5_fsdp,
            offload_model, t5_cpu, only, vae_path, text_encoder_path, image_encoder_path):
    """What one generation costs, and where: every component (text and image encoders, VAE, the DiT's forwards,
    the sampler) with FLOPs (torch and full conventions) and bytes per module, and with --gpu the predicted
    time. --only dit: the DiT alone."""
    from .views.render import print_tree, summary_markdown
    from .work.report import write_atomic

    if out_dir is not None:
        writable_dir(out_dir)

    timing = None
    if gpu is not None:
        from .timing.predictor import Predictor

        timing = Predictor(gpu)
    overrides = dict(frames=frames, height=height, width=width, steps=steps, cfg=cfg, batch=batch,
                     precision=precision)
    plan, multi = multi_gpu_plan(ulysses, ring, cfg_parallel, gpus, dit_fsdp, t5_fsdp, offload_model, t5_cpu)
    paths = {"vae": vae_path, "text_encoder": text_encoder_path, "image_encoder": image_encoder_path}
    if only == "dit":
        from .work.analysis import analyze as run_analysis

        report = run_analysis(config_path, workload, strict=strict, replicate=not full_trace, timing=timing,
                              parallel=plan, **overrides)
    else:
        from .work.generation import analyze_generation

        report = analyze_generation(config_path, workload, strict=strict, replicate=not full_trace, timing=timing,
                                    parallel=plan, **paths, **overrides)
    command = " ".join(["wantrace analyze", f"--config {config_path}", f"--workload {workload}"] + [
        (f"--{k}" if v else f"--no-{k}") if isinstance(v, bool) else f"--{k} {v}"
        for k, v in overrides.items() if v is not None
    ] + (["--hotspots-by-module"] if by_module else []) + ([f"--gpu {gpu}"] if gpu else []) + multi + (
        ["--only dit"] if only else []) + [f"--{k.replace('_', '-')} {v}" for k, v in paths.items() if v])
    if fmt == "json":
        click.echo(report.to_json(), nl=False)
        if out_dir is None:
            return
    out = Path(out_dir) if out_dir else new_run_dir(Path(config_path), report.workload["id"])
    write_atomic(out / "report.json", report.to_json())
    lines: list[str] = []
    if plan is not None:
        from .views.parallel import parallel_lines

        profile = timing.profile if timing is not None else None
        lines = parallel_lines(report, profile.figure("memory_bytes") if profile else None,
                               profile.doc["gpu"] if profile else None)
    if report.experts is not None and report.generation is None:  # Wan2.2 A14B DiT alone: both experts
        from .views.experts import experts_markdown

        write_atomic(out / "summary.md", experts_markdown(report, command))
    else:
        summary = summary_markdown(report, command, by_module)
        if report.experts is not None:  # a two-expert generation
            from .views.experts import experts_section

            lines = ["## Experts", "", *experts_section(report), *([""] + lines if lines else [])]
        write_atomic(out / "summary.md", summary + ("\n" + "\n".join(lines) + "\n" if lines else ""))
    if fmt == "table":
        console = Console()
        print_tree(report, console, depth=depth, expand_blocks=expand_blocks, by_module=by_module)
        if report.generation is not None:
            from .views.generation import print_generation

            print_generation(report, console)
        if report.experts is not None:
            from .views.experts import print_experts

            print_experts(report, console)
        if lines and report.experts is None:
            from rich.markdown import Markdown

            console.print(Markdown("\n".join(lines)))
        console.print(f"wrote {out / 'report.json'} and {out / 'summary.md'}")


def multi_gpu_plan(ulysses, ring, cfg_parallel, gpus, dit_fsdp, t5_fsdp, offload_model, t5_cpu):
    """The multi-GPU plan analyze's flags describe (None when none is given) and those flags as a command line."""
    from .work.parallel import Plan, PlanError

    offload = [] if offload_model is None else ["--offload-model" if offload_model else "--no-offload-model"]
    flags = [f"--ulysses {ulysses}"] * (ulysses != 1) + [f"--ring {ring}"] * (ring != 1) + \
        ["--cfg-parallel"] * cfg_parallel + [f"--gpus {gpus}"] * (gpus is not None) + ["--dit-fsdp"] * dit_fsdp + \
        ["--t5-fsdp"] * t5_fsdp + offload + ["--t5-cpu"] * t5_cpu
    if not flags:
        return None, []
    plan = Plan(ulysses, ring, cfg_parallel, dit_fsdp, t5_fsdp, offload_model, t5_cpu)
    if gpus is not None and gpus != plan.world:
        raise PlanError(f"--gpus {gpus}: the layout needs ulysses x ring{' x 2 (CFG)' if cfg_parallel else ''} = "
                        f"{plan.world} GPUs")
    return plan, flags


@contextlib.contextmanager
def _progress(console: Console, first: str, every_s: float = 15.0):
    """A live status line on a terminal; in a log, a timestamped line per step, and while one step keeps
    reporting (ncu's kernel count), one line every `every_s` seconds."""
    if console.is_terminal:
        with console.status(first) as status:
            yield status.update
        return
    start = time.perf_counter()
    last_step: list[str | None] = [None]
    last_at = [-every_s]

    def line(message: str) -> None:
        now = time.perf_counter() - start
        step = message.partition(":")[0]
        if step != last_step[0] or now - last_at[0] >= every_s:
            console.print(f"[{now:6.1f} s] {message}", highlight=False, soft_wrap=True)
            last_step[0], last_at[0] = step, now

    yield line


def end_to_end_options(fn):
    """verify --end-to-end: its options, and the dispatch to the whole-generation run ahead of verify's own."""
    e2e_takes = ("device", "config_path", "workload", "precision", "frames", "height", "width", "batch", "gpu",
                 "time_tolerance", "out_dir")

    @click.option("--end-to-end", is_flag=True,
                  help="Run the whole generation for real (every component, --steps sampler steps) and compare its "
                       "time with the generation report's, its FLOPs per component with the report's.")
    @click.option("--steps", type=int, default=None,
                  help="--end-to-end: sampler steps to run, the first of the workload's; the DiT and scheduler time is "
                       "scaled to all of them [default: 1].")
    @click.option("--vae", "vae_path", type=click.Path(), default=None,
                  help="--end-to-end: the VAE's config.json [default: the shipped Wan2.1 VAE].")
    @click.option("--text-encoder", "text_encoder_path", type=click.Path(), default=None,
                  help="--end-to-end: the text encoder's config.json [default: the shipped umT5-XXL].")
    @click.option("--image-encoder", "image_encoder_path", type=click.Path(), default=None,
                  help="--end-to-end: the image encoder's config.json [default: the shipped CLIP ViT-H/14].")
    @functools.wraps(fn)
    @one_line_errors
    def wrapper(end_to_end, steps, vae_path, text_encoder_path, image_encoder_path, **kwargs):
        from .measure.device import VerifyError

        ctx = click.get_current_context()
        given = [p for p in ctx.command.params if p.name and ctx.get_parameter_source(p.name) not in (
            None, click.core.ParameterSource.DEFAULT)]
        if not end_to_end:
            own = [p for p in given if p.name in ("steps", "vae_path", "text_encoder_path", "image_encoder_path")]
            if own:
                raise VerifyError(f"{own[0].opts[0]}: an --end-to-end option; add --end-to-end")
            return fn(**kwargs)
        foreign = [p for p in given if p.name in kwargs and p.name not in e2e_takes]
        if foreign:
            raise VerifyError(f"{foreign[0].opts[0]}: not an --end-to-end option")
        verify_end_to_end_cli(steps if steps is not None else 1, vae_path, text_encoder_path, image_encoder_path,
                              **{k: kwargs[k] for k in e2e_takes})

    return wrapper


def verify_end_to_end_cli(steps, vae, text_encoder, image_encoder, *, device, config_path, workload, precision,
                          frames, height, width, batch, gpu, time_tolerance, out_dir) -> None:
    """verify --end-to-end: the whole generation, --steps of its steps, against the generation report."""
    from .measure.verify_generation import verify_generation
    from .views.verify_generation import print_generation_result
    from .work.report import write_atomic

    writable_dir(out_dir)
    console = Console(stderr=True)
    with _progress(console, "verify --end-to-end") as progress:
        result = verify_generation(config_path, workload, steps=steps, device=device, gpu=gpu,
                                   time_tolerance=time_tolerance, vae=vae, text_encoder=text_encoder,
                                   image_encoder=image_encoder, progress=progress, precision=precision,
                                   frames=frames, height=height, width=width, batch=batch)
    write_atomic(Path(out_dir) / "verify.json", json.dumps(result.to_dict(), indent=1) + "\n")
    print_generation_result(result, Console())
    Console().print(f"wrote {Path(out_dir) / 'verify.json'}")
    if not result.passed:
        sys.exit(1)


@main.command()
@click.option("--device", type=click.Choice(["cuda", "cpu"]), default="cuda", show_default=True)
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False))
@click.option("--workload", default="ci-tiny", show_default=True, type=click.Choice(list(PRESETS)))
@click.option("--precision", type=click.Choice(list(POLICIES)), help="Precision policy (preset default: bf16).")
@click.option("--frames", type=int)
@click.option("--height", type=int)
@click.option("--width", type=int)
@click.option("--batch", type=int)
@click.option("--tolerance", type=float, default=0.05, show_default=True,
              help="Largest relative FLOP error allowed per module.")
@click.option("--gpu", default=None, metavar="NAME|PATH",
              help="Hardware profile whose predicted time is checked (default on CUDA: the profile in hardware/ "
                   "that matches the device, if any).")
@click.option("--time-tolerance", type=float, default=0.15, show_default=True,
              help="Largest relative error of predicted time allowed, for the forward and for every category "
                   "holding at least 5% of the measured kernel time.")
@click.option("--host-overheads", is_flag=True,
              help="Re-measure the profile's CPU figures (op issue overhead, the model's Python) on this host "
                   "first: a launch-bound forward such as ci-tiny runs at the pace of the host's CPU.")
@click.option("--blocks", type=int, default=None,
              help="Run only the first N blocks (plus embeddings and head), for workloads too large for one device.")
@click.option("--counters", is_flag=True, help="Also read Nsight Compute counters per module (CUDA, ncu).")
@click.option("--counter-metrics", type=click.Choice(list(METRIC_SETS)), default="all", show_default=True,
              help="Counters to read: all (tensor, FP32/FP64, DRAM, time), or tensor (tensor FLOPs and time: "
                   "fewer replay passes; the whole 14B at ci-tiny in about 4 minutes on an H200).")
@click.option("--counter-replay", type=click.Choice(list(REPLAY_MODES)), default="application", show_default=True,
              help="How ncu gets its passes: re-run the whole forward once per pass, or replay each kernel in "
                   "place (saving and restoring device memory around it: slow when the model holds tens of GB).")
@click.option("--repeats", type=int, default=3, show_default=True, help="Timed forwards; the fastest is kept.")
@click.option("--ulysses", type=int, default=1, show_default=True,
              help="Multi-GPU (under torchrun, ulysses x ring processes): Ulysses degree.")
@click.option("--ring", type=int, default=1, show_default=True, help="Multi-GPU (under torchrun): ring degree.")
@click.option("--output-tolerance", type=float, default=None,
              help="Multi-GPU: largest relative difference of the output from one process's [default: 1e-5 in "
                   "fp32, 3e-2 otherwise].")
@click.option("--text-len", type=int, default=None,
              help="Text encoder config (model_type umt5): tokens per prompt [default: 512, the official text_len].")
@click.option("--direction", type=click.Choice(["encode", "decode"]), default=None,
              help="VAE config (AutoencoderKLWan): encode the video or decode it from its latents [default: decode].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Where verify.json goes.")
@end_to_end_options
@one_line_errors
def verify(device, config_path, workload, precision, frames, height, width, batch, tolerance, gpu, time_tolerance,
           host_overheads, blocks, counters, counter_metrics, counter_replay, repeats, ulysses, ring, output_tolerance,
           text_len, direction, out_dir):
    """Run the same model for real and check the analytic counts module by module (with --ulysses/--ring, one
    rank of the sequence-parallel forward, under torchrun). A pipeline component's config runs one call of that
    component instead: a text encoder (transformers UMT5) on --batch prompts of --text-len tokens; the CLIP image
    encoder (CLIPVisionConfig) on --batch frames of --height x --width; the VAE (AutoencoderKLWan) --direction
    encode or decode of a --frames x --height x --width video (or the --workload preset's video size)."""
    from .measure.device import VerifyError
    from .measure.verify import verify as run_verify
    from .measure.verify_component import component_of
    from .views.verify import print_result
    from .work.report import write_atomic

    writable_dir(out_dir)
    ctx = click.get_current_context()
    given = [p for p in ctx.command.params
             if p.name and ctx.get_parameter_source(p.name) not in (None, click.core.ParameterSource.DEFAULT)]
    component = component_of(config_path)
    if component is not None:
        takes = COMPONENT_OPTIONS[component]
        refused = [p for p in given if p.name not in takes + COMMON_OPTIONS]
        if refused:
            raise VerifyError(f"{refused[0].opts[0]}: not an option for {COMPONENT_LABELS[component]} config; it "
                              f"takes {', '.join(_flag(ctx, n) for n in takes + COMMON_OPTIONS[:3])}")
        values = {"workload": workload, "frames": frames, "height": height, "width": width, "batch": batch,
                  "text_len": text_len, "direction": direction}
        verify_component_cli(component, device, config_path, out_dir, precision=precision, tolerance=tolerance,
                             repeats=repeats, gpu=gpu, **{n: values[n] for n in takes if values[n] is not None})
        return
    component_only = [p for p in given if p.name in ("text_len", "direction")]
    if component_only:
        owner = {"text_len": "text encoder", "direction": "VAE"}[component_only[0].name or ""]
        raise VerifyError(f"{component_only[0].opts[0]}: a {owner} option; --config is not a {owner} config")

    if ulysses * ring > 1 or ulysses < 1 or ring < 1:
        verify_multi(device, config_path, workload, precision, frames, height, width, batch, gpu, time_tolerance,
                     repeats, ulysses, ring, output_tolerance, out_dir, blocks, counters)
        return

    console = Console(stderr=True)
    with _progress(console, "verify") as progress:
        result = run_verify(
            config_path, workload, device=device, precision=precision, tolerance=tolerance, blocks=blocks,
            counters=counters, counter_metrics=counter_metrics, counter_replay=counter_replay, repeats=repeats,
            gpu=gpu, time_tolerance=time_tolerance, host_overheads=host_overheads, progress=progress, frames=frames,
            height=height, width=width, batch=batch,
        )
    doc = result.to_dict()
    write_atomic(Path(out_dir) / "verify.json", json.dumps(doc, indent=1) + "\n")
    print_result(result, Console())
    Console().print(f"wrote {Path(out_dir) / 'verify.json'}")
    if not result.passed:
        sys.exit(1)


COMMON_OPTIONS = ("precision", "tolerance", "repeats", "device", "config_path", "out_dir", "gpu")
COMPONENT_OPTIONS = {  # what each component's verify takes beside the common options
    "text_encoder": ("text_len", "batch"),
    "image_encoder": ("workload", "height", "width", "batch"),
    "vae": ("direction", "workload", "frames", "height", "width", "batch"),
}
COMPONENT_LABELS = {"text_encoder": "a text encoder", "image_encoder": "an image encoder", "vae": "a VAE"}


def _flag(ctx: click.Context, name: str) -> str:
    return next(p.opts[0] for p in ctx.command.params if p.name == name)


def verify_component_cli(component: str, device: str, config_path: str, out_dir: str, **options) -> None:
    """verify on a pipeline component's config: one call of it, checked module by module."""
    from .measure.verify_component import verify_component
    from .views.verify import print_component_result
    from .work.report import write_atomic

    console = Console(stderr=True)
    with _progress(console, "verify") as progress:
        result = verify_component(component, config_path, device=device, progress=progress, **options)
    write_atomic(Path(out_dir) / "verify.json", json.dumps(result.to_dict(), indent=1) + "\n")
    print_component_result(result, Console())
    Console().print(f"wrote {Path(out_dir) / 'verify.json'}")
    if not result.passed:
        sys.exit(1)


def verify_multi(device, config_path, workload, precision, frames, height, width, batch, gpu, time_tolerance,
                 repeats, ulysses, ring, output_tolerance, out_dir, blocks, counters) -> None:
    """verify --ulysses/--ring: every rank checks itself; rank 0 writes verify.json and prints."""
    import torch.distributed as dist

    from .measure.device import VerifyError
    from .measure.verify_parallel import summary_lines, verify_parallel
    from .work.report import write_atomic

    if blocks is not None or counters:
        raise VerifyError("--blocks and --counters are single-GPU options; drop them with --ulysses/--ring")
    doc = verify_parallel(config_path, workload, device=device, ulysses=ulysses, ring=ring, precision=precision,
                          gpu=gpu, time_tolerance=time_tolerance, output_tolerance=output_tolerance, repeats=repeats,
                          frames=frames, height=height, width=width, batch=batch)
    if dist.get_rank() == 0:
        write_atomic(Path(out_dir) / "verify.json", json.dumps(doc, indent=1) + "\n")
        click.echo("\n".join(summary_lines(doc)))
        click.echo(f"wrote {Path(out_dir) / 'verify.json'}")
    dist.barrier()
    dist.destroy_process_group()
    if not doc["passed"]:
        sys.exit(1)


@main.command()
@click.argument("report_a", metavar="A.json", type=click.Path(dir_okay=False))
@click.argument("report_b", metavar="B.json", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["table", "md", "json"]), default="table", show_default=True)
@click.option("--by", type=click.Choice(["torch", "full", "bytes", "time"]), default="torch", show_default=True,
              help="The measure shown and sorted by: FLOPs in the torch or full convention, bytes, or predicted "
                   "time (when both reports have it: analyze --gpu).")
@click.option("--top", type=click.IntRange(min=0), default=20, show_default=True,
              help="Roles listed in table and md (0: all); json lists all.")
@one_line_errors
def compare(report_a, report_b, fmt, by, top):
    """B against A: totals ratios, and per-category and per-role changes, largest first."""
    from .views.compare import print_table, to_markdown
    from .work.compare import compare as run_compare
    from .work.compare import load_report

    result = run_compare(load_report(report_a), load_report(report_b), by=by, names=(report_a, report_b))
    if fmt == "json":
        click.echo(json.dumps(result, indent=1))
    elif fmt == "md":
        click.echo(to_markdown(result, top), nl=False)
    else:
        print_table(result, Console(), top)


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="config.json of a checkpoint (official WanModel or diffusers format).")
@click.option("--workload", type=click.Choice(list(PRESETS)), default=None,
              help="Base preset the lists override [default: the 480p preset of the model's task].")
@click.option("--frames", "frames_text", help="Frame counts, comma-separated (e.g. 17,33,49,65,81).")
@click.option("--size", "size_text", help="Sizes WIDTHxHEIGHT, comma-separated (e.g. 832x480,1280x720).")
@click.option("--steps", "steps_text", help="Denoising step counts, comma-separated.")
@click.option("--precision", "precision_text", help=f"Precision policies, comma-separated ({', '.join(POLICIES)}).")
@click.option("--cfg/--no-cfg", default=None, help="Classifier-free guidance: two forwards per step.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write sweep.csv, sweep.json, the plots and summary.md here (default: a new folder under runs/).")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Draw the PNG plots (matplotlib).")
@click.option("--strict", is_flag=True, help="An op the rule book cannot cost is an error.")
@click.option("--gpu", default=None, metavar="NAME|PATH", help="Also predict time on this GPU's profile.")
@one_line_errors
def sweep(config_path, workload, frames_text, size_text, steps_text, precision_text, cfg, out_dir, plots, strict,
          gpu):
    """One row per workload over frames x sizes x steps x precisions: tokens, FLOPs, bytes, category shares of
    the DiT (as analyze --only dit; the whole generation at a point: analyze); as CSV and JSON, with plots."""
    if out_dir is not None:
        writable_dir(out_dir)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .views.plots import prepare as prepare_plots
    from .views.plots import render_plots
    from .views.sweep import write_sweep
    from .work.analysis import load_config_source
    from .work.beside import Ahead
    from .work.sweep import default_preset, parse_ints, parse_sizes, plan, run_sweep

    frames = parse_ints(frames_text, "--frames") if frames_text is not None else None
    sizes = parse_sizes(size_text) if size_text is not None else None
    steps = parse_ints(steps_text, "--steps") if steps_text is not None else None
    precisions = [p.strip() for p in precision_text.split(",")] if precision_text is not None else None
    config, _ = load_config_source(config_path)
    preset = workload or default_preset(config)
    n = len(plan(config, preset, frames, sizes, steps, precisions, cfg))  # every point checked before any work
    parts = [f"wantrace sweep --config {config_path} --workload {preset}"]
    parts += [f"--frames {','.join(map(str, frames))}"] if frames else []
    parts += [f"--size {','.join(f'{w}x{h}' for w, h in sizes)}"] if sizes else []
    parts += [f"--steps {','.join(map(str, steps))}"] if steps else []
    parts += [f"--precision {','.join(precisions)}"] if precisions else []
    parts += [] if cfg is None else ["--cfg" if cfg else "--no-cfg"]
    parts += [] if plots else ["--no-plots"]
    parts += ["--strict"] if strict else []
    parts += [f"--gpu {gpu}"] if gpu else []
    command = " ".join(parts)
    timing = None
    if gpu is not None:
        from .timing.predictor import Predictor

        timing = Predictor(gpu)

    err = Console(stderr=True)
    # the plotter imports matplotlib in a forked child while the sweep is costed, then draws it (forked before the
    # progress bar starts its thread)
    with Ahead(prepare_plots, render_plots) if plots else contextlib.nullcontext() as plotter, Progress(
            TextColumn("costing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.description}"), console=err, transient=True, disable=n < 2) as progress:
        task = progress.add_task("", total=n)
        result = run_sweep(config_path, preset, frames=frames, sizes=sizes, steps=steps, precisions=precisions,
                           cfg=cfg, strict=strict, timing=timing,
                           on_point=lambda w: progress.update(task, advance=1, description=w.id))
        progress.update(task, description="plots and files")
        out = Path(out_dir) if out_dir else new_run_dir(Path(config_path), "sweep")
        written = write_sweep(result, out, command, plots=plots,
                              rendered=plotter.result(result) if plotter is not None else None)
    print_sweep(result, Console())
    Console().print(f"wrote {', '.join(str(p) for p in written)}")


def print_sweep(result, console: Console) -> None:
    from rich.table import Table

    from .views.units import nbytes, seconds, si

    n = len(result.rows)
    timed = bool(result.rows) and all(row.timed for row in result.rows)
    table = Table(box=None, pad_edge=False, header_style="bold", title_justify="left",
                  title=f"{n} workload{'s' if n != 1 else ''}, one forward each: FLOPs (torch, full), bytes, and the "
                        "self-attention core share of torch FLOPs")
    columns = ("frames", "size", "steps", "precision", "tokens", "torch", "full", "bytes", "self-attn")
    for name in columns + (("time", "generation") if timed else ()):
        table.add_column(name, justify="left" if name in ("size", "precision") else "right", no_wrap=True,
                         min_width=len(name))
    for row in result.rows:
        w, f = row.workload, row.forward
        table.add_row(str(w.frames), f"{w.width}x{w.height}", str(w.steps), w.precision, f"{row.geometry.tokens:,}",
                      si(f.flops_torch), si(f.flops_full), nbytes(f.bytes),
                      f"{100 * row.shares('torch')['self-attention core']:.1f}%",
                      *([seconds(f.time_ns or 0), seconds(row.generation.time_ns or 0)] if timed else []))
    console.print(table)


@main.command()
@click.option("--device", type=click.Choice(["cuda", "cpu"]), default="cuda", show_default=True)
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="The profile to write, e.g. hardware/h200.json; its spec figures are kept (or taken from the "
                   "profile in hardware/ that matches the device).")
@click.option("--models", "models_dir", type=click.Path(file_okay=False), default=None,
              help="Folder of config folders whose GEMM and attention shapes are calibrated [default: models/ of "
                   "this checkout].")
@click.option("--quick", is_flag=True, help="Every 7th benchmark only: a smoke test of the machinery, not a profile.")
@click.option("--collectives", is_flag=True,
              help="Instead: time the sequence-parallel collectives over sizes (under torchrun, one process per GPU) "
                   "and write them into the existing profile at --out as its collectives section.")
@click.option("--sizes", "sizes_text", default=None, help="With --collectives: bytes per rank, comma-separated.")
@click.option("--add-missing", is_flag=True,
              help="Instead: keep the calibrated profile at --out as measured and add only the curves it lacks "
                   "(classes, layouts or shapes added since it was calibrated), on the same GPU model.")
@one_line_errors
def calibrate(device, out_path, models_dir, quick, collectives, sizes_text, add_missing):
    """Measure GEMM, attention, memory-bound kernels and per-op CPU overhead on this GPU, for the time predictor."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .measure.calibrate import add_missing as run_add_missing
    from .measure.calibrate import calibrate as run_calibrate
    from .measure.calibrate import check_cuda
    from .work.report import write_atomic

    if collectives:
        calibrate_collectives(device, Path(out_path), sizes_text)
        return

    check_cuda(device)
    writable_dir(Path(out_path).parent or ".", "--out")
    err = Console(stderr=True)
    with Progress(TextColumn("calibrating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=err, transient=err.is_terminal) as progress:
        task = progress.add_task("shapes of the shipped configs", total=None)

        def step(job, i, n):
            progress.update(task, total=n, completed=i, description=job.label)

        configs = sorted(Path(models_dir).glob("*/config.json")) if models_dir else None
        if add_missing:
            doc, added = run_add_missing(Path(out_path), device=device, configs=configs, progress=step)
        else:
            doc = run_calibrate(Path(out_path), device=device, configs=configs, progress=step, quick=quick)
        progress.update(task, completed=progress.tasks[0].total, description="done")
    if add_missing:
        if added:
            write_atomic(Path(out_path), json.dumps(doc, indent=1) + "\n")
        Console().print(f"{out_path}: added {len(added)} curves" + (f" ({', '.join(added)})" if added else
                                                                    ": it has every curve; nothing written"))
        return
    write_atomic(Path(out_path), json.dumps(doc, indent=1) + "\n")
    cal = doc["calibrated"]
    eff = cal["efficiency"]
    Console().print(f"{cal['device']['name']}: {sum(len(v) for s in cal['gemm'].values() for v in s.values())} GEMM, "
                    f"{sum(len(v) for s in cal['sdpa'].values() for v in s.values())} attention and "
                    f"{sum(len(v) for s in cal['memory'].values() for v in s.values())} memory-bound points in "
                    f"{cal['seconds']} s; best bf16 GEMM {eff['tensor']:.0%}, attention {eff['attention']:.0%} of "
                    f"the spec's tensor rate, bandwidth {eff['bandwidth']:.0%} of spec; wrote {out_path}")


def calibrate_collectives(device: str, out_path: Path, sizes_text: str | None) -> None:
    import torch.distributed as dist

    from .measure.collectives import SIZES, init_distributed, measure
    from .timing.profile import load_profile
    from .work.report import write_atomic
    from .work.sweep import parse_ints

    profile = load_profile(out_path)  # an existing, valid profile: its section is replaced, the rest kept
    sizes = parse_ints(sizes_text, "--sizes") if sizes_text is not None else list(SIZES)
    dev = init_distributed(device)
    section = measure(dev, sizes)
    if dist.get_rank() == 0:
        write_atomic(out_path, json.dumps({**profile.doc, "collectives": section}, indent=1) + "\n")
        for op, points in section["ops"].items():
            gbps = points[-1][0] / points[-1][1]
            click.echo(f"{op}: {len(points)} sizes, {gbps:.2f} GB/s sent per rank at {points[-1][0]:,} bytes")
        click.echo(f"wrote the collectives section of {out_path}")
    dist.barrier()
    dist.destroy_process_group()


def new_run_dir(config_path: Path, workload_id: str) -> Path:
    """runs/<model>-<workload>[-n]: a fresh folder per run, never overwriting an earlier one."""
    stem = config_path.name if config_path.is_dir() else (config_path.parent.name or config_path.stem)
    base = Path("runs") / f"{stem}-{workload_id}".replace("=", "").replace("+", "-")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


if __name__ == "__main__":  # pragma: no cover
    main()
