"""The umT5 text encoder: faithful to transformers' UMT5EncoderModel (same random weights through the key table,
with a padding mask), the published parameter count, safetensors-only loading, and the forward traced and
costed on meta (torch FLOPs equal FlopCounterMode and a closed form in the token count)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from wan_reference import CheckpointError, ConfigError
from wan_reference.precision import get_policy
from wan_reference.t5 import build_t5
from wan_reference.t5_checkpoint import (
    check_t5_checkpoint,
    load_t5_checkpoint,
    save_t5_checkpoint,
    state_dict_to_transformers,
)
from wan_reference.t5_config import T5Config, load_t5_config, t5_config_from_dict, to_transformers_t5_config
from wan_reference.t5_keys import t5_from_transformers, t5_to_transformers
from wantrace.work.analysis import roll_up
from wantrace.work.text_encoder import TextEncoderWorkloadError, text_encoder_calls, trace_text_encoder

from .conftest import MODELS

TINY = MODELS / "wan2.1-tiny-umt5" / "text_encoder" / "config.json"
PUBLISHED = MODELS / "wan2.1-umt5-xxl" / "text_encoder" / "config.json"
UMT5_XXL_PARAMS = 5_680_910_336  # UMT5EncoderModel built on meta from the published config (11.36 GB in bf16)


@pytest.fixture(scope="module")
def tiny() -> T5Config:
    return load_t5_config(TINY)


@pytest.fixture(scope="module")
def pair(tiny):
    transformers = pytest.importorskip("transformers")
    ours = build_t5(tiny, device="cpu", seed=0)
    ref = transformers.UMT5EncoderModel(transformers.UMT5Config(**to_transformers_t5_config(tiny))).eval()
    ref.load_state_dict(state_dict_to_transformers(ours), strict=True)
    return ours, ref


def _prompts(config: T5Config, length: int):
    """Two prompts of `length` tokens (beyond max_dist 128, so every bucket is used), the second padded after
    37 tokens, as the tokenizer pads to text_len."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1, config.vocab, (2, length), generator=gen)
    mask = torch.ones(2, length, dtype=torch.int64)
    mask[1, 37:] = 0
    ids[1, 37:] = 0
    return ids, mask


# ------------------------------------------------------------------------------------------- faithfulness
@pytest.mark.parametrize("masked", [True, False])
def test_output_matches_transformers(tiny, pair, masked):
    ours, ref = pair
    ids, mask = _prompts(tiny, 160)
    with torch.no_grad():
        got = ours(ids, mask if masked else None)
        want = ref(input_ids=ids, attention_mask=mask if masked else None).last_hidden_state
    assert got.shape == want.shape == (2, 160, tiny.dim)
    scale = want.abs().max()
    assert (got - want).abs().max() <= 1e-4 * scale  # measured ~1e-6
    if masked:  # the mask reaches the output: the padded prompt's real tokens differ from an unmasked run
        with torch.no_grad():
            unmasked = ours(ids)
        assert (unmasked[1, :37] - got[1, :37]).abs().max() > 1e-3 * scale


def test_relative_buckets_equal_transformers(pair):
    """Every distance of a 300-token prompt (both directions, exact and log buckets, the max_dist clamp)."""
    ours, ref = pair
    distance = torch.arange(300).unsqueeze(0) - torch.arange(300).unsqueeze(1)
    attention = ref.encoder.block[0].layer[0].SelfAttention
    want = attention._relative_position_bucket(distance)
    got = ours.blocks[0].pos_embedding.bucket(distance)
    assert torch.equal(got, want) and set(got.unique().tolist()) == set(range(32)) - {16}  # 16: distance > 0, 0


def test_published_parameter_count():
    transformers = pytest.importorskip("transformers")
    raw = json.loads(PUBLISHED.read_text())
    with torch.device("meta"):
        ref = transformers.UMT5EncoderModel(transformers.UMT5Config.from_dict(raw))
    assert sum(p.numel() for p in ref.parameters()) == UMT5_XXL_PARAMS
    config = load_t5_config(PUBLISHED)
    assert config == T5Config()  # the official umt5_xxl(encoder_only=True) arguments
    ours = build_t5(config, torch.bfloat16)
    assert sum(p.numel() for p in ours.parameters()) == UMT5_XXL_PARAMS
    per_layer = 4 * 4096 * 4096 + 3 * 4096 * 10240 + 2 * 4096 + 32 * 64
    assert UMT5_XXL_PARAMS == 256384 * 4096 + 24 * per_layer + 4096  # token embedding 1,050,148,864
    shapes = {t5_to_transformers(k): tuple(p.shape) for k, p in ours.named_parameters()}
    want = {k: tuple(p.shape) for k, p in ref.named_parameters()}
    assert shapes == want  # one-to-one through the key table, shapes equal


