"""The whole generation: the UniPC sampler against diffusers, the sampler's per-step graphs against closed forms,
the generation tree's roll-up (every parent the sum of its children, the root the sum of the components and
`totals.generation`), the components each task runs, and `--only dit` as the DiT report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from wan_reference.scheduler import FlowUniPC, orders, sigmas, step_plans, timesteps
from wantrace.cli import main
from wantrace.work.analysis import analyze
from wantrace.work.compare import CompareError, compare
from wantrace.work.generation import analyze_generation, plan
from wantrace.work.metrics import ZERO
from wantrace.work.sampler import trace_sampler
from wantrace.work.vae import trace_vae
from wantrace.work.workload import PRESETS

from .conftest import MODELS

TINY_T2V = MODELS / "wan2.1-tiny-t2v" / "config.json"
TINY_I2V = MODELS / "wan2.1-tiny-i2v" / "config.json"
TINY_VAE = MODELS / "wan2.1-tiny-vae" / "vae" / "config.json"
TINY_A14B = MODELS / "wan2.2-tiny-t2v-a14b"
TINY_T5 = MODELS / "wan2.1-tiny-umt5" / "text_encoder" / "config.json"
TINY_CLIP = MODELS / "wan2.1-tiny-clip" / "image_encoder" / "config.json"
TINY = {"vae": TINY_VAE, "text_encoder": TINY_T5, "image_encoder": TINY_CLIP}


# --- the sampler ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("steps,shift", [(1, 5.0), (2, 3.0), (4, 5.0), (7, 12.0)])
def test_unipc_matches_diffusers(steps, shift):
    """diffusers' UniPCMultistepScheduler as its Wan pipelines configure it, given the official sigma grid
    (diffusers' own default grid starts at 1 instead of 0.999: docs/pipeline.md), on random model outputs."""
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                            num_train_timesteps=1000, flow_shift=shift)
    grid = np.linspace(np.float32(1 - 1 / 1000), 0.0, steps + 1)[:-1]
    ref.set_timesteps(sigmas=grid)
    ours = FlowUniPC(steps, shift, guide_scale=5.0)
    assert ours.timesteps == ref.timesteps.tolist()
    torch.testing.assert_close(ours.sigmas, ref.sigmas.float(), rtol=1e-5, atol=0)
    g = torch.Generator().manual_seed(steps)
    x = torch.randn(1, 4, 3, 6, 8, generator=g)
    x_ref = x.clone()
    for i in range(steps):
        cond, uncond = torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g)
        x = ours.step(cond, x, uncond)
        x_ref = ref.step(uncond + 5.0 * (cond - uncond), ref.timesteps[i], x_ref).prev_sample
        assert (x - x_ref).abs().max() <= 1e-5 * x_ref.abs().max()


def test_official_timesteps():
    """fm_solvers_unipc.py at 50 steps, shift 5 (t2v) and 40 steps, shift 3 (i2v 480p): the first and last."""
    assert timesteps(50, 5.0)[:3] == [999, 995, 991] and timesteps(50, 5.0)[-1] == 92
    assert timesteps(40, 3.0)[:3] == [999, 991, 982]
    assert sigmas(4, 5.0)[-1] == 0 and len(sigmas(4, 5.0)) == 5


def test_step_orders():
    """Order 1 first, the corrector from the second step, order 2 between, order 1 on the last step."""
    assert [orders(i, 1) for i in range(1)] == [(0, 1)]
    assert [orders(i, 2) for i in range(2)] == [(0, 1), (1, 1)]
    assert [orders(i, 5) for i in range(5)] == [(0, 1), (1, 2), (2, 2), (2, 2), (2, 1)]
    kinds = [p.kind for p in step_plans(50, 5.0, 5.0)]
    assert kinds[:2] == [(True, 0, 1), (True, 1, 2)] and kinds[-1] == (True, 2, 1)
    assert set(kinds[2:-1]) == {(True, 2, 2)}


