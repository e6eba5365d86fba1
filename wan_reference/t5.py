"""The umT5-XXL text encoder, op by op as the official `wan/modules/t5.py` builds it for
`umt5_xxl(encoder_only=True)` (`T5Encoder`), the model `T5EncoderModel` runs on the prompt and on the negative
prompt, each padded to 512 tokens.

Module paths and parameter names are the official ones (`models_t5_umt5-xxl-enc-bf16.pth`). umT5 gives every
layer its own relative-position table (`shared_pos=False`), recomputed in each layer on each call, as
upstream does. Attention is T5's: no 1/sqrt(d) scaling, an explicit [B, heads, L, L] bias (position bias plus
the padding mask), softmax in fp32, two einsums. The FFN is gated: fc1(x) * GELU_tanh(gate(x)), then fc2.

Differences from upstream are deliberate and cost-neutral: no Dropout modules (identity in eval), no
`fp16_clamp` (it only acts on fp16, which no Wan runtime uses, and its `isinf().any()` is data-dependent
control flow), and the activation dtype is a static attribute (FX cannot read `x.dtype` while tracing), fixed
when the model is built in one dtype. `mask` is the tokenizer's [B, L] (upstream also takes [B, L, L],
which the encoder is never given)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .scopes import scope
from .t5_config import T5Config

HALF = (torch.float16, torch.bfloat16)


class Linear(nn.Linear):
    def reset_parameters(self) -> None:
        """No default init: values come from `init_random_t5` or a checkpoint (nn.init on meta is slow)."""


class Embedding(nn.Embedding):
    reset_parameters = Linear.reset_parameters


class GELU(nn.Module):
    """The official tanh GELU, written out: eight elementwise kernels in eager PyTorch, not one F.gelu."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class T5LayerNorm(nn.Module):
    """RMS norm, no mean and no bias; the statistics in fp32, the result cast back to a half weight's dtype."""

    def __init__(self, dim: int, eps: float, dtype: torch.dtype):
        super().__init__()
        self.eps = eps
        self.dtype = dtype
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps)
        if self.dtype in HALF:
            x = x.type_as(self.weight)
        return self.weight * x


class T5Attention(nn.Module):
    def __init__(self, dim: int, dim_attn: int, num_heads: int, dtype: torch.dtype):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim_attn // num_heads
        self.dtype = dtype
        self.q = Linear(dim, dim_attn, bias=False)
        self.k = Linear(dim, dim_attn, bias=False)
        self.v = Linear(dim, dim_attn, bias=False)
        self.o = Linear(dim_attn, dim, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, pos_bias: torch.Tensor) -> torch.Tensor:
        b, n, c = x.size(0), self.num_heads, self.head_dim
        q = self.q(x).view(b, -1, n, c)
        k = self.k(x).view(b, -1, n, c)
        v = self.v(x).view(b, -1, n, c)
        with scope(x, "attention"):
            bias = x.new_zeros(b, n, q.size(1), k.size(1))
            bias.add_(pos_bias)
            if mask is not None:  # padded keys get the dtype's most negative value
                bias.masked_fill_(mask.view(b, 1, 1, -1) == 0, torch.finfo(self.dtype).min)
            scores = torch.einsum("binc,bjnc->bnij", q, k) + bias  # T5: no 1/sqrt(c)
            weights = F.softmax(scores.float(), dim=-1).type_as(scores)
            out = torch.einsum("bnij,bjnc->binc", weights, v)
        return self.o(out.reshape(b, -1, n * c))


class T5FeedForward(nn.Module):
    def __init__(self, dim: int, dim_ffn: int):
        super().__init__()
        self.gate = nn.Sequential(Linear(dim, dim_ffn, bias=False), GELU())
        self.fc1 = Linear(dim, dim_ffn, bias=False)
        self.fc2 = Linear(dim_ffn, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x) * self.gate(x))


