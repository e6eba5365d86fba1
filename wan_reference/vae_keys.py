"""Official (`Wan2.1_VAE.pth`, `WanVAE_`) <-> diffusers (`AutoencoderKLWan`) VAE key names: one table of
module paths, built from the config (the decoder's flat `upsamples.{n}` list becomes diffusers'
`up_blocks.{i}.resnets.{j}` / `up_blocks.{i}.upsamplers.0`, which depends on num_res_blocks), used both ways.
The same correspondence as diffusers' `convert_wan_vae_to_diffusers`."""

from __future__ import annotations

from functools import lru_cache

from .keys import KeyMappingError
from .vae_config import VAEConfig

_RESIDUAL = (("residual.0", "norm1"), ("residual.2", "conv1"), ("residual.3", "norm2"), ("residual.6", "conv2"),
             ("shortcut", "conv_shortcut"))
_ATTENTION = (("norm", "norm"), ("to_qkv", "to_qkv"), ("proj", "proj"))
_RESAMPLE = (("resample.1", "resample.1"), ("time_conv", "time_conv"))


def _block(official: str, diffusers: str, parts) -> list[tuple[str, str]]:
    return [(f"{official}.{o}", f"{diffusers}.{d}") for o, d in parts]


@lru_cache(maxsize=8)
def vae_module_table(config: VAEConfig) -> tuple[tuple[str, str], ...]:
    """(official module path, diffusers module path) for every module that holds parameters."""
    table: list[tuple[str, str]] = [("conv1", "quant_conv"), ("conv2", "post_quant_conv")]
    for side in ("encoder", "decoder"):
        table += [(f"{side}.conv1", f"{side}.conv_in"), (f"{side}.head.0", f"{side}.norm_out"),
                  (f"{side}.head.2", f"{side}.conv_out")]
        table += _block(f"{side}.middle.0", f"{side}.mid_block.resnets.0", _RESIDUAL)
        table += _block(f"{side}.middle.1", f"{side}.mid_block.attentions.0", _ATTENTION)
        table += _block(f"{side}.middle.2", f"{side}.mid_block.resnets.1", _RESIDUAL)
    stages = len(config.dim_mult)
    scale = 1.0
    n = 0  # encoder.downsamples is flat in both namings
    for i in range(stages):
        for _ in range(config.num_res_blocks):
            table += _block(f"encoder.downsamples.{n}", f"encoder.down_blocks.{n}", _RESIDUAL)
            n += 1
            if scale in config.attn_scales:
                table += _block(f"encoder.downsamples.{n}", f"encoder.down_blocks.{n}", _ATTENTION)
                n += 1
        if i != stages - 1:
            table += _block(f"encoder.downsamples.{n}", f"encoder.down_blocks.{n}", _RESAMPLE)
            n += 1
            scale /= 2.0
    if config.attn_scales:
        raise KeyMappingError("attn_scales: diffusers' decoder has no attention in its up blocks; only [] maps")
    n = 0
    for i in range(stages):
        for j in range(config.num_res_blocks + 1):
            table += _block(f"decoder.upsamples.{n}", f"decoder.up_blocks.{i}.resnets.{j}", _RESIDUAL)
            n += 1
        if i != stages - 1:
            table += _block(f"decoder.upsamples.{n}", f"decoder.up_blocks.{i}.upsamplers.0", _RESAMPLE)
            n += 1
    return tuple(table)


def _map(key: str, pairs: dict[str, str], what: str) -> str:
    owner, _, leaf = key.rpartition(".")
    if owner in pairs:
        return f"{pairs[owner]}.{leaf}"
    raise KeyMappingError(f"no {what} name for VAE key {key!r}")


@lru_cache(maxsize=8)
def _directions(config: VAEConfig) -> tuple[dict[str, str], dict[str, str]]:
    table = vae_module_table(config)
    return dict(table), {d: o for o, d in table}


def vae_to_diffusers(key: str, config: VAEConfig) -> str:
    return _map(key, _directions(config)[0], "diffusers")


def vae_from_diffusers(key: str, config: VAEConfig) -> str:
    return _map(key, _directions(config)[1], "official")


def is_diffusers_vae_naming(keys) -> bool:
    """True for diffusers names (they always have `quant_conv`; official ones have `conv1`)."""
    return any(k.startswith(("quant_conv.", "post_quant_conv.")) for k in keys)
