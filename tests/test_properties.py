"""Property-based checks (hypothesis): config parsing never gives a traceback, workload resolution accepts
exactly the valid geometries, and the report's invariants hold at random valid geometries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wan_reference import ConfigError, GeometryError, load_config
from wan_reference.config import read_config
from wantrace.work.analysis import analyze
from wantrace.work.workload import WorkloadError, resolve

MODELS = Path(__file__).resolve().parent.parent / "models"
CONFIGS = ["wan2.1-t2v-14b", "wan2.1-t2v-1.3b-diffusers", "wan2.1-tiny-i2v"]
FAST = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)


@pytest.mark.parametrize("name", CONFIGS)
@FAST
@given(data=st.data())
def test_any_json_value_in_any_field_is_a_config_or_one_line(tmp_path, name, data):
    raw = json.loads((MODELS / name / "config.json").read_text())
    field = data.draw(st.sampled_from(sorted(raw) + ["unexpected_field"]))
    value = data.draw(json_values)
    broken = {**raw, field: value}
    if data.draw(st.booleans()):
        broken.pop(data.draw(st.sampled_from(sorted(broken))))
    path = tmp_path / "config.json"
    path.write_text(json.dumps(broken))
    try:
        read_config(path)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message


sizes = st.integers(-40, 2000)


@FAST
@given(frames=st.integers(-3, 200), height=sizes, width=sizes, batch=st.integers(-1, 4),
       steps=st.integers(-1, 80), cfg=st.booleans())
def test_workload_resolution_accepts_exactly_the_valid_geometries(frames, height, width, batch, steps, cfg):
    config = load_config(MODELS / "wan2.1-t2v-14b" / "config.json")
    valid = (frames >= 1 and (frames - 1) % 4 == 0 and height >= 16 and width >= 16 and height % 16 == 0
             and width % 16 == 0 and batch >= 1 and steps >= 1)
    try:
        workload, geo = resolve("t2v-480p", config, frames=frames, height=height, width=width, batch=batch,
                                steps=steps, cfg=cfg)
    except (WorkloadError, GeometryError) as exc:
        assert "\n" not in str(exc)
        assert not valid or geo_too_long(frames, height, width, config), (frames, height, width, exc)
        return
    assert valid
    f, h, w = geo.latent
    assert (f, h, w) == ((frames - 1) // 4 + 1, height // 8, width // 8)
    assert geo.tokens == f * (h // 2) * (w // 2)
    assert workload.forwards_per_step == (2 if cfg else 1)


def geo_too_long(frames: int, height: int, width: int, config) -> bool:
    """A valid-looking geometry may still exceed the RoPE table (rope_max_seq_len positions per axis)."""
    return max((frames - 1) // 4 + 1, height // 16, width // 16) > config.rope_max_seq_len


@FAST
@given(frames=st.integers(0, 6).map(lambda k: 4 * k + 1), h=st.integers(1, 8), w=st.integers(1, 8),
       batch=st.integers(1, 2), name=st.sampled_from(["wan2.1-tiny-i2v", "wan2.1-tiny-t2v"]),
       precision=st.sampled_from(["bf16", "wan-official", "fp32"]))
def test_report_invariants_at_random_geometries(frames, h, w, batch, name, precision):
    report = analyze(MODELS / name / "config.json", "ci-tiny", frames=frames, height=16 * h, width=16 * w,
                     batch=batch, precision=precision)
    rows = {row.id: row for row in report.modules}
    for row in report.modules:
        if row.children:
            total = row.exclusive
            for child in row.children:
                total = total + rows[child].inclusive
            assert total == row.inclusive, row.id
    total = report.categories["other"].times(0)
    for m in report.categories.values():
        total = total + m
    assert total == report.forward
    for convention in ("torch", "full"):
        shares = report.category_shares(convention)
        whole = {"torch": report.forward.flops_torch, "full": report.forward.flops_full}[convention]
        assert abs(sum(shares.values()) - 1.0) < 1e-9 if whole else sum(shares.values()) == 0
