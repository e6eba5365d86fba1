"""The Wan VAE's encode and decode, traced on meta and costed node by node like the DiT forward.

Integration API (for the whole-generation report):

    trace = trace_vae(config, policy, frames=81, height=480, width=832, direction="decode")
    trace.records            # NodeCost per graph node, execution order; module ids are the official VAE paths
                             # ("decoder.upsamples.4.residual.2", "conv2", scopes "latent_denorm", "concat", ...),
                             # ROOT for top-level glue; prefix them (e.g. "vae.decode.") to nest in a report
    trace.model              # the parts of the VAE the call ran (roll_up's parameters and module types)
    trace.graph              # the FX graph of the chunks traced, run on trace.model
    trace.chunks             # ChunkCost per phase: prologue, each chunk as upstream runs it, epilogue
    trace.peak_activation_bytes
    trace_vae(..., replicate=False)   # trace all chunks instead of 4 and copies (same numbers, slower)

`frames`, `height`, `width` are always the *pixel* video's (81, 480, 832 for t2v-480p): encode reads that video,
decode writes it from its latents (21 x 60 x 104). The i2v/flf2v conditioning encode is a full encode of a
video of the same size (the image followed by zero frames, official image2video.py), so it costs the same
as `direction="encode"`. `wantrace.work.generation.plan` says what a generation runs per task, and
`with_prefix(trace.records, "vae.decode")` re-roots the records for a combined tree
(`roll_up(records, model)` of wantrace.work.analysis then needs a model whose parameters sit under the same
prefix, or `trace.model` for the VAE alone).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.fx

from wan_reference.precision import PrecisionPolicy
from wan_reference.vae import DIRECTIONS, ENCODE_CHUNK, WanVAE, build_vae, decode_chunks, encode_chunks
from wan_reference.vae_config import VAEConfig

from ..rules import OpCall
from .cache import cached
from .lean import lean_meta_run
from .metrics import ZERO, Metrics
from .trace import ROOT, CostInterpreter, NodeCost, WanTracer, _replaced, op_key

PROLOGUE = -1  # chunk index of the work before the first chunk (decode: latent denormalisation, conv2)


class VAEWorkloadError(ValueError):
    """A video shape the VAE cannot encode or decode; one line."""


@dataclass(frozen=True)
class ChunkCost:
    """One phase of the chunk schedule: index -1 the prologue, 0..n-1 the chunks (frames in/out of the
    encoder or decoder), n the epilogue (encode: conv1 and normalisation; decode: clamp)."""

    index: int
    frames_in: int
    frames_out: int
    metrics: Metrics
    peak_activation_bytes: int  # most bytes alive during the phase (cached frames and the output so far included)


@dataclass
class VAETrace:
    direction: str
    model: torch.nn.Module  # the parts of the VAE the call ran (roll_up's parameters and module types)
    records: list[NodeCost]
    chunk_of: list[int]  # per record: its phase (ChunkCost.index)
    chunks: list[ChunkCost]
    peak_activation_bytes: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    graph_key: tuple = ()  # (config, dtype, direction, frames) of the chunk graph traced

    @property
    def total(self) -> Metrics:
        return sum((c.metrics for c in self.chunks), ZERO)

    @property
    def graph(self) -> torch.fx.Graph:
        """The chunk graph traced (4 chunks when replicating), to run on `model`; traced again if the costs came
        from the disk cache."""
        return _graph(*self.graph_key)


def check_video(config: VAEConfig, frames: int, height: int, width: int) -> None:
    for name, value in (("frames", frames), ("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise VAEWorkloadError(f"{name}: must be a positive integer, got {value!r}")
    st, ss = config.temporal_stride, config.spatial_stride
    if (frames - 1) % st:
        raise VAEWorkloadError(f"frames: must be {st}n+1 for the Wan VAE, got {frames}")
    for name, value in (("height", height), ("width", width)):
        if value % ss:
            raise VAEWorkloadError(f"{name}: must be a multiple of {ss} for the Wan VAE, got {value}")


def latent_shape(config: VAEConfig, frames: int, height: int, width: int) -> tuple[int, int, int]:
    st, ss = config.temporal_stride, config.spatial_stride
    return ((frames - 1) // st + 1, height // ss, width // ss)


class _VAETracer(WanTracer):
    """WanTracer with parameter and buffer names looked up in a dict: FX's own `getattr` scans every
    named parameter at each access, which dominates tracing a graph of thousands of nodes."""

    def trace(self, root, concrete_args=None):
        tensors = {**dict(root.named_parameters()), **dict(root.named_buffers())}
        self._tensor_names = {id(t): name for name, t in tensors.items()}
        return super().trace(root, concrete_args)

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        name = self._tensor_names.get(id(attr_val)) if isinstance(attr_val, torch.Tensor) else None
        if name is None:
            return super().getattr(attr, attr_val, parameter_proxy_cache)
        if name not in parameter_proxy_cache:
            parameter_proxy_cache[name] = self.create_proxy("get_attr", name, (), {})
        return parameter_proxy_cache[name]


def trace_graph(model: WanVAE, direction: str, length: int | None) -> torch.fx.Graph:
    """FX-trace `model.encode` or `model.decode` with the chunk loop unrolled over `length` input frames
    (video frames to encode, latent frames to decode): the graph depends on the frame count, not on H, W.
    `length=None` traces only what runs after the chunks (`encode_tail` / `decode_tail`)."""
    if direction not in DIRECTIONS:
        raise VAEWorkloadError(f"direction: 'encode' or 'decode', got {direction!r}")
    tracer = _VAETracer()
    tracer.traced_func_name = direction if length is not None else f"{direction}_tail"
    return tracer.trace(model, concrete_args={"frames": length} if length is not None else None)


@lru_cache(maxsize=8)
def _model(config: VAEConfig, dtype: torch.dtype) -> WanVAE:
    return build_vae(config, dtype)


@lru_cache(maxsize=8)
def _graph(config: VAEConfig, dtype: torch.dtype, direction: str, length: int | None) -> torch.fx.Graph:
    """One traced graph per frame count serves every resolution (a sweep over sizes traces once). The graph is
    interpreted on the module it was traced from: no GraphModule, whose generated code would cost as much as
    the trace."""
    return trace_graph(_model(config, dtype), direction, length)


def _used(model: WanVAE, records: list[NodeCost]) -> torch.nn.Module:
    """The parts of the VAE a call ran (decode: conv2 and the decoder), under their own names and types: whose
    parameters and modules the call's report lists."""
    ran = {r.module.split(".")[0] for r in records}
    used = torch.nn.Module()
    for name, child in model.named_children():
        if name in ran:
            used.add_module(name, child)
    for name, buffer in model.named_buffers(recurse=False):  # the latent normalisation's mean and 1 / std
        used.register_buffer(name, buffer)
    for name, param in model.named_parameters(recurse=False):
        used.register_parameter(name, param)
    return used


