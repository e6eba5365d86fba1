"""CLIP image-encoder checkpoints from safetensors only, official (`visual.*`) or transformers names, strictly, with
the loader every component shares (`checkpoint.py`). The official
`models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth` is a pickle and is refused: convert it (its `textual.*`
keys and `log_scale` are ignored), or use the transformers `image_encoder/model.safetensors`."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from .checkpoint import CheckpointError, check_against, load_into
from .clip import CLIPImageEncoder
from .clip_config import CLIPConfig
from .clip_keys import IGNORED, clip_from_transformers, clip_to_transformers, is_transformers_clip_naming
from .keys import KeyMappingError

INSTEAD = ("the transformers image_encoder/model.safetensors (a conversion may keep the official visual.* names; "
           "textual.* is ignored)")


def _official(named: dict, config: CLIPConfig) -> dict:
    if not is_transformers_clip_naming(named):
        return {k: v for k, v in named.items() if not IGNORED.match(k)}
    try:
        return clip_from_transformers(named, config)
    except KeyMappingError as exc:
        raise CheckpointError(f"checkpoint: {exc}") from None


def check_clip_checkpoint(model: CLIPImageEncoder, path: str | Path) -> dict[str, tuple[int, ...]]:
    """Compare a checkpoint's names and shapes with the model's parameters (headers only); one error listing
    every problem. Returns the official-named shapes."""
    return check_against(model, path, lambda named: _official(named, model.config), INSTEAD)


def load_clip_checkpoint(model: CLIPImageEncoder, path: str | Path) -> CLIPImageEncoder:
    """Load a safetensors CLIP into `model` (from meta it lands on CPU); values take the parameters' dtype."""
    if load_into(model, path, lambda named: _official(named, model.config), INSTEAD):
        model.reset_buffers()
    return model


def save_clip_checkpoint(model: CLIPImageEncoder, path: str | Path, naming: str = "official") -> Path:
    """Write the encoder's parameters as one safetensors file, in official or transformers names."""
    if naming not in ("official", "transformers"):
        raise ValueError(f"naming: 'official' or 'transformers', got {naming!r}")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(clip_to_transformers(state, model.config) if naming == "transformers" else state, str(path))
    return Path(path)


def state_dict_to_transformers(model: CLIPImageEncoder) -> dict[str, torch.Tensor]:
    """The encoder's state dict under transformers' names (to load into `CLIPVisionModelWithProjection`)."""
    return clip_to_transformers(model.state_dict(), model.config)
