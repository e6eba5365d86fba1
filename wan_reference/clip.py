"""The CLIP ViT-H/14 image encoder of Wan2.1 i2v/flf2v, op by op as the official `wan/modules/clip.py` runs it.

`CLIPImageEncoder.forward` is the official `CLIPModel.visual(videos)`: each conditioning image (in [-1, 1], at
its own resolution) is resized to 224x224 (bicubic), the batch is rescaled to [0, 1] and normalised with CLIP's
mean and std, then `VisionTransformer.forward(x, use_31_block=True)` returns the features of the penultimate
block, [N, 257, 1280], which the DiT's `img_emb` projects.

Module paths and parameter names are the official ones of `models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth`
(`visual.*`; the XLM-RoBERTa text tower and `log_scale` are not modelled: Wan never runs them). The last block,
`post_norm` and `head` are parameters here as upstream, loaded and never run. Differences from upstream are
deliberate and cost-neutral: images are one batched tensor [N, 3, H, W] (upstream: a list of [3, 1, H, W]), each
still resized by its own interpolate; the normalisation's mean and std are buffers (upstream builds them on the
device at each call and checks std != 0, three elements); attention is `scaled_dot_product_attention` instead of
varlen flash-attention; autocast is the explicit casts of a `PrecisionPolicy` (`image_encoder`,
`image_encoder_autocast`)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .clip_config import IMAGE_MEAN, IMAGE_STD, CLIPConfig
from .model import attention
from .precision import PrecisionPolicy, get_policy
from .scopes import scope


class LayerNorm(nn.LayerNorm):
    """Official `LayerNorm`: statistics in fp32 (`x.float()`), the result back in x's dtype. Under autocast
    layer_norm runs in fp32 and casts the (fp16) weight and bias; `.float()` is that cast, a no-op in fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(),
                            self.eps).type_as(x)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.to_qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # upstream .view(b, s, 3, n, d).unbind(2): q, k, v are strided views of one [b, s, 3 * dim] tensor
        q, k, v = self.to_qkv(x).unflatten(2, (3, self.num_heads, -1)).unbind(2)
        return self.proj(attention(q, k, v, q.dtype))  # flash-attention keeps fp16 (and SDPA any dtype)