TEMPLATE_CHUNKS = 4  # traced when replicating: 0, 1 (the first cached frames), 2 (stands for 2 .. n-2), 3 (the last)


@dataclass(frozen=True)
class _Plan:
    """What one chunked encode or decode traces: the chunk graph's input and frame count (4 chunks' worth when
    replicating) and the shapes around it."""

    schedule: list[tuple[int, int]]
    shape: tuple[int, ...]  # the call's input
    out_shape: tuple[int, ...]  # the call's output
    length: int  # frames the traced chunk graph reads
    short: bool  # 4 chunks traced, the middle ones copied, the tail traced alone


def _plan(config: VAEConfig, frames: int, height: int, width: int, direction: str, batch: int,
          replicate: bool) -> _Plan:
    check_video(config, frames, height, width)
    latent = latent_shape(config, frames, height, width)
    schedule = encode_chunks(frames) if direction == "encode" else decode_chunks(latent[0])
    if direction == "encode":
        shape, length = (batch, 3, frames, height, width), frames
        out_shape = (batch, config.z_dim, *latent)
    else:
        shape, length = (batch, config.z_dim, *latent), latent[0]
        out_shape = (batch, 3, frames, height, width)
    short = replicate and len(schedule) > TEMPLATE_CHUNKS
    if short:  # the frame count of 4 chunks; the graph's chunk slices then read only their frames of x
        length = 1 + ENCODE_CHUNK * (TEMPLATE_CHUNKS - 1) if direction == "encode" else TEMPLATE_CHUNKS
    return _Plan(schedule, shape, out_shape, length, short)