def test_sampler_costs_closed_form():
    """Per latent element N: the CFG combine 3 (sub, mul, add), the conversion 2; a predictor of order 1 runs 4
    elementwise ops, of order 2 8 (its einsum over one earlier output 1: ATen runs it as a mul, 0 torch FLOPs);
    a corrector of order 1 8, of order 2 11 (einsum 1). 50 steps: predictors 1+1 of order 1, 48 of order 2;
    correctors 1 of order 1, 48 of order 2."""
    latent = (1, 16, 21, 60, 104)
    n = 16 * 21 * 60 * 104
    trace = trace_sampler(latent, 50, True, strict=True)
    from wantrace.work.analysis import roll_up

    rows = {r.id: r for r in roll_up(trace.records, trace.model)}
    assert rows["guidance"].inclusive.flops_full == 50 * 3 * n and rows["guidance"].calls == 50
    assert rows["convert"].inclusive.flops_full == 50 * 2 * n
    assert rows["predictor"].inclusive.flops_full == (2 * 4 + 48 * 8) * n
    assert rows["corrector"].inclusive.flops_full == (8 + 48 * 11) * n and rows["corrector"].calls == 49
    assert rows["model"].inclusive.flops_torch == 0
    assert {k: len(v) for k, v in trace.kinds.items()} == {(True, 0, 1): 1, (True, 1, 2): 1, (True, 2, 2): 47,
                                                          (True, 2, 1): 1}
    assert all(r.kind != "unknown" for r in trace.records)
    no_cfg = trace_sampler(latent, 50, False)
    assert sum(r.cost.flops_full for r in trace.records) - sum(r.cost.flops_full for r in no_cfg.records) \
        == 50 * 3 * n


# --- the components table --------------------------------------------------------------------------------------

def _calls(task, cfg=True, steps=50, forwards=100):
    return {s.id: s.calls for s in plan(task, cfg, steps, forwards) if not s.missing}


def test_components_per_task():
    assert _calls("t2v") == {"text_encoder": 2, "dit": 100, "scheduler": 50, "vae.decode": 1}
    assert _calls("t2v", cfg=False, forwards=50) == {"text_encoder": 1, "dit": 50, "scheduler": 50, "vae.decode": 1}
    for task in ("i2v", "flf2v"):
        assert _calls(task, steps=40, forwards=80) == {"text_encoder": 2, "image_encoder": 1, "vae.encode": 1,
                                                       "dit": 80, "scheduler": 40, "vae.decode": 1}
    assert [s.id for s in plan("vace", True, 50, 100) if s.missing] == ["vae.encode"]
    assert [s.id for s in plan("ti2v", True, 50, 100) if s.missing] == ["vae.decode"]


# --- the generation report -------------------------------------------------------------------------------------

def _check_tree(report):
    rows = {r.id: r for r in report.modules}
    for row in report.modules:
        total = row.exclusive
        for child in row.children:
            assert rows[child].parent == row.id
            total = total + rows[child].inclusive
        assert total == row.inclusive, row.id  # exact ints, time included
    root = report.modules[0]
    assert root.inclusive == report.totals["generation"]
    assert sum((rows[c].inclusive for c in root.children), ZERO if root.inclusive.time_ns is None else
               root.exclusive) == root.inclusive
    assert sum(report.categories.values(), root.exclusive) == root.inclusive
    return rows


@pytest.fixture(scope="module")
def i2v():
    return analyze_generation(TINY_I2V, "ci-tiny", **TINY, cfg=True, steps=3, strict=True)


def test_generation_rolls_up(i2v):
    rows = _check_tree(i2v)
    modelled = [c["id"] for c in i2v.generation["components"]]
    assert rows["model"].children == modelled == ["text_encoder", "image_encoder", "vae.encode", "dit", "scheduler",
                                                  "vae.decode"]
    assert i2v.generation["not_modelled"] == []
    assert [rows[c].calls for c in modelled] == [2, 1, 1, 6, 3, 1]


def test_generation_components_equal_their_traces(i2v):
    rows = {r.id: r for r in i2v.modules}
    dit = analyze(TINY_I2V, "ci-tiny", cfg=True, steps=3)
    assert rows["dit"].inclusive == dit.forward.times(6) and rows["dit"].calls == 6
    role = "blocks.1.self_attn.attention"
    assert rows[f"dit.{role}"].inclusive == dit.module(role).inclusive.times(6)
    from wan_reference import load_clip_config, load_t5_config
    from wan_reference.precision import get_policy
    from wan_reference.vae_config import load_vae_config
    from wantrace.work.analysis import forward_total
    from wantrace.work.image_encoder import trace_image_encoder
    from wantrace.work.text_encoder import trace_text_encoder

    for direction in ("encode", "decode"):
        trace = trace_vae(load_vae_config(TINY_VAE), get_policy("bf16"), 5, 256, 256, direction)
        assert rows[f"vae.{direction}"].inclusive == trace.total and rows[f"vae.{direction}"].calls == 1
    assert rows["scheduler"].calls == 3
    t5 = trace_text_encoder(load_t5_config(TINY_T5), get_policy("bf16"))
    assert rows["text_encoder"].inclusive == forward_total(t5.records, [1] * len(t5.records)).times(2)
    clip = trace_image_encoder(load_clip_config(TINY_CLIP), get_policy("bf16"), batch=1, height=256, width=256)
    assert rows["image_encoder"].inclusive == forward_total(clip.records, [1] * len(clip.records))
    memory = i2v.generation["memory"]
    assert memory["peak"] == max(p["peak"] for p in memory["phases"].values())
    assert memory["phases"]["vae.decode"]["activations"] == trace.peak_activation_bytes


