"""wan_reference on meta: exact parameter counts, key names, precision policies, FX-traceability."""

import time

import pytest
import torch
from torch.fx.passes.shape_prop import ShapeProp

from wan_reference import build_model, from_diffusers, make_inputs, to_diffusers
from wan_reference.precision import POLICIES

from .conftest import MODELS, config_of

PARAMS = {
    "wan2.1-t2v-1.3b": 1_418_996_800,
    "wan2.1-t2v-14b": 14_288_491_584,
    "wan2.1-i2v-14b-480p": 16_394_878_784,
    "wan2.1-i2v-14b-720p": 16_394_878_784,
    "wan2.1-flf2v-14b-720p": 16_395_536_704,
    "wan2.1-t2v-1.3b-diffusers": 1_418_996_800,
    "wan2.1-t2v-14b-diffusers": 14_288_491_584,
    "wan2.1-i2v-14b-480p-diffusers": 16_394_878_784,
    "wan2.1-i2v-14b-720p-diffusers": 16_394_878_784,
}


def test_every_shipped_config_is_covered():
    from .test_variants import PARAMS as VARIANT_PARAMS

    shipped = {str(p.parent.relative_to(MODELS)) for p in MODELS.glob("**/config.json")
               if p.parent.name not in ("vae", "text_encoder", "image_encoder")}  # test_vae/_text_encoder/_clip
    assert {n for n in shipped if "tiny" not in n} == set(PARAMS) | set(VARIANT_PARAMS)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_exact_parameter_count(name):
    model = build_model(config_of(name))
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]


def test_official_and_diffusers_configs_agree():
    for name in ("wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.1-i2v-14b-480p", "wan2.1-i2v-14b-720p"):
        assert config_of(name) == config_of(name + "-diffusers")


def test_14b_meta_build_is_fast_and_allocates_nothing():
    config = config_of("wan2.1-t2v-14b")
    build_model(config)  # warm-up: first meta ops load torch's python meta kernels
    start = time.perf_counter()
    model = build_model(config, "wan-official")
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"meta build took {elapsed:.2f}s"
    assert all(p.is_meta for p in model.parameters())
    assert all(b.is_meta for b in model.buffers())


@pytest.mark.parametrize("name", ["wan2.1-t2v-14b", "wan2.1-i2v-14b-480p", "wan2.1-flf2v-14b-720p"])
def test_key_names_match_diffusers_both_directions(name):
    """Our state-dict keys map onto exactly the keys of diffusers' own model, and back."""
    diffusers = pytest.importorskip("diffusers")
    from wan_reference.config import to_diffusers_config

    config = config_of(name)
    ours = set(build_model(config).state_dict())
    raw = {k: v for k, v in to_diffusers_config(config).items() if not k.startswith("_")}
    with torch.device("meta"):
        theirs = set(diffusers.WanTransformer3DModel(**raw).state_dict())
    assert {to_diffusers(k) for k in ours} == theirs
    assert {from_diffusers(k) for k in theirs} == ours


def test_official_key_names():
    keys = set(build_model(config_of("wan2.1-i2v-14b-480p")).state_dict())
    for key in (
        "patch_embedding.weight", "text_embedding.0.weight", "text_embedding.2.bias", "time_embedding.0.weight",
        "time_projection.1.weight", "blocks.0.modulation", "blocks.0.self_attn.q.weight",
        "blocks.0.self_attn.norm_q.weight", "blocks.0.norm3.weight", "blocks.39.cross_attn.k_img.weight",
        "blocks.0.cross_attn.norm_k_img.weight", "blocks.0.ffn.0.weight", "blocks.0.ffn.2.bias",
        "head.modulation", "head.head.weight", "img_emb.proj.0.weight", "img_emb.proj.4.bias",
    ):
        assert key in keys, key
    assert not any("freqs" in k or "norm1" in k or ".norm2." in k for k in keys)  # tables and affine-free norms
    assert "blocks.40.modulation" not in keys


def test_norm_swap_in_mapping():
    assert to_diffusers("blocks.3.norm3.weight") == "blocks.3.norm2.weight"
    assert from_diffusers("blocks.3.norm2.bias") == "blocks.3.norm3.bias"
    assert to_diffusers("head.modulation") == "scale_shift_table"
    assert to_diffusers("blocks.12.self_attn.o.weight") == "blocks.12.attn1.to_out.0.weight"


