"""Bad input: configs, checkpoints and geometry fail with one line naming the problem."""

import json

import pytest
import torch

from wan_reference import (
    CheckpointError,
    ConfigError,
    GeometryError,
    build_model,
    geometry,
    load_checkpoint,
    load_config,
    make_inputs,
    save_checkpoint,
)
from wan_reference.config import from_dict

from .conftest import MODELS, config_of

OFFICIAL = json.loads((MODELS / "wan2.1-t2v-14b" / "config.json").read_text())
DIFFUSERS = json.loads((MODELS / "wan2.1-i2v-14b-480p-diffusers" / "config.json").read_text())


@pytest.mark.parametrize(
    "raw, field",
    [
        ({**OFFICIAL, "_class_name": "WanModel_S2V"}, "_class_name"),
        ({k: v for k, v in OFFICIAL.items() if k != "_class_name"}, "_class_name"),
        ({k: v for k, v in OFFICIAL.items() if k != "num_heads"}, "num_heads"),
        ({k: v for k, v in DIFFUSERS.items() if k != "attention_head_dim"}, "attention_head_dim"),
        ({**OFFICIAL, "model_type": "s2v"}, "model_type"),
        ({**OFFICIAL, "dim": 0}, "dim"),
        ({**OFFICIAL, "num_layers": -2}, "num_layers"),
        ({**OFFICIAL, "ffn_dim": 13824.5}, "ffn_dim"),
        ({**OFFICIAL, "dim": 5000}, "num_heads"),  # 5000 not divisible by 40
        ({**OFFICIAL, "dim": 160, "num_heads": 40}, "num_heads"),  # head_dim 4 cannot split for RoPE
        ({**OFFICIAL, "dim": 5160, "num_heads": 40}, "num_heads"),  # head_dim 129 is odd
        ({**OFFICIAL, "eps": 0}, "eps"),
        ({**OFFICIAL, "window_size": [256, 256]}, "window_size"),
        ({**DIFFUSERS, "added_kv_proj_dim": 4096}, "added_kv_proj_dim"),
        ({**DIFFUSERS, "image_dim": 1024}, "image_dim"),
        ({**DIFFUSERS, "qk_norm": "layer_norm"}, "qk_norm"),
    ],
)
def test_bad_config_names_the_field(raw, field):
    with pytest.raises(ConfigError) as info:
        from_dict(raw)
    message = str(info.value)
    assert message.startswith(field + ":"), message
    assert "\n" not in message


def test_omitted_fields_take_official_defaults():
    c = from_dict({"_class_name": "WanModel", "dim": 256, "ffn_dim": 512, "num_heads": 2, "num_layers": 1})
    assert (c.model_type, c.text_len, c.in_dim, c.freq_dim, c.text_dim, c.out_dim) == ("t2v", 512, 16, 256, 4096, 16)
    assert (c.patch_size, c.qk_norm, c.cross_attn_norm, c.eps) == ((1, 2, 2), True, True, 1e-6)


def test_malformed_json_and_missing_file(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{"_class_name": "WanModel", ')
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.json")
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_config(bad)


def test_rope_split_of_released_and_tiny_heads():
    assert config_of("wan2.1-t2v-14b").rope_split == (44, 42, 42)
    assert config_of("wan2.1-tiny-t2v").rope_split == (8, 8, 8)


# ----------------------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def tiny():
    config = config_of("wan2.1-tiny-i2v")
    return config, build_model(config, "fp32", device="cpu", seed=11)


@pytest.mark.parametrize("naming", ["official", "diffusers"])
@pytest.mark.parametrize("sharded", [False, True])
def test_checkpoint_round_trip(tmp_path, tiny, naming, sharded):
    config, model = tiny
    files = save_checkpoint(model, tmp_path / "model.safetensors", naming, 200_000 if sharded else None)
    if sharded:
        assert files[0].name == "model.safetensors.index.json" and len(files) > 3
    path = files[0] if not sharded else tmp_path  # a folder holding one index resolves too
    loaded = load_checkpoint(build_model(config, "fp32", seed=None), path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    inputs = make_inputs(config, (2, 4, 4), "fp32", device="cpu")
    # identical weights; the matmul kernels may block differently on mmapped memory, hence 1e-5
    torch.testing.assert_close(loaded(**inputs), model(**inputs), rtol=1e-5, atol=1e-5)


def test_checkpoint_converts_to_policy_dtype(tmp_path, tiny):
    config, model = tiny
    save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = load_checkpoint(build_model(config, "bf16", device="cpu", seed=None), tmp_path / "m.safetensors")
    assert loaded.blocks[0].self_attn.q.weight.dtype == torch.bfloat16
    assert loaded.blocks[0].modulation.dtype == torch.float32


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda s: s.pop("blocks.1.ffn.0.weight"), "missing keys: blocks.1.ffn.0.weight"),
        (lambda s: s.__setitem__("blocks.9.modulation", torch.zeros(1, 6, 96)), "unexpected keys: blocks.9.modulation"),
        (lambda s: s.__setitem__("head.head.bias", torch.zeros(63)), "shape mismatches: head.head.bias [63] != [64]"),
    ],
)
def test_strict_checkpoint_errors(tmp_path, tiny, edit, expected):
    config, model = tiny
    state = _state(model)
    edit(state)
    save_checkpoint(state, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(build_model(config, "fp32", seed=None), tmp_path / "m.safetensors")
    assert expected in str(info.value)


def test_corrupt_and_pickled_checkpoints_are_refused(tmp_path, tiny):
    config, model = tiny
    good = save_checkpoint(model, tmp_path / "m.safetensors")[0]
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(build_model(config, "fp32", seed=None), corrupt)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(build_model(config, "fp32", seed=None), garbage)
    pickled = tmp_path / "model.pth"
    torch.save(model.state_dict(), pickled)
    with pytest.raises(CheckpointError, match="never loaded"):
        load_checkpoint(build_model(config, "fp32", seed=None), pickled)


def test_sharded_index_with_missing_shard(tmp_path, tiny):
    config, model = tiny
    files = save_checkpoint(model, tmp_path / "m.safetensors", max_shard_bytes=200_000)
    files[2].unlink()
    with pytest.raises(CheckpointError, match="shards listed in m.safetensors.index.json are missing"):
        load_checkpoint(build_model(config, "fp32", seed=None), files[0])


# ------------------------------------------------------------------------------------------- geometry
def test_geometry_of_published_sizes():
    g = geometry(81, 480, 832)
    assert (g.latent, g.grid, g.tokens) == ((21, 60, 104), (21, 30, 52), 32_760)
    assert geometry(81, 720, 1280).tokens == 75_600
    assert geometry(5, 256, 256).grid == (2, 16, 16)


@pytest.mark.parametrize(
    "args, rule",
    [
        ((80, 480, 832), "frames: must be 4n+1"),
        ((81, 488, 832), "height: must be a multiple of 16"),
        ((81, 480, 840), "width: must be a multiple of 16"),
        ((0, 480, 832), "frames: must be a positive integer"),
        ((81, -16, 832), "height: must be a positive integer"),
        ((81, 480, 16 * 1025), "width: token grid axis of 1025 exceeds the RoPE table"),
    ],
)
def test_impossible_geometry(args, rule):
    with pytest.raises(GeometryError) as info:
        geometry(*args)
    assert str(info.value).startswith(rule)
