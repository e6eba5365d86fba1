"""Wan2.2 A14B: the official sampler's timesteps, the expert step split of the official t2v and i2v schedules,
the two-expert report (both experts as subtrees with the forwards each runs, params and resident weights),
the workload presets, and compare across variants."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from wan_reference.config import to_diffusers_config
from wantrace.cli import main
from wantrace.work.analysis import analyze
from wantrace.work.compare import CompareError, compare
from wantrace.work.schedule import expert_split, timesteps
from wantrace.work.workload import PRESETS, WorkloadError, resolve

from .conftest import MODELS, config_of

TINY_A14B = MODELS / "wan2.2-tiny-t2v-a14b"
TINY_EXPERT = TINY_A14B / "high_noise_model" / "config.json"


def upstream_timesteps(steps, shift):
    """FlowUniPCMultistepScheduler(num_train_timesteps=1000, shift=1).set_timesteps(steps, shift=shift), as
    wan/utils/fm_solvers_unipc.py computes it (numpy and torch)."""
    alphas = np.linspace(1, 1 / 1000, 1000)[::-1].copy()
    sigmas = torch.from_numpy(1.0 - alphas).to(dtype=torch.float32)
    sigma_max, sigma_min = sigmas[0].item(), sigmas[-1].item()
    s = np.linspace(sigma_max, sigma_min, steps + 1).copy()[:-1]
    s = shift * s / (1 + (shift - 1) * s)
    return torch.from_numpy(s * 1000).to(dtype=torch.int64).tolist()


@pytest.mark.parametrize("steps, shift", [(40, 12.0), (40, 5.0), (50, 5.0), (50, 16.0), (1, 12.0), (13, 3.0)])
def test_timesteps_equal_the_official_scheduler(steps, shift):
    assert timesteps(steps, shift) == upstream_timesteps(steps, shift)


def test_official_t2v_schedule_split():
    """t2v-A14B: 40 steps, shift 12, boundary 0.875 -> 26 high-noise steps, then 14 low-noise."""
    split = expert_split(40, 12.0, 0.875)
    assert split.high == tuple(range(26)) and split.low == tuple(range(26, 40))
    assert (split.timesteps[25], split.timesteps[26]) == (877, 865)  # the switch: 877 >= 875 > 865


def test_official_i2v_schedule_split():
    """i2v-A14B: 40 steps, shift 5, boundary 0.900 -> 15 high-noise steps, then 25 low-noise."""
    split = expert_split(40, 5.0, 0.900)
    assert split.high == tuple(range(15)) and split.low == tuple(range(15, 40))
    assert split.timesteps[14] >= 900 > split.timesteps[15]


def test_presets_are_the_official_defaults():
    t2v, i2v, ti2v = PRESETS["t2v-a14b-720p"], PRESETS["i2v-a14b-720p"], PRESETS["ti2v-5b-720p"]
    assert (t2v.frames, t2v.width, t2v.height, t2v.steps, t2v.cfg) == (81, 1280, 720, 40, True)
    assert (t2v.shift, t2v.boundary, t2v.guide_scale) == (12.0, 0.875, (3.0, 4.0))
    assert (i2v.steps, i2v.shift, i2v.boundary, i2v.guide_scale) == (40, 5.0, 0.900, (3.5, 3.5))
    assert (ti2v.frames, ti2v.width, ti2v.height, ti2v.steps, ti2v.shift) == (121, 1280, 704, 50, 5.0)
    assert (PRESETS["vace-480p"].steps, PRESETS["vace-480p"].shift) == (50, 16.0)
    assert "shift" not in PRESETS["t2v-720p"].to_dict()  # Wan2.1 reports keep their bytes


def test_ti2v_geometry_uses_the_wan22_vae():
    _, geo = resolve("ti2v-5b-720p", config_of("wan2.2-tiny-ti2v"))
    assert geo.latent == (31, 44, 80) and geo.grid == (31, 22, 40) and geo.tokens == 27_280


def test_wan22_preset_refuses_a_wan21_model():
    with pytest.raises(WorkloadError, match="wan2.2 models"):
        resolve("t2v-a14b-720p", config_of("wan2.1-tiny-t2v"))


@pytest.fixture(scope="module")
def a14b():
    return analyze(TINY_A14B, "t2v-a14b-480p", frames=5, height=128, width=128)


def test_two_expert_report(a14b):
    expert = analyze(TINY_EXPERT, "t2v-a14b-480p", frames=5, height=128, width=128)
    rows = {r.id: r for r in a14b.modules}
    assert rows["model"].children == ["high_noise_model", "low_noise_model"]
    x = a14b.experts
    high, low = x["experts"]
    assert (high["step_count"], low["step_count"]) == (26, 14)
    assert (high["forwards"], low["forwards"]) == (52, 28)  # CFG: two forwards per step
    assert (high["guide_scale"], low["guide_scale"]) == (4.0, 3.0)
    assert rows["high_noise_model"].calls == 52 and rows["low_noise_model.blocks.1.ffn"].calls == 28
    assert rows["high_noise_model"].inclusive == expert.forward.times(52)
    assert rows["low_noise_model"].inclusive == expert.forward.times(28)
    root = rows["model"].inclusive
    assert root == rows["high_noise_model"].inclusive + rows["low_noise_model"].inclusive
    assert root == a14b.totals["generation"] == a14b.totals["step"].times(40) == expert.forward.times(80)
    assert sum((m for m in a14b.categories.values()), start=type(root)()) == root
    n, b = expert.totals["params"], expert.totals["param_bytes"]
    assert (x["params_total"], x["params_active_per_step"]) == (2 * n, n) == (2 * 368_352, 368_352)
    assert x["resident_weight_bytes"] == {"both_loaded": 2 * b, "offload_idle": b}
    assert x["offload_host_to_device_bytes"] == 2 * b
    assert a14b.totals["params"] == 2 * n and rows["model"].param_bytes == 2 * b


def test_diffusers_pipeline_folder_gives_the_same_report(tmp_path, a14b):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline", "boundary_ratio": 0.875}))
    config = config_of("wan2.2-tiny-t2v-a14b/high_noise_model")
    for sub in ("transformer", "transformer_2"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "config.json").write_text(json.dumps(to_diffusers_config(config)))
    report = analyze(tmp_path / "model_index.json", "t2v-a14b-480p", frames=5, height=128, width=128)
    assert report.totals["generation"] == a14b.totals["generation"]
    assert report.experts["high_noise_steps"] == a14b.experts["high_noise_steps"]


def test_ci_tiny_on_both_experts_takes_the_official_schedule():
    report = analyze(TINY_A14B, "ci-tiny")
    assert (report.experts["shift"], report.experts["boundary"]) == (12.0, 0.875)
    assert report.experts["high_noise_steps"] == [0] and report.experts["low_noise_steps"] == []
    assert report.experts["offload_host_to_device_bytes"] == report.experts["resident_weight_bytes"]["offload_idle"]


def test_cli_two_expert_run(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["analyze", "--config", str(TINY_A14B), "--workload", "t2v-a14b-480p",
                                       "--frames", "5", "--height", "128", "--width", "128", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Experts:" in result.output and "resident weights" in result.output
    summary = (out / "summary.md").read_text()
    assert "| high_noise_model | 0-25 (26) | 52 | 4 |" in summary
    assert json.loads((out / "report.json").read_text())["experts"]["low_noise_steps"][0] == 26


def test_compare_wan21_with_an_a14b_expert_shows_per_token_time():
    """Same shape, same workload: the A14B expert runs the time MLP and 6·dim projection on every token."""
    a = analyze(MODELS / "wan2.1-tiny-t2v" / "config.json", "ci-tiny").to_dict()
    b = analyze(TINY_EXPERT, "ci-tiny").to_dict()
    result = compare(a, b)
    roles = {r["id"]: r for r in result["roles"]}
    tokens = b["geometry"]["tokens"]
    assert tokens == 512
    for role in ("time_embedding.0", "time_embedding.2", "time_projection.1"):
        assert roles[role]["torch"]["ratio"] == tokens  # one row per token instead of one per sample
    assert roles["blocks.*.self_attn.attention"]["torch"]["delta"] == 0
    assert result["totals"]["forward"]["torch"]["delta"] > 0
    with pytest.raises(CompareError, match="two-expert"):
        compare(a, analyze(TINY_A14B, "ci-tiny").to_dict())
