"""SEI growth laws on the cycle time scale: rates, closed forms and per-cell rate constants.

Time is counted in equivalent full cycles throughout `jaxcell.ageing` (for calendar ageing read
"cycle" as any fixed unit of time, e.g. a day, and give the rate constants per that unit).
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import Distribution, LogNormal

# A rate constant is either one number shared by every cell or a distribution over cells
# (quenched disorder: drawn once per cell and fixed for its life).
RateConstant = float | Distribution


def reaction_limited_rate(thickness, reaction_rate):
    """Reaction-limited SEI growth rate dL/dt = k_R [m/cycle], independent of the thickness.

    Args:
        thickness: SEI thickness L [m] (only its shape is used).
        reaction_rate: k_R [m/cycle].

    Example:
        >>> reaction_limited_rate(5e-9, 2.5e-10)  # 0.25 nm per cycle
    """
    return jnp.zeros_like(jnp.asarray(thickness, dtype=float)) + reaction_rate


def diffusion_limited_rate(thickness, diffusion_rate):
    """Solvent-diffusion-limited SEI growth rate dL/dt = k_D / L [m/cycle].

    Solvent crosses the film by diffusion, so the flux falls as 1/L and L^2 grows linearly:
    L(t) = sqrt(L0^2 + 2 k_D t), the sqrt(t) law. In PyBaMM's terms k_D = V_SEI c_sol D_sol
    (partial molar volume x bulk solvent concentration x solvent diffusivity), per cycle.

    Args:
        thickness: SEI thickness L [m], positive.
        diffusion_rate: k_D [m2/cycle].

    Example:
        >>> diffusion_limited_rate(100e-9, 3.5e-17)  # 0.35 nm per cycle at 100 nm
    """
    return diffusion_rate / thickness


def mixed_rate(thickness, reaction_rate, diffusion_rate):
    """Mixed reaction-diffusion SEI growth rate dL/dt = 1 / (1/k_R + L/k_D) [m/cycle].

    The surface reaction and solvent diffusion through the film act in series (PyBaMM's "ec
    reaction limited" law): a thin film grows at the reaction rate k_R, a thick one at the
    diffusion-limited rate k_D / L.

    Args:
        thickness: SEI thickness L [m], non-negative.
        reaction_rate: k_R [m/cycle].
        diffusion_rate: k_D [m2/cycle].

    Example:
        >>> mixed_rate(100e-9, 1e-9, 3.5e-17)
    """
    return reaction_rate * diffusion_rate / (diffusion_rate + reaction_rate * thickness)


def _check_rate(owner: str, name: str, value) -> None:
    if isinstance(value, Distribution):
        if value.batch_shape != () or value.event_shape != ():
            raise ValueError(
                f"{owner}.{name} must be a scalar distribution (one number per cell), got "
                f"batch shape {value.batch_shape} and event shape {value.event_shape}."
            )
        return
    if isinstance(value, jax.core.Tracer):
        return
    v = np.asarray(value, dtype=float)
    if v.shape != () or not np.isfinite(v) or v < 0:
        raise ValueError(
            f"{owner}.{name} must be a finite non-negative number or a numpyro distribution, "
            f"got {value!r}."
        )


class AbstractSEILaw(eqx.Module):
    """A stochastic SEI growth law on the cycle time scale.

    Each cell's film follows the noise-free law dL/dtau = rate(L; theta) on its own *ageing
    clock* tau(t), a gamma process:

        L(t) = L_det(tau(t); theta),   tau(t) ~ Gamma(shape t / nu, scale nu),

    with independent increments, E[tau(t)] = t and Var[tau(t)] = nu t. The per-cell rate
    constants theta are quenched (drawn once per cell from `rate_constants`); the clock is
    the intrinsic noise, with variance rate nu = `clock_variance` [cycle]. Its relative
    spread sqrt(nu / t) falls with age: nu is the horizon at which it is 100%.

    The clock is the growth rate's noise: over a short interval the film grows by rate(L)
    dtau, with dtau > 0 a positive random factor of dt (cycle-to-cycle variation of the
    conditions that drive SEI growth: temperature, depth of discharge, rest time). A gamma
    process never decreases and the closed form L_det increases with tau, so every path is
    non-decreasing: SEI growth is irreversible. Concrete laws give the rate dL/dt and the
    noise-free closed form as static methods of the rate constants alone: the sampler calls
    them on the class, so new rate constants or noise never recompile it.
    """

    clock_variance: eqx.AbstractVar[float]
    rate_names: eqx.AbstractClassVar[tuple[str, ...]]
    rate_units: eqx.AbstractClassVar[tuple[str, ...]]

    def __check_init__(self):
        owner = type(self).__name__
        for name, value in zip(self.rate_names, self.rate_constants()):
            _check_rate(owner, name, value)
        if not isinstance(self.clock_variance, jax.core.Tracer):
            s = np.asarray(self.clock_variance, dtype=float)
            if s.shape != () or not np.isfinite(s) or s < 0:
                raise ValueError(
                    f"{owner}.clock_variance must be a finite non-negative number of cycles "
                    f"(0 for no intrinsic noise), got {self.clock_variance!r}."
                )

    @abc.abstractmethod
    def rate_constants(self) -> tuple[RateConstant, ...]:
        """The rate constants in the order of `rate_names` (numbers or distributions)."""

    @staticmethod
    @abc.abstractmethod
    def rate(thickness, rates):
        """Noise-free growth rate dL/dt [m/cycle] at thickness L for `rates` (P,)."""

    @staticmethod
    @abc.abstractmethod
    def deterministic_thickness(cycles, initial_thickness, rates):
        """Closed-form noise-free thickness L(t) [m] after `cycles`, from L(0) = L0;
        non-decreasing in `cycles`."""

    def sample_rates(self, key, n_cells: int):
        """Rate constants of `n_cells` cells, shape (n_cells, P) in the order of `rate_names`.

        Cell i's constants come from ``fold_in(fold_in(key, j), i)`` for rate j, so they do not
        depend on how many cells are drawn. A constant given as a number is shared by all
        cells. Raises `ValueError` if a distribution produces a negative rate constant.
        """
        cells = jnp.arange(n_cells)
        columns = []
        for j, (name, value) in enumerate(zip(self.rate_names, self.rate_constants())):
            if isinstance(value, Distribution):
                kj = jax.random.fold_in(key, j)
                col = jax.vmap(
                    lambda i, d=value, kj=kj: d.sample(jax.random.fold_in(kj, i))
                )(cells)
            else:
                col = jnp.full((n_cells,), value, dtype=jnp.float64)
            col = jnp.asarray(col, dtype=jnp.float64)
            if not isinstance(col, jax.core.Tracer):
                bad = np.flatnonzero(~(np.asarray(col) >= 0))
                if bad.size:
                    raise ValueError(
                        f"{type(self).__name__}.{name}: the distribution gave {float(col[bad[0]])} "
                        f"for cell {int(bad[0])}; rate constants must be non-negative (use a "
                        f"distribution on [0, inf), e.g. numpyro.distributions.LogNormal)."
                    )
            columns.append(col)
        return jnp.stack(columns, axis=-1)


class ReactionLimited(AbstractSEILaw):
    """Reaction-limited growth dL/dt = k_R: the film grows linearly in time.

    On the ageing clock, L(t) = L0 + k_R tau(t): given k_R, the mean is L0 + k_R t and the
    intrinsic variance k_R^2 nu t.

    Attributes:
        reaction_rate: k_R [m/cycle], a number or a numpyro distribution over cells (default
            lognormal, median 0.25 nm/cycle, log-standard deviation 0.25).
        clock_variance: nu [cycle], the ageing clock's variance rate (default 2 cycles).

    With the default `SEIFilm` these defaults give about 10% capacity fade of a Chen2020 cell
    (LG M50) after 1000 cycles; they are illustrative, not fitted to ageing data.

    Example:
        >>> law = ReactionLimited(reaction_rate=numpyro.distributions.Normal(2.5e-10, 2e-11))
    """

    reaction_rate: RateConstant = eqx.field(
        default_factory=lambda: LogNormal(math.log(2.5e-10), 0.25)
    )
    clock_variance: float = 2.0

    rate_names: ClassVar[tuple[str, ...]] = ("reaction_rate",)
    rate_units: ClassVar[tuple[str, ...]] = ("m/cycle",)

    def rate_constants(self):
        return (self.reaction_rate,)

    @staticmethod
    def rate(thickness, rates):
        return reaction_limited_rate(thickness, rates[..., 0])

    @staticmethod
    def deterministic_thickness(cycles, initial_thickness, rates):
        return initial_thickness + rates[..., 0] * cycles


class DiffusionLimited(AbstractSEILaw):
    """Solvent-diffusion-limited growth dL/dt = k_D / L: the sqrt(t) law.

    The noise-free solution is L = sqrt(L0^2 + 2 k_D t); on the ageing clock L^2 = L0^2 +
    2 k_D tau(t), so given k_D the mean of L^2 is L0^2 + 2 k_D t and its intrinsic variance
    4 k_D^2 nu t.

    Attributes:
        diffusion_rate: k_D [m2/cycle], a number or a numpyro distribution over cells (default
            lognormal, median 3.5e-17 m2/cycle, log-standard deviation 0.25).
        clock_variance: nu [cycle], the ageing clock's variance rate (default 2 cycles).

    With the default `SEIFilm` these defaults give about 10% capacity fade of a Chen2020 cell
    after 1000 cycles; they are illustrative, not fitted to ageing data.

    Example:
        >>> law = DiffusionLimited(diffusion_rate=3.5e-17, clock_variance=0.0)  # deterministic
    """

    diffusion_rate: RateConstant = eqx.field(
        default_factory=lambda: LogNormal(math.log(3.5e-17), 0.25)
    )
    clock_variance: float = 2.0

    rate_names: ClassVar[tuple[str, ...]] = ("diffusion_rate",)
    rate_units: ClassVar[tuple[str, ...]] = ("m2/cycle",)

    def rate_constants(self):
        return (self.diffusion_rate,)

    @staticmethod
    def rate(thickness, rates):
        return diffusion_limited_rate(thickness, rates[..., 0])

    @staticmethod
    def deterministic_thickness(cycles, initial_thickness, rates):
        return jnp.sqrt(initial_thickness**2 + 2.0 * rates[..., 0] * cycles)


class MixedLimited(AbstractSEILaw):
    """Reaction and solvent diffusion in series: dL/dt = 1 / (1/k_R + L/k_D).

    Linear growth while the film is thin (L << k_D/k_R), the sqrt(t) law once it is thick.
    The noise-free solution solves (L - L0)/k_R + (L^2 - L0^2)/(2 k_D) = t; the stochastic
    one solves the same with t replaced by the ageing clock tau(t), exactly.

    Attributes:
        reaction_rate: k_R [m/cycle] (default lognormal, median 1 nm/cycle, log-sd 0.25).
        diffusion_rate: k_D [m2/cycle] (default lognormal, median 3.5e-17, log-sd 0.25).
        clock_variance: nu [cycle], the ageing clock's variance rate (default 2 cycles).

    Example:
        >>> law = MixedLimited(reaction_rate=1e-9, diffusion_rate=3.5e-17)
    """

    reaction_rate: RateConstant = eqx.field(
        default_factory=lambda: LogNormal(math.log(1e-9), 0.25)
    )
    diffusion_rate: RateConstant = eqx.field(
        default_factory=lambda: LogNormal(math.log(3.5e-17), 0.25)
    )
    clock_variance: float = 2.0

    rate_names: ClassVar[tuple[str, ...]] = ("reaction_rate", "diffusion_rate")
    rate_units: ClassVar[tuple[str, ...]] = ("m/cycle", "m2/cycle")

    def rate_constants(self):
        return (self.reaction_rate, self.diffusion_rate)

    @staticmethod
    def rate(thickness, rates):
        return mixed_rate(thickness, rates[..., 0], rates[..., 1])

    @staticmethod
    def deterministic_thickness(cycles, initial_thickness, rates):
        k_r, k_d = rates[..., 0], rates[..., 1]
        # the growth G = L - L0 solves G^2/(2 k_D) + b G - t = 0 with b = 1/k_R + L0/k_D;
        # its positive root, written without cancellation, so that L >= L0 exactly
        b = 1.0 / k_r + initial_thickness / k_d
        return initial_thickness + 2.0 * cycles / (b + jnp.sqrt(b**2 + 2.0 * cycles / k_d))


LAWS = {
    "reaction": ReactionLimited,
    "diffusion": DiffusionLimited,
    "mixed": MixedLimited,
}
