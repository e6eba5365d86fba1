"""The device a measurement runs on: checked before any work starts, and described in what it writes."""

from __future__ import annotations

import datetime
import platform

import torch


class VerifyError(ValueError):
    """A measurement cannot run as asked (no CUDA, no ncu, bad --blocks); one line."""


def check_device(device: str, gpu: str | None = None) -> torch.device:
    """The device to measure on; with `gpu` (a --gpu profile), also that the device can check its prediction."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise VerifyError("--device cuda: CUDA is not available on this machine (torch "
                          f"{torch.__version__}); use --device cpu with a small config")
    if dev.type not in ("cuda", "cpu"):
        raise VerifyError(f"--device: cuda or cpu, got {device!r}")
    check_gpu(gpu, dev)
    return dev


def check_gpu(gpu: str | None, dev: torch.device) -> None:
    """--gpu's predicted time is checked against measured GPU time: only on CUDA."""
    if gpu is not None and dev.type != "cuda":
        raise VerifyError("--gpu compares predicted with measured GPU time: it needs --device cuda")


def device_info(dev: torch.device) -> dict:
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        return {"type": "cuda", "name": props.name, "memory_bytes": props.total_memory,
                "cuda": torch.version.cuda, "sdpa_backends": _sdpa_backends()}
    return {"type": "cpu", "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}


def _sdpa_backends() -> dict:
    b = torch.backends.cuda
    return {name: getattr(b, f"{name}_sdp_enabled")() for name in ("flash", "mem_efficient", "cudnn", "math")
            if hasattr(b, f"{name}_sdp_enabled")}


def provenance(device: dict) -> dict:
    """Where and when a verify.json was measured: every kind of verify writes these three fields."""
    return {"date": datetime.date.today().isoformat(), "device": device, "torch": torch.__version__}
