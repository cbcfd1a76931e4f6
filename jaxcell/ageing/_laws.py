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

    The SDE is written for a *growth variable* y = g(L) (the thickness L itself, or L^2 for
    the sqrt(t) law) in which the noise is additive:

        dy = b(y; theta) dt + sigma dW,

    with per-cell rate constants theta (quenched: drawn once per cell from `rate_constants`)
    and an intrinsic Wiener term of strength `noise` = sigma [growth unit / sqrt(cycle)].
    Concrete laws give g, its inverse, the drift b, the rate dL/dt and the noise-free closed
    form as static methods of the rate constants alone: the solve calls them on the class, so
    new rate constants or noise never recompile it.
    """

    noise: eqx.AbstractVar[float]
    rate_names: eqx.AbstractClassVar[tuple[str, ...]]
    rate_units: eqx.AbstractClassVar[tuple[str, ...]]
    growth_unit: eqx.AbstractClassVar[str]

    def __check_init__(self):
        owner = type(self).__name__
        for name, value in zip(self.rate_names, self.rate_constants()):
            _check_rate(owner, name, value)
        if not isinstance(self.noise, jax.core.Tracer):
            s = np.asarray(self.noise, dtype=float)
            if s.shape != () or not np.isfinite(s) or s < 0:
                raise ValueError(
                    f"{owner}.noise must be a finite non-negative number "
                    f"[{self.growth_unit}/sqrt(cycle)], got {self.noise!r}."
                )

    @abc.abstractmethod
    def rate_constants(self) -> tuple[RateConstant, ...]:
        """The rate constants in the order of `rate_names` (numbers or distributions)."""

    @staticmethod
    @abc.abstractmethod
    def growth(thickness):
        """Growth variable y = g(L) of a thickness L [m]."""

    @staticmethod
    @abc.abstractmethod
    def thickness(growth):
        """Thickness L [m] of a growth variable y >= 0 (inverse of `growth`)."""

    @staticmethod
    @abc.abstractmethod
    def drift(growth, rates):
        """Drift dy/dt [growth unit/cycle] at y for one cell's rate constants `rates` (P,)."""

    @staticmethod
    @abc.abstractmethod
    def rate(thickness, rates):
        """Noise-free growth rate dL/dt [m/cycle] at thickness L for `rates` (P,)."""

    @staticmethod
    @abc.abstractmethod
    def deterministic_thickness(cycles, initial_thickness, rates):
        """Closed-form noise-free thickness L(t) [m] after `cycles`, from L(0) = L0."""

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

    Growth variable y = L [m]; SDE dL = k_R dt + sigma dW.

    Attributes:
        reaction_rate: k_R [m/cycle], a number or a numpyro distribution over cells (default
            lognormal, median 0.25 nm/cycle, log-standard deviation 0.25).
        noise: sigma [m/sqrt(cycle)] (default 0.5 nm/sqrt(cycle)).

    With the default `SEIFilm` these defaults give about 10% capacity fade of a Chen2020 cell
    (LG M50) after 1000 cycles; they are illustrative, not fitted to ageing data.

    Example:
        >>> law = ReactionLimited(reaction_rate=numpyro.distributions.Normal(2.5e-10, 2e-11))
    """

    reaction_rate: RateConstant = eqx.field(
        default_factory=lambda: LogNormal(math.log(2.5e-10), 0.25)
    )
    noise: float = 5e-10

    rate_names: ClassVar[tuple[str, ...]] = ("reaction_rate",)
    rate_units: ClassVar[tuple[str, ...]] = ("m/cycle",)
    growth_unit: ClassVar[str] = "m"

    def rate_constants(self):
        return (self.reaction_rate,)

    @staticmethod
    def growth(thickness):
        return thickness

    @staticmethod
    def thickness(growth):
        return growth

    @staticmethod
    def drift(growth, rates):
        return reaction_limited_rate(growth, rates[..., 0])

    @staticmethod
    def rate(thickness, rates):
        return reaction_limited_rate(thickness, rates[..., 0])

    @staticmethod
    def deterministic_thickness(cycles, initial_thickness, rates):
        return initial_thickness + rates[..., 0] * cycles


class DiffusionLimited(AbstractSEILaw):
    """Solvent-diffusion-limited growth dL/dt = k_D / L: the sqrt(t) law.

    Growth variable y = L^2 [m2], in which the drift is constant: d(L^2) = 2 k_D dt + sigma dW,
    so the noise-free solution is L = sqrt(L0^2 + 2 k_D t).

    Attributes:
        diffusion_rate: k_D [m2/cycle], a number or a numpyro distribution over cells (default
            lognormal, median 3.5e-17 m2/cycle, log-standard deviation 0.25).
        noise: sigma [m2/sqrt(cycle)] on L^2 (default 1e-16 m2/sqrt(cycle)).

    With the default `SEIFilm` these defaults give about 10% capacity fade of a Chen2020 cell
    after 1000 cycles; they are illustrative, not fitted to ageing data.

    Example:
        >>> law = DiffusionLimited(diffusion_rate=3.5e-17, noise=0.0)  # deterministic
    """

    diffusion_rate: RateConstant = eqx.field(
        default_factory=lambda: LogNormal(math.log(3.5e-17), 0.25)
    )
    noise: float = 1e-16

    rate_names: ClassVar[tuple[str, ...]] = ("diffusion_rate",)
    rate_units: ClassVar[tuple[str, ...]] = ("m2/cycle",)
    growth_unit: ClassVar[str] = "m2"

    def rate_constants(self):
        return (self.diffusion_rate,)

    @staticmethod
    def growth(thickness):
        return thickness**2

    @staticmethod
    def thickness(growth):
        return jnp.sqrt(growth)

    @staticmethod
    def drift(growth, rates):
        return jnp.zeros_like(growth) + 2.0 * rates[..., 0]

    @staticmethod
    def rate(thickness, rates):
        return diffusion_limited_rate(thickness, rates[..., 0])

    @staticmethod
    def deterministic_thickness(cycles, initial_thickness, rates):
        return jnp.sqrt(initial_thickness**2 + 2.0 * rates[..., 0] * cycles)


class MixedLimited(AbstractSEILaw):
    """Reaction and solvent diffusion in series: dL/dt = 1 / (1/k_R + L/k_D).

    Linear growth while the film is thin (L << k_D/k_R), the sqrt(t) law once it is thick.
    Growth variable y = L [m]; SDE dL = dL/dt(L) dt + sigma dW. The noise-free solution solves
    (L - L0)/k_R + (L^2 - L0^2)/(2 k_D) = t.

    Attributes:
        reaction_rate: k_R [m/cycle] (default lognormal, median 1 nm/cycle, log-sd 0.25).
        diffusion_rate: k_D [m2/cycle] (default lognormal, median 3.5e-17, log-sd 0.25).
        noise: sigma [m/sqrt(cycle)] (default 0.5 nm/sqrt(cycle)).

    Example:
        >>> law = MixedLimited(reaction_rate=1e-9, diffusion_rate=3.5e-17)
    """

    reaction_rate: RateConstant = eqx.field(
        default_factory=lambda: LogNormal(math.log(1e-9), 0.25)
    )
    diffusion_rate: RateConstant = eqx.field(
        default_factory=lambda: LogNormal(math.log(3.5e-17), 0.25)
    )
    noise: float = 5e-10

    rate_names: ClassVar[tuple[str, ...]] = ("reaction_rate", "diffusion_rate")
    rate_units: ClassVar[tuple[str, ...]] = ("m/cycle", "m2/cycle")
    growth_unit: ClassVar[str] = "m"

    def rate_constants(self):
        return (self.reaction_rate, self.diffusion_rate)

    @staticmethod
    def growth(thickness):
        return thickness

    @staticmethod
    def thickness(growth):
        return growth

    @staticmethod
    def drift(growth, rates):
        return mixed_rate(growth, rates[..., 0], rates[..., 1])

    @staticmethod
    def rate(thickness, rates):
        return mixed_rate(thickness, rates[..., 0], rates[..., 1])

    @staticmethod
    def deterministic_thickness(cycles, initial_thickness, rates):
        k_r, k_d = rates[..., 0], rates[..., 1]
        c = cycles + initial_thickness / k_r + initial_thickness**2 / (2.0 * k_d)
        # root of L^2/(2 k_D) + L/k_R - c = 0, written without cancellation
        return 2.0 * c / (1.0 / k_r + jnp.sqrt(1.0 / k_r**2 + 2.0 * c / k_d))


LAWS = {
    "reaction": ReactionLimited,
    "diffusion": DiffusionLimited,
    "mixed": MixedLimited,
}
