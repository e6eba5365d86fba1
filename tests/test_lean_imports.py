"""The CLI stays at the floor of `import torch`: nothing it runs for `analyze`, `model` or `compare` imports
torch._dynamo (1-1.7 s) or matplotlib (only sweep's plots need it). Fresh interpreters, since this process
has imported everything already."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch._dynamo", "matplotlib")


def loaded_after(code: str) -> dict[str, bool]:
    probe = code + f"\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_cli_loads_neither():
    assert loaded_after("import wantrace.cli") == {m: False for m in HEAVY}


def test_analyze_model_and_compare_load_neither(tmp_path):
    code = f"""
import contextlib, io
from wantrace.cli import main
out = {str(tmp_path)!r}
def run(*args):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main(list(args))
tiny = ["--vae", "models/wan2.1-tiny-vae/vae/config.json", "--text-encoder",
        "models/wan2.1-tiny-umt5/text_encoder/config.json", "--image-encoder",
        "models/wan2.1-tiny-clip/image_encoder/config.json"]
for precision in ("bf16", "wan-official", "fp32"):  # the whole generation: every component's trace
    run("analyze", "--config", "models/wan2.1-tiny-i2v/config.json", "--workload", "ci-tiny", "--precision",
        precision, "--gpu", "h200", "--out", f"{{out}}/{{precision}}", *tiny)
run("model", "--config", "models/wan2.1-t2v-14b/config.json")
run("compare", f"{{out}}/bf16/report.json", f"{{out}}/fp32/report.json", "--by", "time")
"""
    assert loaded_after(code) == {m: False for m in HEAVY}
    assert all((tmp_path / p / "report.json").exists() for p in ("bf16", "wan-official", "fp32"))


def test_the_stand_in_keeps_torch_whole():
    """After a meta run dynamo imports for real and its `disable` wraps what the run left untouched."""
    code = """
import torch
from wantrace.work.analysis import analyze
before = analyze("models/wan2.1-tiny-i2v/config.json", "ci-tiny").forward
import torch._dynamo, sys
assert type(sys.modules["torch._dynamo"]).__name__ == "module"
fn, chain = torch._refs.cat, []
while fn is not None:
    chain.append(fn)
    fn = getattr(fn, "__wrapped__", None)
assert len(chain) >= 2 and not any(getattr(f, "__dynamo_disable", None) is f for f in chain), chain
assert analyze("models/wan2.1-tiny-i2v/config.json", "ci-tiny").forward == before
print(torch.cat([torch.ones(2), torch.ones(1)]).tolist())
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [1.0, 1.0, 1.0]
