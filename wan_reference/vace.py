"""Wan2.1 VACE, as the official `wan/modules/vace_model.py`: the t2v DiT plus a control stream.

`vace_patch_embedding` turns the control latents (96 channels: inactive and reactive video latents and the
mask) into tokens; `vace_blocks` (full attention blocks, one per entry of `vace_layers`) run on them, the
first adding the video tokens through `before_proj`; each block's `after_proj` output is a hint, added
(times `context_scale`) to the output of main block `vace_layers[j]`."""

from __future__ import annotations

import torch

from .config import WanConfig
from .model import Conv3d, Linear, WanAttentionBlock, WanModel
from .precision import PrecisionPolicy
from .scopes import scope


class VaceWanAttentionBlock(WanAttentionBlock):
    """A block of the control stream; `block_id` is the main block it serves (official naming)."""

    def __init__(self, config: WanConfig, policy: PrecisionPolicy, block_id: int):
        super().__init__(config, policy)
        self.block_id = block_id
        if block_id == 0:
            self.before_proj = Linear(config.dim, config.dim)
        self.after_proj = Linear(config.dim, config.dim)

    def forward(self, c, x, e0, freqs, context):
        if self.block_id == 0:
            c = self.before_proj(c)
            with scope(c, "add_x"):
                c = c + x
        c = super().forward(c, e0, freqs, context)
        return c, self.after_proj(c)


class BaseWanAttentionBlock(WanAttentionBlock):
    """A main block; `block_id` (the hint's index) when a VACE block serves it, else None."""

    def __init__(self, config: WanConfig, policy: PrecisionPolicy, block_id: int | None):
        super().__init__(config, policy)
        self.block_id = block_id

    def forward(self, x, e0, freqs, context, hints, context_scale):
        x = super().forward(x, e0, freqs, context)
        if self.block_id is not None:
            with scope(x, "hint"):
                x = x + hints[self.block_id] * context_scale
        return x


class VaceWanModel(WanModel):
    forward_args = ("x", "t", "vace_context", "context", "context_scale")

    def __init__(self, config: WanConfig, precision: str | PrecisionPolicy = "bf16"):
        super().__init__(config, precision)
        p, dim = self.policy, config.dim
        hint_of = {layer: n for n, layer in enumerate(config.vace_layers)}
        self.blocks = torch.nn.ModuleList(
            BaseWanAttentionBlock(config, p, hint_of.get(i)) for i in range(config.num_layers)
        )
        self.vace_blocks = torch.nn.ModuleList(VaceWanAttentionBlock(config, p, i) for i in config.vace_layers)
        self.vace_patch_embedding = Conv3d(config.vace_in_dim, dim, config.patch_size, stride=config.patch_size)

    def forward(self, x, t, vace_context, context, context_scale=1.0):
        """x [B, C, F', H', W']; t [B]; vace_context [B, vace_in_dim, F', H', W']; context as WanModel."""
        x, (f, h, w), freqs = self.embed_video(x)
        e, e0 = self.embed_time(t, x)
        context = self.embed_context(context)
        hints = self.forward_vace(x, vace_context, e0, freqs, context)
        for block in self.blocks:
            x = block(x, e0, freqs, context, hints, context_scale)
        x = self.head(x, e)
        return self.unpatchify(x, f, h, w)

    def forward_vace(self, x, vace_context, e0, freqs, context) -> list[torch.Tensor]:
        c = self.vace_patch_embedding(vace_context)
        with scope(c, "vace_patchify"):
            c = c.flatten(2).transpose(1, 2).contiguous()
        hints = []
        for block in self.vace_blocks:
            c, hint = block(c, x, e0, freqs, context)
            hints.append(hint)
        return hints
