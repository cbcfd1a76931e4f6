"""The model interface that `simulate` drives."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp

from ..physics import cell

THERMAL_OPTIONS = ("isothermal", "lumped")


class AbstractCellModel(eqx.Module):
    """A cell model: owns static structure (mesh sizes, options), never parameter values.

    A concrete model defines a flat state vector `y` (whose last entry is the cell temperature
    [K]) and the pure functions below; `jaxcell.simulate` integrates them under any protocol.
    Sign convention (PyBaMM's): the cell current `I` [A] is positive on discharge.
    """

    thermal: eqx.AbstractVar[str]

    def __check_init__(self):
        if self.thermal not in THERMAL_OPTIONS:
            raise ValueError(f"thermal={self.thermal!r} is not one of {THERMAL_OPTIONS}.")

    @abc.abstractmethod
    def initial_state(self, p) -> jax.Array:
        """State at the start of an experiment, from the set's initial concentrations."""

    @abc.abstractmethod
    def rhs(self, t, y, current, p) -> jax.Array:
        """dy/dt at cell current `current` [A]."""

    @abc.abstractmethod
    def voltage(self, y, current, p) -> jax.Array:
        """Terminal voltage [V] at state `y` and cell current `current` [A]."""

    @abc.abstractmethod
    def surface_stoichiometries(self, y, p) -> tuple[jax.Array, jax.Array]:
        """Particle surface stoichiometries (negative, positive), each a scalar (the extreme
        value over the electrode for spatially resolved models)."""

    # None, or a function (y, p) -> the lowest electrolyte concentration [mol.m-3] for a model
    # that does not hold once the electrolyte runs out: `simulate` stops where it crosses zero,
    # with Status.ELECTROLYTE_DEPLETED (the SPMe; the DFN holds there)
    electrolyte_margin = None

    # Whether `rhs` reads its time argument. A model whose rhs does keeps True: Rodas4's reverse
    # rule then includes df/dt's part of the gradient for every protocol, not only drive cycles.
    rhs_reads_time = True

    # The outputs (voltage, temperature, and the current under any control) depend on
    # y[output_start:] only: `simulate` saves that part of the state at the output times.
    # A model whose outputs need all of its state keeps 0.
    output_start = 0

    @abc.abstractmethod
    def particle_charge(self, y, p) -> tuple[jax.Array, jax.Array]:
        """Lithium in each electrode's particles (negative, positive) as charge [A.h]: what
        `simulate` checks against the charge passed (lithium conservation)."""

    def temperature(self, y) -> jax.Array:
        return y[-1]

    def open_circuit_voltage(self, y, p) -> jax.Array:
        """Voltage at zero current with the particle surface concentrations of `y`."""
        sn, sp = self.surface_stoichiometries(y, p)
        T = self.temperature(y)
        return cell.open_circuit_potential("positive", sp, T, p) - cell.open_circuit_potential(
            "negative", sn, T, p
        )

    def _dT_dt(self, y, current, p, heat_per_area):
        """Lumped heat balance (PyBaMM's lumped model): rho c_p dT/dt = (Q - h A (T - T_amb)) / V
        with Q the cell's heat [W]: electrochemical heat per electrode area times the area, plus
        contact-resistance heat."""
        if self.thermal == "isothermal":
            return jnp.zeros_like(y[-1])
        T = y[-1]
        Q = heat_per_area * cell.electrode_area(p) + current**2 * p.get("Contact resistance [Ohm]", 0.0)
        cooling = p["Total heat transfer coefficient [W.m-2.K-1]"] * p["Cell cooling surface area [m2]"] * (
            T - p["Ambient temperature [K]"]
        )
        return (Q - cooling) / (p["Cell volume [m3]"] * cell.volumetric_heat_capacity(p))