def test_official_state_dict_keys(tiny):
    """The keys of models_t5_umt5-xxl-enc-bf16.pth (`T5Encoder`, shared_pos False), in upstream's order."""
    keys = list(build_t5(tiny).state_dict())
    layer = ["norm1.weight", "attn.q.weight", "attn.k.weight", "attn.v.weight", "attn.o.weight", "norm2.weight",
             "ffn.gate.0.weight", "ffn.fc1.weight", "ffn.fc2.weight", "pos_embedding.embedding.weight"]
    assert keys == ["token_embedding.weight", *(f"blocks.{i}.{k}" for i in range(2) for k in layer), "norm.weight"]


def test_key_table_both_ways():
    pairs = {"blocks.3.ffn.gate.0.weight": "encoder.block.3.layer.1.DenseReluDense.wi_0.weight",
             "blocks.3.ffn.fc1.weight": "encoder.block.3.layer.1.DenseReluDense.wi_1.weight",
             "blocks.23.pos_embedding.embedding.weight":
                 "encoder.block.23.layer.0.SelfAttention.relative_attention_bias.weight",
             "token_embedding.weight": "shared.weight", "norm.weight": "encoder.final_layer_norm.weight"}
    for official, hf in pairs.items():
        assert t5_to_transformers(official) == hf and t5_from_transformers(hf) == official
    assert t5_from_transformers("encoder.embed_tokens.weight") == "token_embedding.weight"  # the tied alias


# ------------------------------------------------------------------------------------------- config
def test_published_config_file():
    raw = json.loads(PUBLISHED.read_text())
    assert raw["model_type"] == "umt5" and raw["architectures"] == ["UMT5EncoderModel"]
    assert PUBLISHED.read_text() == json.dumps(raw, indent=2, sort_keys=True) + "\n"  # the published layout


@pytest.mark.parametrize("change, message", [
    ({"model_type": "t5"}, "^model_type: expected 'umt5'"),
    ({"d_model": None}, "^d_model: missing"),
    ({"d_model": 0}, "^d_model: must be a positive integer, got 0"),
    ({"num_heads": 1.5}, "^num_heads: must be a positive integer"),
    ({"d_kv": "64"}, "^d_kv: must be a positive integer"),
    ({"feed_forward_proj": "relu"}, "^feed_forward_proj: the Wan text encoder is feed_forward_proj \"gated-gelu\""),
    ({"dense_act_fn": "gelu"}, "^dense_act_fn: "),
    ({"relative_attention_num_buckets": 30}, "^relative_attention_num_buckets: must be a positive multiple of 4"),
    ({"relative_attention_max_distance": 8}, "^relative_attention_max_distance: must exceed the 8 exact buckets"),
    ({"layer_norm_epsilon": -1}, "^layer_norm_epsilon: must be a positive number"),
])
def test_malformed_config_is_one_line_naming_the_field(change, message):
    raw = json.loads(PUBLISHED.read_text())
    raw.update(change)
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(ConfigError, match=message) as info:
        t5_config_from_dict(raw)
    assert "\n" not in str(info.value)


def test_unreadable_config(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_t5_config(bad)
    with pytest.raises(ConfigError, match="^config: cannot read"):
        load_t5_config(tmp_path / "absent.json")


# ------------------------------------------------------------------------------------------- checkpoints
def test_transformers_safetensors_load_and_run(tiny, pair, tmp_path):
    ours, ref = pair
    path = save_t5_checkpoint(ours, tmp_path / "model.safetensors", naming="transformers")
    loaded = load_t5_checkpoint(build_t5(tiny, seed=None), path)  # from meta, onto CPU
    ids, mask = _prompts(tiny, 40)
    with torch.no_grad():
        assert torch.equal(loaded(ids, mask), ours(ids, mask))
    official = save_t5_checkpoint(ours, tmp_path / "official.safetensors")
    assert check_t5_checkpoint(build_t5(tiny), official)["blocks.1.ffn.fc2.weight"] == (tiny.dim, tiny.dim_ffn)
    # the published layout: model-0000k-of-0000n.safetensors shards and model.safetensors.index.json, in a folder
    from safetensors.torch import save_file

    folder = tmp_path / "text_encoder"
    folder.mkdir()
    state = {k: v.contiguous() for k, v in state_dict_to_transformers(ours).items()
             if k != "encoder.embed_tokens.weight"}  # transformers saves shared.weight only
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(folder / shard))
    index = {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    sharded = load_t5_checkpoint(build_t5(tiny, torch.bfloat16, seed=None), folder)  # bf16, as the runtime casts
    assert sharded.blocks[0].attn.q.weight.dtype == torch.bfloat16
    assert torch.equal(sharded.norm.weight, ours.norm.weight.to(torch.bfloat16))


def test_pickle_is_refused_and_bad_keys_listed(tiny, pair, tmp_path):
    pth = tmp_path / "models_t5_umt5-xxl-enc-bf16.pth"
    pth.write_bytes(b"not read")
    with pytest.raises(CheckpointError, match="pickled checkpoint.*convert it to safetensors.*transformers "
                                              "text_encoder/ safetensors"):
        load_t5_checkpoint(build_t5(tiny), pth)
    ours, _ = pair
    state = {k: v.contiguous() for k, v in state_dict_to_transformers(ours).items()
             if k not in ("encoder.final_layer_norm.weight", "shared.weight")}  # the tied alias stands in
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match="missing keys: norm.weight$"):
        check_t5_checkpoint(build_t5(tiny), tmp_path / "bad.safetensors")