def test_policy_parameter_dtypes():
    config = config_of("wan2.1-i2v-14b-480p")
    bf16 = dict(build_model(config, "bf16").named_parameters())
    assert bf16["blocks.0.self_attn.q.weight"].dtype == torch.bfloat16
    assert bf16["blocks.0.self_attn.norm_q.weight"].dtype == torch.bfloat16
    for fp32_name in ("blocks.0.modulation", "head.modulation", "time_embedding.0.weight", "blocks.7.norm3.bias",
                      "img_emb.proj.0.weight"):
        assert bf16[fp32_name].dtype == torch.float32, fp32_name
    official = build_model(config, "wan-official")
    assert {p.dtype for p in official.parameters()} == {torch.float32}
    assert official.blocks[0].self_attn.q.compute_dtype == torch.bfloat16
    assert official.time_embedding[0].compute_dtype == torch.float32  # autocast(float32) region
    assert official.head.head.compute_dtype == torch.float32
    assert bf16_model_head_dtype(config) == torch.bfloat16


def bf16_model_head_dtype(config):
    return build_model(config, "bf16").head.head.compute_dtype


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_tiny_runs_on_cpu_close_to_fp32(policy):
    """Every policy runs for real; the reduced-precision outputs stay near the fp32 reference."""
    config = config_of("wan2.1-tiny-i2v")
    latent = (2, 4, 6)
    ref = build_model(config, "fp32", device="cpu", seed=3)(**make_inputs(config, latent, "fp32", device="cpu"))
    out = build_model(config, policy, device="cpu", seed=3)(**make_inputs(config, latent, policy, device="cpu"))
    expected_dtype = {"bf16": torch.bfloat16, "wan-official": torch.float32, "fp32": torch.float32}[policy]
    assert out.dtype == expected_dtype
    rel = ((out.float() - ref).abs().max() / ref.abs().max()).item()
    assert rel < (1e-6 if policy == "fp32" else 0.05), rel


@pytest.mark.parametrize("policy", ["bf16", "wan-official"])
def test_14b_forward_on_meta_and_fx_trace(policy):
    """One forward of the 14B on meta, and an FX trace whose nodes carry shapes, dtypes and module paths."""
    config = config_of("wan2.1-t2v-14b")
    model = build_model(config, policy)
    inputs = make_inputs(config, (21, 60, 104), policy)
    assert model(**inputs).shape == (1, 16, 21, 60, 104)

    class Tracer(torch.fx.Tracer):
        proxy_buffer_attributes = True

        def is_leaf_module(self, m, qualname):
            return False

    graph = torch.fx.GraphModule(model, Tracer().trace(model, concrete_args={"clip_fea": None, "y": None}))
    ShapeProp(graph).propagate(inputs["x"], inputs["t"], inputs["context"])
    sdpa = [n for n in graph.graph.nodes if n.target is torch.nn.functional.scaled_dot_product_attention]
    assert len(sdpa) == 2 * config.num_layers
    q_shape = sdpa[0].meta["tensor_meta"].shape
    assert tuple(q_shape) == (1, 40, 32760, 128)
    # functional scopes name the attention call under the module that runs it
    assert list(sdpa[0].meta["nn_module_stack"].values())[-1][0] == "blocks.0.self_attn.attention"
    assert list(sdpa[-1].meta["nn_module_stack"].values())[-1][0] == "blocks.39.cross_attn.attention"


def test_official_residual_stream_is_fp32_and_rope_float64():
    """The wan-official policy reproduces upstream dtypes: fp32 stream after block 0, complex128 RoPE."""
    config = config_of("wan2.1-tiny-t2v")
    model = build_model(config, "wan-official")
    seen = {}
    model.blocks[0].register_forward_hook(lambda m, a, out: seen.__setitem__("block0", out.dtype))
    model.blocks[0].self_attn.q.register_forward_hook(lambda m, a, out: seen.__setitem__("q", out.dtype))
    model.blocks[0].self_attn.norm_q.register_forward_hook(lambda m, a, out: seen.__setitem__("norm_q", out.dtype))
    x = model(**make_inputs(config, (2, 4, 4), "wan-official"))
    assert seen == {"q": torch.bfloat16, "norm_q": torch.float32, "block0": torch.float32}
    assert x.dtype == torch.float32
    assert model.rope_freqs(2, 2, 2).dtype == torch.complex128
