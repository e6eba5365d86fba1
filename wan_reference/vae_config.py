"""`VAEConfig`: the Wan2.1 VAE's architecture, read from diffusers' `vae/config.json` (`AutoencoderKLWan`).

The official code has no config file: `wan/modules/vae.py _video_vae` hard-codes dim 96, dim_mult [1, 2, 4, 4],
num_res_blocks 2, attn_scales [], temperal_downsample [False, True, True], and `WanVAE` z_dim 16 and the
latent mean/std. Those are the defaults here, so an empty object means the published VAE."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import ConfigError, peek_json, read_json

DIFFUSERS_VAE_CLASS = "AutoencoderKLWan"

# WanVAE.__init__: per-channel statistics of the latents (z_dim 16)
LATENTS_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
LATENTS_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
               3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)


@dataclass(frozen=True)
class VAEConfig:
    """Official `WanVAE_` vocabulary (diffusers calls `dim` `base_dim`)."""

    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    temperal_downsample: tuple[bool, ...] = (False, True, True)  # sic, upstream spelling
    latents_mean: tuple[float, ...] = LATENTS_MEAN
    latents_std: tuple[float, ...] = LATENTS_STD

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def temporal_stride(self) -> int:
        return 2 ** sum(self.temperal_downsample)

    @property
    def spatial_stride(self) -> int:
        return 2 ** (len(self.dim_mult) - 1)

    def to_dict(self) -> dict:
        return asdict(self)


def _validate(c: VAEConfig) -> None:
    for name in ("dim", "z_dim", "num_res_blocks"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
    if not c.dim_mult or any(isinstance(m, bool) or not isinstance(m, int) or m <= 0 for m in c.dim_mult):
        raise ConfigError(f"dim_mult: must be positive integers, got {list(c.dim_mult)!r}")
    if len(c.temperal_downsample) != len(c.dim_mult) - 1 or any(
            not isinstance(t, bool) for t in c.temperal_downsample):
        raise ConfigError(
            f"temperal_downsample: must be {len(c.dim_mult) - 1} booleans (one per downsample), "
            f"got {list(c.temperal_downsample)!r}")
    for name in ("latents_mean", "latents_std"):
        values = getattr(c, name)
        if len(values) != c.z_dim or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            raise ConfigError(f"{name}: must be {c.z_dim} numbers (z_dim), got {len(values)}")
    if any(v <= 0 for v in c.latents_std):
        raise ConfigError("latents_std: must be positive")
    if any(isinstance(s, bool) or not isinstance(s, (int, float)) for s in c.attn_scales):
        raise ConfigError(f"attn_scales: must be numbers, got {list(c.attn_scales)!r}")


# diffusers fields that must keep their Wan2.1 value (the other values build the Wan2.2 VAE or a variant)
_FIXED = {"is_residual": False, "in_channels": 3, "out_channels": 3, "patch_size": None, "dropout": 0.0}


def vae_config_from_dict(raw: dict) -> VAEConfig:
    """A `VAEConfig` from a parsed diffusers `AutoencoderKLWan` config.json."""
    if not isinstance(raw, dict):
        raise ConfigError("config: top level must be a JSON object")
    cls = raw.get("_class_name")
    if cls != DIFFUSERS_VAE_CLASS:
        raise ConfigError(f"_class_name: expected {DIFFUSERS_VAE_CLASS!r} (diffusers vae/config.json), got {cls!r}")
    for name, value in _FIXED.items():
        if raw.get(name, value) != value:
            raise ConfigError(f"{name}: only the Wan2.1 VAE ({name} {json.dumps(value)}) is supported, "
                              f"got {raw[name]!r}")
    base = raw.get("base_dim", 96)
    if raw.get("decoder_base_dim") not in (None, base):
        raise ConfigError(f"decoder_base_dim: must be null or base_dim {base}, got {raw['decoder_base_dim']!r}")
    kwargs: dict = {"dim": base}
    for name in ("z_dim", "num_res_blocks"):
        if name in raw:
            kwargs[name] = raw[name]
    for name in ("dim_mult", "attn_scales", "temperal_downsample", "latents_mean", "latents_std"):
        if name in raw:
            if not isinstance(raw[name], list):
                raise ConfigError(f"{name}: must be a list, got {raw[name]!r}")
            kwargs[name] = tuple(raw[name])
    config = VAEConfig(**kwargs)
    for name, value in (("scale_factor_temporal", config.temporal_stride),
                        ("scale_factor_spatial", config.spatial_stride)):
        if raw.get(name, value) not in (None, value):
            raise ConfigError(f"{name}: the architecture gives {value}, the config says {raw[name]!r}")
    return config


def load_vae_config(path: str | Path) -> VAEConfig:
    """Read and validate a diffusers `vae/config.json`; every failure is one `ConfigError` line."""
    return vae_config_from_dict(read_json(path))


def is_vae_config(path: str | Path) -> bool:
    """True for a diffusers `AutoencoderKLWan` config.json, so that a command can tell it from a DiT's; anything
    unreadable is False and left to the DiT reader's own error."""
    return peek_json(path).get("_class_name") == DIFFUSERS_VAE_CLASS


def to_diffusers_vae_config(c: VAEConfig) -> dict:
    """The `AutoencoderKLWan` constructor arguments of the same architecture (cross-checks and export)."""
    return {
        "base_dim": c.dim,
        "z_dim": c.z_dim,
        "dim_mult": list(c.dim_mult),
        "num_res_blocks": c.num_res_blocks,
        "attn_scales": list(c.attn_scales),
        "temperal_downsample": list(c.temperal_downsample),
        "dropout": 0.0,
        "latents_mean": list(c.latents_mean),
        "latents_std": list(c.latents_std),
    }