# ------------------------------------------------------------------------------------------- costing
def test_trace_is_strict_and_rolls_up(tiny):
    trace = trace_text_encoder(tiny, get_policy("fp32"), text_len=40, batch=2, strict=True)
    assert all(r.kind != "unknown" for r in trace.records)
    rows = {r.id: r for r in roll_up(trace.records, trace.model)}
    root = rows["model"]
    assert root.inclusive.flops_full == sum(r.cost.flops_full for r in trace.records)
    assert root.params == sum(p.numel() for p in build_t5(tiny).parameters())
    assert rows["blocks.1.attn.attention"].type == "scope" and rows["blocks.1"].type == "T5SelfAttention"
    assert rows["blocks.0.pos_embedding"].calls == 1  # umT5: every layer computes its own bias


def test_torch_flops_equal_flop_counter_mode_on_meta():
    """The published encoder (2 of its 24 identical layers) at 512 tokens, and the tiny one, on meta."""
    for config, length in ((T5Config().with_layers(2), 512), (load_t5_config(TINY), 40)):
        policy = get_policy("bf16")
        trace = trace_text_encoder(config, policy, text_len=length, strict=True)
        model = build_t5(config, policy.text)
        ids = torch.empty(1, length, dtype=torch.int64, device="meta")
        with FlopCounterMode(display=False) as counter:
            model(ids, torch.empty(1, length, dtype=torch.int64, device="meta"))
        assert counter.get_total_flops() == sum(r.cost.flops_torch for r in trace.records) > 0


def matmul_flops_by_hand(c: T5Config, tokens: int, batch: int = 1) -> int:
    """Per layer: q, k, v, o (2·L·dim·dim_attn each), the gated FFN (gate, fc1, fc2: 2·L·dim·dim_ffn each),
    and the two attention einsums (scores and weights·V: 2·heads·L²·head_dim each = 2·L²·dim_attn)."""
    projections = 4 * 2 * tokens * c.dim * c.dim_attn
    ffn = 3 * 2 * tokens * c.dim * c.dim_ffn
    attention = 2 * 2 * tokens ** 2 * c.dim_attn
    per_layer = projections + ffn + attention
    return batch * c.num_layers * per_layer


@pytest.mark.parametrize("tokens", [512, 77])
def test_matmul_flops_closed_form(tokens):
    trace = trace_text_encoder(T5Config(), get_policy("bf16"), text_len=tokens, strict=True)
    matmul = sum(r.cost.flops_torch for r in trace.records if r.family == "matmul")
    assert matmul == sum(r.cost.flops_torch for r in trace.records) == matmul_flops_by_hand(T5Config(), tokens)
    if tokens == 512:
        assert matmul == 4_844_723_109_888  # 4.84 TFLOP per call; a generation makes two
        assert trace.peak_activation_bytes == 176_164_864
        assert roll_up(trace.records, trace.model)[0].params == UMT5_XXL_PARAMS


def test_replicated_layers_equal_a_full_trace(tiny):
    config = tiny.with_layers(5)
    fast = trace_text_encoder(config, get_policy("bf16"), text_len=40, strict=True)
    full = trace_text_encoder(config, get_policy("bf16"), text_len=40, strict=True, replicate=False)

    def key(r):  # a copied layer's get_attr keeps the traced layer's attribute name, nothing else differs
        return (r.index, r.op, r.name if r.op != "get_attr" else "", r.kind, r.family, r.module, r.cost,
                r.output_bytes, r.layout, r.in_dtype, tuple(k.split("#scope")[0] for k in r.stack))

    assert [key(r) for r in fast.records] == [key(r) for r in full.records]
    assert fast.peak_activation_bytes == full.peak_activation_bytes


def test_precision_policies(tiny):
    """bf16 under the official runtime and diffusers (transformers keeps `wo` in fp32 only under fp16), fp32
    in the reference; the softmax runs in fp32 either way."""
    for name, dtype in (("bf16", torch.bfloat16), ("wan-official", torch.bfloat16), ("fp32", torch.float32)):
        trace = trace_text_encoder(tiny, get_policy(name), text_len=16)
        linears = {r.in_dtype for r in trace.records if r.name == "linear"}
        softmax = {r.in_dtype for r in trace.records if r.name == "softmax"}
        assert linears == {dtype} and softmax == {torch.float32}
        assert trace.model.norm.weight.dtype == dtype
    assert text_encoder_calls(cfg=True) == 2 and text_encoder_calls(cfg=False) == 1


def test_bad_workload_is_one_line(tiny):
    with pytest.raises(TextEncoderWorkloadError, match="^text_len: must be a positive integer, got 0"):
        trace_text_encoder(tiny, get_policy("bf16"), text_len=0)
    with pytest.raises(TextEncoderWorkloadError, match="^batch: must be a positive integer"):
        trace_text_encoder(tiny, get_policy("bf16"), batch=True)
