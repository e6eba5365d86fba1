"""The sampler's timesteps and, for Wan2.2 A14B, which expert runs each step.

The official samplers (`wan/utils/fm_solvers_unipc.py` FlowUniPCMultistepScheduler, the default solver)
take `steps` sigmas evenly from sigma_max down to 0 (the last dropped), shift them by
`shift·s / (1 + (shift − 1)·s)`, and use `int64(sigma · 1000)` as the timestep. The A14B sampler
(`wan/text2video.py`, `wan/image2video.py`) runs the high-noise expert while `t >= boundary · 1000` and the
low-noise expert after, with the guide scale of the expert running. Exact float64 arithmetic as numpy does it."""

from __future__ import annotations

import struct
from dataclasses import dataclass

NUM_TRAIN_TIMESTEPS = 1000  # wan/configs/shared_config.py


def _float32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def _linspace(start: float, stop: float, num: int) -> list[float]:
    """numpy.linspace(start, stop, num) in float64, element for element (i · step + start, last = stop)."""
    if num == 1:
        return [start]
    step = (stop - start) / (num - 1)
    return [i * step + start for i in range(num - 1)] + [stop]


def timesteps(steps: int, shift: float, num_train: int = NUM_TRAIN_TIMESTEPS) -> list[int]:
    """The official UniPC timesteps of one generation, as `sample_scheduler.timesteps` holds them."""
    if steps < 1:
        raise ValueError(f"steps: must be positive, got {steps}")
    # __init__ with shift=1: sigmas = 1 - linspace(1, 1/num_train, num_train)[::-1], stored as float32
    alphas = _linspace(1.0, 1.0 / num_train, num_train)[::-1]
    sigma_max, sigma_min = _float32(1.0 - alphas[0]), _float32(1.0 - alphas[-1])
    sigmas = _linspace(sigma_max, sigma_min, steps + 1)[:-1]
    sigmas = [shift * s / (1 + (shift - 1) * s) for s in sigmas]
    return [int(s * num_train) for s in sigmas]  # torch .to(int64) truncates toward zero


@dataclass(frozen=True)
class ExpertSplit:
    """Which steps each A14B expert runs."""

    timesteps: tuple[int, ...]
    boundary_t: float  # boundary · num_train_timesteps
    high: tuple[int, ...]  # step indices run by the high-noise expert (t >= boundary_t)
    low: tuple[int, ...]  # step indices run by the low-noise expert

    def to_dict(self) -> dict:
        return {"timesteps": list(self.timesteps), "boundary_t": self.boundary_t,
                "high_noise_steps": list(self.high), "low_noise_steps": list(self.low)}


def expert_split(steps: int, shift: float, boundary: float, num_train: int = NUM_TRAIN_TIMESTEPS) -> ExpertSplit:
    ts = timesteps(steps, shift, num_train)
    boundary_t = boundary * num_train
    high = tuple(i for i, t in enumerate(ts) if t >= boundary_t)
    low = tuple(i for i, t in enumerate(ts) if t < boundary_t)
    return ExpertSplit(tuple(ts), boundary_t, high, low)
