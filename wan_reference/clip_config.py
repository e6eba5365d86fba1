"""`CLIPConfig`: the CLIP ViT-H/14 image encoder of Wan2.1 i2v/flf2v, read from transformers' `CLIPVisionConfig`
JSON (the `image_encoder/config.json` of the Wan2.1 I2V/FLF2V Diffusers repositories).

The official code has no config file: `wan/modules/clip.py clip_xlm_roberta_vit_h_14` hard-codes image_size 224,
patch_size 14, vision_dim 1280, vision_mlp_ratio 4, vision_heads 16, vision_layers 32, embed_dim 1024 (the head's
width), activation 'gelu', norm_eps 1e-5. Those are the defaults here, so `CLIPConfig()` is the published tower.

A transformers file means what transformers makes of it: an omitted `hidden_act` is "quick_gelu" and an omitted
`projection_dim` 512 (CLIPVisionConfig's defaults, ViT-B/32's). The size-defining fields have no safe default, so
they are required."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import ConfigError

ACTIVATIONS = ("gelu", "quick_gelu")  # the official AttentionBlock's, less swi_glu (not in transformers' CLIP)
# CLIP's image statistics (official `_clip` transforms, transformers' CLIPImageProcessor): RGB mean and std
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class CLIPConfig:
    """The visual tower in the official `VisionTransformer` vocabulary (`mlp_dim` is int(dim * mlp_ratio))."""

    image_size: int = 224
    patch_size: int = 14
    dim: int = 1280
    mlp_dim: int = 5120
    num_heads: int = 16
    num_layers: int = 32
    out_dim: int = 1024  # `head`: [dim, out_dim], never used by Wan
    activation: str = "gelu"
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def tokens(self) -> int:
        """Sequence length: the class token and one token per patch (257 for ViT-H/14 at 224)."""
        return self.grid ** 2 + 1

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def run_layers(self) -> int:
        """Blocks Wan runs: all but the last (`use_31_block=True`, the penultimate block's features)."""
        return self.num_layers - 1

    def to_dict(self) -> dict:
        return asdict(self)


def _validate(c: CLIPConfig) -> None:
    for name in ("image_size", "patch_size", "dim", "mlp_dim", "num_heads", "num_layers", "out_dim"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
    if c.image_size % c.patch_size:
        raise ConfigError(f"image_size: must be a multiple of patch_size {c.patch_size}, got {c.image_size}")
    if c.dim % c.num_heads:
        raise ConfigError(f"num_heads: must divide the width {c.dim}, got {c.num_heads}")
    if c.num_layers < 2:
        raise ConfigError(f"num_layers: Wan takes the penultimate block's features, so at least 2, got {c.num_layers}")
    if c.activation not in ACTIVATIONS:
        raise ConfigError(f"activation: one of {', '.join(ACTIVATIONS)}, got {c.activation!r}")
    if isinstance(c.norm_eps, bool) or not isinstance(c.norm_eps, (int, float)) or not c.norm_eps > 0:
        raise ConfigError(f"norm_eps: must be a positive number, got {c.norm_eps!r}")


def text_tower_params(vocab: int = 250002, max_text_len: int = 514, type_size: int = 1, dim: int = 1024,
                      layers: int = 24) -> int:
    """Parameters of the official checkpoint's `textual.*` (XLM-RoBERTa-large with its head; the defaults are
    clip_xlm_roberta_vit_h_14's): Wan never runs it, but the official CLIPModel loads it and moves it to the GPU
    with the visual tower. Embeddings and their LayerNorm; per block q, k, v, o, two LayerNorms, a 4x MLP; the head's
    two bias-free dim x dim Linears (mid_dim = out_dim = 1024). `log_scale` adds 1 more."""
    embeddings = (vocab + type_size + max_text_len) * dim + 2 * dim
    block = 4 * (dim * dim + dim) + 2 * 2 * dim + (dim * 4 * dim + 4 * dim) + (4 * dim * dim + dim)
    return embeddings + layers * block + 2 * dim * dim


TRANSFORMERS_MODEL_TYPE = "clip_vision_model"
# transformers field -> official field; the first six define the size and are required
_FIELDS = {"image_size": "image_size", "patch_size": "patch_size", "hidden_size": "dim",
           "intermediate_size": "mlp_dim", "num_attention_heads": "num_heads", "num_hidden_layers": "num_layers",
           "projection_dim": "out_dim", "hidden_act": "activation", "layer_norm_eps": "norm_eps"}
_REQUIRED = tuple(_FIELDS)[:6]
_TRANSFORMERS_DEFAULTS = {"projection_dim": 512, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}


def clip_config_from_dict(raw: dict) -> CLIPConfig:
    """A `CLIPConfig` from a parsed transformers `CLIPVisionConfig` (or a `CLIPConfig` with a `vision_config`)."""
    if not isinstance(raw, dict):
        raise ConfigError("config: top level must be a JSON object")
    if raw.get("model_type") == "clip" and isinstance(raw.get("vision_config"), dict):
        raw = raw["vision_config"]
    model_type = raw.get("model_type", TRANSFORMERS_MODEL_TYPE)
    if model_type != TRANSFORMERS_MODEL_TYPE:
        raise ConfigError(f"model_type: expected {TRANSFORMERS_MODEL_TYPE!r} (transformers CLIPVisionConfig), "
                          f"got {model_type!r}")
    if raw.get("num_channels", 3) != 3:
        raise ConfigError(f"num_channels: Wan encodes RGB images (3), got {raw['num_channels']!r}")
    for name in ("attention_dropout", "dropout"):
        if not isinstance(raw.get(name, 0.0), (int, float)) or isinstance(raw.get(name), bool):
            raise ConfigError(f"{name}: must be a number, got {raw[name]!r}")
    if missing := [name for name in _REQUIRED if name not in raw]:
        raise ConfigError(f"{missing[0]}: required (size-defining; transformers' default is ViT-B/32's)")
    kwargs = {official: raw.get(name, _TRANSFORMERS_DEFAULTS.get(name)) for name, official in _FIELDS.items()}
    return CLIPConfig(**kwargs)


def load_clip_config(path: str | Path) -> CLIPConfig:
    """Read and validate an `image_encoder/config.json`; every failure is one `ConfigError` line."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return clip_config_from_dict(raw)


def to_transformers_clip_config(c: CLIPConfig) -> dict:
    """The `CLIPVisionConfig` arguments of the same tower (cross-checks and export)."""
    out = {name: getattr(c, official) for name, official in _FIELDS.items()}
    return {"model_type": TRANSFORMERS_MODEL_TYPE, "num_channels": 3, "attention_dropout": 0.0, **out}
