"""The body of one gloo process in tests/test_parallel.py (a module of its own, so that spawned processes import
only torch, wan_reference and this file). Each rank runs every case and writes what it measured to JSON; the
test process compares with the analysis, which it computes itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.distributed

from wan_reference import build_model, collectives, load_config, make_inputs
from wan_reference.parallel import Layout, init_groups, parallelize

# name: (config, latent, ulysses, ring)
CASES = {
    "ulysses2": ("wan2.1-tiny-t2v", (2, 4, 6), 2, 1),
    "ring2": ("wan2.1-tiny-t2v", (2, 4, 6), 1, 2),
    "ring2-padded": ("wan2.1-tiny-t2v", (1, 6, 6), 1, 2),  # 9 tokens -> seq_len 10
    "ulysses2-i2v": ("wan2.1-tiny-i2v", (2, 4, 4), 2, 1),
}
WORLD4_CASES = {  # 4 processes: opt-in (WANTRACE_WORLD4=1), about 50 s on a shared 2-core machine
    "ulysses2-ring2": ("wan2.1-tiny-t2v", (2, 4, 6), 2, 2),
    "ulysses4": ("wan2.1-tiny-t2v", (2, 4, 6), 4, 1),
    "ring4-padded": ("wan2.1-tiny-t2v", (1, 6, 6), 1, 4),  # 9 tokens -> seq_len 12
}
CALIBRATION_SIZES = (4096, 65536)


def run_case(models: Path, name: str, rank: int) -> dict:
    config_name, latent, ulysses, ring = {**CASES, **WORLD4_CASES}[name]
    config = load_config(models / config_name / "config.json")
    model = build_model(config, "fp32", device="cpu", seed=0)
    inputs = make_inputs(config, latent, "fp32", device="cpu", seed=1)
    layout = Layout(ulysses, ring, rank)
    tokens = latent[0] * (latent[1] // 2) * (latent[2] // 2)
    seq_len = -(-tokens // layout.world) * layout.world
    with torch.no_grad():
        plain = model(**inputs)
        parallelize(model, Layout())
        one_process = model(**inputs, seq_len=seq_len)  # the same padded USP forward on one process
        parallelize(model, layout)
        init_groups(layout)
        with collectives.count() as sent:
            out = model(**inputs)
    scale = plain.abs().max().item()
    return {
        "rel_vs_plain": (out - plain).abs().max().item() / scale,
        "rel_vs_one_process": (out - one_process).abs().max().item() / one_process.abs().max().item(),
        "sent": [[s.op, s.bytes_sent, s.bytes_received] for s in sent],
    }


def main(rank: int, world: int, port: int, models: str, out_dir: str) -> None:
    """torchrun's environment by hand (one spawn serves every test), then the cases, the collectives calibration,
    a layout the world cannot hold, and last `wantrace verify --ulysses 2` through the command line itself."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from wantrace.cli import main as cli
    from wantrace.measure.collectives import init_distributed, measure
    from wantrace.measure.device import VerifyError
    from wantrace.measure.verify_parallel import verify_parallel

    init_distributed("cpu")
    result: dict = {name: run_case(Path(models), name, rank) for name in CASES}
    result["calibration"] = measure(torch.device("cpu"), CALIBRATION_SIZES, repeats=1)
    tiny = Path(models) / "wan2.1-tiny-t2v" / "config.json"
    try:  # a layout of 4 ranks on a world of 2
        verify_parallel(tiny, device="cpu", ulysses=2, ring=2)
        result["mismatch"] = None
    except VerifyError as exc:
        result["mismatch"] = str(exc)
    verify_dir = Path(out_dir, "verify")
    try:  # ends the process group
        cli(["verify", "--device", "cpu", "--config", str(tiny), "--precision", "fp32", "--ulysses", "2", "--frames",
             "5", "--height", "48", "--width", "80", "--repeats", "1", "--out", str(verify_dir)], standalone_mode=False)
        result["verify_exit"] = 0
    except SystemExit as exc:
        result["verify_exit"] = exc.code
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))


def main_world4(rank: int, world: int, port: int, models: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from wantrace.measure.collectives import init_distributed

    init_distributed("cpu")
    result = {name: run_case(Path(models), name, rank) for name in WORLD4_CASES}
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    torch.distributed.destroy_process_group()
