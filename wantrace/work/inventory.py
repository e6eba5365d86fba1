"""Parameters and weight bytes of a Wan DiT, read off the meta-built model under each precision policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from wan_reference import POLICIES, WanConfig, build_model
from wan_reference.config import read_config

# top-level module -> the group a user thinks in
GROUPS = {
    "patch_embedding": "embeddings",
    "text_embedding": "embeddings",
    "time_embedding": "embeddings",
    "time_projection": "embeddings",
    "img_emb": "embeddings",
    "vace_patch_embedding": "embeddings",
    "blocks": "blocks",
    "vace_blocks": "vace_blocks",
    "head": "head",
}


@dataclass
class Inventory:
    config: WanConfig
    config_format: str
    params: int
    params_by_group: dict[str, int]
    params_per_block: int
    weight_bytes: dict[str, int] = field(default_factory=dict)  # policy name -> bytes


def inventory(config: WanConfig, config_format: str = "official") -> Inventory:
    """Counts from one meta build; each policy's bytes from the dtype it gives every parameter."""
    model = build_model(config, "fp32")
    params = [(name, p.numel()) for name, p in model.named_parameters()]
    counts: dict[str, int] = {}
    for name, n in params:
        group = GROUPS[name.split(".", 1)[0]]
        counts[group] = counts.get(group, 0) + n
    weight_bytes = {
        policy.name: sum(n * policy.param_dtype_of(name).itemsize for name, n in params)
        for policy in POLICIES.values()
    }
    return Inventory(
        config=config,
        config_format=config_format,
        params=sum(counts.values()),
        params_by_group=counts,
        params_per_block=sum(p.numel() for p in model.blocks[0].parameters()),
        weight_bytes=weight_bytes,
    )


def inventory_from_file(path: str | Path) -> Inventory:
    return inventory(*read_config(path))
