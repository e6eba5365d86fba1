"""`T5Config`: the umT5-XXL text encoder's architecture, read from transformers' `UMT5Config` JSON (the
`text_encoder/config.json` of the Wan2.1 diffusers repositories, `UMT5EncoderModel`).

The official code has no config file: `wan/modules/t5.py umt5_xxl` hard-codes vocab 256384, dim 4096,
dim_attn 4096, dim_ffn 10240, 64 heads, 24 encoder layers, 32 buckets, shared_pos False, and
`T5RelativeEmbedding` max_dist 128, `T5LayerNorm` eps 1e-6. Those are the defaults here, so `T5Config()` is
the published encoder. `TEXT_LEN` is the pipeline's (`wan_shared_cfg.text_len`): the tokenizer pads every
prompt to it, so the encoder always runs on 512 tokens."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import ConfigError

TEXT_LEN = 512
TRANSFORMERS_MODEL_TYPE = "umt5"  # one relative-position table per layer; "t5"/"mt5" share layer 0's


@dataclass(frozen=True)
class T5Config:
    """Official `T5Encoder` vocabulary (transformers: vocab_size, d_model, num_heads * d_kv, d_ff, ...)."""

    vocab: int = 256384
    dim: int = 4096
    dim_attn: int = 4096
    dim_ffn: int = 10240
    num_heads: int = 64
    num_layers: int = 24
    num_buckets: int = 32
    max_dist: int = 128
    eps: float = 1e-6

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def head_dim(self) -> int:
        return self.dim_attn // self.num_heads

    def with_layers(self, n: int) -> T5Config:
        return T5Config(**{**asdict(self), "num_layers": n})

    def to_dict(self) -> dict:
        return asdict(self)


def _validate(c: T5Config) -> None:
    for name in ("vocab", "dim", "num_heads", "dim_attn", "dim_ffn", "num_layers", "num_buckets", "max_dist"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name}: must be a positive integer, got {value!r}")
    if c.dim_attn % c.num_heads:
        raise ConfigError(f"dim_attn: {c.dim_attn} is not a multiple of num_heads {c.num_heads}")
    if c.num_buckets < 4 or c.num_buckets % 4:
        # bidirectional: half the buckets per direction, half of those exact
        raise ConfigError(f"num_buckets: must be a positive multiple of 4, got {c.num_buckets}")
    if c.max_dist <= c.num_buckets // 4:
        raise ConfigError(f"max_dist: must exceed the {c.num_buckets // 4} exact buckets, got {c.max_dist}")
    if isinstance(c.eps, bool) or not isinstance(c.eps, (int, float)) or not c.eps > 0:
        raise ConfigError(f"eps: must be a positive number, got {c.eps!r}")


# transformers field -> official field; the size-defining ones are required (UMT5Config's defaults are
# umT5-small, which no Wan checkpoint uses)
_REQUIRED = {"vocab_size": "vocab", "d_model": "dim", "d_ff": "dim_ffn", "num_heads": "num_heads",
             "num_layers": "num_layers", "d_kv": None}
_OPTIONAL = {"relative_attention_num_buckets": "num_buckets", "relative_attention_max_distance": "max_dist",
             "layer_norm_epsilon": "eps"}
# fields that must keep the value of the encoder wan/modules/t5.py builds
_FIXED = {"feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new", "is_gated_act": True}


def t5_config_from_dict(raw: dict) -> T5Config:
    """A `T5Config` from a parsed transformers `UMT5Config` config.json."""
    if not isinstance(raw, dict):
        raise ConfigError("config: top level must be a JSON object")
    if raw.get("model_type") != TRANSFORMERS_MODEL_TYPE:
        raise ConfigError(f"model_type: expected {TRANSFORMERS_MODEL_TYPE!r} (transformers UMT5Config, "
                          f"text_encoder/config.json), got {raw.get('model_type')!r}")
    for name, value in _FIXED.items():
        if name in raw and raw[name] != value:
            raise ConfigError(f"{name}: the Wan text encoder is {name} {json.dumps(value)}, got {raw[name]!r}")
    missing = [name for name in _REQUIRED if name not in raw]
    if missing:
        raise ConfigError(f"{missing[0]}: missing (a UMT5Config default is umT5-small, not the Wan encoder)")
    kwargs = {official: raw[name] for name, official in {**_REQUIRED, **_OPTIONAL}.items()
              if official and name in raw}
    heads, d_kv = raw["num_heads"], raw["d_kv"]
    if isinstance(d_kv, bool) or not isinstance(d_kv, int) or d_kv <= 0:
        raise ConfigError(f"d_kv: must be a positive integer, got {d_kv!r}")
    kwargs["dim_attn"] = heads * d_kv if isinstance(heads, int) and not isinstance(heads, bool) else heads
    try:
        return T5Config(**kwargs)
    except ConfigError as exc:  # name the file's field, not ours
        field, _, rest = str(exc).partition(":")
        raise ConfigError(f"{_JSON_NAMES.get(field, field)}:{rest}") from None


_JSON_NAMES = {official: name for name, official in {**_REQUIRED, **_OPTIONAL}.items() if official}
_JSON_NAMES["dim_attn"] = "d_kv"


def load_t5_config(path: str | Path) -> T5Config:
    """Read and validate a transformers `text_encoder/config.json`; every failure is one `ConfigError` line."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return t5_config_from_dict(raw)


def is_t5_config(path: str | Path) -> bool:
    """True for a transformers UMT5 config.json (a text encoder's), so that a command can tell it from a DiT's;
    anything unreadable is False and left to the DiT reader's own error."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(raw, dict) and raw.get("model_type") == TRANSFORMERS_MODEL_TYPE


def to_transformers_t5_config(c: T5Config) -> dict:
    """The `UMT5Config` arguments of the same encoder (cross-checks and export)."""
    return {
        "vocab_size": c.vocab,
        "d_model": c.dim,
        "d_kv": c.head_dim,
        "d_ff": c.dim_ffn,
        "num_heads": c.num_heads,
        "num_layers": c.num_layers,
        "relative_attention_num_buckets": c.num_buckets,
        "relative_attention_max_distance": c.max_dist,
        "layer_norm_epsilon": c.eps,
        "feed_forward_proj": "gated-gelu",
        "dropout_rate": 0.0,
    }
