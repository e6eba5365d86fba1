"""The Wan2.1 sampler: the flow-matching UniPC multistep solver the official default runs (`sample_solver='unipc'`,
wan/utils/fm_solvers_unipc.py `FlowUniPCMultistepScheduler`: solver order 2, `bh2`, predicting x0, lower order
on the final step, final sigma 0), with the classifier-free-guidance combine text2video.py does before each step.

Upstream's arithmetic falls in two parts, and so does this module's:

* the schedule and the solver's coefficients (sigmas, log-SNRs, phi functions, the rho weights) are scalar
  arithmetic on 0-dim float32 tensors that upstream keeps on the CPU ("to avoid too much CPU/GPU
  communication"): `sigmas`, `timesteps`, `step_plan`, computed here in the same float32 ops;
* the latent-sized arithmetic runs on the latents' device, in fp32 (the latents and the DiT's output are fp32):
  `SamplerStep`, an nn.Module whose forward is one step (the CFG combine, the model-output conversion, the
  UniC corrector, the UniP predictor) as upstream's op sequence, traceable on meta. Its graph depends on the
  step index (order 1 first, the corrector from the second step, the lower order on the last), not on the
  coefficient values, which enter as constants.

`FlowUniPC` runs a whole sampling loop eagerly with both parts (the CPU cross-check against diffusers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .scopes import scope

NUM_TRAIN_TIMESTEPS = 1000  # wan/configs/shared_config.py
SOLVER_ORDER = 2  # FlowUniPCMultistepScheduler's default; text2video.py does not change it


def _float32(x: float) -> float:
    return torch.tensor(x, dtype=torch.float32).item()


def _linspace(start: float, stop: float, num: int) -> list[float]:
    """numpy.linspace(start, stop, num) in float64, element for element (i · step + start, last = stop)."""
    if num == 1:
        return [start]
    step = (stop - start) / (num - 1)
    return [i * step + start for i in range(num - 1)] + [stop]


def _shifted(steps: int, shift: float, num_train: int) -> list[float]:
    """set_timesteps: `steps` float64 sigmas from sigma_max down to sigma_min (the last dropped), shifted."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: must be a positive integer, got {steps!r}")
    # __init__ (shift=1 in text2video.py): sigmas = 1 - linspace(1, 1/num_train, num_train)[::-1], in float32
    alphas = _linspace(1.0, 1.0 / num_train, num_train)[::-1]
    sigma_max, sigma_min = _float32(1.0 - alphas[0]), _float32(1.0 - alphas[-1])
    sigmas = _linspace(sigma_max, sigma_min, steps + 1)[:-1]
    return [shift * s / (1 + (shift - 1) * s) for s in sigmas]


