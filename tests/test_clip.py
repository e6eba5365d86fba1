"""The CLIP image encoder of Wan2.1 i2v/flf2v: faithful to transformers' CLIPVisionModelWithProjection (same random
weights through the key table, hidden_states[-2]), the published parameter counts, safetensors-only loading, and
the traced forward costed on meta (FLOPs equal FlopCounterMode's and a closed form in tokens and layers)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils.flop_counter import FlopCounterMode

from wan_reference import CheckpointError, ConfigError
from wan_reference.clip import build_clip
from wan_reference.clip_checkpoint import load_clip_checkpoint, save_clip_checkpoint, state_dict_to_transformers
from wan_reference.clip_config import (
    IMAGE_MEAN,
    IMAGE_STD,
    CLIPConfig,
    clip_config_from_dict,
    load_clip_config,
    text_tower_params,
    to_transformers_clip_config,
)
from wan_reference.clip_keys import clip_from_transformers, clip_key_table
from wantrace.work.analysis import roll_up
from wantrace.work.categories import category_of
from wantrace.work.image_encoder import (
    ImageEncoderWorkloadError,
    images_per_generation,
    resident_weight_bytes,
    trace_image_encoder,
)

from .conftest import MODELS

TINY = MODELS / "wan2.1-tiny-clip" / "image_encoder" / "config.json"
PUBLISHED = MODELS / "wan2.1-clip-vit-h-14" / "image_encoder" / "config.json"
VISUAL_PARAMS = 632_076_800  # official visual.* = transformers CLIPVisionModelWithProjection
TRANSFORMERS_NO_PROJECTION = 630_766_080  # CLIPVisionModel: no visual_projection (1280 x 1024)
RUN_PARAMS = 611_086_080  # what Wan runs: embeddings, pre_norm, 31 blocks (not block 31, post_norm, head)


@pytest.fixture(scope="module")
def tiny() -> CLIPConfig:
    return load_clip_config(TINY)


@pytest.fixture(scope="module")
def pair(tiny):
    transformers = pytest.importorskip("transformers")
    ours = build_clip(tiny, "fp32", device="cpu", seed=0)
    config = transformers.CLIPVisionConfig(**to_transformers_clip_config(tiny))
    ref = transformers.CLIPVisionModelWithProjection(config).eval()
    ref.load_state_dict(state_dict_to_transformers(ours), strict=True)
    return ours, ref


def _close(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _pixels(images: torch.Tensor, size: int) -> torch.Tensor:
    """The official preprocessing, written out: each image resized, [-1, 1] -> [0, 1], CLIP-normalised."""
    resized = torch.cat([F.interpolate(u[None], size=(size, size), mode="bicubic", align_corners=False)
                         for u in images])
    mean, std = torch.tensor(IMAGE_MEAN).view(3, 1, 1), torch.tensor(IMAGE_STD).view(3, 1, 1)
    return (resized * 0.5 + 0.5 - mean) / std


@torch.no_grad()
def test_penultimate_features_match_transformers(tiny, pair):
    ours, ref = pair
    images = torch.rand(2, 3, 40, 72, generator=torch.Generator().manual_seed(1)) * 2 - 1
    got = ours(images)
    expected = ref(pixel_values=_pixels(images, tiny.image_size), output_hidden_states=True).hidden_states[-2]
    assert got.shape == expected.shape == (2, tiny.tokens, tiny.dim) == (2, 17, 64)
    assert _close(got, expected) < 1e-4
    last = ref(pixel_values=_pixels(images, tiny.image_size), output_hidden_states=True).hidden_states[-1]
    assert _close(got, last) > 1e-2  # the last block does change the features: the check tells them apart


def test_published_config_and_parameter_counts():
    config = load_clip_config(PUBLISHED)
    assert config == CLIPConfig()  # the official clip_xlm_roberta_vit_h_14 vision defaults
    assert (config.tokens, config.run_layers) == (257, 31)
    model = build_clip(config)
    count = sum(p.numel() for p in model.parameters())
    unused = (sum(p.numel() for p in model.visual.transformer[-1].parameters())
              + sum(p.numel() for p in model.visual.post_norm.parameters()) + model.visual.head.numel())
    assert (count, count - unused, unused) == (VISUAL_PARAMS, RUN_PARAMS, 20_990_720)
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.CLIPVisionConfig.from_json_file(str(PUBLISHED))
    with torch.device("meta"):
        with_projection = transformers.CLIPVisionModelWithProjection(hf_config)
        plain = transformers.CLIPVisionModel(hf_config)
    assert sum(p.numel() for p in with_projection.parameters()) == VISUAL_PARAMS
    assert sum(p.numel() for p in plain.parameters()) == TRANSFORMERS_NO_PROJECTION
    ours = {k: tuple(v.shape) for k, v in state_dict_to_transformers(model).items()}
    assert ours == {k: tuple(v.shape) for k, v in with_projection.state_dict().items()}
    assert len(model.state_dict()) == 32 * 12 + 8 and len(ours) == 32 * 16 + 8


def test_resident_weights():
    """Official: the whole XLM-RoBERTa CLIP in fp16 on the GPU; diffusers: CLIPVisionModel (no projection) in fp32."""
    config = CLIPConfig()
    assert resident_weight_bytes(config, "wan-official") == (VISUAL_PARAMS + 560_937_984 + 1) * 2 == 2_386_029_570
    assert resident_weight_bytes(config, "bf16") == TRANSFORMERS_NO_PROJECTION * 4 == 2_523_064_320


def test_official_text_tower_count():
    """The official .pth also holds XLM-RoBERTa-large (loaded to the GPU with the tower, never run): transformers'
    XLMRobertaModel without pooler plus the official head's two 1024 x 1024 matrices."""
    transformers = pytest.importorskip("transformers")
    config = transformers.XLMRobertaConfig(vocab_size=250002, hidden_size=1024, num_hidden_layers=24,
                                           num_attention_heads=16, intermediate_size=4096,
                                           max_position_embeddings=514, type_vocab_size=1)
    with torch.device("meta"):
        roberta = transformers.XLMRobertaModel(config, add_pooling_layer=False)
    assert text_tower_params() == sum(p.numel() for p in roberta.parameters()) + 2 * 1024 * 1024 == 560_937_984


