"""The Wan2.1 VAE (Wan-VAE), op by op as the official `wan/modules/vae.py`, with its chunked temporal schedule.

Module paths and parameter names are the official `WanVAE_` ones (`Wan2.1_VAE.pth`). Encoding runs the encoder
on the first frame, then on chunks of 4 frames; decoding runs the decoder on one latent frame at a time. Every
causal conv remembers the last `CACHE_T` frames of its input from the previous chunk (upstream `feat_cache` /
`feat_idx`); here that memory is a `FeatureCache` passed explicitly to each call, so in an FX graph a chunk's
dependency on the previous chunk's cached frames is a visible edge.

Differences from upstream are deliberate and cost-neutral: the cache is keyed by conv module instead of by call
order, and the temporal length of the activation is tracked as a static int (`FeatureCache.frames`) because
upstream's `cache_x.shape[2] < 2` would be data-dependent control flow under FX; einops' rearranges are the
permute + reshape they expand to; `.to(device)` no-ops are dropped. `WanVAE.encode` / `decode` include what
the official `WanVAE` wrapper adds (latent normalisation, `.float()`, `clamp_(-1, 1)`). The frame count is a
Python int (read off the input when it is a tensor), so the chunk loop unrolls in a trace.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from .scopes import scope
from .vae_config import VAEConfig

CACHE_T = 2  # frames of its input each causal conv keeps for the next chunk
ENCODE_CHUNK = 4  # frames per encoder chunk after the first (upstream: 1, 4, 4, ...)
DIRECTIONS = ("encode", "decode")  # what the VAE is called for
REP = "Rep"  # upstream's marker: an upsample3d that skipped its time_conv on the first chunk


@dataclass
class Cached:
    """The last frames of a causal conv's input in the previous chunk, and how many there are."""

    x: torch.Tensor
    frames: int


class FeatureCache:
    """What each causal conv remembers across chunks (upstream `feat_cache` / `feat_idx`), and the static
    temporal length of the activation flowing through the network now (`frames`; only `Resample` changes it)."""

    def __init__(self) -> None:
        self.entries: dict[nn.Module, Cached | str] = {}
        self.frames = 0
        self.chunk = -1

    def start(self, frames: int) -> None:
        """A new chunk of `frames` frames enters the encoder or decoder."""
        self.chunk += 1
        self.frames = frames

    def conv(self, conv: CausalConv3d, x: torch.Tensor) -> torch.Tensor:
        """`conv(x)` continuing the previous chunk: pad in time with its cached frames (zeros on the first
        chunk), then keep x's last CACHE_T frames (topped up with the previous chunk's last) for the next."""
        _check_frames(x, self.frames)
        previous = self.entries.get(conv)
        assert previous is None or isinstance(previous, Cached)
        with scope(x, "feat_cache"):
            keep = x[:, :, -CACHE_T:, :, :].clone()
            kept = min(self.frames, CACHE_T)
            if kept < CACHE_T and previous is not None:
                keep = torch.cat([previous.x[:, :, -1, :, :].unsqueeze(2), keep], dim=2)
                kept += 1
        out = conv(x, previous)
        self.entries[conv] = Cached(keep, kept)
        return out


def _check_frames(x: object, frames: int) -> None:
    """The static frame count must be the tensor's (checked on real and meta tensors; a proxy has no value)."""
    if isinstance(x, torch.Tensor) and x.shape[2] != frames:
        raise AssertionError(f"feature cache expected {frames} frames, the activation has {x.shape[2]}")


def _causal(conv: CausalConv3d, x: torch.Tensor, cache: FeatureCache | None) -> torch.Tensor:
    return conv(x) if cache is None else cache.conv(conv, x)


def _length(x: torch.Tensor, frames: int | None) -> int:
    if frames is not None:
        return frames
    if isinstance(x, torch.fx.Proxy):
        raise ValueError("tracing the VAE needs the frame count as a Python int (frames=...)")
    return x.shape[2]


