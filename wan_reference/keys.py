"""Official <-> diffusers state-dict key names: one table, used in both directions.

Mind the swap: official `norm3` (affine, before cross-attention) is diffusers `norm2`, and official
`norm2` (FFN pre-norm, no parameters) is diffusers `norm3`."""

from __future__ import annotations

import re

# (official module/parameter path, diffusers path); {i} is a block index.
KEY_TABLE: tuple[tuple[str, str], ...] = (
    ("patch_embedding", "patch_embedding"),
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("img_emb.proj.0", "condition_embedder.image_embedder.norm1"),
    ("img_emb.proj.1", "condition_embedder.image_embedder.ff.net.0.proj"),
    ("img_emb.proj.3", "condition_embedder.image_embedder.ff.net.2"),
    ("img_emb.proj.4", "condition_embedder.image_embedder.norm2"),
    ("img_emb.emb_pos", "condition_embedder.image_embedder.pos_embed"),
    ("blocks.{i}.modulation", "blocks.{i}.scale_shift_table"),
    ("blocks.{i}.self_attn.q", "blocks.{i}.attn1.to_q"),
    ("blocks.{i}.self_attn.k", "blocks.{i}.attn1.to_k"),
    ("blocks.{i}.self_attn.v", "blocks.{i}.attn1.to_v"),
    ("blocks.{i}.self_attn.o", "blocks.{i}.attn1.to_out.0"),
    ("blocks.{i}.self_attn.norm_q", "blocks.{i}.attn1.norm_q"),
    ("blocks.{i}.self_attn.norm_k", "blocks.{i}.attn1.norm_k"),
    ("blocks.{i}.norm3", "blocks.{i}.norm2"),
    ("blocks.{i}.cross_attn.q", "blocks.{i}.attn2.to_q"),
    ("blocks.{i}.cross_attn.k", "blocks.{i}.attn2.to_k"),
    ("blocks.{i}.cross_attn.v", "blocks.{i}.attn2.to_v"),
    ("blocks.{i}.cross_attn.o", "blocks.{i}.attn2.to_out.0"),
    ("blocks.{i}.cross_attn.norm_q", "blocks.{i}.attn2.norm_q"),
    ("blocks.{i}.cross_attn.norm_k", "blocks.{i}.attn2.norm_k"),
    ("blocks.{i}.cross_attn.k_img", "blocks.{i}.attn2.add_k_proj"),
    ("blocks.{i}.cross_attn.v_img", "blocks.{i}.attn2.add_v_proj"),
    ("blocks.{i}.cross_attn.norm_k_img", "blocks.{i}.attn2.norm_added_k"),
    ("blocks.{i}.ffn.0", "blocks.{i}.ffn.net.0.proj"),
    ("blocks.{i}.ffn.2", "blocks.{i}.ffn.net.2"),
    ("head.modulation", "scale_shift_table"),
    ("head.head", "proj_out"),
)
# VACE (official vace_model.py <-> diffusers WanVACETransformer3DModel): the control blocks carry the block keys
# under vace_blocks.{i}, plus before_proj (block 0) and after_proj.
KEY_TABLE += (
    ("vace_patch_embedding", "vace_patch_embedding"),
    ("vace_blocks.{i}.before_proj", "vace_blocks.{i}.proj_in"),
    ("vace_blocks.{i}.after_proj", "vace_blocks.{i}.proj_out"),
) + tuple(("vace_" + o, "vace_" + d) for o, d in KEY_TABLE if o.startswith("blocks.{i}."))

# diffusers ignores these on load (`_keys_to_ignore_on_load_unexpected`); so do we.
DIFFUSERS_IGNORED = re.compile(r"(^|\.)norm_added_q\.")


class KeyMappingError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want a plain line
        return str(self.args[0])


def _compile(template: str) -> re.Pattern:
    body = re.escape(template).replace(re.escape("{i}"), r"(?P<i>\d+)")
    return re.compile(rf"^{body}(?P<leaf>\.(?:weight|bias))?$")


Rules = list[tuple[re.Pattern, str]]


def key_rules(table: tuple[tuple[str, str], ...]) -> tuple[Rules, Rules]:
    """A table of (official, other) module-path templates ({i}: a block index) compiled both ways:
    (official -> other, other -> official); `map_key` applies one direction to a parameter name."""
    return [(_compile(o), d) for o, d in table], [(_compile(d), o) for o, d in table]


def map_key(key: str, rules: Rules) -> str | None:
    for pattern, target in rules:
        m = pattern.match(key)
        if m:
            out = target.replace("{i}", m.group("i")) if m.groupdict().get("i") else target
            return out + (m.group("leaf") or "")
    return None


_TO_DIFFUSERS, _TO_OFFICIAL = key_rules(KEY_TABLE)


def to_diffusers(key: str) -> str:
    out = map_key(key, _TO_DIFFUSERS)
    if out is None:
        raise KeyMappingError(f"no diffusers name for official key {key!r}")
    return out


def from_diffusers(key: str) -> str:
    out = map_key(key, _TO_OFFICIAL)
    if out is None:
        raise KeyMappingError(f"no official name for diffusers key {key!r}")
    return out


def is_diffusers_naming(keys) -> bool:
    """True when the keys are diffusers names (they always include the condition embedder)."""
    return any(k.startswith("condition_embedder.") for k in keys)
