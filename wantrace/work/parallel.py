"""One rank of a multi-GPU generation: the sequence-parallel graph of that rank, traced on meta with every
collective a node (`trace_rank`), the layout checks, and what each GPU holds in memory under the official
placement flags (`memory_plan`). docs/multi-gpu.md says where each fact comes from."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from wan_reference import Geometry, WanConfig, build_model, make_inputs
from wan_reference.parallel import Layout, LayoutError, padded_seq_len, parallelize
from wan_reference.precision import WAN_OFFICIAL, PrecisionPolicy
from wan_reference.t5 import build_t5
from wan_reference.t5_config import T5Config

from .lean import lean_meta_run
from .metrics import ZERO, Metrics
from .trace import CostInterpreter, ModuleTable, NodeCost, Trace, WanTracer, module_table, traced_layers
from .workload import Workload


@lru_cache(maxsize=1)
def t5_params() -> int:
    """Parameters of the umT5-XXL encoder, counted on the model (`wan_reference.t5`, built on meta):
    5,680,910,336 (11.36 GB in bf16; the published models_t5_umt5-xxl-enc-bf16.pth is 11.4 GB)."""
    return sum(p.numel() for p in build_t5(T5Config()).parameters())


class PlanError(ValueError):
    """An impossible multi-GPU plan (one line)."""


@dataclass(frozen=True)
class Plan:
    """A multi-GPU run as the official generate.py flags describe it."""

    ulysses: int = 1
    ring: int = 1
    cfg_parallel: bool = False  # the two CFG forwards on two halves of the GPUs (xDiT; not in Wan2.1's generate)
    dit_fsdp: bool = False
    t5_fsdp: bool = False
    offload_model: bool | None = None  # None: generate.py's default, True on one GPU, False on several
    t5_cpu: bool = False

    @property
    def sp(self) -> int:
        return self.ulysses * self.ring

    @property
    def world(self) -> int:
        return self.sp * (2 if self.cfg_parallel else 1)

    @property
    def offload(self) -> bool:
        return self.world == 1 if self.offload_model is None else self.offload_model

    def check(self, config: WanConfig, cfg: bool) -> None:
        try:
            Layout(self.ulysses, self.ring).check(config.num_heads)
        except LayoutError as exc:
            raise PlanError(str(exc)) from None
        if config.model_type == "vace" and self.sp > 1:
            raise PlanError("--ulysses/--ring: sequence parallelism of VACE (the official usp_dit_forward_vace, "
                            "which also splits the VACE blocks' hints) is not modelled; run VACE on one GPU per "
                            "forward (--cfg-parallel and FSDP are modelled)")
        if self.cfg_parallel and not cfg:
            raise PlanError("--cfg-parallel: the workload has no CFG (one forward per step); drop one of them")
        if self.world == 1 and (self.dit_fsdp or self.t5_fsdp):
            raise PlanError("--dit-fsdp/--t5-fsdp: FSDP needs more than one GPU (as generate.py asserts)")
        if self.t5_cpu and self.t5_fsdp:
            raise PlanError("--t5-cpu and --t5-fsdp: the T5 is either on the CPU or sharded over the GPUs")

    def layout(self, rank: int = 0) -> Layout:
        """The sequence-parallel layout of rank `rank` of one CFG group."""
        return Layout(self.ulysses, self.ring, rank)

    def to_dict(self) -> dict:
        return {"ulysses": self.ulysses, "ring": self.ring, "cfg_parallel": self.cfg_parallel, "world": self.world,
                "dit_fsdp": self.dit_fsdp, "t5_fsdp": self.t5_fsdp, "offload_model": self.offload,
                "t5_cpu": self.t5_cpu}


def trace_rank(config: WanConfig, policy: PrecisionPolicy, latent: tuple[int, int, int], batch: int, layout: Layout,
               strict: bool = False) -> tuple[Trace, int]:
    """Rank `layout.rank`'s forward, FX-traced on meta with the collectives as nodes, and every node costed.
    Returns the trace and the padded sequence length. The graph depends on the geometry (the padding), so it is
    traced per workload."""
    model = parallelize(build_model(config, policy), layout)
    tokens = latent[0] // config.patch_size[0] * (latent[1] // config.patch_size[1]) * (
        latent[2] // config.patch_size[2])
    seq_len = padded_seq_len(tokens, layout.world)
    concrete: dict[str, object] = {"seq_len": seq_len}
    if config.model_type == "t2v":
        concrete.update(clip_fea=None, y=None)
    graph = WanTracer().trace(model, concrete_args=concrete)
    gm = torch.fx.GraphModule(model, graph)
    inputs = make_inputs(config, latent, policy, batch=batch)
    interpreter = CostInterpreter(gm, strict)
    # placeholders follow forward's signature; concrete arguments keep theirs (their value is asserted)
    values = [inputs["x"], inputs["t"], inputs["context"], inputs.get("clip_fea"), inputs.get("y"), seq_len]
    count = sum(n.op == "placeholder" for n in gm.graph.nodes)
    with lean_meta_run():
        interpreter.run(*values[:count])
    return Trace(gm, interpreter.records, interpreter.peak_activation_bytes()), seq_len


def _fsdp_units(table: ModuleTable) -> list[tuple[int, int]]:
    """(numel, bytes) of each FSDP unit as wan/distributed/fsdp.py wraps the DiT: the root with everything but the
    blocks, then one unit per block (lambda_auto_wrap_policy on model.blocks)."""
    blocks = [i for i in table.types if i.startswith("blocks.") and "." not in i[len("blocks."):]]
    units = []
    for block in blocks:
        owned = [v for j, v in table.params.items() if j == block or j.startswith(block + ".")]
        units.append((sum(n for n, _ in owned), sum(b for _, b in owned)))
    numel = sum(n for n, _ in table.params.values()) - sum(n for n, _ in units)
    nbytes = sum(b for _, b in table.params.values()) - sum(b for _, b in units)
    return [(numel, nbytes), *units]


def _shard(numel: int, nbytes: int, world: int) -> int:
    """Bytes of one rank's shard of a flat parameter of `numel` elements, padded to a multiple of `world`."""
    return math.ceil(math.ceil(numel / world) * nbytes / numel) if numel else 0


