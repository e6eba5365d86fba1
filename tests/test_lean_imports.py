"""The CLI stays at the floor of `import torch`: nothing it runs for `analyze`, `model` or `compare` imports
torch._dynamo (1-1.7 s), torch.fx.experimental.symbolic_shapes or sympy (0.4-0.7 s), or matplotlib (only
sweep's plots need it). Fresh interpreters, since this process has imported everything already."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch._dynamo", "torch.fx.experimental.symbolic_shapes", "sympy", "matplotlib")


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


def test_the_stand_ins_keep_torch_whole():
    """After a meta run dynamo, symbolic_shapes and sympy import for real, `import` is Python's again, dynamo's
    `disable` wraps what the run left untouched, and a run with all three loaded gives the same forward."""
    code = """
import builtins, sys
import torch
original_import = builtins.__import__
from wantrace.work.analysis import analyze
before = analyze("models/wan2.1-tiny-i2v/config.json", "ci-tiny").forward
assert builtins.__import__ is original_import
import sympy, torch._dynamo
import torch.fx.experimental.symbolic_shapes as shapes
for name in ("torch._dynamo", "torch.fx.experimental.symbolic_shapes", "sympy"):
    assert type(sys.modules[name]).__name__ == "module", name
assert sympy.Basic.__module__ == "sympy.core.basic" and shapes.ShapeEnv
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


def test_the_symbolic_shapes_stand_in_answers_as_the_real_one():
    """On the bools, ints and shapes of a concrete meta run, every helper the stand-in answers gives what
    torch's own gives (same value, same type); what it does not answer is torch's."""
    import torch
    from torch.fx.experimental import symbolic_shapes as real

    from wantrace.work.lean import _ConcreteShapes

    lean = _ConcreteShapes()
    cases = {
        "expect_true": [(True,), (False,)],
        "guard_or_false": [(True,), (False,)],
        "guard_or_true": [(True,), (False,)],
        "statically_known_true": [(True,), (False,)],
        "sym_and": [(True,), (False,), (True, True), (True, False), (False, True, True), (True, True, True)],
        "sym_or": [(False,), (True,), (False, False), (False, True), (True, False, False), (False, False, False)],
        "sym_eq": [((2, 3), (2, 3)), ((2, 3), (2, 4)), ((2, 3), (2, 3, 1)), (torch.Size([4, 5]), (4, 5)),
                   ([1, [2, 3]], (1, (2, 3))), ((), ()), (7, 7), (7, 8), (True, 1)],
        "is_nested_int": [(3,), (0,), (2.5,), (True,)],
    }
    assert set(cases) == set(lean.ANSWERED)
    for name, calls in cases.items():
        for args in calls:
            got, want = getattr(lean, name)(*args), getattr(real, name)(*args)
            assert (got, type(got)) == (want, type(want)), (name, args)
    for name in ("expect_true", "guard_or_false", "statically_known_true"):
        with pytest.raises(AssertionError):
            getattr(lean, name)(1)  # not a bool: torch's own refuses it
    assert lean.ShapeEnv is real.ShapeEnv  # every other name is torch's
    assert lean.has_guarding_hint(3) is real.has_guarding_hint(3)  # deferred: torch's, called
