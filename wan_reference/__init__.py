"""A faithful, meta-traceable reimplementation of the Wan2.1 diffusion transformer (DiT)."""

from .build import build_model, init_random, make_inputs
from .checkpoint import CheckpointError, check_checkpoint, load_checkpoint, save_checkpoint
from .config import ConfigError, WanConfig, load_config
from .geometry import Geometry, GeometryError, geometry
from .keys import KeyMappingError, from_diffusers, to_diffusers
from .model import WanModel
from .precision import POLICIES, PrecisionPolicy, get_policy

__all__ = [
    "POLICIES",
    "CheckpointError",
    "ConfigError",
    "Geometry",
    "GeometryError",
    "KeyMappingError",
    "PrecisionPolicy",
    "WanConfig",
    "WanModel",
    "build_model",
    "check_checkpoint",
    "from_diffusers",
    "geometry",
    "get_policy",
    "init_random",
    "load_checkpoint",
    "load_config",
    "make_inputs",
    "save_checkpoint",
    "to_diffusers",
]
