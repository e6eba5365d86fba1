"""Official (`models_t5_umt5-xxl-enc-bf16.pth`, `T5Encoder`) <-> transformers (`UMT5EncoderModel`) key names:
one table of module paths, used both ways.

The gated FFN is the trap: official `ffn.gate.0` (the Linear whose output goes through GELU) is transformers'
`wi_0`, `ffn.fc1` (the linear branch) is `wi_1`, `ffn.fc2` is `wo`. transformers ties
`encoder.embed_tokens` to `shared` (one tensor under two names; a saved checkpoint holds `shared.weight`)."""

from __future__ import annotations

from .keys import KeyMappingError, key_rules, map_key

_ATTN = "encoder.block.{i}.layer.0"
_FF = "encoder.block.{i}.layer.1"
T5_KEY_TABLE: tuple[tuple[str, str], ...] = (
    ("token_embedding", "shared"),
    ("blocks.{i}.norm1", f"{_ATTN}.layer_norm"),
    ("blocks.{i}.attn.q", f"{_ATTN}.SelfAttention.q"),
    ("blocks.{i}.attn.k", f"{_ATTN}.SelfAttention.k"),
    ("blocks.{i}.attn.v", f"{_ATTN}.SelfAttention.v"),
    ("blocks.{i}.attn.o", f"{_ATTN}.SelfAttention.o"),
    ("blocks.{i}.pos_embedding.embedding", f"{_ATTN}.SelfAttention.relative_attention_bias"),
    ("blocks.{i}.norm2", f"{_FF}.layer_norm"),
    ("blocks.{i}.ffn.gate.0", f"{_FF}.DenseReluDense.wi_0"),
    ("blocks.{i}.ffn.fc1", f"{_FF}.DenseReluDense.wi_1"),
    ("blocks.{i}.ffn.fc2", f"{_FF}.DenseReluDense.wo"),
    ("norm", "encoder.final_layer_norm"),
)
TRANSFORMERS_SHARED = "shared.weight"
TIED_ALIAS = "encoder.embed_tokens.weight"  # transformers' second name for shared.weight

_TO_TRANSFORMERS, _TO_OFFICIAL = key_rules(T5_KEY_TABLE)


def t5_to_transformers(key: str) -> str:
    out = map_key(key, _TO_TRANSFORMERS)
    if out is None:
        raise KeyMappingError(f"no transformers name for T5 key {key!r}")
    return out


def t5_from_transformers(key: str) -> str:
    out = map_key(TRANSFORMERS_SHARED if key == TIED_ALIAS else key, _TO_OFFICIAL)
    if out is None:
        raise KeyMappingError(f"no official name for transformers T5 key {key!r}")
    return out



def is_transformers_t5_naming(keys) -> bool:
    """True for transformers names (they always start with `shared.` or `encoder.`)."""
    return any(k.startswith(("shared.", "encoder.")) for k in keys)
