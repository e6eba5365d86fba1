"""The command line: right numbers, one-line errors with exit code 2."""

import json
import subprocess
import sys

from click.testing import CliRunner

from wan_reference import build_model, save_checkpoint
from wantrace.cli import main

from .conftest import MODELS, config_of
from .test_analyze import closed_form

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


TINY = str(MODELS / "wan2.1-tiny-t2v" / "config.json")


def test_analyze_writes_report_and_summary(tmp_path):
    out = tmp_path / "run"
    result = run("analyze", "--config", T2V_14B, "--workload", "ci-tiny", "--out", str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "report.json").read_text())
    assert doc["totals"]["forward"]["flops"]["torch"] == closed_form(config_of("wan2.1-t2v-14b"), 512)
    summary = (out / "summary.md").read_text()
    assert summary.startswith(f"`wantrace analyze --config {T2V_14B} --workload ci-tiny`")
    assert "blocks.0-39 x40" in result.output and "totals" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "summary.md"]  # no temp files left


def test_analyze_json_to_stdout():
    result = run("analyze", "--config", TINY, "--format", "json", "--frames", "9", "--no-cfg", "--steps", "3")
    doc = json.loads(result.output)
    assert doc["workload"]["id"] == "ci-tiny+frames=9+steps=3"
    assert doc["geometry"]["latent"] == [3, 32, 32]


def test_analyze_runs_without_the_collector_and_gives_it_back(monkeypatch):
    """The cyclic collector is off while analyze runs (it walked every record several times) and on again after,
    also when the command fails."""
    import gc

    from wantrace.work import generation

    seen = []
    original = generation.analyze_generation
    monkeypatch.setattr(generation, "analyze_generation", lambda *a, **k: seen.append(gc.isenabled()) or original(
        *a, **k))
    assert gc.isenabled()
    assert run("analyze", "--config", str(MODELS / "wan2.1-tiny-t2v" / "config.json"), "--format", "json"
               ).exit_code == 0
    assert seen == [False] and gc.isenabled()
    assert run("analyze", "--config", str(MODELS / "wan2.1-tiny-t2v" / "config.json"), "--frames", "6",
               "--format", "json").exit_code == 2
    assert gc.isenabled()


def test_analyze_default_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = run("analyze", "--config", TINY)
    second = run("analyze", "--config", TINY)
    assert first.exit_code == second.exit_code == 0
    assert (tmp_path / "runs" / "wan2.1-tiny-t2v-ci-tiny" / "report.json").exists()
    assert (tmp_path / "runs" / "wan2.1-tiny-t2v-ci-tiny-2" / "summary.md").exists()


def test_analyze_impossible_geometry_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "wantrace.cli", "analyze", "--config", TINY, "--frames", "80",
                           "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "wantrace: error: frames: must be 4n+1 (1, 5, ..., 81) for the Wan VAE, got 80"
    ]
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_analyze_preset_that_does_not_fit():
    result = run("analyze", "--config", T2V_14B, "--workload", "i2v-480p")
    assert result.exit_code == 2
    assert "preset 'i2v-480p' is for i2v models" in result.output


def test_analyze_strict_passes_on_shipped_config(tmp_path):
    result = run("analyze", "--config", TINY, "--strict", "--precision", "wan-official", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output


def test_out_that_cannot_be_created_names_the_option(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    # (--out naming a file itself is refused by click: "Invalid value for '--out': Directory ... is a file")
    cases = [(blocker / "run", f"--out: cannot create {blocker / 'run'}: {blocker} is a file, not a folder")]
    import os
    if os.geteuid() != 0:  # root may write anywhere
        cases.append((locked / "run", f"--out: cannot create {locked / 'run'}: {locked} is not writable"))
    for out, message in cases:
        for command in (["analyze", "--config", str(MODELS / "wan2.1-tiny-i2v" / "config.json")],
                        ["sweep", "--config", str(MODELS / "wan2.1-tiny-i2v" / "config.json"), "--frames", "5"]):
            result = run(*command, "--out", str(out))
            assert result.exit_code == 2, (command, result.output)
            assert result.output.strip().splitlines()[-1] == f"wantrace: error: {message}", result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "locked"]  # nothing written


def test_user_errors_name_exception_classes_and_reach_python_m(tmp_path):
    """The CLI catches a user's error by the module that defines it (so a command need not import the modules it
    never runs): every name resolves to an exception class, and under `python -m wantrace.cli` (the module is
    then __main__) --out's own error is still one line."""
    import importlib

    from wantrace.cli import USER_ERRORS

    for module, names in USER_ERRORS.items():
        for name in names:
            assert issubclass(getattr(importlib.import_module(module), name), Exception), (module, name)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = subprocess.run([sys.executable, "-m", "wantrace.cli", "analyze", "--config", TINY, "--out",
                           str(blocker / "run")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"wantrace: error: --out: cannot create {blocker / 'run'}: {blocker} is a file, not a folder"]


def test_vace_under_sequence_parallelism_is_one_line_exit_2():
    """The official VACE forward under USP (usp_dit_forward_vace) is not modelled: refused by name, no traceback."""
    result = run("analyze", "--config", str(MODELS / "wan2.1-tiny-vace" / "config.json"), "--ulysses", "2")
    assert result.exit_code == 2
    assert "usp_dit_forward_vace" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
