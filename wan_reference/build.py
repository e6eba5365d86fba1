"""Construct a `WanModel` on meta (free, instant) and, when asked, materialise it on a real device."""

from __future__ import annotations

import math

import torch

from .config import CLIP_DIM, WanConfig
from .model import Conv3d, Linear, WanModel
from .precision import PrecisionPolicy, get_policy


def build_model(
    config: WanConfig,
    precision: str | PrecisionPolicy = "bf16",
    device: str | torch.device = "meta",
    seed: int | None = 0,
) -> WanModel:
    """A `WanModel` whose parameters have the policy's dtypes.

    On meta nothing is allocated. On a real device the parameters are filled with seeded random values
    (`seed=None` leaves them uninitialised, for loading a checkpoint into)."""
    policy = get_policy(precision)
    with torch.device("meta"):
        model = WanModel(config, policy)
    apply_policy(model, policy)
    model.eval().requires_grad_(False)
    device = torch.device(device)
    if device.type != "meta":
        model.to_empty(device=device)
        model.reset_tables()
        if seed is not None:
            init_random(model, seed)
    return model


def apply_policy(model: WanModel, policy: PrecisionPolicy) -> None:
    """Give each parameter its storage dtype and each Linear/Conv3d its compute dtype."""
    for name, param in list(model.named_parameters()):
        dtype = policy.param_dtype_of(name)
        if param.dtype != dtype:
            owner, _, leaf = name.rpartition(".")
            module = model.get_submodule(owner) if owner else model
            setattr(module, leaf, torch.nn.Parameter(param.detach().to(dtype), requires_grad=False))
    for name, module in model.named_modules():
        if isinstance(module, (Linear, Conv3d)):
            module.compute_dtype = policy.matmul_dtype(name, module.weight.dtype)


@torch.no_grad()
def init_random(model: WanModel, seed: int) -> None:
    """Seeded random weights of a sane scale (fan-in scaled matrices, norms near 1), so that every
    path of the forward carries signal; the official init zeroes the head, which would hide errors."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)

    def randn(shape):
        return torch.randn(shape, generator=gen, device=device, dtype=torch.float32)

    for name, p in model.named_parameters():
        leaf = name.rpartition(".")[2]
        if leaf == "modulation":
            value = randn(p.shape) / math.sqrt(p.shape[-1])
        elif leaf == "emb_pos" or leaf == "bias":
            value = 0.02 * randn(p.shape)
        elif p.dim() >= 2:
            value = randn(p.shape) / math.sqrt(math.prod(p.shape[1:]))
        else:  # norm weights
            value = 1.0 + 0.1 * randn(p.shape)
        p.copy_(value)


def make_inputs(
    config: WanConfig,
    latent: tuple[int, int, int],
    precision: str | PrecisionPolicy = "bf16",
    batch: int = 1,
    device: str | torch.device = "meta",
    seed: int = 0,
    timestep: float = 500.0,
) -> dict[str, torch.Tensor]:
    """Inputs of one forward, in the dtypes the policy's runtime hands the DiT:
    x [B, C, F', H', W'], t [B], context [B, text_len, text_dim]; for i2v/flf2v also y and clip_fea."""
    policy = get_policy(precision)
    device = torch.device(device)
    gen = None if device.type == "meta" else torch.Generator(device=device).manual_seed(seed)

    def randn(shape, dtype):
        if gen is None:  # meta: no values (and randn on meta would pull in torch._dynamo)
            return torch.empty(shape, device=device, dtype=dtype)
        return torch.randn(shape, generator=gen, device=device).to(dtype)

    channels = config.out_dim
    inputs = {
        "x": randn((batch, channels, *latent), policy.latents),
        "t": torch.full((batch,), timestep, device=device, dtype=torch.float32),
        "context": randn((batch, config.text_len, config.text_dim), policy.text),
    }
    if config.model_type != "t2v":
        cond = config.in_dim - channels
        if cond <= 0:
            raise ValueError(f"in_dim {config.in_dim} leaves no channels for the {config.model_type} condition")
        inputs["y"] = randn((batch, cond, *latent), policy.latents)
        inputs["clip_fea"] = randn((batch, config.image_tokens, CLIP_DIM), policy.clip)
    return inputs
