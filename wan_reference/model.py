"""The Wan2.1 diffusion transformer, op by op as the official `wan/modules/model.py`, with static shapes.

Module paths and parameter names are the official ones. Differences from upstream are deliberate and
cost-neutral: inputs are batched tensors ``[B, C, F', H', W']`` instead of lists, each attention is one
``scaled_dot_product_attention`` call instead of varlen flash-attention, and autocast is replaced by the
explicit casts of a `PrecisionPolicy`, so one forward runs on meta, FX-traces, and runs on CPU or CUDA.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import CLIP_DIM, WanConfig
from .precision import PrecisionPolicy, get_policy
from .scopes import scope


# --------------------------------------------------------------------------------------------- layers
class Linear(nn.Linear):
    """nn.Linear that casts input, weight and bias to its compute dtype: autocast made visible."""

    compute_dtype: torch.dtype = torch.float32

    def reset_parameters(self) -> None:
        """No default init: values come from `init_random` or a checkpoint (this keeps meta builds fast)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cd = self.compute_dtype
        return F.linear(x.to(cd), self.weight.to(cd), self.bias.to(cd))


class Conv3d(nn.Conv3d):
    """The patch embedding: Conv3d with kernel == stride, casting like `Linear`."""

    compute_dtype: torch.dtype = torch.float32
    reset_parameters = Linear.reset_parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cd = self.compute_dtype
        bias = self.bias.to(cd) if self.bias is not None else None
        return F.conv3d(x.to(cd), self.weight.to(cd), bias, self.stride)


class LayerNorm(nn.LayerNorm):
    """LayerNorm with fp32 statistics (official `WanLayerNorm`).

    Returns its input dtype, except where `out_dtype` is set: a plain nn.LayerNorm under autocast
    (the image projection in the official path) returns fp32."""

    def __init__(self, dim: int, eps: float = 1e-6, affine: bool = False, out_dtype=None):
        super().__init__(dim, eps=eps, elementwise_affine=affine)
        self.out_dtype = out_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        y = F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps)
        return y.to(self.out_dtype or x.dtype)


class RMSNorm(nn.Module):
    """Official `WanRMSNorm`: fp32 statistics over the whole dim, cast back, then times the weight
    (with fp32 weights this promotes the result to fp32, as upstream)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float()
        y = y * torch.rsqrt(y.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return y.to(x.dtype) * self.weight


# --------------------------------------------------------------------------------- functional pieces
def sinusoidal_embedding(t: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """[B] timesteps -> [B, 2*half] = cat(cos, sin), computed in float64 as upstream, returned fp32."""
    with scope(t, "sinusoid"):
        angles = torch.outer(t.to(torch.float64), freqs)
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1).float()


def rope_apply(x: torch.Tensor, freqs: torch.Tensor, dtype: torch.dtype, out_dtype=None) -> torch.Tensor:
    """Interleaved 3-axis RoPE: channels (2j, 2j+1) form one complex number, rotated by `freqs`
    ([L, 1, d/2], complex of `dtype`: complex128 for float64, as in the official code)."""
    with scope(x, "rope"):
        xc = torch.view_as_complex(x.to(dtype).unflatten(-1, (-1, 2)))
        out = torch.view_as_real(xc * freqs).flatten(3)
        return out.to(out_dtype or x.dtype)


def attention(q, k, v, dtype: torch.dtype, name: str = "attention") -> torch.Tensor:
    """Global non-causal attention on [B, L, n, d] tensors (flash-attention layout), scale 1/sqrt(d),
    returned as [B, L, n*d].

    As upstream `flash_attention`: q, k, v are cast to the kernel dtype, the output back to q's dtype."""
    with scope(q, name):
        out = F.scaled_dot_product_attention(
            q.to(dtype).transpose(1, 2), k.to(dtype).transpose(1, 2), v.to(dtype).transpose(1, 2)
        )
        return out.transpose(1, 2).to(q.dtype).flatten(2)


