"""Wan2.2 (A14B experts, TI2V-5B) and Wan2.1 VACE against diffusers: the same random weights through our key
mapping give the same fp32 output on CPU (within 1e-4 of the output scale), and the key sets map both ways."""

import pytest
import torch

from wan_reference import build_model, load_config, make_inputs, to_diffusers
from wan_reference.config import to_diffusers_config

from .conftest import MODELS

diffusers = pytest.importorskip("diffusers")

TOLERANCE = 1e-4  # relative to max |output|: never loosen


def diffusers_class(config):
    return diffusers.WanVACETransformer3DModel if config.model_type == "vace" else diffusers.WanTransformer3DModel


def twin_of(model, config):
    raw = {k: v for k, v in to_diffusers_config(config).items() if not k.startswith("_")}
    twin = diffusers_class(config)(**raw).eval()
    missing, unexpected = twin.load_state_dict({to_diffusers(k): v for k, v in model.state_dict().items()},
                                               strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return twin


def run_diffusers(twin, config, inputs):
    x = inputs["x"] if "y" not in inputs else torch.cat([inputs["x"], inputs["y"]], dim=1)
    kwargs = {"control_hidden_states": inputs["vace_context"]} if "vace_context" in inputs else {}
    return twin(hidden_states=x, timestep=inputs["t"], encoder_hidden_states=inputs["context"], return_dict=False,
                **kwargs)[0]


@pytest.mark.parametrize("path, latent", [
    ("wan2.2-tiny-t2v-a14b/high_noise_model", (3, 4, 6)),
    ("wan2.2-tiny-i2v-a14b/low_noise_model", (2, 6, 4)),
    ("wan2.2-tiny-ti2v", (3, 4, 4)),
    ("wan2.1-tiny-vace", (2, 4, 6)),
])
def test_matches_diffusers_fp32(path, latent):
    config = load_config(MODELS / path / "config.json")
    ours = build_model(config, "fp32", device="cpu", seed=4321)
    twin = twin_of(ours, config)
    inputs = make_inputs(config, latent, "fp32", batch=2, device="cpu", seed=11, timestep=811.0)
    with torch.no_grad():
        out = ours(**inputs)
        ref = run_diffusers(twin, config, inputs)
    assert out.shape == ref.shape == (2, config.out_dim, *latent)
    scale = ref.abs().max().item()
    assert scale > 0.1
    err = (out - ref).abs().max().item()
    assert err <= TOLERANCE * scale, f"max |ours - diffusers| = {err:.3e}, scale {scale:.3e}"
