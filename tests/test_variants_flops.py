"""Every new variant: the `torch` convention equals FlopCounterMode over the same forward on meta, no op is
unknown under --strict, and verify on CPU matches FlopCounterMode module by module on the tiny configs."""

import pytest
from torch.utils.flop_counter import FlopCounterMode

from wan_reference import build_model, load_config, make_inputs
from wantrace.measure.verify import verify
from wantrace.work.analysis import analyze
from wantrace.work.workload import resolve

from .conftest import MODELS

VARIANTS = [  # (config, workload, precision); also equal when run once: the A14B experts at t2v-a14b-480p (bf16)
    # and i2v-a14b-480p (wan-official), VACE-1.3B at vace-480p (wan-official), VACE-14B at ci-tiny
    ("wan2.2-t2v-a14b/high_noise_model", "ci-tiny", "bf16"),
    ("wan2.2-i2v-a14b/low_noise_model", "ci-tiny", "wan-official"),
    ("wan2.2-ti2v-5b", "ti2v-5b-720p", "bf16"),
    ("wan2.1-vace-1.3b", "ci-tiny", "wan-official"),
    ("wan2.1-tiny-vace", "ci-tiny", "bf16"),
]


@pytest.mark.parametrize("name, workload, precision", VARIANTS)
def test_torch_flops_equal_flop_counter_mode_strict(name, workload, precision):
    config = load_config(MODELS / name / "config.json")
    report = analyze(config, workload, precision=precision, strict=True)
    assert report.ledger["unknown"] == []
    _, geo = resolve(workload, config)
    with FlopCounterMode(display=False) as counter:
        build_model(config, precision)(**make_inputs(config, geo.latent, precision))
    assert counter.get_total_flops() == report.forward.flops_torch


@pytest.mark.parametrize("name", ["wan2.2-tiny-i2v-a14b/low_noise_model", "wan2.2-tiny-ti2v", "wan2.1-tiny-vace"])
def test_cpu_verify_passes_exactly(name):
    result = verify(str(MODELS / name / "config.json"), "ci-tiny", device="cpu", repeats=1)
    doc = result.to_dict()
    assert result.passed and doc["summary"]["max_rel_error"] == 0.0
    assert doc["summary"]["flop_counter_total"] == doc["summary"]["analytic_total"] > 0


def test_vace_full_trace_and_hints():
    """VACE blocks differ (only vace_layers take a hint), so every block is traced: 4 main + 2 VACE blocks."""
    report = analyze(MODELS / "wan2.1-tiny-vace" / "config.json", "ci-tiny")
    ids = {r.id for r in report.modules}
    assert report.traced_blocks == 4
    assert {"blocks.0.hint", "blocks.2.hint", "vace_blocks.0.before_proj", "vace_blocks.1.after_proj"} <= ids
    assert "blocks.1.hint" not in ids and "vace_blocks.1.before_proj" not in ids


@pytest.mark.parametrize("name, preset, frames, size", [
    ("wan2.1-tiny-vace", "ci-tiny", [5, 9], [(256, 256)]),  # every block traced: weights of one
    ("wan2.2-tiny-ti2v", "ci-tiny", [5, 9], [(256, 256), (512, 256)]),  # the Wan2.2-VAE's 4x16x16 stride
])
def test_sweep_rows_equal_analyze(name, preset, frames, size):
    from wantrace.work.sweep import run_sweep

    path = MODELS / name / "config.json"
    sweep = run_sweep(path, preset, frames=frames, sizes=size)
    assert len(sweep.rows) == len(frames) * len(size)
    for row in sweep.rows:
        w = row.workload
        report = analyze(path, preset, frames=w.frames, height=w.height, width=w.width)
        assert row.geometry.tokens == report.geometry["tokens"]
        assert row.forward == report.forward and row.generation == report.totals["generation"]
        assert row.activation_bytes == report.totals["activation_bytes"]


def test_two_expert_time_adds_up(tmp_path):
    """With predicted time, the two-expert root is still the generation, and each expert its forwards' time."""
    from wantrace.timing.predictor import Predictor

    from .fake_profile import write_fake

    predictor = Predictor(str(write_fake(tmp_path / "fake.json")))
    both = analyze(MODELS / "wan2.2-tiny-i2v-a14b", "i2v-a14b-480p", frames=5, height=128, width=128,
                   timing=predictor)
    one = analyze(MODELS / "wan2.2-tiny-i2v-a14b/high_noise_model/config.json", "i2v-a14b-480p", frames=5,
                  height=128, width=128, timing=predictor)
    rows = {r.id: r for r in both.modules}
    assert both.experts["high_noise_steps"] == list(range(15))
    assert rows["high_noise_model"].inclusive.time_ns == one.forward.time_ns * 30 > 0
    assert rows["model"].inclusive == both.totals["generation"] == one.forward.times(80)
    assert sum(m.time_ns for m in both.categories.values()) == both.totals["generation"].time_ns