@pytest.mark.parametrize("change, field", [
    ({"hidden_size": 1281}, "num_heads"),
    ({"model_type": "clip_text_model"}, "model_type"),
    ({"hidden_act": "relu"}, "activation"),
    ({"num_channels": 4}, "num_channels"),
    ({"patch_size": 15}, "image_size"),
    ({"num_hidden_layers": 0}, "num_layers"),
    ({"layer_norm_eps": "x"}, "norm_eps"),
])
def test_bad_config_is_one_line(change, field):
    raw = {**json.loads(PUBLISHED.read_text()), **change}
    with pytest.raises(ConfigError) as err:
        clip_config_from_dict(raw)
    assert str(err.value).startswith(field) and "\n" not in str(err.value)


def test_config_defaults_are_transformers_and_sizes_required():
    raw = json.loads(PUBLISHED.read_text())
    del raw["hidden_act"], raw["projection_dim"]
    assert clip_config_from_dict(raw) == CLIPConfig(activation="quick_gelu", out_dim=512)
    del raw["num_hidden_layers"]
    with pytest.raises(ConfigError, match="^num_hidden_layers: required"):
        clip_config_from_dict(raw)
    nested = {"model_type": "clip", "vision_config": json.loads(PUBLISHED.read_text())}  # a full CLIPConfig
    assert clip_config_from_dict(nested) == CLIPConfig()
    assert CLIPConfig().tokens == 16 * 16 + 1