def trace_vae(config: VAEConfig, policy: PrecisionPolicy, frames: int, height: int, width: int,
              direction: str, batch: int = 1, strict: bool = False, replicate: bool = True) -> VAETrace:
    """Build the VAE on meta in the policy's VAE dtype, trace its chunked encode or decode of a
    `frames` x `height` x `width` video, and cost every node.

    `replicate` traces 4 chunks and copies chunk 2 for the middle chunks, as the DiT's blocks are copied: every
    chunk but the first two and the last runs the same ops on the same shapes, the output so far only grows.
    The concat's bytes and the activations alive grow by one chunk's output per chunk; what runs after the
    chunks is traced on its own at the real size. Same records and peaks as a full trace (tested)."""
    return expand(trace_chunks(config, policy, frames, height, width, direction, batch, strict, replicate))


@dataclass(frozen=True)
class VAEChunks:
    """What a VAE call's trace found, before its middle chunks are copied: the records and live bytes of the
    chunks traced (all, or 4 and the tail when replicating). Small and picklable: what the disk cache keeps, and
    what a whole generation's VAE trace, run beside the DiT's, sends back."""

    config: VAEConfig
    dtype: torch.dtype
    direction: str
    plan: _Plan
    records: list[NodeCost]
    levels: list[int]
    tail_records: list[NodeCost]  # the tail traced alone at the real size (replicating), placeholder dropped
    tail_levels: list[int]


def trace_chunks(config: VAEConfig, policy: PrecisionPolicy, frames: int, height: int, width: int, direction: str,
                 batch: int = 1, strict: bool = False, replicate: bool = True) -> VAEChunks:
    """The traced part of `trace_vae`, from the disk cache where it was traced before."""
    plan = _plan(config, frames, height, width, direction, batch, replicate)
    return cached("vae", (config, policy.vae, frames, height, width, direction, batch, strict, replicate),
                  lambda: _costed(config, policy.vae, direction, strict, plan))


def _costed(config: VAEConfig, dtype: torch.dtype, direction: str, strict: bool, plan: _Plan) -> VAEChunks:
    chunks, tail = _runs(config, dtype, direction, strict, plan)
    return VAEChunks(config, dtype, direction, plan, chunks.records, _levels(chunks),
                     tail.records[1:] if tail else [], _levels(tail)[1:] if tail else [])


def _runs(config: VAEConfig, dtype: torch.dtype, direction: str, strict: bool,
          plan: _Plan) -> tuple[CostInterpreter, CostInterpreter | None]:
    """The chunk graph run on the call's input, and (replicating) the tail's graph on the chunks' real output."""
    model = _model(config, dtype)
    chunks = _run(model, _graph(config, dtype, direction, plan.length), strict,
                  (torch.empty(plan.shape, device="meta", dtype=dtype), plan.length))
    if not plan.short:
        return chunks, None
    return chunks, _run(model, _graph(config, dtype, direction, None), strict,
                        (torch.empty(_final_out(config, direction, plan.out_shape), device="meta", dtype=dtype),))


