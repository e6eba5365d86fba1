"""VAE checkpoints from safetensors only (official or diffusers names), strictly, as `checkpoint.py` loads the
DiT. The official `Wan2.1_VAE.pth` is a pickle and is refused: convert it, or use the diffusers
`vae/diffusion_pytorch_model.safetensors`."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from .checkpoint import check_against, load_into, rename_keys
from .vae import WanVAE
from .vae_config import VAEConfig
from .vae_keys import is_diffusers_vae_naming, vae_from_diffusers, vae_to_diffusers

INSTEAD = "the diffusers vae/diffusion_pytorch_model.safetensors"


def _official(named: dict, config: VAEConfig) -> dict:
    if not is_diffusers_vae_naming(named):
        return named
    return rename_keys(named, lambda key: vae_from_diffusers(key, config), "diffusers VAE")


def check_vae_checkpoint(model: WanVAE, path: str | Path) -> dict[str, tuple[int, ...]]:
    """Compare a checkpoint's names and shapes with the model's parameters (headers only); one error
    listing every problem."""
    return check_against(model, path, lambda named: _official(named, model.config), INSTEAD)


def load_vae_checkpoint(model: WanVAE, path: str | Path) -> WanVAE:
    """Load a safetensors VAE into `model` (from meta it lands on CPU); values take the parameters' dtype."""
    if load_into(model, path, lambda named: _official(named, model.config), INSTEAD):
        model.reset_scale()
    return model


def save_vae_checkpoint(model: WanVAE, path: str | Path, naming: str = "official") -> Path:
    """Write the VAE's parameters as one safetensors file, in official or diffusers names."""
    if naming not in ("official", "diffusers"):
        raise ValueError(f"naming: 'official' or 'diffusers', got {naming!r}")
    state = {
        (vae_to_diffusers(k, model.config) if naming == "diffusers" else k): v.detach().contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(path))
    return Path(path)


def state_dict_to_diffusers(model: WanVAE) -> dict[str, torch.Tensor]:
    """The model's state dict under diffusers' names (to load into `AutoencoderKLWan`)."""
    return {vae_to_diffusers(k, model.config): v for k, v in model.state_dict().items()}
