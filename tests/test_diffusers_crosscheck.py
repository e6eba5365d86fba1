"""Proof of faithfulness: wan_reference and diffusers' WanTransformer3DModel, given the same random weights
through our key mapping, produce the same output in fp32 on CPU (within 1e-4 of the output scale)."""

import dataclasses

import pytest
import torch

from wan_reference import build_model, make_inputs, to_diffusers
from wan_reference.config import WanConfig, to_diffusers_config

from .conftest import config_of

diffusers = pytest.importorskip("diffusers")

TOLERANCE = 1e-4  # relative to max |output|: never loosen


def diffusers_twin(model, config: WanConfig):
    raw = {k: v for k, v in to_diffusers_config(config).items() if not k.startswith("_")}
    twin = diffusers.WanTransformer3DModel(**raw).eval()
    state = {to_diffusers(k): v for k, v in model.state_dict().items()}
    missing, unexpected = twin.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert not missing, missing  # every diffusers parameter is fed from our names
    return twin


@pytest.mark.parametrize(
    "name, latent",
    [("wan2.1-tiny-t2v", (3, 4, 6)), ("wan2.1-tiny-i2v", (2, 6, 4))],
)
def test_matches_diffusers_fp32(name, latent):
    torch.manual_seed(0)
    config = config_of(name)
    ours = build_model(config, "fp32", device="cpu", seed=1234)
    twin = diffusers_twin(ours, config)
    inputs = make_inputs(config, latent, "fp32", batch=2, device="cpu", seed=7, timestep=637.0)
    with torch.no_grad():
        out = ours(**inputs)
        hidden = inputs["x"] if "y" not in inputs else torch.cat([inputs["x"], inputs["y"]], dim=1)
        ref = twin(
            hidden_states=hidden,
            timestep=inputs["t"],
            encoder_hidden_states=inputs["context"],
            encoder_hidden_states_image=inputs.get("clip_fea"),
            return_dict=False,
        )[0]
    assert out.shape == ref.shape == (2, config.out_dim, *latent)
    scale = ref.abs().max().item()
    assert scale > 0.1  # the comparison carries signal
    err = (out - ref).abs().max().item()
    assert err <= TOLERANCE * scale, f"max |ours - diffusers| = {err:.3e}, scale {scale:.3e}"


def test_crosscheck_detects_a_wrong_model():
    """The comparison can fail: one perturbed weight on our side (as a norm2/norm3 mix-up would be) is seen."""
    config = config_of("wan2.1-tiny-t2v")
    ours = build_model(config, "fp32", device="cpu", seed=1234)
    twin = diffusers_twin(ours, config)
    with torch.no_grad():
        ours.blocks[0].norm3.weight.mul_(1.5)  # a mapping bug would look like this
    inputs = make_inputs(config, (2, 4, 4), "fp32", device="cpu", seed=3)
    with torch.no_grad():
        out = ours(**inputs)
        ref = twin(inputs["x"], inputs["t"], inputs["context"], return_dict=False)[0]
    assert (out - ref).abs().max().item() > TOLERANCE * ref.abs().max().item()


def test_matches_diffusers_flf2v():
    """FLF2V: two images' CLIP features, viewed side by side and offset by emb_pos (diffusers pos_embed)."""
    config = dataclasses.replace(config_of("wan2.1-tiny-i2v"), model_type="flf2v")
    ours = build_model(config, "fp32", device="cpu", seed=99)
    twin = diffusers_twin(ours, config)
    inputs = make_inputs(config, (2, 4, 4), "fp32", batch=1, device="cpu", seed=5)
    inputs["clip_fea"] = inputs["clip_fea"].view(2, 257, -1)  # first and last frame, as the pipeline passes them
    with torch.no_grad():
        ours.img_emb.emb_pos.normal_(std=0.5)
        twin.condition_embedder.image_embedder.pos_embed.copy_(ours.img_emb.emb_pos)
        out = ours(**inputs)
        ref = twin(
            torch.cat([inputs["x"], inputs["y"]], dim=1), inputs["t"], inputs["context"],
            encoder_hidden_states_image=inputs["clip_fea"], return_dict=False,
        )[0]
    scale = ref.abs().max().item()
    assert (out - ref).abs().max().item() <= TOLERANCE * scale
