"""safetensors checkpoints (single file or sharded with an index), official or diffusers key names.

Loading is strict (missing, unexpected or mis-shaped keys are one error listing them) and never unpickles."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .keys import DIFFUSERS_IGNORED, KeyMappingError, from_diffusers, is_diffusers_naming, to_diffusers
from .model import WanModel

INDEX_SUFFIX = ".safetensors.index.json"
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the model; one line saying why."""


def _listing(keys, limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _resolve(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint: a file, an index, or a folder holding one of them."""
    if path.is_dir():
        indexes = sorted(path.glob(f"*{INDEX_SUFFIX}"))
        files = sorted(path.glob("*.safetensors"))
        if len(indexes) == 1:
            path = indexes[0]
        elif len(files) == 1 and not indexes:
            return files
        else:
            raise CheckpointError(
                f"checkpoint: {path} holds {len(indexes)} index files and {len(files)} .safetensors files; "
                "point at one file or one index"
            )
    if not path.exists():
        raise CheckpointError(f"checkpoint: {path} does not exist")
    if path.name.endswith(INDEX_SUFFIX):
        try:
            weight_map = json.loads(path.read_text())["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise CheckpointError(f"checkpoint: {path} is not a valid safetensors index (no weight_map)") from None
        missing = [s for s in shards if not (path.parent / s).exists()]
        if missing:
            raise CheckpointError(f"checkpoint: shards listed in {path.name} are missing: {_listing(missing)}")
        return [path.parent / s for s in shards]
    if path.suffix != ".safetensors":
        raise CheckpointError(
            f"checkpoint: {path.name} is not a .safetensors file or index (pickled checkpoints are never loaded)"
        )
    return [path]


def _open_all(path: str | Path, visit) -> None:
    """Call visit(handle, key) for every tensor of every shard, with one clear error for a bad file."""
    seen: set[str] = set()
    for file in _resolve(Path(path)):
        try:
            with safe_open(str(file), framework="pt", device="cpu") as handle:
                for key in handle.keys():
                    if key in seen:
                        raise CheckpointError(f"checkpoint: key {key!r} appears in more than one shard")
                    seen.add(key)
                    visit(handle, key)
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"checkpoint: {file.name} is not a readable safetensors file ({exc})") from None


def read_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a checkpoint, from the headers alone (no weight is read)."""
    shapes: dict[str, tuple[int, ...]] = {}
    _open_all(path, lambda h, k: shapes.__setitem__(k, tuple(h.get_slice(k).get_shape())))
    return shapes


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint (on CPU), under the names it stores."""
    tensors: dict[str, torch.Tensor] = {}
    _open_all(path, lambda h, k: tensors.__setitem__(k, h.get_tensor(k)))
    return tensors


def rename_keys(named: dict, official_name, what: str) -> dict:
    """`named` re-keyed by `official_name(key)` (a key table's inverse); every key it cannot map is listed in one
    CheckpointError ("unexpected <what> keys")."""
    out, unknown = {}, []
    for key, value in named.items():
        try:
            out[official_name(key)] = value
        except KeyMappingError:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"checkpoint: unexpected {what} keys: {_listing(unknown)}")
    return out


def to_official_names(named: dict) -> dict:
    """Re-key a diffusers-named mapping to official names (official names pass through)."""
    if not is_diffusers_naming(named):
        return named
    return rename_keys({k: v for k, v in named.items() if not DIFFUSERS_IGNORED.search(k)}, from_diffusers,
                       "diffusers")


def refuse_pickle(path: str | Path, instead: str) -> None:
    """A pickled checkpoint (the official `.pth` files) is refused before anything reads it: one line saying
    to convert it, or to use `instead` (the published safetensors)."""
    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"checkpoint: {path.name} is a pickled checkpoint, which is never loaded; convert it to safetensors "
            f"(official names are accepted) or use {instead}"
        )


def compare_shapes(model: torch.nn.Module, shapes: dict[str, tuple[int, ...]], path: str | Path) -> None:
    """Strictly compare official-named checkpoint shapes with the model's parameters: one `CheckpointError`
    listing every missing, unexpected and mis-shaped key."""
    expected = {k: tuple(p.shape) for k, p in model.named_parameters()}
    missing = expected.keys() - shapes.keys()
    unexpected = shapes.keys() - expected.keys()
    mismatched = [
        f"{k} {list(shapes[k])} != {list(v)}" for k, v in expected.items() if k in shapes and shapes[k] != v
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_listing(mismatched, 4)}")
    if problems:
        raise CheckpointError(f"checkpoint {Path(path).name}: " + "; ".join(problems))


def assign_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> bool:
    """Load official-named tensors (already checked) into `model`, each in its parameter's dtype; a model on
    meta gets them on CPU. Returns whether it was on meta (its non-persistent buffers then need rebuilding)."""
    params = dict(model.named_parameters())
    on_meta = next(iter(params.values())).is_meta
    state = {
        k: tensors[k].to(device="cpu" if on_meta else p.device, dtype=p.dtype) for k, p in params.items()
    }
    model.load_state_dict(state, strict=True, assign=True)
    model.requires_grad_(False)
    return on_meta


def check_against(model: torch.nn.Module, path: str | Path, official: Callable[[dict], dict],
                  instead: str | None = None) -> dict[str, tuple[int, ...]]:
    """Every component's strict check, reading headers only: a pickle refused first (`instead`: the published
    safetensors to use), the names re-keyed by `official`, the shapes compared with the model's parameters.
    Returns the official-named shapes; raises one `CheckpointError` listing every problem."""
    if instead is not None:
        refuse_pickle(path, instead)
    shapes = official(read_shapes(path))
    compare_shapes(model, shapes, path)
    return shapes


def load_into(model: torch.nn.Module, path: str | Path, official: Callable[[dict], dict],
              instead: str | None = None) -> bool:
    """`check_against`, then the tensors assigned (`assign_tensors`: True when the model was on meta, whose
    non-persistent buffers the caller then rebuilds)."""
    check_against(model, path, official, instead)
    return assign_tensors(model, official(read_tensors(path)))


def check_checkpoint(model: WanModel, path: str | Path) -> dict[str, tuple[int, ...]]:
    """Strictly compare a checkpoint's names and shapes with the model's parameters, reading headers only.

    Returns the official-named shapes; raises one `CheckpointError` listing every problem."""
    return check_against(model, path, to_official_names)


def load_checkpoint(model: WanModel, path: str | Path) -> WanModel:
    """Load a safetensors checkpoint into `model` (on meta it lands on CPU; tensors are assigned).

    Names and shapes are checked before any weight is read; values take each parameter's policy dtype."""
    if load_into(model, path, to_official_names):
        model.reset_tables()
    return model


def save_checkpoint(
    model_or_state, path: str | Path, naming: str = "official", max_shard_bytes: int | None = None
) -> list[Path]:
    """Write a safetensors checkpoint, sharded with an index when `max_shard_bytes` is given."""
    if naming not in ("official", "diffusers"):
        raise ValueError(f"naming: 'official' or 'diffusers', got {naming!r}")
    state = model_or_state.state_dict() if isinstance(model_or_state, torch.nn.Module) else model_or_state
    state = {
        (to_diffusers(k) if naming == "diffusers" else k): v.detach().contiguous().cpu()
        for k, v in state.items()
    }
    path = Path(path)
    if max_shard_bytes is None:
        save_file(state, str(path))
        return [path]
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(state):
        nbytes = state[key].numel() * state[key].element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = state[key]
        size += nbytes
    stem = path.name.removesuffix(".safetensors")
    files, weight_map = [], {}
    for n, shard in enumerate(shards, 1):
        name = f"{stem}-{n:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(path.parent / name))
        files.append(path.parent / name)
        weight_map.update({k: name for k in shard})
    index = path.parent / f"{stem}{INDEX_SUFFIX}"
    total = sum(v.numel() * v.element_size() for v in state.values())
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return [index, *files]
