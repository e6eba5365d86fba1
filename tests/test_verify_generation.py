"""wantrace verify --end-to-end on CPU: the whole generation runs for real on the tiny components, and each
component's FlopCounterMode count equals the generation report's torch FLOPs of the same work; the step scaling
and the predicted-time gate; bad input gets one line and exit 2."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner

from wantrace.cli import main
from wantrace.measure import verify_generation as vg
from wantrace.measure.device import VerifyError
from wantrace.timing.profile import load_profile

from .conftest import MODELS

TINY_T2V = MODELS / "wan2.1-tiny-t2v" / "config.json"
TINY_I2V = MODELS / "wan2.1-tiny-i2v" / "config.json"
TINY = {"vae": MODELS / "wan2.1-tiny-vae" / "vae" / "config.json",
        "text_encoder": MODELS / "wan2.1-tiny-umt5" / "text_encoder" / "config.json",
        "image_encoder": MODELS / "wan2.1-tiny-clip" / "image_encoder" / "config.json"}
CLI_TINY = ["--vae", str(TINY["vae"]), "--text-encoder", str(TINY["text_encoder"]),
            "--image-encoder", str(TINY["image_encoder"])]
CLI_SMALL = ["--height", "32", "--width", "32", "--precision", "fp32"]


SMALL = {"frames": 5, "height": 32, "width": 32, "precision": "fp32"}  # fp32: bf16 matmuls are slow on a CPU


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny kernels: one thread is several times faster than two on a loaded CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def i2v():
    """Every component of an i2v generation, 2 of its 40 steps under CFG (the first step, order 1, and the second:
    corrector, order-2 predictor), with the H200 profile's predicted times (forced here on a CPU)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vg, "gpu_profile", lambda gpu, dev: load_profile("h200"))
        return vg.verify_generation(TINY_I2V, "i2v-480p", steps=2, device="cpu", **TINY, **SMALL)


def test_flops_equal_per_component(i2v):
    rows = {r["component"]: r for r in i2v.rows()}
    assert list(rows) == ["text_encoder", "image_encoder", "vae.encode", "dit", "scheduler", "vae.decode"]
    assert {k: (r["calls"], r["calls_per_generation"]) for k, r in rows.items()} == {
        "text_encoder": (2, 2), "image_encoder": (1, 1), "vae.encode": (1, 1), "dit": (4, 80),
        "scheduler": (2, 40), "vae.decode": (1, 1)}
    for r in rows.values():
        assert r["flops_counted"] == r["flops_analytic"], r
        assert r["measured_ms_run"] > 0
    assert all(rows[k]["flops_counted"] > 0 for k in ("text_encoder", "image_encoder", "vae.encode", "dit",
                                                      "vae.decode"))
    report = {m.id: m.inclusive.flops_torch for m in i2v.report.modules}
    assert 20 * rows["dit"]["flops_analytic"] == report["dit"]  # 4 of 80 forwards
    assert rows["text_encoder"]["flops_analytic"] == report["text_encoder"]
    # the scheduler: elementwise only (its einsum over one earlier output runs as a mul): 0 torch FLOPs
    assert rows["scheduler"]["flops_analytic"] == report["scheduler"] == 0
    doc = i2v.to_dict()
    assert doc["steps"] == {"run": 2, "of": 40} and doc["kind"] == "end-to-end" and doc["profile"] == "h200"
    # the tiny components' widths differ from the tiny DiT's: the DiT takes random inputs of its own shapes
    assert {n.split("'")[0] for n in doc["notes"]} == {"image_encoder", "vae.encode", "vae.decode: the VAE"}


def test_scaling_and_time_gate(i2v):
    """Per-step components measured x S/N, the others once; every component beside the report's predicted time
    (per generation); the generation off by more than the tolerance fails, a tolerance as wide passes."""
    rows = {r["component"]: r for r in i2v.rows()}
    assert rows["dit"]["scaled"] and rows["scheduler"]["scaled"] and not rows["vae.decode"]["scaled"]
    assert rows["dit"]["measured_ms"] == pytest.approx(rows["dit"]["measured_ms_run"] * 20, abs=2e-2)
    g = i2v.generation()
    assert g["measured_ms"] == pytest.approx(sum(r["measured_ms"] for r in rows.values()), abs=1e-3)
    times = {m.id: m.inclusive.time_ns for m in i2v.report.modules}
    assert rows["vae.decode"]["predicted_ms"] == round(times["vae.decode"] / 1e6, 3) > 0
    assert rows["dit"]["predicted_ms"] == round(times["dit"] / 1e6, 3)  # all 80 forwards
    assert g["predicted_ms"] == round(i2v.report.totals["generation"].time_ns / 1e6, 3)
    assert g["ratio"] == round(g["predicted_ms"] / g["measured_ms"], 4)
    assert g["pass"] == (abs(g["ratio"] - 1) <= 0.15) == i2v.passed
    wide = dataclasses.replace(i2v, time_tolerance=9.9)
    assert wide.generation()["pass"] and wide.passed


def test_cli_end_to_end(tmp_path):
    """On a CPU without a profile: measured times only, the FLOP equality the gate."""
    result = CliRunner().invoke(main, ["verify", "--end-to-end", "--steps", "1", "--device", "cpu", "--config",
                                       str(TINY_T2V), *CLI_TINY, *CLI_SMALL, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "verify.json").read_text())
    rows = {r["component"]: r for r in doc["components"]}
    assert list(rows) == ["text_encoder", "dit", "scheduler", "vae.decode"]
    assert all(r["flops_counted"] == r["flops_analytic"] and r["predicted_ms"] is None for r in rows.values())
    assert rows["text_encoder"]["calls"] == 1  # ci-tiny: no CFG, the prompt only
    assert doc["pass"] and doc["generation"]["predicted_ms"] is None and doc["device"]["type"] == "cpu"
    assert "PASS" in result.output and "measured times only" in result.output


@pytest.mark.parametrize("args,message", [
    (["--end-to-end", "--steps", "0"], "--steps: a positive integer"),
    (["--end-to-end", "--steps", "2"], "--steps: at most the workload's 1 steps"),
    (["--steps", "1"], "--steps: an --end-to-end option"),
    (["--end-to-end", "--blocks", "1"], "--blocks: not an --end-to-end option"),
    (["--end-to-end", "--device", "cuda"], "CUDA is not available"),
])
def test_cli_bad_input(tmp_path, args, message):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    device = [] if "--device" in args else ["--device", "cpu"]
    result = CliRunner().invoke(main, ["verify", *device, "--config", str(TINY_T2V), *args, *CLI_TINY,
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "verify.json").exists()


def test_two_experts_refused():
    with pytest.raises(VerifyError, match="two-expert"):
        vg.verify_generation(MODELS / "wan2.2-tiny-t2v-a14b", "ci-tiny", device="cpu", **TINY)