def expand(traced: VAEChunks) -> VAETrace:
    """The whole call's trace: the middle chunks copied (replicating), each record's phase, each phase's cost."""
    plan, direction = traced.plan, traced.direction
    records, levels = traced.records, traced.levels
    chunk_of = phases(records, direction)
    n = len(plan.schedule)
    if plan.short:
        records, levels, chunk_of = _replicate(records, levels, chunk_of, n, traced.tail_records,
                                               traced.tail_levels)
    sums: dict[int, list[int]] = {}  # per phase: FLOPs (torch, full), bytes read and written, peak; one pass
    for r, level, index in zip(records, levels, chunk_of, strict=True):
        acc = sums.setdefault(index, [0, 0, 0, 0, 0])
        acc[0] += r.cost.flops_torch
        acc[1] += r.cost.flops_full
        acc[2] += r.cost.bytes_read
        acc[3] += r.cost.bytes_written
        acc[4] = max(acc[4], level)
    chunks = [ChunkCost(index, *_chunk_frames(direction, index, plan.schedule), Metrics(*sums[index][:4]),
                        sums[index][4]) for index in range(PROLOGUE, n + 1) if index in sums]
    return VAETrace(direction, _used(_model(traced.config, traced.dtype), records), records, chunk_of, chunks,
                    max(levels, default=0), plan.shape, plan.out_shape,
                    (traced.config, traced.dtype, direction, plan.length))


CONVOLUTIONS = ("conv1d", "conv2d", "conv3d")


def conv_calls(config: VAEConfig, policy: PrecisionPolicy, frames: int, height: int, width: int, direction: str,
               batch: int = 1) -> list[OpCall]:
    """Each distinct convolution a chunked encode or decode of this video runs, as its rule saw it (input,
    weight, stride, padding, ...): what `wantrace calibrate` times, since cuDNN's speed per FLOP depends on the
    shape and its TF32 path is not the fp32 GEMM's."""
    plan = _plan(config, frames, height, width, direction, batch, replicate=True)
    chunks, tail = _runs(config, policy.vae, direction, False, plan)
    calls = chunks.calls + (tail.calls if tail else [])
    return distinct(call for call in calls if call is not None and call.name in CONVOLUTIONS)


def distinct(calls: Iterable[OpCall]) -> list[OpCall]:
    """The calls that differ in op or arguments (tensors by shape, strides and dtype), first seen first."""
    found: dict[object, OpCall] = {}
    for call in calls:
        found.setdefault(op_key((call.name, call.args, call.kwargs)), call)
    return list(found.values())


def _final_out(config: VAEConfig, direction: str, out_shape: tuple[int, ...]) -> tuple[int, ...]:
    """What the chunks hand to the tail: encode's mean and log-variance (2 z_dim channels), decode's video."""
    return (out_shape[0], 2 * config.z_dim, *out_shape[2:]) if direction == "encode" else out_shape


def _run(model: WanVAE, graph: torch.fx.Graph, strict: bool, inputs: tuple) -> CostInterpreter:
    interpreter = CostInterpreter(model, strict, graph)
    with lean_meta_run():
        interpreter.run(*inputs)
    return interpreter


def _levels(interpreter: CostInterpreter) -> list[int]:
    return interpreter.liveness(lambda node: interpreter._alloc.get(node, 0))


def _replicate(records: list[NodeCost], levels: list[int], chunk_of: list[int], n: int,
               tail_records: list[NodeCost], tail_levels: list[int]) -> tuple[list[NodeCost], list[int], list[int]]:
    """Records, live bytes and phases of an `n`-chunk run from a 4-chunk trace (phases -1 .. 4) and the tail
    traced alone (its records without the placeholder). Chunk k in 2 .. n-2 is chunk 2 shifted, chunk n-1 is
    chunk 3 shifted: by s = k - template chunks, the accumulated output is s * delta bytes larger, so every
    live level is s * delta higher (2 s * delta at the concat, where the old and the new output are alive)
    and the concat reads and writes s * delta more."""
    members = {p: [i for i, c in enumerate(chunk_of) if c == p] for p in range(PROLOGUE, TEMPLATE_CHUNKS + 1)}
    cat2, cat3 = (next(records[i] for i in members[p] if records[i].module == "concat") for p in (2, 3))
    d_read = cat3.cost.bytes_read - cat2.cost.bytes_read
    d_written = cat3.cost.bytes_written - cat2.cost.bytes_written
    d_out = cat3.output_bytes - cat2.output_bytes
    out_records: list[NodeCost] = []
    out_levels: list[int] = []
    out_chunk: list[int] = []

    stacks: dict[tuple[tuple[str, ...], int, int], tuple[str, ...]] = {}

    def emit(i: int, k: int, template: int) -> None:
        r, shift = records[i], k - template
        level = levels[i] + shift * d_out
        changes: dict = {"index": len(out_records)}
        if r.module == "concat":
            level += shift * d_out
            changes["cost"] = dataclasses.replace(r.cost, bytes_read=r.cost.bytes_read + shift * d_read,
                                                  bytes_written=r.cost.bytes_written + shift * d_written)
            changes["output_bytes"] = r.output_bytes + shift * d_out
        if shift:
            key = (r.stack, template, k)
            if key not in stacks:
                stacks[key] = tuple(_renamed(call, template, k) for call in r.stack)
            changes["stack"] = stacks[key]
        out_records.append(_replaced(r, **changes))
        out_levels.append(level)
        out_chunk.append(k)

    for p in (PROLOGUE, 0, 1):
        for i in members[p]:
            emit(i, p, p)
    for k in range(2, n - 1):
        for i in members[2]:
            emit(i, k, 2)
    for i in members[3]:
        emit(i, n - 1, 3)
    for r, level in zip(tail_records, tail_levels, strict=True):
        out_records.append(_replaced(r, index=len(out_records)))
        out_levels.append(level)
        out_chunk.append(n)
    return out_records, out_levels, out_chunk