class T5RelativeEmbedding(nn.Module):
    """Bidirectional relative-position bias [1, heads, Lq, Lk] from bucketed distances: half the buckets for
    each direction; of those, the first half exact distances, the rest logarithmic up to max_dist."""

    def __init__(self, num_buckets: int, num_heads: int, max_dist: int):
        super().__init__()
        self.num_buckets = num_buckets
        self.max_dist = max_dist
        self.embedding = Embedding(num_buckets, num_heads)

    def forward(self, lq, lk) -> torch.Tensor:
        device = self.embedding.weight.device
        distance = torch.arange(lk, device=device).unsqueeze(0) - torch.arange(lq, device=device).unsqueeze(1)
        return self.embedding(self.bucket(distance)).permute(2, 0, 1).unsqueeze(0).contiguous()

    def bucket(self, distance: torch.Tensor) -> torch.Tensor:
        per_side = self.num_buckets // 2
        buckets = (distance > 0).long() * per_side  # keys after the query use the upper half
        distance = torch.abs(distance)
        exact = per_side // 2
        scale = math.log(self.max_dist / exact)
        large = exact + (torch.log(distance.float() / exact) / scale * (per_side - exact)).long()
        large = torch.min(large, torch.full_like(large, per_side - 1))
        buckets.add_(torch.where(distance < exact, distance, large))
        return buckets


class T5SelfAttention(nn.Module):
    """One encoder layer (official class name): pre-norm attention and gated FFN, each with a residual."""

    def __init__(self, config: T5Config, dtype: torch.dtype):
        super().__init__()
        c = config
        self.norm1 = T5LayerNorm(c.dim, c.eps, dtype)
        self.attn = T5Attention(c.dim, c.dim_attn, c.num_heads, dtype)
        self.norm2 = T5LayerNorm(c.dim, c.eps, dtype)
        self.ffn = T5FeedForward(c.dim, c.dim_ffn)
        self.pos_embedding = T5RelativeEmbedding(c.num_buckets, c.num_heads, c.max_dist)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        e = self.pos_embedding(x.size(1), x.size(1))
        x = x + self.attn(self.norm1(x), mask, e)
        return x + self.ffn(self.norm2(x))


class T5Encoder(nn.Module):
    """ids [B, L] (int64), mask [B, L] (1 for tokens, 0 for padding) -> [B, L, dim] in the model's dtype."""

    def __init__(self, config: T5Config, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.config = config
        self.token_embedding = Embedding(config.vocab, config.dim)
        self.blocks = nn.ModuleList([T5SelfAttention(config, dtype) for _ in range(config.num_layers)])
        self.norm = T5LayerNorm(config.dim, config.eps, dtype)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.token_embedding(ids)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)


def build_t5(config: T5Config, dtype: torch.dtype = torch.float32, device: str | torch.device = "meta",
             seed: int | None = 0) -> T5Encoder:
    """A `T5Encoder` with every parameter and activation in `dtype` (upstream: t5_dtype, bf16). On meta
    nothing is allocated; on a real device the parameters get seeded random values (`seed=None` leaves them
    uninitialised, for loading)."""
    with torch.device("meta"):
        model = T5Encoder(config, dtype)
    model.to(dtype)
    model.eval().requires_grad_(False)
    device = torch.device(device)
    if device.type != "meta":
        model.to_empty(device=device)
        if seed is not None:
            init_random_t5(model, seed)
    return model


@torch.no_grad()
def init_random_t5(model: T5Encoder, seed: int) -> None:
    """Seeded random weights of a sane scale: unit-variance token embeddings and position biases, fan-in scaled
    matrices, norm weights near 1 (the official init, but with norms and biases that carry signal)."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    for name, p in model.named_parameters():
        value = torch.randn(p.shape, generator=gen, device=device, dtype=torch.float32)
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
            value = 1.0 + 0.1 * value
        elif name.startswith("blocks.") and ".pos_embedding." not in name:
            value = value / math.sqrt(p.shape[1])
        p.copy_(value)
