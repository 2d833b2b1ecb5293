"""Samplers: turn noise into latents with a trained model and its objective.

A model is any callable ``model(x_t (B, C, L), timestep (B,) float, cond (B, C', L))``.
DDPM objectives run diffusers schedulers configured from the objective's own noise schedule
and prediction type; flow matching runs a plain Euler loop over t = 1 -> 0 or diffusers'
``FlowMatchEulerDiscreteScheduler``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hireslm.diffusion.objectives import DDPMObjective, FlowMatchingObjective, Model, randn_tensor

if TYPE_CHECKING:
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

DDPM_SCHEDULERS = ("ddim", "dpmsolver++", "euler", "ddpm")
FLOW_SCHEDULERS = ("euler", "flow_match_euler")


def build_scheduler(
    objective: DDPMObjective | FlowMatchingObjective, name: str | None = None,
) -> SchedulerMixin | None:
    """A fresh diffusers scheduler for ``objective`` (None for flow's plain Euler loop).

    Schedulers hold per-run state, so every sampling call gets its own. diffusers is imported
    only here, when one is used: the default flow-matching Euler loop needs none of it.
    """
    if isinstance(objective, FlowMatchingObjective):
        name = name or "euler"
        if name not in FLOW_SCHEDULERS:
            raise ValueError(f"flow matching samplers: {FLOW_SCHEDULERS}, got {name!r}")
        if name == "euler":
            return None
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=int(objective.timestep_scale), shift=1.0
        )
    if not isinstance(objective, DDPMObjective):
        raise TypeError(f"unsupported objective {type(objective).__name__}")
    name = name or "ddim"
    config = objective.scheduler.config
    from diffusers import (
        DDIMScheduler,
        DDPMScheduler,
        DPMSolverMultistepScheduler,
        EulerDiscreteScheduler,
    )

    if name == "ddim":
        return DDIMScheduler.from_config(config, set_alpha_to_one=True)
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=2,
            # With zero terminal SNR the first sigma is infinite; these keep DPM-Solver finite.
            final_sigmas_type="zero", lower_order_final=True,
        )
    if name == "euler":
        return EulerDiscreteScheduler.from_config(config)
    if name == "ddpm":
        return DDPMScheduler.from_config(config)
    raise ValueError(f"DDPM samplers: {DDPM_SCHEDULERS}, got {name!r}")


def _predict(
    model: Model, x: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor,
    guidance_scale: float,
) -> torch.Tensor:
    """Model output ``(B, C, L)`` in float32; classifier-free guidance when scale != 1."""
    if guidance_scale == 1.0:
        return model(x.to(cond.dtype), timestep, cond).float()
    out = model(
        torch.cat([x, x]).to(cond.dtype), torch.cat([timestep, timestep]),
        torch.cat([cond, torch.zeros_like(cond)]),
    ).float()
    with_cond, without = out.chunk(2)
    return without + guidance_scale * (with_cond - without)


def sample(
    model: Model,
    objective: DDPMObjective | FlowMatchingObjective,
    cond: torch.Tensor,
    num_steps: int,
    *,
    generator: torch.Generator | None = None,
    scheduler: str | None = None,
    latent_channels: int,
    guidance_scale: float = 1.0,
    noise: torch.Tensor | None = None,
    init: torch.Tensor | None = None,
    strength: float = 1.0,
) -> torch.Tensor:
    """Draw latents ``(B, latent_channels, L)`` given the condition ``cond (B, C', L)``.

    Starts from N(0, I) drawn with ``generator`` (so a seeded generator gives the same result
    each call) and runs ``num_steps`` model evaluations (twice the batch with guidance).
    ``scheduler``: for DDPM objectives "ddim" (default, deterministic), "dpmsolver++",
    "euler" or "ddpm" (ancestral, stochastic through ``generator``); for flow matching
    "euler" (default) or "flow_match_euler". Call under ``torch.inference_mode()`` for speed.
    ``noise`` ``(B, latent_channels, L)``, if given, is the starting N(0, I) draw instead of
    one from ``generator`` (e.g. seeded per row, so a row's result does not depend on its
    batch); ``generator`` then only feeds stochastic schedulers.

    ``strength`` below 1 starts part-way along the path, as SDEdit and diffusers' img2img
    do: from ``(1 - strength) * init + strength * noise`` at t = ``strength``, integrated to
    t = 0 in ``num_steps`` steps. ``init`` ``(B, latent_channels, L)`` is a latent to keep
    (the restoration pipeline passes the degraded input's own); lower values keep more of it.
    Flow matching with the "euler" loop only.
    """
    if cond.dim() != 3:
        raise ValueError(f"cond must be (B, C', L), got {tuple(cond.shape)}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    b, _, length = cond.shape
    sched = build_scheduler(objective, scheduler)
    shape = (b, latent_channels, length)
    if strength < 1.0:
        if sched is not None:
            raise ValueError("strength < 1 needs a flow-matching model and the 'euler' "
                             f"scheduler, not {type(sched).__name__}")
        if init is None or tuple(init.shape) != shape:
            raise ValueError(f"strength < 1 needs init of shape {shape}, got "
                             f"{None if init is None else tuple(init.shape)}")
    if noise is None:
        x = randn_tensor(shape, generator=generator, device=cond.device, dtype=torch.float32)
    elif tuple(noise.shape) != shape:
        raise ValueError(f"noise must be {shape}, got {tuple(noise.shape)}")
    else:
        x = noise.to(device=cond.device, dtype=torch.float32)
    if sched is None:
        if strength < 1.0:
            x = (1.0 - strength) * init.to(device=cond.device, dtype=torch.float32) + strength * x
        return _flow_euler(model, objective, cond, x, num_steps, guidance_scale, strength)
    sched.set_timesteps(num_steps, device=cond.device)
    x = x * getattr(sched, "init_noise_sigma", 1.0)
    for t in sched.timesteps:
        model_in = sched.scale_model_input(x, t) if hasattr(sched, "scale_model_input") else x
        timestep = t.to(device=cond.device, dtype=torch.float32).expand(b)
        pred = _predict(model, model_in, timestep, cond, guidance_scale)
        x = sched.step(pred, t, x, generator=generator).prev_sample
    return x.to(cond.dtype)


def _flow_euler(
    model: Model, objective: FlowMatchingObjective, cond: torch.Tensor, x: torch.Tensor,
    num_steps: int, guidance_scale: float, start: float = 1.0,
) -> torch.Tensor:
    """Euler integration of dx/dt = v(x, t) from t = ``start`` to t = 0 on a uniform grid."""
    b = cond.shape[0]
    times = torch.linspace(start, 0.0, num_steps + 1, device=cond.device)
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        timestep = (t * objective.timestep_scale).expand(b)
        v = _predict(model, x, timestep, cond, guidance_scale)
        x = x + (t_next - t) * v
    return x.to(cond.dtype)
