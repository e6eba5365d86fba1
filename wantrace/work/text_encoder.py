"""The umT5 text encoder, traced on meta and costed node by node like the DiT forward.

Integration API (for the whole-generation report):

    trace = trace_text_encoder(config, policy, text_len=512, batch=1)
    trace.records            # NodeCost per graph node, execution order; module ids are the official T5Encoder
                             # paths ("blocks.3.attn.q", "blocks.3.pos_embedding", "token_embedding", "norm"),
                             # plus the scope "blocks.N.attn.attention"; ROOT for the model itself
    trace.model              # the encoder on meta, every parameter under its official name (roll_up's params
                             # and module types); the traced graph is `trace_graph(config.with_layers(2), ...)`
    trace.peak_activation_bytes
    trace_text_encoder(..., replicate=False)   # trace all 24 layers instead of 2 and copies (same numbers, slower)

One call encodes one batch of prompts, each padded to `text_len` tokens (the tokenizer's max_length), so its
cost does not depend on the prompt's length. The official t2v/i2v pipelines make two calls of batch 1 per
generation (`text_encoder_calls`): the prompt, then the negative prompt. The encoder runs in
`policy.text` (bf16 under `bf16` and `wan-official`, fp32 under `fp32`: docs/pipeline-text-encoder.md).
`vae.with_prefix(trace.records, "text_encoder")` re-roots the records for a combined tree.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.fx

from wan_reference.precision import PrecisionPolicy
from wan_reference.t5 import build_t5
from wan_reference.t5_config import TEXT_LEN, T5Config

from .cache import cached
from .lean import lean_meta_run
from .trace import CostInterpreter, NodeCost, Trace, WanTracer, replicate_blocks

TEXT_ENCODER_CALLS = 2  # official generate(): text_encoder([prompt]) and text_encoder([n_prompt]), batch 1 each


class TextEncoderWorkloadError(ValueError):
    """A text length or batch the encoder cannot run; one line naming it."""


@lru_cache(maxsize=8)
def trace_graph(config: T5Config, dtype: torch.dtype) -> torch.fx.GraphModule:
    """Build the encoder on meta in `dtype` and FX-trace its forward with a padding mask (the tokenizer always
    gives one). The graph reads the token count off its input, so one graph serves every text length."""
    model = build_t5(config, dtype)
    return torch.fx.GraphModule(model, WanTracer().trace(model))


@lru_cache(maxsize=8)
def _encoder(config: T5Config, dtype: torch.dtype) -> torch.nn.Module:
    return build_t5(config, dtype)


def trace_text_encoder(config: T5Config, policy: PrecisionPolicy, text_len: int = TEXT_LEN, batch: int = 1,
                       strict: bool = False, replicate: bool = True) -> Trace:
    """Cost one call of the encoder on `batch` prompts of `text_len` tokens (ids int64, mask int64, as the
    tokenizer returns them), every node by the rule book; the peak counts activations alive at once.

    `replicate` traces layers 0 and 1 and copies layer 1 for the rest, as the DiT's blocks are copied: every
    layer runs the same ops on the same shapes (umT5's per-layer position bias included), and the peak lies
    inside a layer. Same records and peak as a full trace (tested); the 24-layer trace takes seconds."""
    for name, value in (("text_len", text_len), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise TextEncoderWorkloadError(f"{name}: must be a positive integer, got {value!r}")
    records, peak = cached("t5", (config, policy.text, text_len, batch, strict, replicate),
                           lambda: _costed(config, policy.text, text_len, batch, strict, replicate))
    return Trace(_encoder(config, policy.text), records, peak)


def _costed(config: T5Config, dtype: torch.dtype, text_len: int, batch: int, strict: bool,
            replicate: bool) -> tuple[list[NodeCost], int]:
    """The call's records and peak activation bytes: what the disk cache keeps."""
    layers = min(config.num_layers, 2) if replicate else config.num_layers
    gm = trace_graph(config.with_layers(layers), dtype)
    ids = torch.empty(batch, text_len, dtype=torch.int64, device="meta")
    mask = torch.empty(batch, text_len, dtype=torch.int64, device="meta")
    interpreter = CostInterpreter(gm, strict)
    with lean_meta_run():
        interpreter.run(ids, mask)
    records = interpreter.records
    if layers < config.num_layers:
        records = replicate_blocks(records, config.num_layers)
    return records, interpreter.peak_activation_bytes()


def text_encoder_calls(cfg: bool = True) -> int:
    """Encoder calls per generation: with CFG the prompt and the negative prompt (the official pipelines always
    guide); without, the prompt alone (diffusers' encode_prompt skips the negative prompt then)."""
    return TEXT_ENCODER_CALLS if cfg else 1


__all__ = ["TEXT_ENCODER_CALLS", "TextEncoderWorkloadError", "text_encoder_calls", "trace_graph",
           "trace_text_encoder"]