# ------------------------------------------------------------------------------------------- modules
class WanSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float, policy: PrecisionPolicy):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.policy = policy
        self.q, self.k, self.v, self.o = (Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(2, (self.num_heads, self.head_dim))

    def forward(self, x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        p = self.policy
        q = rope_apply(self.heads(self.norm_q(self.q(x))), freqs, p.rope, p.rope_out)
        k = rope_apply(self.heads(self.norm_k(self.k(x))), freqs, p.rope, p.rope_out)
        v = self.heads(self.v(x))
        return self.o(attention(q, k, v, p.attention))


class WanT2VCrossAttention(WanSelfAttention):
    """Cross-attention from video tokens to all text rows (no mask, no RoPE)."""

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = self.heads(self.norm_q(self.q(x)))
        k = self.heads(self.norm_k(self.k(context)))
        v = self.heads(self.v(context))
        return self.o(attention(q, k, v, self.policy.attention))


class WanI2VCrossAttention(WanSelfAttention):
    """Cross-attention to text rows plus a second attention, sharing q, to the CLIP image tokens;
    the two outputs are summed (no gate)."""

    def __init__(self, dim, num_heads, qk_norm, eps, policy, image_tokens: int):
        super().__init__(dim, num_heads, qk_norm, eps, policy)
        self.image_tokens = image_tokens
        self.k_img = Linear(dim, dim)
        self.v_img = Linear(dim, dim)
        self.norm_k_img = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        context_img = context[:, : self.image_tokens]
        context = context[:, self.image_tokens :]
        q = self.heads(self.norm_q(self.q(x)))
        k = self.heads(self.norm_k(self.k(context)))
        v = self.heads(self.v(context))
        k_img = self.heads(self.norm_k_img(self.k_img(context_img)))
        v_img = self.heads(self.v_img(context_img))
        img_x = attention(q, k_img, v_img, self.policy.attention, name="attention_img")
        x = attention(q, k, v, self.policy.attention)
        with scope(x, "merge_img"):
            x = x + img_x
        return self.o(x)


def norm_modulate(norm: nn.Module, x, shift, scale, policy: PrecisionPolicy, name: str) -> torch.Tensor:
    """`norm(x) * (1 + scale) + shift` in fp32; diffusers normalises x.float() and casts the result back
    to the stream dtype, the official code normalises x and then calls .float()."""
    with scope(x, name):
        if policy.stream is not None:
            return (norm(x.float()) * (1 + scale) + shift).to(policy.stream)
        return norm(x).float() * (1 + scale) + shift


def gated_residual(x, y, gate, policy: PrecisionPolicy, name: str) -> torch.Tensor:
    """`x + y * gate` (fp32 gate): diffusers in fp32 then back to the stream dtype, upstream by promotion."""
    with scope(x, name):
        if policy.stream is not None:
            return (x.float() + y * gate).to(policy.stream)
        return x + y * gate


class WanAttentionBlock(nn.Module):
    def __init__(self, config: WanConfig, policy: PrecisionPolicy):
        super().__init__()
        dim, eps = config.dim, config.eps
        self.policy = policy
        self.norm1 = LayerNorm(dim, eps)
        self.self_attn = WanSelfAttention(dim, config.num_heads, config.qk_norm, eps, policy)
        self.norm3 = LayerNorm(dim, eps, affine=True) if config.cross_attn_norm else nn.Identity()
        self.per_token_time = config.per_token_time
        self.cross_attn: WanT2VCrossAttention | WanI2VCrossAttention
        if config.image_tokens == 0:  # t2v, Wan2.2 i2v/ti2v (no CLIP), VACE
            self.cross_attn = WanT2VCrossAttention(dim, config.num_heads, config.qk_norm, eps, policy)
        else:
            self.cross_attn = WanI2VCrossAttention(
                dim, config.num_heads, config.qk_norm, eps, policy, config.image_tokens
            )
        self.norm2 = LayerNorm(dim, eps)
        self.ffn = nn.Sequential(
            Linear(dim, config.ffn_dim), nn.GELU(approximate="tanh"), Linear(config.ffn_dim, dim)
        )
        self.modulation = nn.Parameter(torch.empty(1, 6, dim))  # values: init_random or a checkpoint

    def forward(self, x, e0, freqs, context):
        p = self.policy
        with scope(x, "modulation"):
            if self.per_token_time:  # Wan2.2: e0 [B, L, 6, D], one modulation per token
                m0, m1, m2, m3, m4, m5 = (self.modulation.unsqueeze(0) + e0.float()).chunk(6, dim=2)
                shift_msa, scale_msa, gate_msa, shift_ffn, scale_ffn, gate_ffn = (
                    m0.squeeze(2), m1.squeeze(2), m2.squeeze(2), m3.squeeze(2), m4.squeeze(2), m5.squeeze(2))
            else:
                shift_msa, scale_msa, gate_msa, shift_ffn, scale_ffn, gate_ffn = (
                    self.modulation + e0.float()
                ).chunk(6, dim=1)
        y = self.self_attn(norm_modulate(self.norm1, x, shift_msa, scale_msa, p, "modulate_msa"), freqs)
        x = gated_residual(x, y, gate_msa, p, "gate_msa")
        y = self.cross_attn(self.norm3(x), context)
        with scope(x, "residual_cross"):
            x = x + y
        y = self.ffn(norm_modulate(self.norm2, x, shift_ffn, scale_ffn, p, "modulate_ffn"))
        return gated_residual(x, y, gate_ffn, p, "gate_ffn")


class Head(nn.Module):
    def __init__(self, config: WanConfig, policy: PrecisionPolicy):
        super().__init__()
        self.policy = policy
        self.norm = LayerNorm(config.dim, config.eps)
        self.head = Linear(config.dim, config.out_dim * config.patch_features)
        self.modulation = nn.Parameter(torch.empty(1, 2, config.dim))
        self.per_token_time = config.per_token_time

    def forward(self, x, e):
        with scope(x, "modulation"):
            if self.per_token_time:  # Wan2.2: e [B, L, D]
                shift, scale = (self.modulation.unsqueeze(0) + e.unsqueeze(2)).chunk(2, dim=2)
                shift, scale = shift.squeeze(2), scale.squeeze(2)
            else:
                shift, scale = (self.modulation + e.unsqueeze(1)).chunk(2, dim=1)
        return self.head(norm_modulate(self.norm, x, shift, scale, self.policy, "modulate"))


class MLPProj(nn.Module):
    """CLIP features -> context rows: LayerNorm, Linear, GELU (erf), Linear, LayerNorm."""

    def __init__(self, dim: int, image_tokens: int, flf_pos_emb: bool, policy: PrecisionPolicy):
        super().__init__()
        self.image_tokens = image_tokens
        self.proj = nn.Sequential(
            LayerNorm(CLIP_DIM, 1e-5, affine=True, out_dtype=policy.norm_out),
            Linear(CLIP_DIM, CLIP_DIM),
            nn.GELU(),
            Linear(CLIP_DIM, dim),
            LayerNorm(dim, 1e-5, affine=True, out_dtype=policy.norm_out),
        )
        if flf_pos_emb:
            self.emb_pos = nn.Parameter(torch.zeros(1, image_tokens, CLIP_DIM))

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "emb_pos"):  # FLF2V: first and last frame features side by side
            with scope(image_embeds, "pos"):
                image_embeds = image_embeds.view(-1, self.image_tokens, CLIP_DIM) + self.emb_pos
        return self.proj(image_embeds)


class WanModel(nn.Module):
    """The Wan2.1 / Wan2.2 DiT. Build it with `build_model`, which applies the precision policy."""

    forward_args = ("x", "t", "context", "clip_fea", "y")  # forward's parameters, in order

    freqs: torch.Tensor  # RoPE table [rope_max_seq_len, head_dim / 2], complex128 (a buffer)
    time_freqs: torch.Tensor  # sinusoid frequencies [freq_dim / 2], float64 (a buffer)

    def __init__(self, config: WanConfig, precision: str | PrecisionPolicy = "bf16"):
        super().__init__()
        self.config = config
        self.policy = p = get_policy(precision)
        dim = config.dim
        self.patch_embedding = Conv3d(config.in_dim, dim, config.patch_size, stride=config.patch_size)
        self.text_embedding = nn.Sequential(
            Linear(config.text_dim, dim), nn.GELU(approximate="tanh"), Linear(dim, dim)
        )
        self.time_embedding = nn.Sequential(Linear(config.freq_dim, dim), nn.SiLU(), Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), Linear(dim, dim * 6))
        self.blocks = nn.ModuleList(WanAttentionBlock(config, p) for _ in range(config.num_layers))
        self.head = Head(config, p)
        if config.image_tokens:  # Wan2.1 i2v/flf2v; Wan2.2 has no CLIP path
            self.img_emb = MLPProj(dim, config.image_tokens, config.model_type == "flf2v", p)
        self._register_tables()

    # Tables are derived data, not weights: non-persistent buffers, absent from the state dict.
    def _register_tables(self) -> None:
        # built on CPU in float64 (cheap), then moved: on meta the move is free
        device = self.patch_embedding.weight.device
        self.register_buffer("freqs", rope_table(self.config).to(device), persistent=False)
        half = self.config.freq_dim // 2
        time_freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device="cpu") / half)
        self.register_buffer("time_freqs", time_freqs.to(device), persistent=False)

    def reset_tables(self) -> None:
        """Recompute the RoPE and timestep tables, e.g. after `to_empty` moved the model off meta."""
        self._register_tables()

    def rope_freqs(self, f, h, w) -> torch.Tensor:
        """Per-token complex rotations [f*h*w, 1, d/2]: frame, height and width angles side by side."""
        cf, ch, cw = (n // 2 for n in self.config.rope_split)
        tf, th, tw = self.freqs.split([cf, ch, cw], dim=1)
        grid = torch.cat(
            [
                tf.narrow(0, 0, f).view(f, 1, 1, cf).expand(f, h, w, cf),
                th.narrow(0, 0, h).view(1, h, 1, ch).expand(f, h, w, ch),
                tw.narrow(0, 0, w).view(1, 1, w, cw).expand(f, h, w, cw),
            ],
            dim=-1,
        )
        complex_dtype = torch.complex128 if self.policy.rope == torch.float64 else torch.complex64
        return grid.reshape(f * h * w, 1, cf + ch + cw).to(complex_dtype)

    def stream(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.policy.stream) if self.policy.stream is not None else x

    def forward(self, x, t, context, clip_fea=None, y=None):
        """x [B, C, F', H', W'] noisy latents; t [B] (Wan2.2 also [B, L], one per token); context
        [B, text_len, text_dim] T5 features, zero-padded; Wan2.1 i2v/flf2v: clip_fea [B, 257 or 514, 1280] (or
        [2B, 257, 1280]); i2v/flf2v: y [B, in_dim - C, F', H', W']. Returns [B, out_dim, F', H', W']."""
        cfg = self.config
        if (cfg.image_tokens and clip_fea is None) or (cfg.in_dim > cfg.out_dim and y is None):
            raise ValueError(f"{cfg.model_type} model needs " + ("clip_fea and y" if cfg.image_tokens else "y"))
        if y is not None:
            with scope(x, "condition"):
                x = torch.cat([x, y], dim=1)
        x, (f, h, w), freqs = self.embed_video(x)
        e, e0 = self.embed_time(t, x)
        context = self.embed_context(context, clip_fea)
        for block in self.blocks:
            x = block(x, e0, freqs, context)
        x = self.head(x, e)
        return self.unpatchify(x, f, h, w)

    def embed_video(self, x):
        """Latents -> tokens [B, L, D], the token grid, and the RoPE rotations of the grid."""
        x = self.patch_embedding(x)
        f, h, w = x.shape[2], x.shape[3], x.shape[4]
        with scope(x, "patchify"):
            # upstream pads to seq_len with a cat, which also makes the tokens contiguous
            x = x.flatten(2).transpose(1, 2).contiguous()
        with scope(x, "rope"):
            freqs = self.rope_freqs(f, h, w)
        return x, (f, h, w), freqs

    def embed_time(self, t, x):
        """e [B, D] and e0 [B, 6, D]; Wan2.2: e [B, L, D] and e0 [B, L, 6, D], t expanded to every token."""
        cfg = self.config
        if cfg.per_token_time:
            with scope(x, "time_tokens"):  # t.expand(B, seq_len) then flatten, as upstream
                b, n = x.shape[0], x.shape[1]
                t = t.view(b, -1).expand(b, n).flatten()
            e = self.time_embedding(sinusoidal_embedding(t, self.time_freqs).unflatten(0, (b, n)))
        else:
            e = self.time_embedding(sinusoidal_embedding(t, self.time_freqs))
        with scope(e, "time_cast"):
            e = self.stream(e)
        e0 = self.time_projection(e).unflatten(2 if cfg.per_token_time else 1, (6, cfg.dim))
        return e, e0

    def embed_context(self, context, clip_fea=None):
        context = self.text_embedding(context)
        if clip_fea is not None:
            image_context = self.img_emb(clip_fea)
            with scope(context, "context"):
                context = torch.cat([image_context, context], dim=1)
        return context

    def unpatchify(self, x, f, h, w) -> torch.Tensor:
        """[B, f*h*w, C*pt*ph*pw] -> [B, C, f*pt, h*ph, w*pw] (upstream einsum 'fhwpqrc->cfphqwr')."""
        pt, ph, pw = self.config.patch_size
        with scope(x, "unpatchify"):
            x = x.unflatten(1, (f, h, w)).unflatten(-1, (pt, ph, pw, self.config.out_dim))
            x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)
            return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)


def rope_table(config: WanConfig) -> torch.Tensor:
    """[max_len, d/2] complex128 rotations, one table per axis side by side (official `rope_params`):
    angle(pos, k) = pos * 10000^(-2k/axis_dim), built in float64."""
    tables = []
    for axis_dim in config.rope_split:
        exponents = torch.arange(0, axis_dim, 2, dtype=torch.float64, device="cpu") / axis_dim
        angles = torch.outer(
            torch.arange(config.rope_max_seq_len, dtype=torch.float64, device="cpu"),
            1.0 / torch.pow(10000.0, exponents),
        )
        tables.append(torch.polar(torch.ones_like(angles), angles))
    return torch.cat(tables, dim=1)
