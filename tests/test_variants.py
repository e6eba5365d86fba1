"""Wan2.2 (T2V-A14B, I2V-A14B, TI2V-5B) and Wan2.1 VACE on meta: exact parameter counts equal to diffusers'
classes built from the same configs, key names both ways, what tells Wan2.2 from Wan2.1, and bad VACE
configs."""

import json

import pytest
import torch

from wan_reference import ConfigError, build_model, from_diffusers, load_config, make_inputs, to_diffusers
from wan_reference.config import from_dict, to_diffusers_config

from .conftest import MODELS

PARAMS = {  # exact, from the module definitions; diffusers agrees (test below)
    "wan2.2-t2v-a14b/high_noise_model": 14_288_491_584,
    "wan2.2-t2v-a14b/low_noise_model": 14_288_491_584,
    "wan2.2-t2v-a14b-diffusers/transformer": 14_288_491_584,
    "wan2.2-t2v-a14b-diffusers/transformer_2": 14_288_491_584,
    "wan2.2-i2v-a14b/high_noise_model": 14_288_901_184,
    "wan2.2-i2v-a14b/low_noise_model": 14_288_901_184,
    "wan2.2-i2v-a14b-diffusers/transformer": 14_288_901_184,
    "wan2.2-i2v-a14b-diffusers/transformer_2": 14_288_901_184,
    "wan2.2-ti2v-5b": 4_999_787_712,
    "wan2.2-ti2v-5b-diffusers/transformer": 4_999_787_712,
    "wan2.1-vace-1.3b": 2_153_972_032,
    "wan2.1-vace-1.3b-diffusers": 2_153_972_032,
    "wan2.1-vace-14b": 17_337_592_896,
    "wan2.1-vace-14b-diffusers": 17_337_592_896,
}
VARIANT = {  # (release, model_type, image tokens) each file must read as
    "wan2.2-t2v-a14b": ("wan2.2", "t2v", 0), "wan2.2-i2v-a14b": ("wan2.2", "i2v", 0),
    "wan2.2-ti2v-5b": ("wan2.2", "ti2v", 0), "wan2.1-vace-1.3b": ("wan2.1", "vace", 0),
    "wan2.1-vace-14b": ("wan2.1", "vace", 0),
}


def config_at(name):
    return load_config(MODELS / name / "config.json")


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_exact_parameter_count(name):
    assert sum(p.numel() for p in build_model(config_at(name)).parameters()) == PARAMS[name]


@pytest.mark.parametrize("name", ["wan2.2-t2v-a14b/high_noise_model", "wan2.2-i2v-a14b/low_noise_model",
                                  "wan2.2-ti2v-5b", "wan2.1-vace-1.3b", "wan2.1-vace-14b"])
def test_parameter_count_equals_diffusers(name):
    """diffusers' own class, built on meta from the same config, has exactly as many parameters."""
    diffusers = pytest.importorskip("diffusers")
    config = config_at(name)
    raw = {k: v for k, v in to_diffusers_config(config).items() if not k.startswith("_")}
    cls = diffusers.WanVACETransformer3DModel if config.model_type == "vace" else diffusers.WanTransformer3DModel
    with torch.device("meta"):
        theirs = cls(**raw)
    assert sum(p.numel() for p in theirs.parameters()) == PARAMS[name]


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_release_and_variant_from_the_file_and_its_place(name):
    release, model_type, image_tokens = VARIANT[name.split("/")[0].removesuffix("-diffusers")]
    config = config_at(name)
    assert (config.release, config.model_type, config.image_tokens) == (release, model_type, image_tokens)
    assert config.per_token_time == (release == "wan2.2")


def test_official_and_diffusers_formats_agree():
    for official, diffusers_name in (
        ("wan2.2-t2v-a14b/high_noise_model", "wan2.2-t2v-a14b-diffusers/transformer"),
        ("wan2.2-i2v-a14b/low_noise_model", "wan2.2-i2v-a14b-diffusers/transformer_2"),
        ("wan2.2-ti2v-5b", "wan2.2-ti2v-5b-diffusers/transformer"),
        ("wan2.1-vace-1.3b", "wan2.1-vace-1.3b-diffusers"),
        ("wan2.1-vace-14b", "wan2.1-vace-14b-diffusers"),
    ):
        assert config_at(official) == config_at(diffusers_name), official


