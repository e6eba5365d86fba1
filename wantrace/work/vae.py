"""The Wan VAE's encode and decode, traced on meta and costed node by node like the DiT forward.

Integration API (for the whole-generation report):

    trace = trace_vae(config, policy, frames=81, height=480, width=832, direction="decode")
    trace.records            # NodeCost per graph node, execution order; module ids are the official VAE paths
                             # ("decoder.upsamples.4.residual.2", "conv2", scopes "latent_denorm", "concat", ...),
                             # ROOT for top-level glue; prefix them (e.g. "vae.decode.") to nest in a report
    trace.model              # the GraphModule (its parameters: roll_up's params per module)
    trace.chunks             # ChunkCost per phase: prologue, each chunk as upstream runs it, epilogue
    trace.peak_activation_bytes

`frames`, `height`, `width` are always the *pixel* video's (81, 480, 832 for t2v-480p): encode reads that video,
decode writes it from its latents (21 x 60 x 104). The i2v/flf2v conditioning encode is a full encode of a
video of the same size (the image followed by zero frames, official image2video.py), so it costs the same
as `direction="encode"`. `vae_components(task)` says what a generation runs per workload task, and
`with_prefix(trace.records, "vae.decode")` re-roots the records for a combined tree
(`roll_up(records, model)` of wantrace.work.analysis then needs a model whose parameters sit under the same
prefix, or `trace.model` for the VAE alone).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.fx

from wan_reference.precision import PrecisionPolicy
from wan_reference.vae import WanVAE, build_vae, decode_chunks, encode_chunks
from wan_reference.vae_config import VAEConfig

from .metrics import ZERO, Metrics
from .trace import ROOT, CostInterpreter, NodeCost, WanTracer, _tensors

DIRECTIONS = ("encode", "decode")
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
    model: torch.fx.GraphModule
    records: list[NodeCost]
    chunk_of: list[int]  # per record: its phase (ChunkCost.index)
    chunks: list[ChunkCost]
    peak_activation_bytes: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    @property
    def total(self) -> Metrics:
        return sum((c.metrics for c in self.chunks), ZERO)


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


class _MemoInterpreter(CostInterpreter):
    """A CostInterpreter that runs each distinct op once: every chunk after the first runs the same ops on the
    same shapes, and the meta kernels of conv, pad, cat and normalize are slow Python. A result that owns fresh
    storage is re-created from its recorded shape, strides and dtype (what the kernel would return); views and
    in-place ops always run, so storage identities stay exact for costing and liveness."""

    def __init__(self, gm: torch.fx.GraphModule, strict: bool):
        super().__init__(gm, strict)
        self._memo: dict[object, tuple | None] = {}

    def call_function(self, target, args, kwargs):
        return self._memoized("call_function", target, args, kwargs)

    def call_method(self, target, args, kwargs):
        return self._memoized("call_method", target, args, kwargs)

    def _memoized(self, kind: str, target, args, kwargs):
        run = super().call_function if kind == "call_function" else super().call_method
        try:
            key = (kind, target, _key(args), _key(kwargs))
            hash(key)
        except TypeError:
            return run(target, args, kwargs)
        spec = self._memo.get(key, False)
        if spec:
            shape, stride, dtype = spec
            return torch.empty_strided(shape, stride, dtype=dtype, device="meta")
        result = run(target, args, kwargs)
        if spec is False:
            inputs = {t.untyped_storage()._cdata for t in _tensors((args, kwargs))}
            fresh = (isinstance(result, torch.Tensor) and result.untyped_storage()._cdata not in inputs
                     and result.storage_offset() == 0)
            self._memo[key] = (tuple(result.shape), result.stride(), result.dtype) if fresh else None
        return result


def _key(value: object) -> object:
    """A hashable stand-in for an op's arguments: tensors by layout, slices by their bounds."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.stride(), value.dtype, value.storage_offset())
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, *(_key(v) for v in value))
    if isinstance(value, dict):
        return ("dict", *((k, _key(v)) for k, v in value.items()))
    if isinstance(value, slice):
        return ("slice", value.start, value.stop, value.step)
    return value


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


def trace_graph(model: WanVAE, direction: str, length: int) -> torch.fx.GraphModule:
    """FX-trace `model.encode` or `model.decode` with the chunk loop unrolled over `length` input frames
    (video frames to encode, latent frames to decode): the graph depends on the frame count, not on H, W."""
    if direction not in DIRECTIONS:
        raise VAEWorkloadError(f"direction: 'encode' or 'decode', got {direction!r}")
    tracer = _VAETracer()
    tracer.traced_func_name = direction
    graph = tracer.trace(model, concrete_args={"frames": length})
    return torch.fx.GraphModule(model, graph)


@lru_cache(maxsize=8)
def _graph(config: VAEConfig, dtype: torch.dtype, direction: str, length: int) -> torch.fx.GraphModule:
    """One traced graph per frame count serves every resolution (a sweep over sizes traces once)."""
    return trace_graph(build_vae(config, dtype), direction, length)


def trace_vae(config: VAEConfig, policy: PrecisionPolicy, frames: int, height: int, width: int,
              direction: str, batch: int = 1, strict: bool = False) -> VAETrace:
    """Build the VAE on meta in the policy's VAE dtype, trace its chunked encode or decode of a
    `frames` x `height` x `width` video, and cost every node."""
    check_video(config, frames, height, width)
    latent = latent_shape(config, frames, height, width)
    if direction == "encode":
        shape, length = (batch, 3, frames, height, width), frames
    else:
        shape, length = (batch, config.z_dim, *latent), latent[0]
    gm = _graph(config, policy.vae, direction, length)
    interpreter = _MemoInterpreter(gm, strict)
    x = torch.empty(shape, device="meta", dtype=policy.vae)
    out = interpreter.run(x, length)
    records = interpreter.records
    levels = interpreter.liveness(lambda node: interpreter._alloc.get(node, 0))
    chunk_of = phases(records, direction)
    schedule = encode_chunks(frames) if direction == "encode" else decode_chunks(latent[0])
    chunks = []
    for index in range(PROLOGUE, len(schedule) + 1):
        members = [i for i, c in enumerate(chunk_of) if c == index]
        if not members:
            continue
        metrics = sum((_metrics(records[i]) for i in members), ZERO)
        frames_in, frames_out = _chunk_frames(direction, index, schedule)
        chunks.append(ChunkCost(index, frames_in, frames_out, metrics, max(levels[i] for i in members)))
    return VAETrace(direction, gm, records, chunk_of, chunks, max(levels, default=0), shape, tuple(out.shape))


def _metrics(r: NodeCost) -> Metrics:
    return Metrics(r.cost.flops_torch, r.cost.flops_full, r.cost.bytes_read, r.cost.bytes_written)


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


def vae_components(task: str) -> tuple[str, ...]:
    """What one generation runs of the VAE: every task decodes the sampled latents once; i2v and flf2v first
    encode the conditioning video (image(s) and zero frames, as long as the output) once."""
    return ("encode", "decode") if task in ("i2v", "flf2v") else ("decode",)


__all__ = ["DIRECTIONS", "ROOT", "ChunkCost", "VAETrace", "VAEWorkloadError", "check_video", "latent_shape",
           "phases", "trace_graph", "trace_vae", "vae_components", "with_prefix"]
