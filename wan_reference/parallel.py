"""Sequence parallelism (USP: Ulysses x ring), as the official `wan/distributed/xdit_context_parallel.py` runs it.

The official code patches the forward of the model and of each self-attention (`types.MethodType`);
`parallelize` does the same by giving the model and its self-attentions subclasses whose forward is the USP one.
Parameters, buffers, module paths and state-dict keys are untouched. Per rank, as upstream:

* the tokens are zero-padded to `seq_len`, a multiple of the parallel size (`padded_seq_len`, the official
  generate's formula), and each rank keeps its chunk of `seq_len / world` tokens after the patch embedding;
* RoPE uses the rank's rows of the frequency table, padded with ones (identity rotations) to `seq_len`;
* self-attention is xDiT's long-context attention: a Ulysses all-to-all of q, k, v (heads scattered, sequence
  gathered) within the Ulysses group, ring attention over the ring group (each rank's KV chunk passed rank to
  rank, partial results merged with their log-sum-exp), and the inverse all-to-all; padded keys are not masked
  (upstream's TODO), and the output stays in the kernel dtype (upstream's `half()` inputs, no cast back);
* cross-attention, the FFN and the time and text embeddings run locally on every rank;
* the head's output is all-gathered over the sequence before unpatchify, which drops the padding.

Ranks are laid out as yunchang's `set_seq_parallel_pg` with Ulysses low: the Ulysses groups are runs of
consecutive ranks, the ring groups strided. Collectives are `collectives` functions: single FX nodes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.fx
import torch.nn.functional as F

from . import collectives
from .collectives import all_gather, all_to_all, ring_pass
from .model import WanModel, WanSelfAttention, rope_apply, sinusoidal_embedding
from .scopes import scope

for _fn in (all_to_all, all_gather, ring_pass):
    torch.fx.wrap(_fn.__name__)


class LayoutError(ValueError):
    """A parallel layout the model cannot run (one line)."""


@dataclass(frozen=True)
class Layout:
    """A sequence-parallel layout: `ulysses` x `ring` ranks, and which one this is (0 .. world-1)."""

    ulysses: int = 1
    ring: int = 1
    rank: int = 0

    @property
    def world(self) -> int:
        return self.ulysses * self.ring

    @property
    def ulysses_rank(self) -> int:
        return self.rank % self.ulysses

    @property
    def ring_rank(self) -> int:
        return self.rank // self.ulysses

    def ulysses_ranks(self) -> list[int]:
        base = self.ring_rank * self.ulysses
        return list(range(base, base + self.ulysses))

    def ring_ranks(self) -> list[int]:
        return list(range(self.ulysses_rank, self.world, self.ulysses))

    def check(self, num_heads: int) -> None:
        for name in ("ulysses", "ring"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LayoutError(f"{name}: must be a positive integer, got {value!r}")
        if num_heads % self.ulysses:
            raise LayoutError(f"ulysses: {self.ulysses} does not divide the model's {num_heads} heads "
                              f"(each rank must hold whole heads)")
        if not 0 <= self.rank < self.world:
            raise LayoutError(f"rank: {self.rank} outside a world of {self.world}")


def padded_seq_len(tokens: int, world: int) -> int:
    """The official generate's `seq_len`: the tokens rounded up to a multiple of the parallel size."""
    return math.ceil(tokens / world) * world