def _renamed(key: str, template: int, k: int) -> str:
    """A call key of the template chunk as chunk k's: FX numbers the calls of a module (`decoder.middle.0@2`),
    and every module of a steady chunk is called once per chunk, so the number moves by k - template; a
    scope key gets the chunk appended so that it stays unique."""
    if "#scope" in key:
        return f"{key}.{k}"
    base, sep, calls = key.rpartition("@")
    if sep and calls.isdigit():
        return f"{base}@{int(calls) + k - template}"
    return f"{key}@{k - template}"


def _chunk_frames(direction: str, index: int, schedule: list[tuple[int, int]]) -> tuple[int, int]:
    if index < 0 or index >= len(schedule):
        return 0, 0
    start, stop = schedule[index]
    n = stop - start
    if direction == "encode":
        return n, 1  # 1 frame, or 4 frames, -> 1 latent frame
    return n, 1 if index == 0 else 4  # the first latent frame decodes to 1 frame, the others to 4


def phases(records: list[NodeCost], direction: str) -> list[int]:
    """Each record's phase: the chunk whose encoder/decoder call it runs in; top-level glue between chunks
    (the slice feeding the next chunk, the concat of the last one) goes with the chunk before it; top-level
    work before the first chunk is the prologue, after the last chunk's concat the epilogue."""
    stage = "encoder" if direction == "encode" else "decoder"
    chunk = [-2] * len(records)
    runs = 0
    previous_key = None
    for i, r in enumerate(records):
        key = r.stack[0] if r.stack else None
        if key is not None and key.split("@")[0] == stage:
            if key != previous_key:
                runs += 1
            chunk[i] = runs - 1
        previous_key = key
    last_run = max(i for i, c in enumerate(chunk) if c >= 0)
    current = PROLOGUE
    for i, r in enumerate(records):
        if chunk[i] >= 0:
            current = chunk[i]
        elif i > last_run and r.module != "concat":
            chunk[i] = runs  # epilogue
            continue
        chunk[i] = current if chunk[i] < 0 else chunk[i]
    return chunk


def with_prefix(records: list[NodeCost], prefix: str) -> list[NodeCost]:
    """The records with every module id and call key under `prefix` (e.g. "vae.decode"; the VAE's ROOT becomes
    the prefix itself), so a generation report can hang the VAE call beside the DiT's modules."""

    def under(path: str) -> str:
        return prefix if path == ROOT else f"{prefix}.{path}"

    return [dataclasses.replace(r, module=under(r.module), stack=(prefix, *(under(k) for k in r.stack)))
            for r in records]


__all__ = ["DIRECTIONS", "ROOT", "ChunkCost", "VAEChunks", "VAETrace", "VAEWorkloadError", "check_video",
           "conv_calls", "distinct", "expand", "latent_shape", "phases", "trace_chunks", "trace_graph", "trace_vae",
           "with_prefix"]
