"""The CLIP image encoder of i2v/flf2v, traced on meta and costed node by node like the DiT forward.

Integration API (for the whole-generation report):

    trace = trace_image_encoder(config, policy, batch=1, height=480, width=832)
    trace.records            # NodeCost per graph node, execution order; module ids are the official paths
                             # ("visual.transformer.30.attn.to_qkv", scopes "resize", "normalize", "visual.embed",
                             # "visual.transformer.3.attn.attention"), ROOT for top-level glue
    trace.model              # the GraphModule (its parameters, all of `visual.*`, for roll_up)
    trace.peak_activation_bytes

`batch` is the number of conditioning images (`images_per_generation(task)`: 1 for i2v, 2 for flf2v) and
`height` x `width` their size. Upstream hands CLIP the conditioning image as the user gave it (flf2v: the first
frame, and the last frame cropped to its aspect ratio) and resizes it to 224x224 on the GPU; the bicubic resize
reads the whole image, so its cost depends on that size (the default: the video's size, an image already at the
output resolution). Everything after the resize is independent of it: 257 tokens through 31 blocks."""

from __future__ import annotations

import torch
import torch.fx

from wan_reference.clip import build_clip
from wan_reference.clip_config import CLIPConfig, text_tower_params
from wan_reference.precision import PrecisionPolicy, get_policy

from .lean import lean_meta_run
from .trace import CostInterpreter, Trace, WanTracer

IMAGES = {"i2v": 1, "flf2v": 2}  # conditioning images CLIP encodes once per generation (official pipelines)


class ImageEncoderWorkloadError(ValueError):
    """An impossible image batch or size; one line naming it."""


def images_per_generation(task: str) -> int:
    """How many images one generation of `task` encodes with CLIP: i2v its image, flf2v its first and last
    frames (in one call); t2v and VACE none."""
    return IMAGES.get(task, 0)


def resident_weight_bytes(config: CLIPConfig, policy: str | PrecisionPolicy) -> int:
    """Bytes of CLIP weights on the device while the encoder runs. `wan-official`: the official CLIPModel builds the
    whole XLM-RoBERTa CLIP on the GPU in clip_dtype (fp16): the visual tower, the text tower it never runs, and
    `log_scale`; it stays there from WanI2V's construction until `--offload_model` moves it to the CPU after the call
    (without the flag, for the whole generation). Otherwise diffusers' `CLIPVisionModel` in the policy's dtype: the
    tower without the projection `head`."""
    policy = get_policy(policy)
    tower = build_clip(config, policy).visual
    params = sum(p.numel() for p in tower.parameters())
    if policy.name == "wan-official":
        return (params + text_tower_params() + 1) * policy.image_encoder.itemsize
    return (params - tower.head.numel()) * policy.image_encoder.itemsize


def trace_graph(config: CLIPConfig, policy: PrecisionPolicy, batch: int) -> torch.fx.GraphModule:
    """Build the encoder on meta and FX-trace its forward with the per-image resize unrolled over `batch`
    images; the graph does not depend on the images' size."""
    model = build_clip(config, policy)
    graph = WanTracer().trace(model, concrete_args={"count": batch})
    return torch.fx.GraphModule(model, graph)


def trace_image_encoder(config: CLIPConfig, policy: str | PrecisionPolicy, batch: int = 1, height: int = 480,
                        width: int = 832, strict: bool = False) -> Trace:
    """Trace the encoder on meta for `batch` images of `height` x `width` pixels and cost every node."""
    policy = get_policy(policy)
    for name, value in (("batch", batch), ("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ImageEncoderWorkloadError(f"{name}: must be a positive integer, got {value!r}")
    gm = trace_graph(config, policy, batch)
    images = torch.empty(batch, 3, height, width, device="meta", dtype=torch.float32)  # TF.to_tensor: fp32
    interpreter = CostInterpreter(gm, strict)
    # a concrete argument keeps its placeholder on some torch versions
    placeholders = sum(n.op == "placeholder" for n in gm.graph.nodes)
    with lean_meta_run():
        interpreter.run(*(images, batch)[:placeholders])
    return Trace(gm, interpreter.records, interpreter.peak_activation_bytes())


__all__ = ["ImageEncoderWorkloadError", "images_per_generation", "resident_weight_bytes", "trace_graph",
           "trace_image_encoder"]
