"""wantrace verify on a pipeline component's config (CPU, tiny configs): the CLIP image encoder and the Wan VAE
(encode and decode through the chunk schedule with the feature cache) run for real and agree with their traces
module by module and scope by scope; a planted wrong rule is caught and named; an option of another model is one
line, exit 2. (The text encoder's run is in test_verify.py.)"""

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from wan_reference.clip_config import load_clip_config
from wantrace import rules
from wantrace.cli import main
from wantrace.measure.verify_component import component_of, verify_component

from .conftest import MODELS
from .test_clip import matmul_flops

TINY_CLIP = str(MODELS / "wan2.1-tiny-clip" / "image_encoder" / "config.json")
TINY_VAE = str(MODELS / "wan2.1-tiny-vae" / "vae" / "config.json")
TINY_T5 = str(MODELS / "wan2.1-tiny-umt5" / "text_encoder" / "config.json")
TINY_DIT = str(MODELS / "wan2.1-tiny-t2v" / "config.json")


@pytest.fixture
def one_thread():
    """The tiny VAE's convolutions are microseconds of work: on a shared 2-core machine a second intra-op
    thread makes each ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _verify(tmp_path: Path, config: str, *args: str) -> tuple[int, str, dict | None]:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["verify", "--device", "cpu", "--config", config, "--repeats", "1", *args,
                                       "--out", str(out)])
    doc = json.loads((out / "verify.json").read_text()) if (out / "verify.json").exists() else None
    return result.exit_code, result.output, doc


def _table(folder: Path) -> str:
    path = Path(__file__).resolve().parent.parent / "scripts" / "verification_table.py"
    spec = importlib.util.spec_from_file_location("verification_table", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.render(folder)


def test_components_are_told_apart():
    assert [component_of(p) for p in (TINY_T5, TINY_CLIP, TINY_VAE, TINY_DIT)] == [
        "text_encoder", "image_encoder", "vae", None]


def test_image_encoder_verify_on_cpu(tmp_path, one_thread):
    """CLIP on two 64 x 96 frames (flf2v's call), fp32: every module and scope 0.0%, the total the closed form."""
    code, output, doc = _verify(tmp_path, TINY_CLIP, "--batch", "2", "--height", "64", "--width", "96",
                                "--precision", "fp32")
    assert code == 0, output
    assert doc is not None and doc["pass"] is True and doc["component"] == "image_encoder"
    s = doc["summary"]
    closed = matmul_flops(load_clip_config(TINY_CLIP), 2)
    assert s["max_rel_error"] == 0.0 and s["flop_counter_total"] == s["scope_counter_total"] == s[
        "analytic_total"] == closed
    rows = {r["id"]: r for r in doc["modules"]}
    assert rows["visual.transformer.1.mlp.2"]["measured_flops"] == rows["visual.transformer.1.mlp.2"][
        "analytic_flops"] > 0
    assert rows["visual.transformer.1.attn.attention"]["kind"] == "scope"
    assert rows["visual.transformer.1.attn.attention"]["measured_flops"] > 0
    assert "visual.transformer.2" not in rows  # the last block never runs
    assert doc["call"] == "2 x 64 x 96 images -> 2 x 17 tokens, 2 of 3 blocks" and doc["tokens"] == 34
    assert s["analytic_peak_bytes"] == s["analytic_param_bytes"] + s["analytic_activation_bytes"]
    assert s["peak_allocated_bytes"] is None and s["peak_ratio"] is None  # measured on CUDA only


def test_image_encoder_official_precision_is_fp16(tmp_path, one_thread):
    code, output, doc = _verify(tmp_path, TINY_CLIP, "--height", "56", "--width", "56")
    assert code == 0, output
    assert doc is not None and doc["precision"] == "wan-official" and doc["dtype"] == "float16"
    assert doc["summary"]["max_rel_error"] == 0.0 and doc["workload"] is None


@pytest.mark.parametrize("direction, frames, total, chunks", [
    ("decode", 9, 142_011_776, 3),  # 3 latent frames: the first, the first with a cache, a steady chunk
    ("encode", 9, 85_841_408, 3),  # frames 1, 2-5, 6-9
])
def test_vae_verify_on_cpu(tmp_path, one_thread, direction, frames, total, chunks):
    """The VAE through its whole chunk schedule as upstream runs it: FlopCounterMode per module (each conv summed
    over the chunks that call it) equals trace_vae's, and so do the scopes (feature-cache clones, attention)."""
    code, output, doc = _verify(tmp_path, TINY_VAE, "--direction", direction, "--frames", str(frames),
                                "--height", "16", "--width", "16")
    assert code == 0, output
    assert doc is not None and doc["pass"] is True and doc["component"] == f"vae.{direction}"
    s = doc["summary"]
    assert s["max_rel_error"] == 0.0 and s["flop_counter_total"] == s["scope_counter_total"] == s[
        "analytic_total"] == total
    assert doc["chunks"] == chunks and doc["dtype"] == "float32"
    stage = "decoder" if direction == "decode" else "encoder"
    rows = {r["id"]: r for r in doc["modules"]}
    conv = rows[f"{stage}.middle.0.residual.2"]  # a causal conv, called once per chunk
    assert conv["kind"] == "module" and conv["measured_flops"] == conv["analytic_flops"] > 0
    residual = rows[f"{stage}.middle.0.residual"]  # a Sequential never called itself: its children's sum
    assert residual["measured_flops"] == residual["analytic_flops"] > conv["analytic_flops"]
    assert rows[f"{stage}.middle.1.attention"]["kind"] == "scope"
    assert rows[f"{stage}.middle.1.attention"]["measured_flops"] == rows[f"{stage}.middle.1.attention"][
        "analytic_flops"] > 0
    assert f"{stage}.middle.0.feat_cache" in rows
    assert "modules and scopes compared" in output and "PASS" in output
    if direction == "decode":
        (tmp_path / "runs").mkdir()
        (tmp_path / "runs" / "vae-decode-tiny-cpu.json").write_text((tmp_path / "out" / "verify.json").read_text())
        text = _table(tmp_path / "runs")
        assert "| vae-decode-tiny-cpu | wan-official | decode 1 x 9 x 16 x 16 (3 chunks) |" in text
        assert "`vae.decode` (wan-vae)" in text and "| decoder.upsamples." in text


def test_vae_video_from_the_workload_preset(tmp_path, one_thread):
    doc = verify_component("vae", TINY_VAE, device="cpu", direction="encode", workload="ci-tiny", height=16,
                           width=16, repeats=1).to_dict()
    assert doc["frames"] == 5 and doc["workload"] is None and doc["pass"] is True  # ci-tiny's 5 frames


@pytest.mark.parametrize("config, args, offender", [
    (TINY_VAE, ["--direction", "decode", "--frames", "5", "--height", "16", "--width", "16"], "conv2"),
    (TINY_CLIP, ["--height", "56", "--width", "56", "--precision", "fp32"], "visual.patch_embedding"),
])
def test_planted_wrong_rule_fails_naming_the_module(tmp_path, monkeypatch, one_thread, config, args, offender):
    """Double the conv rules' torch FLOPs: the component's verify fails and names the convolution."""
    targets = {F.conv3d, F.conv2d}
    goods = {rules.RULES[t] for t in targets}
    for good in goods:
        wrong = dataclasses.replace(good, fn=lambda call, good=good: dataclasses.replace(
            good(call), flops_torch=good(call).flops_torch * 2))
        for target in [t for t, r in rules.RULES.items() if r is good]:
            monkeypatch.setitem(rules.RULES, target, wrong)
    code, output, doc = _verify(tmp_path, config, *args)
    assert code == 1, output
    assert doc is not None and doc["pass"] is False and offender in doc["summary"]["offenders"]
    assert "FAIL" in output and offender in output


@pytest.mark.parametrize("config, args, message", [
    (TINY_VAE, ["--blocks", "1"], "--blocks: not an option for a VAE config; it takes --direction, --workload, "
                                  "--frames, --height, --width, --batch, --precision, --tolerance, --repeats"),
    (TINY_VAE, ["--text-len", "8"], "--text-len: not an option for a VAE config"),
    (TINY_CLIP, ["--frames", "5"], "--frames: not an option for an image encoder config"),
    (TINY_CLIP, ["--direction", "encode"], "--direction: not an option for an image encoder config"),
    (TINY_T5, ["--workload", "t2v-480p"], "--workload: not an option for a text encoder config"),
    (TINY_DIT, ["--direction", "decode"], "--direction: a VAE option; --config is not a VAE config"),
    (TINY_DIT, ["--text-len", "8"], "--text-len: a text encoder option; --config is not a text encoder config"),
    (TINY_VAE, ["--frames", "6"], "--frames: must be 4n+1 for the Wan VAE, got 6"),
    (TINY_CLIP, ["--batch", "0"], "--batch: a positive integer, got 0"),
    (TINY_VAE, ["--gpu", "h200"], "--gpu compares predicted with measured GPU time: it needs --device cuda"),
])
def test_foreign_or_bad_option_is_one_line(tmp_path, config, args, message):
    code, output, doc = _verify(tmp_path, config, *args)
    assert code == 2 and doc is None
    assert output.strip().splitlines()[-1].startswith(f"wantrace: error: {message}"), output


def test_predicted_time_is_recorded_beside_the_measured(one_thread):
    """On CUDA a component's verify records its predicted time on the profile and the ratio to the fastest timed
    call (informational: the pass is the FLOPs'); here the CPU result stands in, with a prediction set."""
    from io import StringIO

    from rich.console import Console

    from wantrace.views.verify import print_component_result

    result = verify_component("vae", TINY_VAE, device="cpu", repeats=1, frames=5, height=16, width=16)
    assert "predicted_ms" not in result.to_dict()["summary"]  # no GPU, no prediction
    timed = dataclasses.replace(result, predicted_ms=2 * min(result.forward_runs), profile="h200")
    s = timed.to_dict()["summary"]
    assert s["profile"] == "h200" and s["time_ratio"] == 2.0 and timed.passed == result.passed
    out = StringIO()
    print_component_result(timed, Console(file=out, width=200))
    assert "on h200: predicted / measured 2.000 (informational, not gated)" in out.getvalue()
