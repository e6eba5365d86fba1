"""One `WanConfig` from either published config.json format (official `WanModel` or diffusers
`WanTransformer3DModel`), validated so that a bad file fails with one line naming the field."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

# Constants of the official code that no config.json carries.
CLIP_DIM = 1280  # MLPProj(1280, dim): CLIP ViT-H/14 width
IMAGE_TOKENS = {"t2v": 0, "i2v": 257, "flf2v": 514}  # CLIP tokens per forward (flf2v: two images)
MODEL_TYPES = tuple(IMAGE_TOKENS)

OFFICIAL_CLASS = "WanModel"
DIFFUSERS_CLASS = "WanTransformer3DModel"


class ConfigError(ValueError):
    """A config that cannot describe a Wan2.1 DiT; the message is one line naming the field."""


@dataclass(frozen=True)
class WanConfig:
    """Architecture of one Wan2.1 DiT, in the official `WanModel.__init__` vocabulary.

    Defaults are the official class defaults, so omitted fields mean what they mean upstream."""

    model_type: str = "t2v"
    patch_size: tuple[int, int, int] = (1, 2, 2)
    text_len: int = 512
    in_dim: int = 16
    dim: int = 2048
    ffn_dim: int = 8192
    freq_dim: int = 256
    text_dim: int = 4096
    out_dim: int = 16
    num_heads: int = 16
    num_layers: int = 32
    window_size: tuple[int, int] = (-1, -1)
    qk_norm: bool = True
    cross_attn_norm: bool = True
    eps: float = 1e-6
    rope_max_seq_len: int = 1024

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def rope_split(self) -> tuple[int, int, int]:
        """Channels of one head given to the frame / height / width axes (official rope_params)."""
        d = self.head_dim
        return (d - 4 * (d // 6), 2 * (d // 6), 2 * (d // 6))

    @property
    def image_tokens(self) -> int:
        return IMAGE_TOKENS[self.model_type]

    @property
    def patch_features(self) -> int:
        return math.prod(self.patch_size)

    def to_dict(self) -> dict:
        return asdict(self)


# Size-defining fields: a class default for these (dim 2048, 32 layers, ...) matches no released model,
# so a config.json without them is an error rather than a silent guess.
_REQUIRED = {
    OFFICIAL_CLASS: ("dim", "ffn_dim", "num_heads", "num_layers"),
    DIFFUSERS_CLASS: ("num_attention_heads", "attention_head_dim", "ffn_dim", "num_layers"),
}


def _validate(c: WanConfig) -> None:
    if c.model_type not in MODEL_TYPES:
        raise ConfigError(
            f"model_type: unknown variant {c.model_type!r}; supported: {', '.join(MODEL_TYPES)}"
        )
    for name in ("text_len", "in_dim", "dim", "ffn_dim", "freq_dim", "text_dim", "out_dim",
                 "num_heads", "num_layers", "rope_max_seq_len"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
    if (len(c.patch_size) != 3 or any(isinstance(p, bool) or not isinstance(p, int) or p <= 0
                                       for p in c.patch_size)):
        raise ConfigError(f"patch_size: must be three positive integers, got {list(c.patch_size)!r}")
    if not isinstance(c.eps, (int, float)) or isinstance(c.eps, bool) or not 0 < c.eps < 1:
        raise ConfigError(f"eps: must be a number in (0, 1), got {c.eps!r}")
    if tuple(c.window_size) != (-1, -1):
        raise ConfigError(
            f"window_size: only global attention (-1, -1) is supported, got {list(c.window_size)!r}"
        )
    if c.dim % c.num_heads:
        raise ConfigError(f"num_heads: dim {c.dim} is not divisible by num_heads {c.num_heads}")
    d = c.head_dim
    if d % 2 or d < 6:
        raise ConfigError(
            f"num_heads: head_dim {d} (dim/num_heads) cannot split into the three RoPE axes "
            "(it must be even and at least 6)"
        )
    if c.freq_dim % 2:
        raise ConfigError(f"freq_dim: must be even (cos and sin halves), got {c.freq_dim}")


def _int_tuple(value, field: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{field}: must be a list, got {value!r}")
    return tuple(value)


def from_dict(raw: dict) -> WanConfig:
    """Build a `WanConfig` from a parsed config.json of either format."""
    if not isinstance(raw, dict):
        raise ConfigError("config: top level must be a JSON object")
    cls = raw.get("_class_name")
    if cls is None:
        raise ConfigError(
            f"_class_name: missing (expected {OFFICIAL_CLASS!r} or {DIFFUSERS_CLASS!r})"
        )
    if cls not in _REQUIRED:
        raise ConfigError(
            f"_class_name: unknown variant {cls!r} (supported: {OFFICIAL_CLASS}, {DIFFUSERS_CLASS})"
        )
    for name in _REQUIRED[cls]:
        if name not in raw:
            raise ConfigError(f"{name}: required field missing from {cls} config")
    return _from_official(raw) if cls == OFFICIAL_CLASS else _from_diffusers(raw)


def _from_official(raw: dict) -> WanConfig:
    known = {f.name for f in fields(WanConfig)}
    kwargs = {k: v for k, v in raw.items() if k in known}
    for name in ("patch_size", "window_size"):
        if name in kwargs:
            kwargs[name] = _int_tuple(kwargs[name], name)
    return WanConfig(**kwargs)


def _from_diffusers(raw: dict) -> WanConfig:
    heads, head_dim = raw["num_attention_heads"], raw["attention_head_dim"]
    for name, value in (("num_attention_heads", heads), ("attention_head_dim", head_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
    dim = heads * head_dim
    image_dim = raw.get("image_dim")
    added_kv = raw.get("added_kv_proj_dim")
    pos_len = raw.get("pos_embed_seq_len")
    if image_dim is None:
        if added_kv is not None or pos_len is not None:
            raise ConfigError("image_dim: null, but added_kv_proj_dim/pos_embed_seq_len are set")
        model_type = "t2v"
    else:
        if image_dim != CLIP_DIM:
            raise ConfigError(f"image_dim: Wan2.1 uses CLIP features of {CLIP_DIM}, got {image_dim!r}")
        if added_kv != dim:
            raise ConfigError(f"added_kv_proj_dim: must equal the model dim {dim}, got {added_kv!r}")
        if pos_len not in (None, IMAGE_TOKENS["flf2v"]):
            raise ConfigError(
                f"pos_embed_seq_len: must be null or {IMAGE_TOKENS['flf2v']}, got {pos_len!r}"
            )
        model_type = "i2v" if pos_len is None else "flf2v"
    qk_norm = raw.get("qk_norm", "rms_norm_across_heads")
    if qk_norm not in ("rms_norm_across_heads", None):
        raise ConfigError(f"qk_norm: only 'rms_norm_across_heads' or null are supported, got {qk_norm!r}")
    in_dim = raw.get("in_channels", 16)
    kwargs = dict(
        model_type=model_type,
        patch_size=_int_tuple(raw.get("patch_size", (1, 2, 2)), "patch_size"),
        in_dim=in_dim,
        dim=dim,
        ffn_dim=raw["ffn_dim"],
        freq_dim=raw.get("freq_dim", 256),
        text_dim=raw.get("text_dim", 4096),
        out_dim=raw.get("out_channels") or in_dim,
        num_heads=heads,
        num_layers=raw["num_layers"],
        qk_norm=qk_norm is not None,
        cross_attn_norm=raw.get("cross_attn_norm", True),
        eps=raw.get("eps", 1e-6),
        rope_max_seq_len=raw.get("rope_max_seq_len", 1024),
    )
    return WanConfig(**kwargs)


def read_config(path: str | Path) -> tuple[WanConfig, str]:
    """Read and validate a config.json: (config, "official" or "diffusers").
    Every failure is a `ConfigError` with one line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror or exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    try:
        config = from_dict(raw)
    except TypeError as exc:  # e.g. a list where a number belongs
        raise ConfigError(f"config: {path}: {exc}") from None
    return config, "diffusers" if raw["_class_name"] == DIFFUSERS_CLASS else "official"


def load_config(path: str | Path) -> WanConfig:
    return read_config(path)[0]


def to_diffusers_config(c: WanConfig) -> dict:
    """The `WanTransformer3DModel` config.json of the same architecture (for cross-checks and export)."""
    image = c.model_type != "t2v"
    return {
        "_class_name": DIFFUSERS_CLASS,
        "added_kv_proj_dim": c.dim if image else None,
        "attention_head_dim": c.head_dim,
        "cross_attn_norm": c.cross_attn_norm,
        "eps": c.eps,
        "ffn_dim": c.ffn_dim,
        "freq_dim": c.freq_dim,
        "image_dim": CLIP_DIM if image else None,
        "in_channels": c.in_dim,
        "num_attention_heads": c.num_heads,
        "num_layers": c.num_layers,
        "out_channels": c.out_dim,
        "patch_size": list(c.patch_size),
        "pos_embed_seq_len": IMAGE_TOKENS["flf2v"] if c.model_type == "flf2v" else None,
        "qk_norm": "rms_norm_across_heads" if c.qk_norm else None,
        "rope_max_seq_len": c.rope_max_seq_len,
        "text_dim": c.text_dim,
    }
