"""Construct a `WanModel` on meta (free, instant) and, when asked, materialise it on a real device."""

from __future__ import annotations

import math

import torch

from .config import CLIP_DIM, WanConfig
from .model import Conv3d, Linear, WanModel
from .precision import PrecisionPolicy, get_policy
from .vace import VaceWanModel


def model_class(config: WanConfig) -> type[WanModel]:
    return VaceWanModel if config.model_type == "vace" else WanModel


def input_names(config: WanConfig) -> tuple[str, ...]:
    """The tensors one forward takes (what `make_inputs` gives), in forward's order."""
    optional = {"clip_fea": config.image_tokens > 0, "y": config.in_dim > config.out_dim,
                "vace_context": config.model_type == "vace"}
    return tuple(n for n in model_class(config).forward_args if optional.get(n, n in ("x", "t", "context")))


def trace_args(config: WanConfig) -> tuple[tuple[str, ...], dict[str, object]]:
    """forward's parameters in order, and the values fixed while tracing: None for each absent input, the
    official default 1.0 for VACE's context_scale."""
    args = model_class(config).forward_args
    inputs = input_names(config)
    fixed: dict[str, object] = {n: None for n in args if n not in inputs}
    if "context_scale" in fixed:
        fixed["context_scale"] = 1.0
    return args, fixed


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
        model = model_class(config)(config, policy)
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
    x [B, C, F', H', W'], t [B] (TI2V: [B, L]), context [B, text_len, text_dim]; i2v/flf2v also y (and
    clip_fea in Wan2.1); VACE also vace_context."""
    policy = get_policy(precision)
    device = torch.device(device)
    gen = None if device.type == "meta" else torch.Generator(device=device).manual_seed(seed)

    def randn(shape, dtype):
        if gen is None:  # meta: no values (and randn on meta would pull in torch._dynamo)
            return torch.empty(shape, device=device, dtype=dtype)
        return torch.randn(shape, generator=gen, device=device).to(dtype)

    channels = config.out_dim
    names = input_names(config)
    inputs = {
        "x": randn((batch, channels, *latent), policy.latents),
        "t": torch.full((batch,), timestep, device=device, dtype=torch.float32),
        "context": randn((batch, config.text_len, config.text_dim), policy.text),
    }
    if config.model_type == "ti2v":  # per-token t as TI2V passes it: the conditioning frame's tokens at t = 0
        grid = [n // p for n, p in zip(latent, config.patch_size, strict=True)]
        t = torch.full((batch, grid[0], grid[1] * grid[2]), timestep, device=device, dtype=torch.float32)
        t[:, 0] = 0.0
        inputs["t"] = t.flatten(1)
    if config.model_type in ("i2v", "flf2v"):
        cond = config.in_dim - channels
        if cond <= 0:
            raise ValueError(f"in_dim {config.in_dim} leaves no channels for the {config.model_type} condition")
    if "y" in names:
        inputs["y"] = randn((batch, config.in_dim - channels, *latent), policy.latents)
    if "clip_fea" in names:
        inputs["clip_fea"] = randn((batch, config.image_tokens, CLIP_DIM), policy.clip)
    if "vace_context" in names:
        inputs["vace_context"] = randn((batch, config.vace_in_dim, *latent), policy.latents)
    return inputs
