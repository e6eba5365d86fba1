"""Official (`models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth`, `visual.*`) <-> transformers
(`CLIPVisionModelWithProjection`) names of the CLIP image encoder: one table, used both ways.

Four parameters change shape on the way: the fused `to_qkv` is transformers' q_proj, k_proj, v_proj stacked in
that order (upstream `.view(b, s, 3, n, d).unbind(2)`); the class token [1, 1, dim] is `class_embedding` [dim];
the position table [1, tokens, dim] is the `position_embedding` Embedding's weight [tokens, dim]; the `head`
[dim, out] (x @ head) is the `visual_projection` Linear's weight [out, dim]."""

from __future__ import annotations

import re
from functools import lru_cache

import torch

from .clip_config import CLIPConfig
from .keys import KeyMappingError

# in a checkpoint, never part of the image encoder: the text tower of the official file, transformers' buffer
IGNORED = re.compile(r"^(textual\.|log_scale$|vision_model\.embeddings\.position_ids$)")

_BLOCK = (("norm1", "layer_norm1"), ("attn.proj", "self_attn.out_proj"), ("norm2", "layer_norm2"),
          ("mlp.0", "mlp.fc1"), ("mlp.2", "mlp.fc2"))


@lru_cache(maxsize=8)
def clip_key_table(config: CLIPConfig) -> tuple[tuple[str, tuple[str, ...], str], ...]:
    """(official key, transformers key(s), how the tensor changes) for every parameter."""
    v, e = "visual", "vision_model"
    table: list[tuple[str, tuple[str, ...], str]] = [
             (f"{v}.patch_embedding.weight", (f"{e}.embeddings.patch_embedding.weight",), "same"),
             (f"{v}.cls_embedding", (f"{e}.embeddings.class_embedding",), "flatten"),
             (f"{v}.pos_embedding", (f"{e}.embeddings.position_embedding.weight",), "flatten"),
             (f"{v}.head", ("visual_projection.weight",), "transpose")]
    norms = (("pre_norm", "pre_layrnorm"), ("post_norm", "post_layernorm"))  # sic: transformers' pre_layrnorm
    table += [(f"{v}.{o}.{leaf}", (f"{e}.{t}.{leaf}",), "same") for o, t in norms for leaf in ("weight", "bias")]
    for i in range(config.num_layers):
        o, t = f"{v}.transformer.{i}", f"{e}.encoder.layers.{i}"
        for leaf in ("weight", "bias"):
            table.append((f"{o}.attn.to_qkv.{leaf}", tuple(f"{t}.self_attn.{p}_proj.{leaf}" for p in "qkv"), "qkv"))
            table += [(f"{o}.{a}.{leaf}", (f"{t}.{b}.{leaf}",), "same") for a, b in _BLOCK]
    return tuple(table)


def _to_transformers(kind: str, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    if kind == "qkv":
        return t.chunk(3, dim=0)
    if kind == "flatten":
        return (t.flatten(0, -2).squeeze(0) if t.dim() == 3 else t,)
    if kind == "transpose":
        return (t.t(),)
    return (t,)


def _from_transformers(kind: str, parts: list[torch.Tensor]) -> torch.Tensor:
    if kind == "qkv":
        return torch.cat(parts, dim=0)
    t = parts[0]
    if kind == "flatten":
        return t.reshape(1, *((1,) if t.dim() == 1 else ()), *t.shape)
    if kind == "transpose":
        return t.t()
    return t


def clip_to_transformers(state: dict[str, torch.Tensor], config: CLIPConfig) -> dict[str, torch.Tensor]:
    """Official `visual.*` tensors -> transformers names and shapes (contiguous copies where a shape changes)."""
    out: dict[str, torch.Tensor] = {}
    for official, names, kind in clip_key_table(config):
        if official in state:
            out.update(zip(names, (t.contiguous() for t in _to_transformers(kind, state[official])), strict=True))
    return out


def clip_from_transformers(state: dict, config: CLIPConfig) -> dict:
    """Transformers-named tensors -> official names and shapes. Values may be tensors or shapes (tuples, as
    header reads give): a shape goes through the same transform on meta. An incomplete q/k/v triple, or a name
    the table does not know, is a `KeyMappingError` naming it."""
    as_shapes = any(not isinstance(value, torch.Tensor) for value in state.values())
    tensors = {k: torch.empty(v, device="meta") if as_shapes else v for k, v in state.items() if not IGNORED.match(k)}
    out: dict = {}
    used: set[str] = set()
    for official, names, kind in clip_key_table(config):
        present = [n for n in names if n in tensors]
        if not present:
            continue
        if len(present) != len(names):
            raise KeyMappingError(f"{official}: needs {', '.join(names)}; the checkpoint has only {', '.join(present)}")
        value = _from_transformers(kind, [tensors[n] for n in names])
        out[official] = tuple(value.shape) if as_shapes else value
        used.update(names)
    if unknown := sorted(tensors.keys() - used):
        raise KeyMappingError(f"no official name for CLIP key {unknown[0]!r}" +
                              (f" (+{len(unknown) - 1} more)" if len(unknown) > 1 else ""))
    return out


def is_transformers_clip_naming(keys) -> bool:
    return any(k.startswith(("vision_model.", "visual_projection.")) for k in keys)