@pytest.mark.parametrize("naming", ["official", "transformers"])
def test_checkpoint_round_trip(tiny, pair, tmp_path, naming):
    ours, _ = pair
    path = save_clip_checkpoint(ours, tmp_path / "clip.safetensors", naming)
    loaded = load_clip_checkpoint(build_clip(tiny), path)
    for (name, a), (_, b) in zip(ours.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(loaded.std, ours.std)


def test_official_file_loads_without_its_text_tower(tiny, pair, tmp_path):
    ours, _ = pair
    state = {k: v.contiguous() for k, v in ours.state_dict().items()}
    state |= {"textual.head.0.weight": torch.zeros(2, 2), "log_scale": torch.zeros(())}
    save_file(state, str(tmp_path / "converted.safetensors"))
    loaded = load_clip_checkpoint(build_clip(tiny), tmp_path / "converted.safetensors")
    assert torch.equal(loaded.visual.head, ours.visual.head)


def test_pickle_is_refused_and_bad_keys_listed(tiny, pair, tmp_path):
    ours, _ = pair
    pth = tmp_path / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
    pth.write_bytes(b"not a pickle either")
    with pytest.raises(CheckpointError, match="pickled checkpoint, which is never loaded; convert it"):
        load_clip_checkpoint(build_clip(tiny), pth)
    state = state_dict_to_transformers(ours)
    del state["vision_model.encoder.layers.1.self_attn.k_proj.bias"]
    save_file(state, str(tmp_path / "broken.safetensors"))
    with pytest.raises(CheckpointError, match=r"to_qkv.bias: needs .*q_proj.bias, .*k_proj.bias"):
        load_clip_checkpoint(build_clip(tiny), tmp_path / "broken.safetensors")
    official = {k: v.contiguous() for k, v in ours.state_dict().items() if not k.startswith("visual.post_norm")}
    save_file(official, str(tmp_path / "partial.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing keys: visual.post_norm.bias, visual.post_norm.weight$"):
        load_clip_checkpoint(build_clip(tiny), tmp_path / "partial.safetensors")


def test_key_table_both_ways(tiny, pair):
    ours, _ = pair
    table = clip_key_table(tiny)
    assert [o for o, _, _ in table].sort() == list(ours.state_dict()).sort()
    assert {o for o, _, _ in table} == set(ours.state_dict())
    back = clip_from_transformers(state_dict_to_transformers(ours), tiny)
    assert all(torch.equal(back[k], v) for k, v in ours.state_dict().items())
    shapes = clip_from_transformers({k: tuple(v.shape) for k, v in state_dict_to_transformers(ours).items()}, tiny)
    assert shapes == {k: tuple(v.shape) for k, v in ours.state_dict().items()}


# ------------------------------------------------------------------------------------------------ costing
def _flops_counted(config: CLIPConfig, policy: str, batch: int, height: int, width: int) -> int:
    model = build_clip(config, policy)
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(batch, 3, height, width, device="meta"))
    return counter.get_total_flops()


def matmul_flops(c: CLIPConfig, batch: int) -> int:
    """Closed form: the patch embedding, then per block run the q/k/v and output projections, the two MLP
    matrices (2 per multiply-add) and attention's two products, 4·tokens²·dim."""
    n = c.tokens
    patches = 2 * batch * (n - 1) * c.dim * 3 * c.patch_size ** 2
    block = 2 * batch * n * (4 * c.dim * c.dim + 2 * c.dim * c.mlp_dim) + 4 * batch * n * n * c.dim
    return patches + c.run_layers * block


@pytest.mark.parametrize("published, policy, expected", [(True, "wan-official", 648_287_672_320),
                                                          (False, "fp32", 9_389_056)])
def test_flops_equal_flop_counter_and_closed_form(tiny, published, policy, expected):
    config = CLIPConfig() if published else tiny
    trace = trace_image_encoder(config, policy, batch=2, height=480, width=832, strict=True)
    assert not [r for r in trace.records if r.kind == "unknown"]
    flops = sum(r.cost.flops_torch for r in trace.records)
    assert flops == _flops_counted(config, policy, 2, 480, 832) == matmul_flops(config, 2) == expected


def test_resize_reads_the_whole_image_and_nothing_else_depends_on_it(tiny):
    small, large = (trace_image_encoder(tiny, "wan-official", 1, h, w, strict=True) for h, w in ((64, 64), (480, 832)))
    assert len(small.records) == len(large.records)
    differ = [(a.module, a.name) for a, b in zip(small.records, large.records, strict=True) if a.cost != b.cost]
    assert differ == [("resize", "interpolate")]
    resize = next(r for r in large.records if r.name == "interpolate")
    assert resize.cost.bytes_read == 3 * 480 * 832 * 4 and resize.cost.bytes_written == 3 * 56 * 56 * 4
    assert resize.cost.flops_full == 35 * 3 * 56 * 56 and resize.cost.flops_torch == 0


def test_precision_policies(tiny):
    """Official: fp16 tower after an fp32 resize and normalise (autocast casts the patch embedding's input);
    diffusers' examples and fp32: everything fp32, no casts."""
    official = trace_image_encoder(tiny, "wan-official", 1, 64, 64, strict=True)
    dtypes = {r.module.split(".")[0]: r.in_dtype for r in official.records if r.family == "matmul"}
    assert {r.in_dtype for r in official.records if r.name in ("linear", "conv2d")} == {torch.float16}
    assert {r.in_dtype for r in official.records if r.name == "layer_norm"} == {torch.float32}
    assert dtypes and official.records[-2].output_bytes == tiny.tokens * tiny.dim * 2
    fp32 = trace_image_encoder(tiny, "bf16", 1, 64, 64, strict=True)
    assert not [r for r in fp32.records if r.family == "cast" and r.kind == "costed"]
    assert fp32.records[-2].output_bytes == tiny.tokens * tiny.dim * 4


def test_records_roll_up_and_images_per_task(tiny):
    trace = trace_image_encoder(tiny, "wan-official", batch=2, strict=True)
    rows = {row.id: row for row in roll_up(trace.records, trace.model)}
    total = sum(r.cost.flops_torch for r in trace.records)
    root = rows["model"]
    assert root.inclusive.flops_torch == total == matmul_flops(tiny, 2)
    assert f"visual.transformer.{tiny.run_layers - 1}.attn.attention" in rows
    assert f"visual.transformer.{tiny.run_layers}" not in rows  # the last block never runs
    assert [images_per_generation(t) for t in ("t2v", "i2v", "flf2v", "vace")] == [0, 1, 2, 0]
    with pytest.raises(ImageEncoderWorkloadError, match="^height: must be a positive integer"):
        trace_image_encoder(tiny, "fp32", height=0)


def test_verify_script_on_cpu(tiny):
    """scripts/verify_clip.py, the GPU check of issue 11 ("CLIP on one image"), run on CPU in fp32: every
    module's FlopCounterMode count equals the trace's."""
    import importlib.util

    path = MODELS.parent / "scripts" / "verify_clip.py"
    spec = importlib.util.spec_from_file_location("verify_clip", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    doc = module.verify_clip(TINY, "cpu", "fp32", images=2, height=64, width=96, repeats=1)
    assert doc["flops_predicted"] == doc["flops_measured"] == matmul_flops(tiny, 2)
    assert doc["max_module_error"] == 0.0 and not doc["modules_unmeasured"]
    assert {r["id"] for r in doc["rows"]} >= {"model", "visual.patch_embedding", "visual.transformer.1.mlp.2"}


def test_categories_split_the_closed_form(tiny):
    """The encoder's rows fall in the DiT's categories: attention core, projections, FFN, embeddings (the patch
    embedding) carry exactly the closed form's terms; norms and casts move bytes only; resize, normalise and the
    residual adds are `other`."""
    c, n = tiny, tiny.tokens
    trace = trace_image_encoder(c, "wan-official", batch=1, strict=True)
    flops: dict[str, int] = {}
    for r in trace.records:
        flops[category_of(r.module, r.family)] = flops.get(category_of(r.module, r.family), 0) + r.cost.flops_torch
    assert flops["self-attention core"] == c.run_layers * 4 * n * n * c.dim
    assert flops["attention projections"] == c.run_layers * 2 * n * 4 * c.dim * c.dim
    assert flops["FFN"] == c.run_layers * 2 * n * 2 * c.dim * c.mlp_dim
    assert flops["embeddings"] == 2 * (n - 1) * c.dim * 3 * c.patch_size ** 2
    assert flops["norms"] == flops["dtype casts"] == flops["other"] == 0
    assert category_of("visual.transformer.4.norm2") == "norms" and category_of("resize") == "other"