def test_generation_time_adds_up():
    from wantrace.timing.predictor import Predictor

    report = analyze_generation(TINY_T2V, "ci-tiny", **TINY, steps=2, timing=Predictor("h200"))
    rows = _check_tree(report)
    assert all(rows[c].inclusive.time_ns > 0 for c in rows["model"].children)
    shares = {c["id"]: c["share"]["time"] for c in report.generation["components"]}
    assert abs(sum(shares.values()) - 1) < 1e-5


def test_two_expert_generation():
    report = analyze_generation(TINY_A14B, "t2v-a14b-480p", **TINY, frames=5, height=128, width=128)
    rows = _check_tree(report)
    assert rows["dit"].children == ["dit.high_noise_model", "dit.low_noise_model"]
    assert rows["dit"].calls == 80 and rows["dit.high_noise_model"].calls == 52
    assert rows["scheduler"].calls == 40


def test_cli_default_is_the_generation_and_only_dit_the_dit_report(tmp_path):
    common = ["analyze", "--config", str(TINY_T2V), "--workload", "ci-tiny", "--format", "json"]
    whole = CliRunner().invoke(main, [*common, "--vae", str(TINY_VAE), "--text-encoder", str(TINY_T5)])
    dit = CliRunner().invoke(main, [*common, "--only", "dit"])
    assert whole.exit_code == dit.exit_code == 0, whole.output
    doc = json.loads(whole.output)
    assert doc["schema_version"] == 3 and doc["modules"][0]["type"] == "generation"
    parts = {c["id"]: c for c in doc["generation"]["components"]}
    total = doc["totals"]["generation"]["flops"]["torch"]
    assert sum(parts[c]["generation"]["flops"]["torch"] for c in parts) == total
    assert dit.output == analyze(TINY_T2V, "ci-tiny").to_json()  # the schema-2 report, unchanged
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(whole.output)
    b.write_text(dit.output)
    with pytest.raises(CompareError, match="whole-generation"):
        compare(json.loads(a.read_text()), json.loads(b.read_text()))
    result = CliRunner().invoke(main, ["compare", str(a), str(b)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1


def test_flf2v_encodes_two_images_in_one_clip_call():
    from wan_reference import load_clip_config
    from wan_reference.precision import get_policy
    from wantrace.work.image_encoder import trace_image_encoder

    report = analyze_generation(MODELS / "wan2.1-flf2v-14b-720p" / "config.json", "ci-tiny", **TINY, steps=1)
    rows = _check_tree(report)
    clip = trace_image_encoder(load_clip_config(TINY_CLIP), get_policy("bf16"), batch=2, height=256, width=256)
    assert rows["image_encoder"].calls == 1
    assert rows["image_encoder"].inclusive.flops_full == sum(r.cost.flops_full for r in clip.records)


def test_default_presets_cover_every_task():
    assert {t for w in PRESETS.values() for t in w.tasks} >= {"t2v", "i2v", "flf2v"}


def test_disk_cache_gives_the_same_generation_report(tmp_path, monkeypatch):
    """With the disk cache on, a first and a second generation report (the T5, VAE and sampler costs read back
    from it) are the report the traces give with it off, byte for byte."""
    from wantrace.work import sampler, text_encoder, vae

    config = MODELS / "wan2.1-tiny-t2v" / "config.json"
    fresh = analyze_generation(config, "ci-tiny", steps=3).to_json()
    monkeypatch.setenv("WANTRACE_CACHE", str(tmp_path))
    assert analyze_generation(config, "ci-tiny", steps=3).to_json() == fresh
    assert {p.name.split("-")[0] for p in tmp_path.glob("*.pickle")} == {"t5", "vae", "sampler"}
    for module in (sampler, text_encoder, vae):  # a second report traces none of them
        monkeypatch.setattr(module, "_costed", lambda *a: (_ for _ in ()).throw(AssertionError("traced")))
    assert analyze_generation(config, "ci-tiny", steps=3).to_json() == fresh
