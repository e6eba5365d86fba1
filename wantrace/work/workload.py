"""Workloads: what one generation is (frames, resolution, batch, steps, CFG, precision), as presets plus
overrides. Pixel geometry is validated by wan_reference.geometry, the one place that knows it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from wan_reference import Geometry, WanConfig, geometry
from wan_reference.config import MODEL_TYPES
from wan_reference.precision import POLICIES


class WorkloadError(ValueError):
    """A workload that does not fit the model or makes no sense; one line."""


@dataclass(frozen=True)
class Workload:
    id: str
    frames: int
    height: int
    width: int
    batch: int = 1
    steps: int = 1
    cfg: bool = False
    precision: str = "bf16"
    tasks: tuple[str, ...] = MODEL_TYPES  # model types the preset is meant for
    release: str | None = None  # the release the preset is meant for (None: any)
    # The sampler's schedule, where a preset states it (Wan2.2 and VACE: the official wan/configs and
    # generate.py defaults): flow-matching shift, the A14B expert boundary (a fraction of the 1000 training
    # timesteps) and the guide scale (A14B: low-noise, high-noise). Left out of to_dict() when unset.
    shift: float | None = None
    boundary: float | None = None
    guide_scale: tuple[float, ...] | None = None

    @property
    def forwards_per_step(self) -> int:
        """CFG runs the DiT twice per step (cond, then uncond), each a separate forward, as upstream."""
        return 2 if self.cfg else 1

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()
                if k not in ("tasks", "release") and not (k in _SCHEDULE and v is None)}


_SCHEDULE = ("shift", "boundary", "guide_scale")


PRESETS = {
    "ci-tiny": Workload("ci-tiny", frames=5, height=256, width=256, steps=1, cfg=False),
    "t2v-480p": Workload("t2v-480p", 81, 480, 832, steps=50, cfg=True, tasks=("t2v",)),
    "t2v-720p": Workload("t2v-720p", 81, 720, 1280, steps=50, cfg=True, tasks=("t2v",)),
    "i2v-480p": Workload("i2v-480p", 81, 480, 832, steps=40, cfg=True, tasks=("i2v",)),
    "i2v-720p": Workload("i2v-720p", 81, 720, 1280, steps=40, cfg=True, tasks=("i2v",)),
    "flf2v-720p": Workload("flf2v-720p", 81, 720, 1280, steps=50, cfg=True, tasks=("flf2v",)),
    # Wan2.2 (wan/configs/wan_{t2v,i2v}_A14B.py, wan_ti2v_5B.py; generate.py --size defaults to 1280*720)
    "t2v-a14b-480p": Workload("t2v-a14b-480p", 81, 480, 832, steps=40, cfg=True, tasks=("t2v",), release="wan2.2",
                              shift=12.0, boundary=0.875, guide_scale=(3.0, 4.0)),
    "t2v-a14b-720p": Workload("t2v-a14b-720p", 81, 720, 1280, steps=40, cfg=True, tasks=("t2v",), release="wan2.2",
                              shift=12.0, boundary=0.875, guide_scale=(3.0, 4.0)),
    "i2v-a14b-480p": Workload("i2v-a14b-480p", 81, 480, 832, steps=40, cfg=True, tasks=("i2v",), release="wan2.2",
                              shift=5.0, boundary=0.900, guide_scale=(3.5, 3.5)),
    "i2v-a14b-720p": Workload("i2v-a14b-720p", 81, 720, 1280, steps=40, cfg=True, tasks=("i2v",), release="wan2.2",
                              shift=5.0, boundary=0.900, guide_scale=(3.5, 3.5)),
    "ti2v-5b-720p": Workload("ti2v-5b-720p", 121, 704, 1280, steps=50, cfg=True, tasks=("ti2v",), release="wan2.2",
                             shift=5.0, guide_scale=(5.0,)),
    # Wan2.1 VACE (generate.py: 50 steps, shift 16, guide 5.0; vace-1.3B supports 480p only)
    "vace-480p": Workload("vace-480p", 81, 480, 832, steps=50, cfg=True, tasks=("vace",), shift=16.0,
                          guide_scale=(5.0,)),
    "vace-720p": Workload("vace-720p", 81, 720, 1280, steps=50, cfg=True, tasks=("vace",), shift=16.0,
                          guide_scale=(5.0,)),
}

_OVERRIDABLE = ("frames", "height", "width", "batch", "steps", "cfg", "precision")


def resolve(preset: str, config: WanConfig, **overrides) -> tuple[Workload, Geometry]:
    """A preset with overrides (None means keep), checked against the model; the id names the changes."""
    if preset not in PRESETS:
        raise WorkloadError(f"workload: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    base = PRESETS[preset]
    changes = {k: v for k, v in overrides.items() if k in _OVERRIDABLE and v is not None and v != getattr(base, k)}
    unknown = set(overrides) - set(_OVERRIDABLE)
    if unknown:
        raise TypeError(f"unknown workload fields: {sorted(unknown)}")
    suffix = "".join(f"+{k}={_show(v)}" for k, v in changes.items())
    return check(dataclasses.replace(base, id=preset + suffix, **changes), config)


def check(workload: Workload, config: WanConfig) -> tuple[Workload, Geometry]:
    """Validate a workload against the model; return it with its geometry."""
    if config.model_type not in workload.tasks:
        raise WorkloadError(
            f"workload: preset {workload.id.split('+')[0]!r} is for {'/'.join(workload.tasks)} models, but the "
            f"config is {config.model_type}; use a {config.model_type} preset or ci-tiny"
        )
    if workload.release is not None and config.release != workload.release:
        raise WorkloadError(
            f"workload: preset {workload.id.split('+')[0]!r} is for {workload.release} models, but the config is "
            f"{config.release}"
        )
    for name in ("batch", "steps"):
        value = getattr(workload, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise WorkloadError(f"{name}: must be a positive integer, got {value!r}")
    if workload.precision not in POLICIES:
        raise WorkloadError(
            f"precision: unknown policy {workload.precision!r}; choose one of {', '.join(POLICIES)}"
        )
    geo = geometry(workload.frames, workload.height, workload.width, config.patch_size, config.rope_max_seq_len,
                   config.vae_stride)
    return workload, geo


def _show(value) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)
