"""Every costed node falls in exactly one category: casts and collectives by what they do, everything else by
where it runs. `communication` (the collectives of a sequence-parallel forward) is listed only in reports that have
collectives (`categories_for`), so single-GPU reports keep their eleven categories."""

from __future__ import annotations

import re

CATEGORIES = (
    "self-attention core",
    "cross-attention core",
    "attention projections",
    "FFN",
    "norms",
    "modulation & gates",
    "RoPE",
    "embeddings",
    "head & unpatchify",
    "dtype casts",
    "other",
)
COMMUNICATION = "communication"

_B = r"(?:vace_)?blocks\.\d+\."  # main blocks and VACE control blocks
_V = r"visual\.transformer\.\d+\."  # the CLIP image encoder's blocks (wan_reference/clip.py)
_PATTERNS = [
    ("self-attention core", rf"{_B}self_attn\.attention(\.ring_merge)?|{_V}attn\.attention"),
    ("cross-attention core", rf"{_B}cross_attn\.(attention|attention_img|merge_img)"),
    ("attention projections", rf"{_B}(self_attn|cross_attn)\.(q|k|v|o|k_img|v_img)|{_V}attn\.(to_qkv|proj)"),
    ("FFN", rf"{_B}ffn(\.\d+)?|{_V}mlp(\.\d+)?"),
    ("norms", rf"{_B}(norm1|norm2|norm3|(self_attn|cross_attn)\.norm_(q|k|k_img))|head\.norm"
              rf"|{_V}norm[12]|visual\.pre_norm"),
    ("modulation & gates",
     rf"{_B}(modulation|modulate_msa|modulate_ffn|gate_msa|gate_ffn)|head\.(modulation|modulate)"),
    ("RoPE", rf"rope|{_B}self_attn\.rope"),
    ("embeddings", r"condition|(vace_)?patch_embedding|(vace_)?patchify|sinusoid|time_cast|time_tokens|context"
                   r"|(time_embedding|time_projection|text_embedding)(\.\d+)?|img_emb(\..+)?"
                   r"|visual\.(patch_embedding|embed)"),
    ("head & unpatchify", r"head\.head|unpatchify"),
]
_COMPILED = [(category, re.compile(rf"^(?:{pattern})$")) for category, pattern in _PATTERNS]


def category_of(module_id: str, family: str = "") -> str:
    """The category of a node that ran in `module_id` and was costed by a rule of `family`."""
    if family == "cast":
        return "dtype casts"
    if family == "communication":
        return COMMUNICATION
    for category, pattern in _COMPILED:
        if pattern.match(module_id):
            return category
    return "other"


def categories_for(families) -> tuple[str, ...]:
    """The categories a report of nodes of these rule families lists: CATEGORIES, plus `communication` when a
    collective ran."""
    return CATEGORIES + ((COMMUNICATION,) if "communication" in set(families) else ())
