"""A faithful, meta-traceable reimplementation of the Wan2.1 diffusion transformer (DiT), its VAE, its umT5 text
encoder and its CLIP image encoder."""

from .build import build_model, init_random, make_inputs
from .checkpoint import CheckpointError, check_checkpoint, load_checkpoint, save_checkpoint
from .clip import CLIPImageEncoder, build_clip
from .clip_checkpoint import check_clip_checkpoint, load_clip_checkpoint
from .clip_config import CLIPConfig, load_clip_config
from .config import ConfigError, WanConfig, load_config
from .geometry import Geometry, GeometryError, geometry
from .keys import KeyMappingError, from_diffusers, to_diffusers
from .model import WanModel
from .precision import POLICIES, PrecisionPolicy, get_policy
from .t5 import T5Encoder, build_t5
from .t5_checkpoint import check_t5_checkpoint, load_t5_checkpoint
from .t5_config import T5Config, load_t5_config
from .vae import WanVAE, build_vae
from .vae_checkpoint import check_vae_checkpoint, load_vae_checkpoint
from .vae_config import VAEConfig, load_vae_config

__all__ = [
    "POLICIES",
    "CLIPConfig",
    "CLIPImageEncoder",
    "CheckpointError",
    "ConfigError",
    "Geometry",
    "GeometryError",
    "KeyMappingError",
    "PrecisionPolicy",
    "T5Config",
    "T5Encoder",
    "VAEConfig",
    "WanConfig",
    "WanModel",
    "WanVAE",
    "build_clip",
    "build_model",
    "build_t5",
    "build_vae",
    "check_checkpoint",
    "check_clip_checkpoint",
    "check_t5_checkpoint",
    "check_vae_checkpoint",
    "from_diffusers",
    "geometry",
    "get_policy",
    "init_random",
    "load_checkpoint",
    "load_clip_checkpoint",
    "load_clip_config",
    "load_config",
    "load_t5_checkpoint",
    "load_t5_config",
    "load_vae_checkpoint",
    "load_vae_config",
    "make_inputs",
    "save_checkpoint",
    "to_diffusers",
]
