"""wantrace calibrate --collectives: how long the model's own collectives take on this machine's links.

Run under torchrun, one process per GPU (or per CPU process with gloo). Each op of `wan_reference.collectives`
(the functions the sequence-parallel forward calls) is timed over a range of tensor sizes on the whole world;
a point is [bytes one rank sends, ns], the slowest rank's median of `repeats` calls, which is the x axis the time
predictor reads (`rules/communication.py` gives the bytes sent). The result is a profile's optional
`collectives` section (docs/multi-gpu.md)."""

from __future__ import annotations

import datetime
import os
import statistics
import time
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist

from wan_reference import collectives

from .device import VerifyError

SIZES = tuple(1 << p for p in range(16, 31, 2))  # 64 KiB .. 1 GiB per rank's input: what a 720p forward hands over
GROUP = "world"


def init_distributed(device: str) -> torch.device:
    """torch.distributed from torchrun's environment: gloo on CPU, NCCL on CUDA (each rank on its LOCAL_RANK GPU).
    Already initialised: kept."""
    if "WORLD_SIZE" not in os.environ and not dist.is_initialized():
        raise VerifyError("multi-GPU runs need torchrun (e.g. torchrun --nproc-per-node 2 -m wantrace.cli ...): "
                          "WORLD_SIZE is not set")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise VerifyError("--device cuda: CUDA is not available on this machine; use --device cpu (gloo)")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    elif device == "cpu":
        dev = torch.device("cpu")
    else:
        raise VerifyError(f"--device: cuda or cpu, got {device!r}")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return dev


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _ops(world: int) -> dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[int], int]]]:
    """op -> (the call on a flat tensor, bytes one rank sends for an input of n bytes)."""
    return {
        "all_to_all": (lambda x: collectives.all_to_all(x, 0, 0, world, GROUP), lambda n: n * (world - 1) // world),
        "all_gather": (lambda x: collectives.all_gather(x, 0, world, GROUP), lambda n: n * (world - 1)),
        "ring_pass": (lambda x: collectives.ring_pass(x, world, GROUP), lambda n: n),
    }


def measure(dev: torch.device, sizes: Sequence[int] = SIZES, repeats: int = 5,
            progress: Callable[[str], None] | None = None) -> dict:
    """Time every collective at every size on the whole world; the same section on every rank."""
    world = dist.get_world_size()
    if world < 2:
        raise VerifyError("calibrate --collectives: needs at least 2 processes (torchrun --nproc-per-node N)")
    collectives.set_group(GROUP, dist.group.WORLD, list(range(world)))
    ops: dict[str, list[list[float]]] = {}
    for name, (call, sent) in _ops(world).items():
        points = []
        for nbytes in sizes:
            numel = max(world, nbytes // 4 // world * world)  # fp32, splits evenly over the ranks
            x = torch.ones(numel, dtype=torch.float32, device=dev)
            call(x)  # warm-up (connections, buffers)
            samples = []
            for _ in range(repeats):
                dist.barrier()
                _sync(dev)
                start = time.perf_counter_ns()
                call(x)
                _sync(dev)
                samples.append(time.perf_counter_ns() - start)
            slowest = torch.tensor([statistics.median(samples)], dtype=torch.float64)
            dist.all_reduce(slowest, op=dist.ReduceOp.MAX)  # a collective is as slow as its slowest rank
            points.append([sent(numel * 4), max(1.0, float(slowest.item()))])
            if progress:
                progress(f"{name}: {numel * 4:,} bytes")
        ops[name] = points
    return {
        "source": "wantrace calibrate --collectives",
        "date": datetime.date.today().isoformat(),
        "backend": dist.get_backend(),
        "world": world,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__.split("+")[0],
        "x": "bytes one rank sends",
        "ops": ops,
    }
