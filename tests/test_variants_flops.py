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