def memory_plan(config: WanConfig, policy: PrecisionPolicy, plan: Plan, activation_bytes: int,
                t5_bytes: int | None = None) -> dict:
    """Bytes one GPU holds at its peak, by part, under the official flags (docs/multi-gpu.md):

    * DiT weights: the whole model in its storage dtype on every GPU, or with --dit-fsdp a 1/world shard of every
      FSDP unit (each padded to a multiple of world, as FSDP's flat parameters), plus the bf16 copies being
      computed with (MixedPrecision(param_dtype=bf16)): the root unit, which FSDP keeps gathered after its
      forward, and two blocks (the one running and the next, limit_all_gathers lets two be in flight).
    * T5 (umT5-XXL encoder, bf16): on the GPU while encoding unless --t5-cpu; during sampling only when neither
      --offload-model nor --t5-cpu (offload moves it back to the CPU after encoding); --t5-fsdp holds a shard.
    * activations: the traced rank's peak (one forward; they are freed between forwards).
    `t5_bytes`: the T5's weight bytes where a traced encoder gives them (the whole-generation report).
    The peak is the larger of the encoding phase (weights + T5) and the sampling phase (weights + FSDP copies +
    resident T5 + activations). The VAE decode (rank 0, after sampling) is not modelled here; what stays resident
    on the GPU while it runs is (`resident_at_decode`: --offload-model moves the DiT to the CPU first)."""
    world = plan.world
    units = _fsdp_units(module_table(config, policy, traced_layers(config)))
    dit_full = sum(b for _, b in units)
    if plan.dit_fsdp:
        dit = sum(_shard(n, b, world) for n, b in units)
        block = max(n for n, _ in units[1:]) * 2
        transient = units[0][0] * 2 + 2 * block
    else:
        dit, transient = dit_full, 0
    # the official t5_dtype (bf16), whatever the DiT's policy; a generation report passes its traced encoder's
    t5_full = t5_params() * WAN_OFFICIAL.text.itemsize if t5_bytes is None else t5_bytes
    if plan.t5_cpu:
        t5_encode = t5_sampling = 0
    elif plan.t5_fsdp:
        t5_encode = t5_sampling = math.ceil(t5_full / world)
    else:
        t5_encode, t5_sampling = t5_full, (0 if plan.offload else t5_full)
    encode = dit + t5_encode
    sampling = dit + transient + t5_sampling + activation_bytes
    return {
        "dit_weights": dit,
        "dit_weights_unsharded": dit_full,
        "dit_fsdp_gathered": transient,
        "t5_weights_encode": t5_encode,
        "t5_weights_sampling": t5_sampling,
        "t5_weights_unsharded": t5_full,
        "activations": activation_bytes,
        "encode_phase": encode,
        "sampling_phase": sampling,
        "peak": max(encode, sampling),
        "resident_at_decode": (0 if plan.offload else dit) + t5_sampling,
        "not_modelled": "VAE weights and decode (rank 0 after sampling), CUDA context, allocator fragmentation",
    }


def communication(records: list[NodeCost]) -> dict[str, dict[str, int]]:
    """Per collective op: calls, and bytes this rank sends and receives, over the records (one forward)."""
    out: dict[str, dict[str, int]] = {}
    for r in records:
        if r.family == "communication":
            entry = out.setdefault(r.name, {"calls": 0, "sent": 0, "received": 0})
            entry["calls"] += 1
            entry["sent"] += r.cost.comm_sent
            entry["received"] += r.cost.comm_received
    return out


def parallel_section(config: WanConfig, policy: PrecisionPolicy, plan: Plan, workload: Workload, geo: Geometry,
                     seq_len: int, records: list[NodeCost], activation_bytes: int) -> dict:
    """The report's `parallel` section, and under `cfg_exchange` the metrics a step adds with --cfg-parallel: the
    two CFG groups swap their noise predictions (the forward's output) once per step."""
    out_bytes = records[-1].output_bytes  # the graph's output node: the whole prediction, on every rank
    exchange = (Metrics(0, 0, out_bytes, 2 * out_bytes, comm_sent=out_bytes, comm_received=out_bytes)
                if plan.cfg_parallel else ZERO)
    return {
        **plan.to_dict(),
        "tokens": geo.tokens,
        "seq_len": seq_len,
        "padding_tokens": seq_len - geo.tokens,
        "tokens_per_rank": seq_len // plan.sp,
        "forwards_per_step_per_rank": 1 if plan.cfg_parallel else workload.forwards_per_step,
        "communication_per_forward": communication(records),
        "cfg_exchange_per_step": {"sent": exchange.comm_sent or 0, "received": exchange.comm_received or 0},
        "memory": memory_plan(config, policy, plan, activation_bytes),
        "cfg_exchange": exchange,
    }