def sigmas(steps: int, shift: float, num_train: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """The solver's float32 sigmas: one per step, then the final 0 (`final_sigmas_type='zero'`)."""
    return torch.tensor(_shifted(steps, shift, num_train) + [0.0], dtype=torch.float32)


def timesteps(steps: int, shift: float, num_train: int = NUM_TRAIN_TIMESTEPS) -> list[int]:
    """The timesteps the DiT sees, as `sample_scheduler.timesteps` holds them (float64 sigma x 1000, truncated)."""
    return [int(s * num_train) for s in _shifted(steps, shift, num_train)]


@dataclass(frozen=True)
class Update:
    """The coefficients of one UniP or UniC update of order `order` (predicting x0, bh2):
    x_t = ratio · x − a_phi · m0 − scale · (Σ_k rho_k · (m_k − m0) / rk_k [+ rho_last · (model_t − m0)])."""

    order: int
    ratio: float  # sigma_t / sigma_s0
    a_phi: float  # alpha_t · h·phi_1(h)
    scale: float  # alpha_t · B(h)
    rks: tuple[float, ...]  # one per earlier model output used (order − 1 of them)
    rhos: torch.Tensor  # float32: the predictor's rhos_p (order − 1; empty for order 1), the corrector's rhos_c (order)


@dataclass(frozen=True)
class StepPlan:
    """What step `index` of `steps` runs: the CFG combine (with `guide_scale`, None without CFG), the corrector
    (None on the first step) and the predictor, each with its coefficients."""

    index: int
    steps: int
    guide_scale: float | None
    sigma: float  # this step's sigma (the model-output conversion: x0 = sample − sigma · model_output)
    corrector: Update | None
    predictor: Update

    @property
    def kind(self) -> tuple[bool, int, int]:
        """What decides the step's graph: CFG, the corrector's order (0: none) and the predictor's."""
        return (self.guide_scale is not None, self.corrector.order if self.corrector else 0, self.predictor.order)


def _lambda(sigma: torch.Tensor) -> torch.Tensor:
    """Half the log-SNR of a flow-matching sigma: alpha = 1 − sigma, lambda = log(alpha) − log(sigma)."""
    return torch.log(1 - sigma) - torch.log(sigma)


def _update(sig: torch.Tensor, t: int, s0: int, earlier: list[int], order: int, corrector: bool) -> Update:
    """multistep_uni_p_bh_update / multistep_uni_c_bh_update's scalar part, in upstream's float32 ops: sigma t is
    the target, s0 the last model output's, `earlier` the indices of the older outputs used."""
    sigma_t, sigma_s0 = sig[t], sig[s0]
    alpha_t = 1 - sigma_t
    lambda_s0 = _lambda(sigma_s0)
    h = _lambda(sigma_t) - lambda_s0
    rks = [(_lambda(sig[si]) - lambda_s0) / h for si in earlier]
    rk_tensor = torch.stack([*rks, torch.tensor(1.0)]) if rks else torch.tensor([1.0])
    hh = -h
    h_phi_1 = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    b_h = torch.expm1(hh)  # bh2
    factorial = 1
    rows, b = [], []
    for i in range(1, order + 1):
        rows.append(torch.pow(rk_tensor, i - 1))
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    r_matrix, b_vec = torch.stack(rows), torch.stack(b)
    if corrector:
        rhos = torch.tensor([0.5]) if order == 1 else torch.linalg.solve(r_matrix, b_vec)
    elif order == 1:
        rhos = torch.zeros(0)
    elif order == 2:
        rhos = torch.tensor([0.5])
    else:
        rhos = torch.linalg.solve(r_matrix[:-1, :-1], b_vec[:-1])
    return Update(order, (sigma_t / sigma_s0).item(), (alpha_t * h_phi_1).item(), (alpha_t * b_h).item(),
                  tuple(r.item() for r in rks), rhos.to(torch.float32))


def orders(index: int, steps: int, solver_order: int = SOLVER_ORDER) -> tuple[int, int]:
    """(corrector order, predictor order) of step `index`: the predictor warms up (order 1, then 2) and drops to
    the steps left on the final steps (lower_order_final); the corrector (from the second step on) has the
    previous step's predictor order."""
    def predictor(i: int) -> int:
        return min(solver_order, steps - i, min(i, solver_order) + 1)

    return (predictor(index - 1) if index > 0 else 0, predictor(index))


def step_plan(index: int, steps: int, shift: float, guide_scale: float | None = None,
              sig: torch.Tensor | None = None, solver_order: int = SOLVER_ORDER) -> StepPlan:
    if not 0 <= index < steps:
        raise ValueError(f"step {index} of {steps}")
    sig = sigmas(steps, shift) if sig is None else sig
    c_order, p_order = orders(index, steps, solver_order)
    corrector = (_update(sig, index, index - 1, [index - 1 - i for i in range(1, c_order)], c_order, True)
                 if c_order else None)
    predictor = _update(sig, index + 1, index, [index - i for i in range(1, p_order)], p_order, False)
    return StepPlan(index, steps, guide_scale, sig[index].item(), corrector, predictor)


def step_plans(steps: int, shift: float, guide_scale: float | None = None) -> list[StepPlan]:
    sig = sigmas(steps, shift)
    return [step_plan(i, steps, shift, guide_scale, sig) for i in range(steps)]


def _combine(rhos: torch.Tensor, d1s: torch.Tensor) -> torch.Tensor:
    """upstream's einsum("k,bkc...->bc...", rhos, D1s) on video latents (D1s [B, K, C, F, H, W]), the ellipsis
    spelled out: the same contraction."""
    return torch.einsum("k,bkcfhw->bcfhw", rhos, d1s)


class SamplerStep(nn.Module):
    """One sampling step on the latents: returns (the next sample, this step's x0 prediction, the corrected
    sample), the last two being the solver's state for the next step. Inputs: `sample` (the latents the DiT
    saw), `cond` (the DiT's output; with CFG the conditional one) and `uncond` (with CFG), the x0 predictions of
    the last two steps (`m1`, the latest, from the second step; `m2` for an order-2 corrector), `last` (the
    sample before the last predictor, from the second step), and the rho weights upstream makes 1-D float32
    tensors on the device (`rhos_p` for an order-2 predictor, `rhos_c` for the corrector)."""

    def __init__(self, plan: StepPlan):
        super().__init__()
        self.plan = plan

    def forward(self, sample, cond, uncond=None, m1=None, m2=None, last=None, rhos_p=None, rhos_c=None):
        plan = self.plan
        if plan.guide_scale is not None:
            with scope(cond, "guidance"):  # text2video.py
                cond = uncond + plan.guide_scale * (cond - uncond)
        with scope(cond, "convert"):  # convert_model_output, flow_prediction, predict_x0
            model_t = sample - plan.sigma * cond
        if plan.corrector is not None:
            with scope(model_t, "corrector"):
                sample = self._correct(plan.corrector, model_t, m1, m2, last, sample, rhos_c)
        with scope(model_t, "predictor"):
            history = [model_t, m1] if plan.predictor.order > 1 else [model_t]
            out = self._predict(plan.predictor, history, sample, rhos_p)
        return out, model_t, sample

    @staticmethod
    def _d1s(u: Update, older: list, m0):
        return torch.stack([(mi - m0) / rk for mi, rk in zip(older, u.rks, strict=True)], dim=1)

    def _predict(self, u: Update, history: list, x, rhos_p):
        """multistep_uni_p_bh_update; `history` newest first."""
        m0 = history[0]
        x_t_ = u.ratio * x - u.a_phi * m0
        if u.order > 1:
            pred_res = _combine(rhos_p, self._d1s(u, history[1:], m0))
            x_t = x_t_ - u.scale * pred_res
        else:
            x_t = x_t_ - u.scale * 0  # upstream: pred_res = 0, and the subtraction still runs
        return x_t.to(torch.float32)

    def _correct(self, u: Update, model_t, m1, m2, last, this_sample, rhos_c):
        """multistep_uni_c_bh_update: m1 is the last step's x0 prediction (m0 upstream), m2 the one before."""
        x_t_ = u.ratio * last - u.a_phi * m1
        d1_t = model_t - m1
        if u.order > 1:
            corr_res = _combine(rhos_c[:-1], self._d1s(u, [m2], m1))
            x_t = x_t_ - u.scale * (corr_res + rhos_c[-1] * d1_t)
        else:
            x_t = x_t_ - u.scale * (0 + rhos_c[-1] * d1_t)
        return x_t.to(torch.float32)


def step_inputs(plan: StepPlan) -> tuple[str, ...]:
    """The forward arguments step `plan` takes (the others are None)."""
    names = ["sample", "cond"]
    if plan.guide_scale is not None:
        names.append("uncond")
    if plan.corrector is not None or plan.predictor.order > 1:
        names.append("m1")
    if plan.corrector is not None:
        names += ["m2"] * (plan.corrector.order > 1) + ["last"]
    if plan.predictor.order > 1:
        names.append("rhos_p")
    if plan.corrector is not None:
        names.append("rhos_c")
    return tuple(names)


class FlowUniPC:
    """A whole sampling loop, eagerly: `step(cond, sample, uncond)` once per timestep, as text2video.py calls
    FlowUniPCMultistepScheduler.step (after the CFG combine) — the numbers of the official solver."""

    def __init__(self, steps: int, shift: float, guide_scale: float | None = None):
        self.steps, self.shift, self.guide_scale = steps, shift, guide_scale
        self.sigmas = sigmas(steps, shift)
        self.timesteps = timesteps(steps, shift)
        self.index = 0
        self.m1: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None
        self.last: torch.Tensor | None = None

    def step(self, cond: torch.Tensor, sample: torch.Tensor, uncond: torch.Tensor | None = None) -> torch.Tensor:
        plan = step_plan(self.index, self.steps, self.shift, self.guide_scale, self.sigmas)
        args = {"sample": sample, "cond": cond, "uncond": uncond, "m1": self.m1, "m2": self.m2, "last": self.last,
                "rhos_p": plan.predictor.rhos.to(sample.device),
                "rhos_c": plan.corrector.rhos.to(sample.device) if plan.corrector else None}
        out, model_t, corrected = SamplerStep(plan)(**{k: args[k] for k in step_inputs(plan)})
        self.m2, self.m1, self.last = self.m1, model_t, corrected
        self.index += 1
        return out


__all__ = ["NUM_TRAIN_TIMESTEPS", "SOLVER_ORDER", "FlowUniPC", "SamplerStep", "StepPlan", "Update", "orders",
           "sigmas", "step_inputs", "step_plan", "step_plans", "timesteps"]
