"""Precision policies: which dtype every parameter is stored in and every op computes in.

FX does not see autocast, so each runtime's dtype behaviour is spelled out here, in one place, and the model
turns it into visible `.to()` casts. Three runtimes are modelled:

* ``bf16`` — diffusers with ``torch_dtype=bfloat16``: bf16 weights and matmuls; the modules diffusers keeps in
  fp32 (time embedder, modulation tables, affine LayerNorms) stay fp32; norm statistics, modulation and RoPE
  run in fp32 and the residual stream is cast back to bf16 after each fp32 region.
* ``wan-official`` — the official single-GPU path: fp32 weights under ``autocast(bfloat16)``, so every
  Linear/Conv3d casts its input, weight and bias to bf16 at each call; ``autocast(float32)`` regions for the
  time embedding, time projection and head; LayerNorm under autocast outputs fp32; RoPE in float64; the
  residual stream is promoted to fp32 by the first gated add.
* ``fp32`` — everything in fp32 (RoPE in float64): the reference used to prove faithfulness against diffusers.

The umT5 text encoder has one dtype for its weights and activations, ``text``: bf16 in both runtimes (the
official ``t5_dtype``, outside any autocast; diffusers' ``torch_dtype``, where transformers keeps UMT5's ``wo``
in fp32 only under fp16), fp32 in the reference. Its output is the DiT's text context, in the same dtype.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PrecisionPolicy:
    name: str
    summary: str
    param_dtype: torch.dtype
    # parameter-name globs (official names) stored in fp32 whatever param_dtype says
    fp32_params: tuple[str, ...] = ()
    # autocast dtype for Linear/Conv3d/LayerNorm outside fp32 regions; None: no autocast
    autocast: torch.dtype | None = None
    # module prefixes run under autocast(float32) in the official code
    fp32_regions: tuple[str, ...] = ()
    # dtype the residual stream is cast back to after fp32 arithmetic; None: plain type promotion
    stream: torch.dtype | None = None
    rope: torch.dtype = torch.float32  # real dtype RoPE multiplies in (complex of twice its width)
    rope_out: torch.dtype | None = None  # dtype RoPE returns; None: its input dtype
    attention: torch.dtype = torch.float32  # q, k, v are cast to this for the attention kernel
    # dtypes the model's inputs arrive in
    latents: torch.dtype = torch.float32
    text: torch.dtype = torch.float32  # also the umT5 encoder's weights and compute dtype: its output is this input
    clip: torch.dtype = torch.float32
    # dtype the VAE's weights and activations are in: fp32 in every runtime modelled (the official
    # WanVAE(dtype=torch.float) under autocast(float32); diffusers' Wan pipelines load AutoencoderKLWan in fp32)
    vae: torch.dtype = torch.float32
    # dtype of the CLIP image encoder's weights and activations (i2v, flf2v). The official CLIPModel keeps fp16
    # weights (clip_dtype) under autocast(float16), which casts the patch embedding's fp32 input and runs LayerNorm
    # in fp32 (the model's visible casts, no-ops in fp32); diffusers' Wan i2v examples load CLIPVisionModel in fp32
    image_encoder: torch.dtype = torch.float32

    def param_dtype_of(self, name: str) -> torch.dtype:
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.fp32_params):
            return torch.float32
        return self.param_dtype

    def matmul_dtype(self, module: str, param_dtype: torch.dtype) -> torch.dtype:
        """Dtype a Linear/Conv3d at `module` computes in: the autocast dtype, unless in an fp32 region."""
        if self.autocast is None:
            return param_dtype
        if any(module == r or module.startswith(r + ".") for r in self.fp32_regions):
            return torch.float32
        return self.autocast

    @property
    def norm_out(self) -> torch.dtype | None:
        """Output dtype of a plain LayerNorm: fp32 under autocast, else its input dtype (None)."""
        return torch.float32 if self.autocast is not None else None


BF16 = PrecisionPolicy(
    name="bf16",
    summary="diffusers bf16: bf16 weights and matmuls; fp32 norm statistics, modulation and RoPE",
    param_dtype=torch.bfloat16,
    fp32_params=(  # diffusers' _keep_in_fp32_modules, in official names
        "time_embedding.*",
        "blocks.*.modulation",
        "head.modulation",
        "blocks.*.norm3.*",
        "vace_blocks.*.modulation",  # VACE control blocks: the same block modules
        "vace_blocks.*.norm3.*",
        "img_emb.proj.0.*",
        "img_emb.proj.4.*",
    ),
    stream=torch.bfloat16,
    rope=torch.float32,
    attention=torch.bfloat16,
    latents=torch.bfloat16,
    text=torch.bfloat16,
    clip=torch.bfloat16,
)

WAN_OFFICIAL = PrecisionPolicy(
    name="wan-official",
    summary="official Wan2.1 single GPU: fp32 weights cast to bf16 at each matmul, fp32 stream, float64 RoPE",
    param_dtype=torch.float32,
    autocast=torch.bfloat16,
    fp32_regions=("time_embedding", "time_projection", "head"),
    rope=torch.float64,
    rope_out=torch.float32,
    attention=torch.bfloat16,
    latents=torch.float32,
    text=torch.bfloat16,  # umT5 runs with bf16 weights (t5_dtype), outside the DiT's autocast
    clip=torch.float32,
    image_encoder=torch.float16,
)

FP32 = PrecisionPolicy(
    name="fp32",
    summary="reference: everything in fp32, RoPE in float64 (faithfulness checks, CPU runs)",
    param_dtype=torch.float32,
    rope=torch.float64,
)

POLICIES = {p.name: p for p in (BF16, WAN_OFFICIAL, FP32)}


def get_policy(name: str | PrecisionPolicy) -> PrecisionPolicy:
    if isinstance(name, PrecisionPolicy):
        return name
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(
            f"precision: unknown policy {name!r}; choose one of {', '.join(POLICIES)}"
        ) from None
