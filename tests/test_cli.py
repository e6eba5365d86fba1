"""The command line: right numbers, one-line errors with exit code 2."""

import json
import subprocess
import sys

from click.testing import CliRunner

from wan_reference import build_model, save_checkpoint
from wantrace.cli import main

from .conftest import MODELS, config_of

T2V_14B = str(MODELS / "wan2.1-t2v-14b" / "config.json")


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_model_table():
    result = run("model", "--config", T2V_14B)
    assert result.exit_code == 0, result.output
    assert "14,288,491,584" in result.output
    assert "28,635,351,168" in result.output  # bf16 policy (fp32 modulation/time embedding/norm3)
    assert "57,153,966,336" in result.output  # wan-official: fp32 weights


def test_model_json():
    result = run("model", "--config", str(MODELS / "wan2.1-i2v-14b-480p-diffusers" / "config.json"),
                 "--format", "json")
    doc = json.loads(result.output)
    assert doc["variant"] == "i2v" and doc["format"] == "diffusers"
    assert doc["params"] == 16_394_878_784
    assert doc["params_per_block"] == 403_838_464
    assert doc["weight_bytes"]["wan-official"] == 4 * 16_394_878_784


def test_bad_config_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"_class_name": "WanModel", "dim": 5120, "ffn_dim": 13824, "num_heads": 48,
                               "num_layers": 40}))
    proc = subprocess.run([sys.executable, "-m", "wantrace.cli", "model", "--config", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "wantrace: error: num_heads: dim 5120 is not divisible by num_heads 48"
    ]


def test_missing_config_file():
    result = run("model", "--config", "does/not/exist.json")
    assert result.exit_code == 2
    assert "cannot read" in result.output


def test_checkpoint_check(tmp_path):
    config = config_of("wan2.1-tiny-t2v")
    model = build_model(config, "fp32", device="cpu", seed=0)
    save_checkpoint(model, tmp_path / "ok.safetensors", "diffusers")
    tiny = str(MODELS / "wan2.1-tiny-t2v" / "config.json")
    good = run("model", "--config", tiny, "--checkpoint", str(tmp_path / "ok.safetensors"))
    assert good.exit_code == 0 and "every name and shape matches" in good.output
    state = model.state_dict()
    state.pop("blocks.0.norm3.weight")
    save_checkpoint(state, tmp_path / "bad.safetensors")
    bad = run("model", "--config", tiny, "--checkpoint", str(tmp_path / "bad.safetensors"))
    assert bad.exit_code == 2
    assert "missing keys: blocks.0.norm3.weight" in bad.output
