"""Training objectives for latent diffusion: DDPM (epsilon / v / sample) and rectified flow.

An objective knows nothing of the model's insides: a model is any callable
``model(x_t (B, C, L), timestep (B,) float, cond (B, C', L)) -> prediction (B, C, L)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

Model = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
BETA_SCHEDULES = ("squaredcos_cap_v2", "scaled_linear", "linear")


def randn_tensor(
    shape: tuple[int, ...], *, generator: torch.Generator | None, device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """N(0, I) of ``shape``, drawn on ``generator``'s device and moved to ``device``: the same
    numbers as diffusers' ``randn_tensor`` for one generator, without importing diffusers
    (1.6 s, most of it ``torch._dynamo``) in processes that use no diffusers scheduler."""
    rand_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=rand_device, dtype=dtype).to(device)


def _check_pair(x0: torch.Tensor, cond: torch.Tensor) -> None:
    if x0.dim() != 3 or cond.dim() != 3:
        raise ValueError(f"x0 and cond must be (B, C, L), got {tuple(x0.shape)}, "
                         f"{tuple(cond.shape)}")
    if x0.shape[0] != cond.shape[0] or x0.shape[2] != cond.shape[2]:
        raise ValueError(f"x0 {tuple(x0.shape)} and cond {tuple(cond.shape)} differ in B or L")


class DDPMObjective:
    """Discrete-time DDPM with a diffusers ``DDPMScheduler`` noise schedule.

    ``loss`` draws ``t ~ U{0..N-1}`` and noise, forms ``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps``
    and regresses the model output onto eps, v or x0. ``min_snr_gamma`` enables Min-SNR
    weighting (Hang et al. 2023), which stops the easy low-noise steps from dominating.
    ``rescale_betas_zero_snr`` makes the last step pure noise, so sampling starts from what
    training saw; it needs a prediction type that can recover x0 there (v or sample).
    """

    kind = "ddpm"

    def __init__(
        self,
        prediction_type: str = "v_prediction",
        num_train_timesteps: int = 1000,
        beta_schedule: str = "squaredcos_cap_v2",
        rescale_betas_zero_snr: bool = True,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        min_snr_gamma: float | None = None,
    ) -> None:
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, "
                             f"got {prediction_type!r}")
        if beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, "
                             f"got {beta_schedule!r}")
        if rescale_betas_zero_snr and prediction_type == "epsilon":
            raise ValueError("zero terminal SNR cannot be used with epsilon prediction: at the "
                             "last step x_t is pure noise and x0 is not recoverable from eps")
        if min_snr_gamma is not None and min_snr_gamma <= 0:
            raise ValueError("min_snr_gamma must be positive")
        self.prediction_type = prediction_type
        self.num_train_timesteps = num_train_timesteps
        self.min_snr_gamma = min_snr_gamma
        from diffusers import DDPMScheduler  # here: flow-matching processes never need it

        self.scheduler = DDPMScheduler(
            num_train_timesteps=num_train_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
            beta_schedule=beta_schedule,
            prediction_type=prediction_type,
            rescale_betas_zero_snr=rescale_betas_zero_snr,
            # Latents are unit-variance, not images in [-1, 1]: never clip them.
            clip_sample=False,
            timestep_spacing="trailing",
        )

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """``(num_train_timesteps,)`` cumulative signal fractions a_t (float32, CPU)."""
        return self.scheduler.alphas_cumprod

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The regression target ``(B, C, L)`` for integer timesteps ``t (B,)``."""
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "v_prediction":
            return self.scheduler.get_velocity(x0, noise, t)
        return x0

    def _weights(self, t: torch.Tensor) -> torch.Tensor:
        ac = self.alphas_cumprod.to(t.device)[t]
        snr = ac / (1 - ac).clamp(min=1e-12)
        clipped = snr.clamp(max=self.min_snr_gamma)
        if self.prediction_type == "epsilon":
            return clipped / snr.clamp(min=1e-12)
        if self.prediction_type == "v_prediction":
            return clipped / (snr + 1)
        return clipped

    def loss(
        self, model: Model, x0: torch.Tensor, cond: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Scalar MSE (optionally Min-SNR weighted) for clean latents ``x0 (B, C, L)``."""
        _check_pair(x0, cond)
        b = x0.shape[0]
        t = torch.randint(
            0, self.num_train_timesteps, (b,), generator=generator,
            device=generator.device if generator is not None else "cpu",
        ).to(x0.device)
        noise = randn_tensor(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = self.scheduler.add_noise(x0, noise, t)
        pred = model(x_t, t.float(), cond)
        per_item = F.mse_loss(pred.float(), self.target(x0, noise, t).float(),
                              reduction="none").mean(dim=(1, 2))
        if self.min_snr_gamma is not None:
            per_item = per_item * self._weights(t)
        return per_item.mean()


class FlowMatchingObjective:
    """Rectified flow: ``x_t = (1 - t) x0 + t eps`` for ``t`` in [0, 1], target ``eps - x0``.

    The model sees ``t * 1000`` as its timestep. ``time_distribution`` "logit_normal"
    (Esser et al. 2024) spends more training on the middle of the path, where the velocity
    is hardest to predict; "uniform" draws t ~ U(0, 1).
    """

    kind = "flow_matching"
    timestep_scale = 1000.0

    def __init__(
        self, time_distribution: str = "logit_normal", logit_mean: float = 0.0,
        logit_std: float = 1.0,
    ) -> None:
        if time_distribution not in ("logit_normal", "uniform"):
            raise ValueError(f"time_distribution must be 'logit_normal' or 'uniform', "
                             f"got {time_distribution!r}")
        if logit_std <= 0:
            raise ValueError("logit_std must be positive")
        self.time_distribution = time_distribution
        self.logit_mean = float(logit_mean)
        self.logit_std = float(logit_std)

    def sample_time(
        self, batch: int, device: torch.device, generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Training times ``(B,)`` in (0, 1)."""
        gen_device = generator.device if generator is not None else "cpu"
        if self.time_distribution == "uniform":
            t = torch.rand(batch, generator=generator, device=gen_device)
        else:
            u = torch.randn(batch, generator=generator, device=gen_device)
            t = torch.sigmoid(self.logit_mean + self.logit_std * u)
        return t.to(device)

    def loss(
        self, model: Model, x0: torch.Tensor, cond: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Scalar MSE between the predicted and the true velocity ``eps - x0``."""
        _check_pair(x0, cond)
        t = self.sample_time(x0.shape[0], x0.device, generator)
        noise = randn_tensor(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        tt = t.to(x0.dtype)[:, None, None]
        x_t = (1 - tt) * x0 + tt * noise
        pred = model(x_t, t * self.timestep_scale, cond)
        return F.mse_loss(pred.float(), (noise - x0).float())


OBJECTIVES: dict[str, type] = {
    "ddpm": DDPMObjective,
    "flow_matching": FlowMatchingObjective,
}


def build_objective(config: Mapping) -> DDPMObjective | FlowMatchingObjective:
    """Build from ``{"name": "ddpm" | "flow_matching", **kwargs}`` (a dict or DictConfig)."""
    params = dict(config)
    name = params.pop("name", None)
    if name not in OBJECTIVES:
        raise ValueError(f"objective name must be one of {sorted(OBJECTIVES)}, got {name!r}")
    try:
        return OBJECTIVES[name](**params)
    except TypeError as err:
        raise ValueError(f"bad arguments for objective {name!r}: {err}") from err
