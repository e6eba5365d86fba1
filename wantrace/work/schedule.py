"""The sampler's timesteps and, for Wan2.2 A14B, which expert runs each step.

The official samplers (`wan/utils/fm_solvers_unipc.py` FlowUniPCMultistepScheduler, the default solver)
take `steps` sigmas evenly from sigma_max down to 0 (the last dropped), shift them by
`shift·s / (1 + (shift − 1)·s)`, and use `int64(sigma · 1000)` as the timestep. The A14B sampler
(`wan/text2video.py`, `wan/image2video.py`) runs the high-noise expert while `t >= boundary · 1000` and the
low-noise expert after, with the guide scale of the expert running. The timesteps are the sampler's
(wan_reference.scheduler, the one place that computes them)."""

from __future__ import annotations

from dataclasses import dataclass

from wan_reference.scheduler import NUM_TRAIN_TIMESTEPS, timesteps


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
