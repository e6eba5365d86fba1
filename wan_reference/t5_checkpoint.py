"""umT5 encoder checkpoints from safetensors only (official or transformers names, one file, a sharded index or
its folder), strictly, with the loader `checkpoint.py` gives the DiT. The official
`models_t5_umt5-xxl-enc-bf16.pth` is a pickle and is refused: convert it, or use the transformers
`text_encoder/` safetensors of a diffusers repository (`UMT5EncoderModel`)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from .checkpoint import check_against, load_into, rename_keys
from .t5 import T5Encoder
from .t5_keys import (
    TIED_ALIAS,
    TRANSFORMERS_SHARED,
    is_transformers_t5_naming,
    t5_from_transformers,
    t5_to_transformers,
)

INSTEAD = "the transformers text_encoder/ safetensors (UMT5EncoderModel) of a Wan diffusers repository"


def _official(named: dict) -> dict:
    """Re-key transformers names to official ones; the tied alias of `shared.weight` is the same tensor and
    stands for it only when `shared.weight` is absent."""
    if not is_transformers_t5_naming(named):
        return named
    if TRANSFORMERS_SHARED in named:
        named = {k: v for k, v in named.items() if k != TIED_ALIAS}
    return rename_keys(named, t5_from_transformers, "transformers T5")


def check_t5_checkpoint(model: T5Encoder, path: str | Path) -> dict[str, tuple[int, ...]]:
    """Compare a checkpoint's names and shapes with the encoder's parameters (headers only); one error
    listing every problem. Returns the official-named shapes."""
    return check_against(model, path, _official, INSTEAD)


def load_t5_checkpoint(model: T5Encoder, path: str | Path) -> T5Encoder:
    """Load a safetensors encoder into `model` (from meta it lands on CPU); values take the parameters' dtype
    (the published transformers shards are fp32; the official runtime casts them to bf16)."""
    load_into(model, path, _official, INSTEAD)
    return model


def state_dict_to_transformers(model: T5Encoder) -> dict[str, torch.Tensor]:
    """The encoder's state dict under `UMT5EncoderModel`'s names, the tied alias included (what its
    `load_state_dict(strict=True)` expects)."""
    state = {t5_to_transformers(k): v for k, v in model.state_dict().items()}
    state[TIED_ALIAS] = state[TRANSFORMERS_SHARED]
    return state


def save_t5_checkpoint(model: T5Encoder, path: str | Path, naming: str = "official") -> Path:
    """Write the encoder as one safetensors file, in official or transformers names (as transformers saves
    it: `shared.weight`, without the tied alias)."""
    if naming not in ("official", "transformers"):
        raise ValueError(f"naming: 'official' or 'transformers', got {naming!r}")
    state = {(t5_to_transformers(k) if naming == "transformers" else k): v.detach().contiguous().cpu()
             for k, v in model.state_dict().items()}
    save_file(state, str(path))
    return Path(path)
