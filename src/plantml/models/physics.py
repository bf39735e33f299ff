"""Physics terms: a first-order thermal model with learnable, positive coefficients.

``dT/dt = (k · P_loss − h · (T − T_ambient)) / C``

``P_loss`` is a linear mix of measured inputs (``P_loss · k = Σ_j k_j u_j``,
e.g. ``u = [motor_current]`` or ``u = [load × speed]``), every ``k_j``, ``h``
and ``C`` are softplus-parametrised (so positive) and ``T_ambient`` is
learnable unless given. Integrated one step at a time over a window: given
``T[t]`` and the inputs at ``t`` predict ``T[t+1]``.

Only the ratios ``k / C`` and ``h / C`` (and ``T_ambient``) are identifiable
from temperature data: the time constant is ``tau = C / h`` and the steady
rise ``k · P / h``. Fix ``capacity`` to make ``k`` and ``h`` unique.

This is a plain ``nn.Module`` (no Lightning), used as a loss term by
:class:`plantml.tasks.ThermalFailureTask`; it never enters the exported graph.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from plantml.errors import ConfigError

INTEGRATORS = ("euler", "exact")


def _inverse_softplus(value: float) -> float:
    if value <= 0:
        raise ConfigError(f"thermal coefficients must be > 0, got {value}")
    return value + math.log(-math.expm1(-value))


class ThermalModel(nn.Module):
    """A lumped first-order thermal model of one temperature.

    Args:
        n_inputs: number of loss-power inputs ``u`` (one coefficient ``k_j`` each).
        gain: initial ``k`` (every input).
        conductance: initial ``h``.
        capacity: initial ``C``.
        ambient: ``T_ambient``; a number fixes it, ``None`` learns it (starting
            at ``ambient_init``).
        learn_capacity: ``False`` keeps ``C`` fixed (makes ``k`` and ``h`` identifiable).
        integrator: ``euler`` (explicit Euler, ``T + dt · dT/dt``) or ``exact``
            (exact step of the linear ODE with inputs held over the step:
            ``T_eq + (T − T_eq) · exp(−h dt / C)``, ``T_eq = T_amb + k·u / h``).
    """

    def __init__(
        self,
        n_inputs: int = 1,
        gain: float = 1.0,
        conductance: float = 1.0,
        capacity: float = 1.0,
        ambient: float | None = None,
        ambient_init: float = 20.0,
        learn_capacity: bool = True,
        integrator: str = "euler",
    ):
        super().__init__()
        if n_inputs < 1:
            raise ConfigError(f"the thermal model needs at least one power input, got {n_inputs}")
        if integrator not in INTEGRATORS:
            raise ConfigError(
                f"unknown thermal integrator {integrator!r}; use one of {', '.join(INTEGRATORS)}"
            )
        self.integrator = integrator
        self.raw_k = nn.Parameter(torch.full((n_inputs,), _inverse_softplus(gain)))
        self.raw_h = nn.Parameter(torch.tensor(_inverse_softplus(conductance)))
        self.raw_c = nn.Parameter(
            torch.tensor(_inverse_softplus(capacity)), requires_grad=learn_capacity
        )
        self.learn_ambient = ambient is None
        start = ambient_init if ambient is None else ambient
        self.ambient_param = nn.Parameter(torch.tensor(float(start)), requires_grad=ambient is None)

    # -- coefficients ------------------------------------------------------------------
    @property
    def k(self) -> torch.Tensor:
        """Gain per input, (n_inputs,)."""
        return F.softplus(self.raw_k)

    @property
    def h(self) -> torch.Tensor:
        return F.softplus(self.raw_h)

    @property
    def C(self) -> torch.Tensor:
        return F.softplus(self.raw_c)

    @property
    def t_ambient(self) -> torch.Tensor:
        return self.ambient_param

    def coefficients(self) -> dict[str, float]:
        """The current coefficients and derived ``tau = C / h`` as plain floats."""
        out = {f"k{j}" if len(self.k) > 1 else "k": float(v) for j, v in enumerate(self.k.detach())}
        out.update(h=float(self.h), C=float(self.C), T_ambient=float(self.t_ambient))
        out["tau"] = out["C"] / out["h"]
        return out

    # -- dynamics ----------------------------------------------------------------------
    def derivative(self, temperature: torch.Tensor, power: torch.Tensor) -> torch.Tensor:
        """``dT/dt`` for temperature ``(batch, steps)`` and inputs ``(batch, steps, n_inputs)``."""
        heating = power @ self.k
        return (heating - self.h * (temperature - self.t_ambient)) / self.C

    def step(
        self, temperature: torch.Tensor, power: torch.Tensor, dt: torch.Tensor | float
    ) -> torch.Tensor:
        """Temperature one step ``dt`` later (same shape as ``temperature``)."""
        if self.integrator == "euler":
            return temperature + dt * self.derivative(temperature, power)
        equilibrium = self.t_ambient + (power @ self.k) / self.h
        decay = torch.exp(-self.h * dt / self.C)
        return equilibrium + (temperature - equilibrium) * decay

    def forward(
        self, temperature: torch.Tensor, power: torch.Tensor, dt: torch.Tensor | float = 1.0
    ) -> torch.Tensor:
        """One-step predictions ``T[t+1]`` from ``T[t]`` and ``u[t]``: ``(batch, time - 1)``.

        Args:
            temperature: ``(batch, time)`` measured temperature.
            power: ``(batch, time, n_inputs)`` loss-power inputs.
            dt: step lengths, a number or ``(batch, time - 1)``.
        """
        return self.step(temperature[:, :-1], power[:, :-1], dt)

    def residual(
        self, temperature: torch.Tensor, power: torch.Tensor, dt: torch.Tensor | float = 1.0
    ) -> torch.Tensor:
        """Physics residual ``T[t+1] − T̂[t+1]`` in temperature units, ``(batch, time - 1)``."""
        return temperature[:, 1:] - self(temperature, power, dt)

    @torch.no_grad()
    def simulate(
        self, start: torch.Tensor, power: torch.Tensor, dt: torch.Tensor | float = 1.0
    ) -> torch.Tensor:
        """Roll the model out from ``start`` ``(batch,)`` over ``power``: ``(batch, time)``."""
        temps = [start]
        for t in range(power.shape[1] - 1):
            step_dt = dt[:, t] if isinstance(dt, torch.Tensor) and dt.ndim == 2 else dt
            temps.append(self.step(temps[-1], power[:, t], step_dt))
        return torch.stack(temps, dim=1)