def encode_chunks(frames: int) -> list[tuple[int, int]]:
    """[start, stop) frame ranges the encoder runs on: the first frame, then 4 at a time (upstream
    `1 + (t - 1) // 4` chunks; frames past the last full chunk are dropped, as upstream)."""
    chunks = 1 + (frames - 1) // ENCODE_CHUNK
    return [(0, 1)] + [(1 + ENCODE_CHUNK * (i - 1), 1 + ENCODE_CHUNK * i) for i in range(1, chunks)]


def decode_chunks(latent_frames: int) -> list[tuple[int, int]]:
    """[start, stop) latent frame ranges the decoder runs on: one at a time."""
    return [(i, i + 1) for i in range(latent_frames)]


# --------------------------------------------------------------------------------------------- layers
def _no_init(self) -> None:
    """No default init: values come from `init_random_vae` or a checkpoint (meta builds stay fast)."""


class CausalConv3d(nn.Conv3d):
    """Conv3d padded in time on the past side only (2 * padding frames), symmetric in space; the past side
    takes the previous chunk's cached frames instead of zeros where it has them."""

    reset_parameters = _no_init

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        pt, ph, pw = self.padding
        self._padding = (pw, pw, ph, ph, 2 * pt, 0)
        self.padding = (0, 0, 0)

    def forward(self, x: torch.Tensor, cache: Cached | None = None) -> torch.Tensor:
        padding = list(self._padding)
        if cache is not None and self._padding[4] > 0:
            x = torch.cat([cache.x, x], dim=2)
            padding[4] -= cache.frames
        x = F.pad(x, padding)
        return super().forward(x)


class Conv2d(nn.Conv2d):
    reset_parameters = _no_init


class RMS_norm(nn.Module):  # noqa: N801  (official name)
    """x / ||x||_2 over channels * sqrt(C) * gamma (+ bias, the float 0 upstream: a real add)."""

    def __init__(self, dim: int, channel_first: bool = True, images: bool = True, bias: bool = False):
        super().__init__()
        broadcastable_dims = (1, 1, 1) if not images else (1, 1)
        shape = (dim, *broadcastable_dims) if channel_first else (dim,)
        self.channel_first = channel_first
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape)) if bias else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1 if self.channel_first else -1) * self.scale * self.gamma + self.bias


