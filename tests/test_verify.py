"""wantrace verify on CPU: the real forward's FlopCounterMode counts equal the analytic ones, module by module;
a planted wrong rule is caught and named."""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from wantrace import rules
from wantrace.cli import main
from wantrace.measure.device import VerifyError
from wantrace.measure.verify import verify

from .conftest import MODELS

TINY_I2V = str(MODELS / "wan2.1-tiny-i2v" / "config.json")
TINY_T2V = str(MODELS / "wan2.1-tiny-t2v" / "config.json")


def test_cpu_verify_passes_exactly(tmp_path):
    result = CliRunner().invoke(main, ["verify", "--device", "cpu", "--config", TINY_I2V, "--workload", "ci-tiny",
                                       "--repeats", "1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "verify.json").read_text())
    assert doc["pass"] is True
    assert doc["summary"]["max_rel_error"] == 0.0
    assert doc["summary"]["flop_counter_total"] == doc["summary"]["analytic_total"] == 1_715_968_000
    rows = {r["id"]: r for r in doc["modules"]}
    # attention on CPU runs the flash kernel torch leaves unregistered; our formula makes it count
    assert rows["blocks.0.self_attn.attention"]["measured_flops"] == rows["blocks.0.self_attn.attention"][
        "analytic_flops"] > 0
    assert rows["blocks.1.cross_attn.attention_img"]["kind"] == "scope"
    assert rows["blocks.1.self_attn.q"]["time_ms"] > 0
    assert doc["device"]["type"] == "cpu" and doc["torch"] == torch.__version__
    assert {c["category"] for c in doc["categories"]} >= {"self-attention core", "FFN"}


def test_planted_wrong_rule_fails_naming_the_module(tmp_path, monkeypatch):
    good = rules.RULES[F.conv3d]
    wrong = dataclasses.replace(good, fn=lambda call: dataclasses.replace(good(call), flops_torch=good(call).flops_torch
                                                                          * 2))
    for target in [t for t, r in rules.RULES.items() if r is good]:
        monkeypatch.setitem(rules.RULES, target, wrong)
    result = CliRunner().invoke(main, ["verify", "--device", "cpu", "--config", TINY_T2V, "--repeats", "1",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "patch_embedding" in result.output
    doc = json.loads((tmp_path / "verify.json").read_text())
    assert doc["pass"] is False
    assert "patch_embedding" in doc["summary"]["offenders"]
    assert "blocks.0.ffn.0" not in doc["summary"]["offenders"]


def test_blocks_subset_compares_like_for_like(tmp_path):
    result = verify(TINY_T2V, "ci-tiny", device="cpu", blocks=1, repeats=1)
    assert result.passed
    doc = result.to_dict()
    assert doc["blocks"]["run"] == 1 and doc["blocks"]["of"] == 2
    assert "blocks.1" not in {r["id"] for r in doc["modules"]}


def test_cuda_without_cuda_is_one_line_exit_2(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = CliRunner().invoke(main, ["verify", "--device", "cuda", "--config", TINY_T2V, "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("wantrace: error: --device cuda: CUDA is not available")
    with pytest.raises(VerifyError, match="--counters needs --device cuda"):
        verify(TINY_T2V, device="cpu", counters=True)
    with pytest.raises(VerifyError, match="--blocks: must be between 1 and 2"):
        verify(TINY_T2V, device="cpu", blocks=5)


def test_counter_options_without_counters_are_refused(tmp_path):
    result = CliRunner().invoke(main, ["verify", "--device", "cpu", "--config", TINY_T2V, "--counter-metrics", "tensor",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 2 and "add --counters" in result.output and not (tmp_path / "verify.json").exists()


def test_verification_table_renders_runs(tmp_path):
    import importlib.util
    from pathlib import Path

    result = verify(TINY_T2V, "ci-tiny", device="cpu", repeats=1)
    (tmp_path / "tiny-cpu.json").write_text(json.dumps(result.to_dict()))
    path = Path(__file__).resolve().parent.parent / "scripts" / "verification_table.py"
    spec = importlib.util.spec_from_file_location("verification_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.render(tmp_path)
    assert "| tiny-cpu | bf16 | 512 | 2 of 2 |" in text
    assert "| self-attention core |" in text and "| pass |" in text


def test_text_encoder_verify_on_cpu(tmp_path):
    """A text encoder config.json runs one call of the umT5 encoder: FlopCounterMode equals the trace per module
    and per scope; DiT-only options are refused in one line."""
    config = str(MODELS / "wan2.1-tiny-umt5" / "text_encoder" / "config.json")
    result = CliRunner().invoke(main, ["verify", "--device", "cpu", "--config", config, "--text-len", "48",
                                       "--batch", "2", "--precision", "fp32", "--repeats", "1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "verify.json").read_text())
    assert doc["pass"] is True and doc["component"] == "text_encoder" and doc["text_len"] == 48
    s = doc["summary"]
    per_layer = 4 * 2 * 48 * 64 * 64 + 3 * 2 * 48 * 64 * 160 + 2 * 2 * 48 * 48 * 64  # q k v o, FFN, attention
    assert s["max_rel_error"] == 0.0 and s["flop_counter_total"] == s["analytic_total"] == 2 * 2 * per_layer
    rows = {r["id"]: r for r in doc["modules"]}
    assert rows["blocks.1.attn.attention"]["kind"] == "scope"
    assert rows["blocks.1.attn.attention"]["measured_flops"] == 2 * 2 * 2 * 48 * 48 * 64  # two einsums, batch 2
    assert rows["blocks.0.ffn.fc2"]["measured_flops"] == rows["blocks.0.ffn.fc2"]["analytic_flops"] > 0
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "verification_table.py"
    spec = importlib.util.spec_from_file_location("verification_table", path)
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "t5-tiny-cpu.json").write_text((tmp_path / "verify.json").read_text())
    text = table.render(tmp_path / "runs")
    assert "| t5-tiny-cpu | fp32 | 96 | 2 of 2 |" in text and "| blocks.1.ffn.fc2 |" in text
    refused = CliRunner().invoke(main, ["verify", "--device", "cpu", "--config", config, "--workload", "t2v-480p",
                                        "--out", str(tmp_path / "x")])
    assert refused.exit_code == 2 and "--workload: a DiT option" in refused.output