class AttentionBlock(nn.Module):
    """Pre-norm block: x + attn(norm1(x)), then x + mlp(norm2(x)); mlp is Linear, GELU, Linear, Dropout(0)."""

    def __init__(self, c: CLIPConfig):
        super().__init__()
        self.norm1 = LayerNorm(c.dim, eps=c.norm_eps)
        self.attn = SelfAttention(c.dim, c.num_heads)
        self.norm2 = LayerNorm(c.dim, eps=c.norm_eps)
        act = QuickGELU() if c.activation == "quick_gelu" else nn.GELU()
        self.mlp = nn.Sequential(nn.Linear(c.dim, c.mlp_dim), act, nn.Linear(c.mlp_dim, c.dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """Official `VisionTransformer` with pool_type 'token' and pre_norm (so the patch embedding has no bias)."""

    def __init__(self, c: CLIPConfig):
        super().__init__()
        self.config = c
        gain = 1.0 / math.sqrt(c.dim)
        self.patch_embedding = nn.Conv2d(3, c.dim, kernel_size=c.patch_size, stride=c.patch_size, bias=False)
        self.cls_embedding = nn.Parameter(gain * torch.randn(1, 1, c.dim))
        self.pos_embedding = nn.Parameter(gain * torch.randn(1, c.tokens, c.dim))
        self.dropout = nn.Dropout(0.0)
        self.pre_norm = LayerNorm(c.dim, eps=c.norm_eps)
        self.transformer = nn.Sequential(*[AttentionBlock(c) for _ in range(c.num_layers)])
        self.post_norm = LayerNorm(c.dim, eps=c.norm_eps)
        self.head = nn.Parameter(gain * torch.randn(c.dim, c.out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, 224, 224] -> [N, 257, dim]: the features after block num_layers - 2 (`use_31_block=True`)."""
        x = self.patch_embedding(x.to(self.patch_embedding.weight.dtype))  # autocast's input cast, made visible
        x = x.flatten(2).permute(0, 2, 1)
        with scope(x, "embed"):
            x = torch.cat([self.cls_embedding.expand(x.shape[0], -1, -1), x], dim=1)
            x = self.dropout(x + self.pos_embedding)
        x = self.pre_norm(x)
        for block in list(self.transformer)[: self.config.run_layers]:
            x = block(x)
        return x


class CLIPImageEncoder(nn.Module):
    """Official `CLIPModel.visual`: GPU preprocessing, then the visual tower under autocast (policy casts)."""

    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = config
        self.visual = VisionTransformer(config)
        self.register_buffer("mean", torch.tensor(IMAGE_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGE_STD).view(3, 1, 1), persistent=False)

    def reset_buffers(self) -> None:
        """The normalisation constants (after a meta build is materialised)."""
        device = self.visual.head.device
        self.mean = torch.tensor(IMAGE_MEAN, device=device).view(3, 1, 1)
        self.std = torch.tensor(IMAGE_STD, device=device).view(3, 1, 1)

    def forward(self, images: torch.Tensor, count: int | None = None) -> torch.Tensor:
        """images [N, 3, H, W] fp32 in [-1, 1] (N = 1 for i2v, 2 for flf2v) -> [N, tokens, dim]. `count` is N as a
        Python int, so that a trace unrolls upstream's per-image resize (read off the tensor when eager)."""
        if count is None:
            count = images.shape[0]
        elif isinstance(images, torch.Tensor) and images.shape[0] != count:
            raise ValueError(f"count {count} != {images.shape[0]} images")
        size = (self.config.image_size, self.config.image_size)
        with scope(images, "resize"):
            x = torch.cat([F.interpolate(images[i:i + 1], size=size, mode="bicubic", align_corners=False)
                           for i in range(count)])
        with scope(x, "normalize"):
            x = x.mul_(0.5).add_(0.5)  # [-1, 1] -> [0, 1], in place as upstream
            x = x.clone().sub_(self.mean).div_(self.std)  # torchvision Normalize (not inplace: a clone first)
        return self.visual(x)


def build_clip(config: CLIPConfig, policy: str | PrecisionPolicy = "fp32", device: str | torch.device = "meta",
               seed: int | None = 0) -> CLIPImageEncoder:
    """A `CLIPImageEncoder` with parameters in the policy's image-encoder dtype (fp16 in the official runtime). On
    meta nothing is allocated; on a real device the parameters get seeded random values (`seed=None` leaves them
    uninitialised, for loading)."""
    policy = get_policy(policy)
    with torch.device("meta"):
        model = CLIPImageEncoder(config)
    model.visual.to(policy.image_encoder)
    model.eval().requires_grad_(False)
    device = torch.device(device)
    if device.type != "meta":
        model.to_empty(device=device)
        model.reset_buffers()
        if seed is not None:
            init_random_clip(model, seed)
    return model


@torch.no_grad()
def init_random_clip(model: CLIPImageEncoder, seed: int) -> None:
    """Seeded random weights of a sane scale: fan-in scaled matrices, norm gains near 1, small biases."""
    device = model.visual.head.device
    gen = torch.Generator(device=device).manual_seed(seed)
    for name, p in model.named_parameters():
        value = torch.randn(p.shape, generator=gen, device=device, dtype=torch.float32)
        if "norm" in name and name.endswith(".weight"):
            value = 1.0 + 0.1 * value
        elif name.endswith(".bias"):
            value = 0.02 * value
        elif name.endswith(("cls_embedding", "pos_embedding")):
            value = value / math.sqrt(model.config.dim)
        else:
            value = value / math.sqrt(math.prod(p.shape[1:]) if p.dim() > 1 else p.numel())
        p.copy_(value)