def attention_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of q [B, Sq, n, d] on one KV chunk [B, Sk, n, d], scale 1/sqrt(d), no mask, as one flash-attention
    forward: the output [B, Sq, n, d] in q's dtype and its log-sum-exp [B, Sq, n, 1] in fp32 (what yunchang's ring
    takes from flash_attn_forward). torch's own fused kernels return both: flash (CPU, or CUDA in half precision),
    memory-efficient attention for fp32 on CUDA."""
    b, sq, n, _ = q.shape
    if q.is_meta:
        return q.new_empty((b, sq, n, v.shape[-1])), q.new_empty((b, sq, n, 1), dtype=torch.float32)
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
    aten = torch.ops.aten
    if q.device.type == "cpu":
        out, lse = aten._scaled_dot_product_flash_attention_for_cpu(qh, kh, vh)[:2]
    elif q.dtype in (torch.float16, torch.bfloat16):
        out, lse = aten._scaled_dot_product_flash_attention(qh, kh, vh)[:2]
    else:
        out, lse = aten._scaled_dot_product_efficient_attention(qh, kh, vh, None, True)[:2]
    return out.transpose(1, 2), lse[..., :sq].transpose(1, 2).unsqueeze(-1).float()


attention_lse.op_name = "wan.attention_lse"  # type: ignore[attr-defined]
torch.fx.wrap("attention_lse")


def ring_attention(q, k, v, layout: Layout) -> torch.Tensor:
    """Ring attention (yunchang's basic ring): each step attends to the KV chunk in hand while it is passed on to
    the next rank; partial outputs merge by their log-sum-exp (online softmax). Returns fp32 [B, Sq, n, d]."""
    size = layout.ring
    out, lse = attention_lse(q, k, v)
    out = out.float()
    for _ in range(size - 1):
        k = ring_pass(k, size, "ring")
        v = ring_pass(v, size, "ring")
        block_out, block_lse = attention_lse(q, k, v)
        with scope(out, "ring_merge"):
            new_lse = torch.logaddexp(lse, block_lse)
            out = out * torch.exp(lse - new_lse) + block_out.float() * torch.exp(block_lse - new_lse)
            lse = new_lse
    return out


def usp_attention(q, k, v, dtype: torch.dtype, layout: Layout) -> torch.Tensor:
    """xDiT's long-context attention on one rank's [B, s, n, d] q, k, v: Ulysses all-to-all, ring attention,
    inverse all-to-all. Returns [B, s, n*d] in the kernel dtype `dtype`."""
    with scope(q, "attention"):
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        u = layout.ulysses
        if u > 1:
            q, k, v = (all_to_all(t, 2, 1, u, "ulysses") for t in (q, k, v))
        if layout.ring > 1:
            out = ring_attention(q, k, v, layout).to(dtype)
        else:
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
            out = out.transpose(1, 2)
        if u > 1:
            out = all_to_all(out, 1, 2, u, "ulysses")
        return out.flatten(2)


class WanSelfAttentionUSP(WanSelfAttention):
    """Official `usp_attn_forward`: local projections and RoPE, long-context attention across ranks."""

    layout: Layout = Layout()

    def forward(self, x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        p = self.policy
        q = rope_apply(self.heads(self.norm_q(self.q(x))), freqs, p.rope, p.rope_out)
        k = rope_apply(self.heads(self.norm_k(self.k(x))), freqs, p.rope, p.rope_out)
        v = self.heads(self.v(x))
        return self.o(usp_attention(q, k, v, p.attention, self.layout))


class WanModelUSP(WanModel):
    """Official `usp_dit_forward` on one rank of `layout`."""

    layout: Layout = Layout()

    def forward(self, x, t, context, clip_fea=None, y=None, seq_len: int | None = None):
        """As WanModel.forward; `seq_len` (a multiple of the world size) defaults to `padded_seq_len` of the
        tokens, as the official generate computes it. Every rank returns the whole output."""
        cfg, layout = self.config, self.layout
        world, rank = layout.world, layout.rank
        if cfg.model_type != "t2v" and (clip_fea is None or y is None):
            raise ValueError(f"{cfg.model_type} model needs clip_fea and y")
        if y is not None:
            with scope(x, "condition"):
                x = torch.cat([x, y], dim=1)
        x = self.patch_embedding(x)
        f, h, w = x.shape[2], x.shape[3], x.shape[4]
        if seq_len is None:
            seq_len = padded_seq_len(f * h * w, world)
        if seq_len % world:
            raise LayoutError(f"seq_len: {seq_len} is not a multiple of the parallel size {world}")
        chunk = seq_len // world
        with scope(x, "patchify"):
            x = x.flatten(2).transpose(1, 2)
            x = torch.cat([x, x.new_zeros(x.shape[0], seq_len - f * h * w, x.shape[2])], dim=1)
        with scope(x, "rope"):
            freqs = self.rope_freqs(f, h, w)
            freqs = torch.cat([freqs, freqs.new_ones(seq_len - f * h * w, 1, freqs.shape[2])], dim=0)
            freqs = freqs.narrow(0, rank * chunk, chunk)

        time_freqs = self.time_freqs
        e = self.time_embedding(sinusoidal_embedding(t, time_freqs))
        with scope(e, "time_cast"):
            e = self.stream(e)
        e0 = self.time_projection(e).unflatten(1, (6, cfg.dim))

        context = self.text_embedding(context)
        if clip_fea is not None:
            image_context = self.img_emb(clip_fea)
            with scope(context, "context"):
                context = torch.cat([image_context, context], dim=1)

        with scope(x, "sequence_split"):
            x = x.narrow(1, rank * chunk, chunk)
        for block in self.blocks:
            x = block(x, e0, freqs, context)
        x = self.head(x, e)
        with scope(x, "sequence_gather"):
            x = all_gather(x, 1, world, "sp")
            x = x.narrow(1, 0, f * h * w)
        return self.unpatchify(x, f, h, w)


def parallelize(model: WanModel, layout: Layout) -> WanModel:
    """Turn `model` (in place) into one rank of `layout`; returns it. The process groups the collectives use are
    registered separately (`init_groups`), so a meta model needs none."""
    layout.check(model.config.num_heads)
    model.__class__ = WanModelUSP
    cast(WanModelUSP, model).layout = layout
    for block in model.blocks.children():
        attn = cast(WanSelfAttentionUSP, block.get_submodule("self_attn"))
        attn.__class__ = WanSelfAttentionUSP
        attn.layout = layout
    return model


def init_groups(layout: Layout) -> None:
    """Create this rank's Ulysses, ring and whole-world groups (torch.distributed must be initialised with
    `layout.world` ranks) and register them for the collectives. Every rank must call it (new_group is
    collective)."""
    import torch.distributed as dist

    if dist.get_world_size() != layout.world:
        raise LayoutError(f"ulysses x ring = {layout.world}, but the world has {dist.get_world_size()} ranks")
    mine: dict[str, tuple[object, list[int]]] = {}
    for r in range(layout.ring):  # Ulysses groups: runs of consecutive ranks
        ranks = list(range(r * layout.ulysses, (r + 1) * layout.ulysses))
        group = dist.new_group(ranks)
        if layout.rank in ranks:
            mine["ulysses"] = (group, ranks)
    for u in range(layout.ulysses):  # ring groups: strided
        ranks = list(range(u, layout.world, layout.ulysses))
        group = dist.new_group(ranks)
        if layout.rank in ranks:
            mine["ring"] = (group, ranks)
    collectives.set_group("ulysses", *mine["ulysses"])  # type: ignore[arg-type]
    collectives.set_group("ring", *mine["ring"])  # type: ignore[arg-type]
    collectives.set_group("sp", dist.group.WORLD, list(range(layout.world)))