def test_the_same_file_outside_an_expert_folder_is_wan21(tmp_path):
    """A14B expert configs carry Wan2.1's keys: only the folder makes them Wan2.2 (per-token time, no CLIP)."""
    text = (MODELS / "wan2.2-i2v-a14b/high_noise_model/config.json").read_text()
    (tmp_path / "config.json").write_text(text)
    wan21 = load_config(tmp_path / "config.json")
    assert (wan21.release, wan21.image_tokens) == ("wan2.1", 257)
    assert "img_emb.proj.1.weight" in build_model(wan21).state_dict()
    assert not any(k.startswith("img_emb") or "k_img" in k
                   for k in build_model(config_at("wan2.2-i2v-a14b/high_noise_model")).state_dict())


@pytest.mark.parametrize("name", ["wan2.2-i2v-a14b/high_noise_model", "wan2.2-ti2v-5b", "wan2.1-vace-1.3b"])
def test_key_names_match_diffusers_both_directions(name):
    diffusers = pytest.importorskip("diffusers")
    config = config_at(name)
    ours = set(build_model(config).state_dict())
    raw = {k: v for k, v in to_diffusers_config(config).items() if not k.startswith("_")}
    cls = diffusers.WanVACETransformer3DModel if config.model_type == "vace" else diffusers.WanTransformer3DModel
    with torch.device("meta"):
        theirs = set(cls(**raw).state_dict())
    assert {to_diffusers(k) for k in ours} == theirs
    assert {from_diffusers(k) for k in theirs} == ours


def test_official_vace_keys():
    keys = set(build_model(config_at("wan2.1-vace-14b")).state_dict())
    assert {"vace_patch_embedding.weight", "vace_blocks.0.before_proj.weight", "vace_blocks.7.after_proj.bias",
            "vace_blocks.7.cross_attn.q.weight", "blocks.39.ffn.2.bias"} <= keys
    assert "vace_blocks.1.before_proj.weight" not in keys and "vace_blocks.8.modulation" not in keys
    assert build_model(config_at("wan2.1-vace-14b")).vace_patch_embedding.weight.shape == (5120, 96, 1, 2, 2)


def test_vace_default_layers_and_channels():
    """VaceWanModel defaults: every 2nd block, control channels = in_dim."""
    raw = json.loads((MODELS / "wan2.1-vace-1.3b/config.json").read_text())
    del raw["vace_layers"], raw["vace_in_dim"]
    config = from_dict(raw)
    assert config.vace_layers == tuple(range(0, 30, 2)) and config.vace_in_dim == 16


@pytest.mark.parametrize("change, field", [
    ({"vace_layers": [2, 4]}, "vace_layers"),  # official asserts 0 in vace_layers
    ({"vace_layers": [0, 30]}, "vace_layers"),
    ({"vace_in_dim": 0}, "vace_in_dim"),
    ({"model_type": "ti2v"}, "model_type"),  # VaceWanModel is Wan2.1
])
def test_bad_vace_config_names_the_field(change, field):
    raw = {**json.loads((MODELS / "wan2.1-vace-1.3b/config.json").read_text()), **change}
    with pytest.raises(ConfigError, match=rf"^{field}:"):
        from_dict(raw)


def test_ti2v_time_is_per_token():
    """TI2V gives the conditioning frame t = 0: changing only that frame's timestep changes the output."""
    config = config_at("wan2.2-tiny-ti2v")
    model = build_model(config, "fp32", device="cpu", seed=2)
    inputs = make_inputs(config, (2, 4, 4), "fp32", device="cpu", seed=3)
    assert inputs["t"].shape == (1, 2 * 2 * 2) and inputs["t"][0, :4].eq(0).all() and inputs["t"][0, 4:].eq(500).all()
    with torch.no_grad():
        a = model(**inputs)
        b = model(**{**inputs, "t": torch.full_like(inputs["t"], 500.0)})
    assert (a - b).abs().max() > 1e-3
