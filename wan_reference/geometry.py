"""Workload geometry, in one place: pixels -> latent (VAE stride 4x8x8; Wan2.2-VAE 4x16x16) -> token grid
(patch 1x2x2)."""

from __future__ import annotations

from dataclasses import dataclass

VAE_STRIDE = (4, 8, 8)  # Wan2.1 VAE: time, height, width (WanConfig.vae_stride says which VAE a model uses)
LATENT_CHANNELS = 16  # z_dim


class GeometryError(ValueError):
    """An impossible workload shape; the message is one line naming the rule it breaks."""


@dataclass(frozen=True)
class Geometry:
    frames: int
    height: int
    width: int
    latent: tuple[int, int, int]  # F', H/8, W/8 (Wan2.2-VAE: H/16, W/16)
    grid: tuple[int, int, int]  # f, h, w token grid

    @property
    def tokens(self) -> int:
        f, h, w = self.grid
        return f * h * w


def geometry(frames: int, height: int, width: int, patch_size=(1, 2, 2), max_grid: int = 1024,
             vae_stride: tuple[int, int, int] = VAE_STRIDE) -> Geometry:
    """Validate a pixel-space workload and derive its latent shape and token grid."""
    for name, value in (("frames", frames), ("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise GeometryError(f"{name}: must be a positive integer, got {value!r}")
    st, sh, sw = vae_stride
    if (frames - 1) % st:
        raise GeometryError(f"frames: must be 4n+1 (1, 5, ..., 81) for the Wan VAE, got {frames}")
    pt, ph, pw = patch_size
    for name, value, stride, patch in (("height", height, sh, ph), ("width", width, sw, pw)):
        if value % (stride * patch):
            raise GeometryError(f"{name}: must be a multiple of {stride * patch} (VAE x patch), got {value}")
    latent = ((frames - 1) // st + 1, height // sh, width // sw)
    if latent[0] % pt:
        raise GeometryError(f"frames: latent frames {latent[0]} not divisible by the temporal patch {pt}")
    grid = (latent[0] // pt, latent[1] // ph, latent[2] // pw)
    for axis, n in zip(("frames", "height", "width"), grid, strict=True):
        if n > max_grid:
            raise GeometryError(
                f"{axis}: token grid axis of {n} exceeds the RoPE table of {max_grid} positions"
            )
    return Geometry(frames, height, width, latent, grid)