class Upsample(nn.Upsample):
    """Nearest-exact upsampling computed in fp32 (upstream's bfloat16 fix)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type_as(x)


def _frames_to_batch(x: torch.Tensor) -> torch.Tensor:
    """'b c t h w -> (b t) c h w' (einops: a permute, then a reshape that copies)."""
    return x.permute(0, 2, 1, 3, 4).flatten(0, 1)


def _batch_to_frames(x: torch.Tensor, b: int) -> torch.Tensor:
    """'(b t) c h w -> b c t h w' (a view, then a permute)."""
    return x.unflatten(0, (b, -1)).permute(0, 2, 1, 3, 4)


class Resample(nn.Module):
    """Spatial 2x up/down-sampling per frame, plus, in the 3d modes, 2x in time by a causal (3, 1, 1) conv."""

    def __init__(self, dim: int, mode: str):
        if mode not in ("none", "upsample2d", "upsample3d", "downsample2d", "downsample3d"):
            raise ValueError(f"Resample: unknown mode {mode!r}")
        super().__init__()
        self.dim = dim
        self.mode = mode
        self.resample: nn.Module
        if mode in ("upsample2d", "upsample3d"):
            self.resample = nn.Sequential(
                Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"), Conv2d(dim, dim // 2, 3, padding=1)
            )
            if mode == "upsample3d":
                self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode in ("downsample2d", "downsample3d"):
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), Conv2d(dim, dim, 3, stride=(2, 2)))
            if mode == "downsample3d":
                self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), padding=(0, 0, 0))
        else:
            self.resample = nn.Identity()

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        b, c, t, h, w = (x.shape[i] for i in range(5))
        if self.mode == "upsample3d" and cache is not None:
            x = self._upsample_time(x, cache, b, c, t, h, w)
        x = _batch_to_frames(self.resample(_frames_to_batch(x)), b)
        if self.mode == "downsample3d" and cache is not None:
            x = self._downsample_time(x, cache)
        return x

    def _upsample_time(self, x: torch.Tensor, cache: FeatureCache, b, c, t, h, w) -> torch.Tensor:
        """time_conv doubles the channels; they are interleaved into 2x the frames. The first chunk skips it."""
        _check_frames(x, cache.frames)
        previous = cache.entries.get(self.time_conv)
        if previous is None:
            cache.entries[self.time_conv] = REP
            return x
        with scope(x, "feat_cache"):
            keep = x[:, :, -CACHE_T:, :, :].clone()
            kept = min(cache.frames, CACHE_T)
            if kept < CACHE_T:
                if previous == REP:
                    first = torch.zeros_like(keep)
                else:
                    assert isinstance(previous, Cached)
                    first = previous.x[:, :, -1, :, :].unsqueeze(2)
                keep = torch.cat([first, keep], dim=2)
                kept += 1
        x = self.time_conv(x) if previous == REP else self.time_conv(x, previous)
        cache.entries[self.time_conv] = Cached(keep, kept)
        x = x.reshape(b, 2, c, t, h, w)
        x = torch.stack((x[:, 0, :, :, :, :], x[:, 1, :, :, :, :]), 3)
        cache.frames *= 2
        return x.reshape(b, c, t * 2, h, w)

    def _downsample_time(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        """A stride-2 (3, 1, 1) conv over the previous chunk's last frame and this chunk's frames; the first
        chunk is only remembered."""
        _check_frames(x, cache.frames)
        previous = cache.entries.get(self.time_conv)
        if previous is None:
            with scope(x, "feat_cache"):
                cache.entries[self.time_conv] = Cached(x.clone(), cache.frames)
            return x
        assert isinstance(previous, Cached)
        with scope(x, "feat_cache"):
            keep = x[:, :, -1:, :, :].clone()
        x = self.time_conv(torch.cat([previous.x[:, :, -1:, :, :], x], 2))
        cache.entries[self.time_conv] = Cached(keep, 1)
        cache.frames = (cache.frames + 1 - 3) // 2 + 1
        return x


class ResidualBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.residual = nn.Sequential(
            RMS_norm(in_dim, images=False), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMS_norm(out_dim, images=False), nn.SiLU(), nn.Dropout(dropout),
            CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        h = self.shortcut(x)
        for layer in self.residual:
            x = _causal(layer, x, cache) if isinstance(layer, CausalConv3d) else layer(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame (no cache: frames are independent)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.norm = RMS_norm(dim)
        self.to_qkv = Conv2d(dim, dim * 3, 1)
        self.proj = Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        b, c, t, h, w = (x.shape[i] for i in range(5))
        x = self.norm(_frames_to_batch(x))
        q, k, v = self.to_qkv(x).reshape(b * t, 1, c * 3, -1).permute(0, 1, 3, 2).contiguous().chunk(3, dim=-1)
        with scope(x, "attention"):
            x = F.scaled_dot_product_attention(q, k, v)
        x = x.squeeze(1).permute(0, 2, 1).reshape(b * t, c, h, w)
        x = self.proj(x)
        return _batch_to_frames(x, b) + identity


def _head(out_dim: int, channels: int) -> nn.Sequential:
    return nn.Sequential(RMS_norm(out_dim, images=False), nn.SiLU(), CausalConv3d(out_dim, channels, 3, padding=1))


def _run_head(head: nn.Sequential, x: torch.Tensor, cache: FeatureCache | None) -> torch.Tensor:
    for layer in head:
        x = _causal(layer, x, cache) if isinstance(layer, CausalConv3d) else layer(x)
    return x


def _run_middle(middle: nn.Sequential, x: torch.Tensor, cache: FeatureCache | None) -> torch.Tensor:
    for layer in middle:
        x = layer(x, cache) if isinstance(layer, ResidualBlock) else layer(x)
    return x


class Encoder3d(nn.Module):
    def __init__(self, dim: int = 128, z_dim: int = 4, dim_mult: Sequence[int] = (1, 2, 4, 4),
                 num_res_blocks: int = 2, attn_scales: Sequence[float] = (),
                 temperal_downsample: Sequence[bool] = (True, True, False), dropout: float = 0.0):
        super().__init__()
        dims = [dim * u for u in [1, *dim_mult]]
        scale = 1.0
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        downsamples: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            for _ in range(num_res_blocks):
                downsamples.append(ResidualBlock(in_dim, out_dim, dropout))
                if scale in attn_scales:
                    downsamples.append(AttentionBlock(out_dim))
                in_dim = out_dim
            if i != len(dim_mult) - 1:
                downsamples.append(Resample(out_dim, "downsample3d" if temperal_downsample[i] else "downsample2d"))
                scale /= 2.0
        self.downsamples = nn.Sequential(*downsamples)
        self.middle = nn.Sequential(
            ResidualBlock(out_dim, out_dim, dropout), AttentionBlock(out_dim), ResidualBlock(out_dim, out_dim, dropout)
        )
        self.head = _head(out_dim, z_dim)

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        x = _causal(self.conv1, x, cache)
        for layer in self.downsamples:
            x = layer(x) if isinstance(layer, AttentionBlock) else layer(x, cache)
        return _run_head(self.head, _run_middle(self.middle, x, cache), cache)


class Decoder3d(nn.Module):
    def __init__(self, dim: int = 128, z_dim: int = 4, dim_mult: Sequence[int] = (1, 2, 4, 4),
                 num_res_blocks: int = 2, attn_scales: Sequence[float] = (),
                 temperal_upsample: Sequence[bool] = (False, True, True), dropout: float = 0.0):
        super().__init__()
        dims = [dim * u for u in [dim_mult[-1], *dim_mult[::-1]]]
        scale = 1.0 / 2 ** (len(dim_mult) - 2)
        self.conv1 = CausalConv3d(z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(
            ResidualBlock(dims[0], dims[0], dropout), AttentionBlock(dims[0]), ResidualBlock(dims[0], dims[0], dropout)
        )
        upsamples: list[nn.Module] = []
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            if i in (1, 2, 3):  # upstream: the previous upsample halved the channels
                in_dim = in_dim // 2
            for _ in range(num_res_blocks + 1):
                upsamples.append(ResidualBlock(in_dim, out_dim, dropout))
                if scale in attn_scales:
                    upsamples.append(AttentionBlock(out_dim))
                in_dim = out_dim
            if i != len(dim_mult) - 1:
                upsamples.append(Resample(out_dim, "upsample3d" if temperal_upsample[i] else "upsample2d"))
                scale *= 2.0
        self.upsamples = nn.Sequential(*upsamples)
        self.head = _head(out_dim, 3)

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        x = _run_middle(self.middle, _causal(self.conv1, x, cache), cache)
        for layer in self.upsamples:
            x = layer(x) if isinstance(layer, AttentionBlock) else layer(x, cache)
        return _run_head(self.head, x, cache)


# ------------------------------------------------------------------------------------------------ VAE
class WanVAE(nn.Module):
    """Official `WanVAE_` (keys `encoder.*`, `conv1.*`, `conv2.*`, `decoder.*`) with the `WanVAE` wrapper's
    latent normalisation. Build it with `build_vae`."""

    mean: torch.Tensor  # latent normalisation (buffers)
    inv_std: torch.Tensor

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        c = config
        self.encoder = Encoder3d(c.dim, c.z_dim * 2, c.dim_mult, c.num_res_blocks, c.attn_scales,
                                 c.temperal_downsample)
        self.conv1 = CausalConv3d(c.z_dim * 2, c.z_dim * 2, 1)
        self.conv2 = CausalConv3d(c.z_dim, c.z_dim, 1)
        self.decoder = Decoder3d(c.dim, c.z_dim, c.dim_mult, c.num_res_blocks, c.attn_scales,
                                 c.temperal_downsample[::-1])
        self._register_scale()

    def _register_scale(self) -> None:
        """Upstream `scale = [mean, 1.0 / std]`, fp32 (derived data: non-persistent, not in the state dict)."""
        device = self.conv1.weight.device
        mean = torch.tensor(self.config.latents_mean, dtype=torch.float32)
        inv_std = 1.0 / torch.tensor(self.config.latents_std, dtype=torch.float32)
        self.register_buffer("mean", mean.to(device), persistent=False)
        self.register_buffer("inv_std", inv_std.to(device), persistent=False)

    def reset_scale(self) -> None:
        """Recompute the latent statistics, e.g. after `to_empty` moved the model off meta."""
        self._register_scale()

    def forward(self, x: torch.Tensor, direction: str = "decode") -> torch.Tensor:
        """`encode(x)` or `decode(x)` as a module call, so that module hooks (verify's counters and timers) see
        the VAE itself as the root of what runs."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction: 'encode' or 'decode', got {direction!r}")
        return self.encode(x) if direction == "encode" else self.decode(x)

    def encode(self, x: torch.Tensor, frames: int | None = None) -> torch.Tensor:
        """x [B, 3, T, H, W] in [-1, 1] -> normalised latent means [B, z_dim, 1 + (T-1)//4, H/8, W/8]
        (`frames` = T, needed when tracing)."""
        cache = FeatureCache()
        out = None
        for start, stop in encode_chunks(_length(x, frames)):
            cache.start(stop - start)
            y = self.encoder(x[:, :, start:stop, :, :], cache)
            if out is None:
                out = y
            else:
                with scope(y, "concat"):
                    out = torch.cat([out, y], 2)
        assert out is not None
        return self.encode_tail(out)

    def encode_tail(self, out: torch.Tensor) -> torch.Tensor:
        """After the chunks: conv1 on all latent frames, keep the mean, normalise."""
        mu, log_var = self.conv1(out).chunk(2, dim=1)
        z = self.config.z_dim
        with scope(mu, "latent_norm"):
            mu = (mu - self.mean.view(1, z, 1, 1, 1)) * self.inv_std.view(1, z, 1, 1, 1)
            return mu.float()

    def decode(self, z: torch.Tensor, frames: int | None = None) -> torch.Tensor:
        """Normalised latents [B, z_dim, F', H', W'] -> video [B, 3, 1 + 4 (F'-1), 8 H', 8 W'] clamped to
        [-1, 1] (`frames` = F', needed when tracing)."""
        n = self.config.z_dim
        with scope(z, "latent_denorm"):
            z = z / self.inv_std.view(1, n, 1, 1, 1) + self.mean.view(1, n, 1, 1, 1)
        x = self.conv2(z)
        cache = FeatureCache()
        out = None
        for start, stop in decode_chunks(_length(z, frames)):
            cache.start(stop - start)
            y = self.decoder(x[:, :, start:stop, :, :], cache)
            if out is None:
                out = y
            else:
                with scope(y, "concat"):
                    out = torch.cat([out, y], 2)
        assert out is not None
        return self.decode_tail(out)

    def decode_tail(self, out: torch.Tensor) -> torch.Tensor:
        """After the chunks: the official wrapper's `.float().clamp_(-1, 1)`."""
        with scope(out, "clamp"):
            return out.float().clamp_(-1, 1)


def build_vae(config: VAEConfig, dtype: torch.dtype = torch.float32, device: str | torch.device = "meta",
              seed: int | None = 0) -> WanVAE:
    """A `WanVAE` with parameters in `dtype` (fp32 upstream). On meta nothing is allocated; on a real device
    the parameters get seeded random values (`seed=None` leaves them uninitialised, for loading)."""
    with torch.device("meta"):
        model = WanVAE(config)
    model.to(dtype)
    model.eval().requires_grad_(False)
    device = torch.device(device)
    if device.type != "meta":
        model.to_empty(device=device)
        model.reset_scale()
        if seed is not None:
            init_random_vae(model, seed)
    return model


@torch.no_grad()
def init_random_vae(model: WanVAE, seed: int) -> None:
    """Seeded random weights of a sane scale (fan-in scaled kernels, gammas near 1); upstream zeroes the
    attention projection, which would hide errors."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    for name, p in model.named_parameters():
        value = torch.randn(p.shape, generator=gen, device=device, dtype=torch.float32)
        if name.endswith(".gamma"):
            value = 1.0 + 0.1 * value
        elif name.endswith(".bias"):
            value = 0.02 * value
        else:
            value = value / math.sqrt(math.prod(p.shape[1:]))
        p.copy_(value)
