"""VAE checkpoints from safetensors only (official or diffusers names), strictly, as `checkpoint.py` loads the
DiT. The official `Wan2.1_VAE.pth` is a pickle and is refused: convert it, or use the diffusers
`vae/diffusion_pytorch_model.safetensors`."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from .checkpoint import CheckpointError, _listing, read_shapes, read_tensors
from .keys import KeyMappingError
from .vae import WanVAE
from .vae_config import VAEConfig
from .vae_keys import is_diffusers_vae_naming, vae_from_diffusers, vae_to_diffusers

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def _refuse_pickle(path: Path) -> None:
    if path.suffix in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"checkpoint: {path.name} is a pickled checkpoint, which is never loaded; convert it to safetensors "
            "(official names are accepted) or use the diffusers vae/diffusion_pytorch_model.safetensors"
        )


def _official(named: dict, config: VAEConfig) -> dict:
    if not is_diffusers_vae_naming(named):
        return named
    out, unknown = {}, []
    for key, value in named.items():
        try:
            out[vae_from_diffusers(key, config)] = value
        except KeyMappingError:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"checkpoint: unexpected diffusers VAE keys: {_listing(unknown)}")
    return out


def check_vae_checkpoint(model: WanVAE, path: str | Path) -> dict[str, tuple[int, ...]]:
    """Compare a checkpoint's names and shapes with the model's parameters (headers only); one error
    listing every problem."""
    path = Path(path)
    _refuse_pickle(path)
    shapes = _official(read_shapes(path), model.config)
    expected = {k: tuple(p.shape) for k, p in model.named_parameters()}
    problems = []
    if missing := expected.keys() - shapes.keys():
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected := shapes.keys() - expected.keys():
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if mismatched := [f"{k} {list(shapes[k])} != {list(v)}" for k, v in expected.items()
                      if k in shapes and shapes[k] != v]:
        problems.append(f"shape mismatches: {_listing(mismatched, 4)}")
    if problems:
        raise CheckpointError(f"checkpoint {path.name}: " + "; ".join(problems))
    return shapes


def load_vae_checkpoint(model: WanVAE, path: str | Path) -> WanVAE:
    """Load a safetensors VAE into `model` (from meta it lands on CPU); values take the parameters' dtype."""
    check_vae_checkpoint(model, path)
    tensors = _official(read_tensors(path), model.config)
    params = dict(model.named_parameters())
    on_meta = next(iter(params.values())).is_meta
    state = {k: tensors[k].to(device="cpu" if on_meta else p.device, dtype=p.dtype) for k, p in params.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.requires_grad_(False)
    if on_meta:
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
