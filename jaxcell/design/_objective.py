"""Energy densities of a simulated protocol, and the design objective: design (unit box) ->
cell -> `simulate` -> energy density, one differentiable function."""

from __future__ import annotations

from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp

from ..experiment import Experiment
from ..parameters import ParameterSet
from ..simulate import simulate
from ..soc import with_initial_soc
from ._mass import cell_mass, cell_volume, densities as _densities
from ._variables import DesignSpace

OBJECTIVES = ("gravimetric", "volumetric")
LITHIUM = ("set", "formation")


def gravimetric_energy_density(sol, p: ParameterSet, densities: Mapping[str, float] | None = None):
    """Energy delivered on discharge per cell mass [W.h.kg-1]: ``sol.energy / cell_mass(p)``.
    PyBOP's "Gravimetric energy density [W.h.kg-1]" is the time integral of voltage x current over
    the whole experiment divided by the cell mass, the same number for a protocol that only
    discharges (a charge step would subtract from PyBOP's, not from this)."""
    return sol.energy / cell_mass(p, densities)


def volumetric_energy_density(sol, p: ParameterSet):
    """Energy delivered on discharge per cell volume [W.h.m-3]: ``sol.energy / cell_volume(p)``."""
    return sol.energy / cell_volume(p)


def formation_ratio(p: ParameterSet):
    """The cyclable lithium of the set's initial concentrations as a fraction of the positive
    electrode's lithium capacity (PyBOP's "Initial cyclable lithium inventory to positive
    electrode capacity ratio", from `set_formation_concentrations`)."""
    inventory = sum(
        p[f"Initial concentration in {s} electrode [mol.m-3]"] * p[f"{s.capitalize()} electrode active material volume fraction"]
        * p[f"{s.capitalize()} electrode thickness [m]"] for s in ("negative", "positive")
    )
    positive = (p["Maximum concentration in positive electrode [mol.m-3]"] * p["Positive electrode active material volume fraction"]
                * p["Positive electrode thickness [m]"])
    return inventory / positive


def with_formation_lithium(p: ParameterSet, ratio) -> ParameterSet:
    """The set with its cyclable lithium equal to `ratio` times the positive electrode's capacity
    (all of it in the positive electrode, as formed cells start): a design that thickens the
    positive electrode then brings proportionally more lithium. Place the state of charge
    afterwards (`with_initial_soc`)."""
    return p.update({
        "Initial concentration in negative electrode [mol.m-3]": 0.0 * p["Initial concentration in negative electrode [mol.m-3]"],
        "Initial concentration in positive electrode [mol.m-3]": ratio * p["Maximum concentration in positive electrode [mol.m-3]"],
    })


class Outcome(eqx.Module):
    """What one design evaluation gives (arrays; leading batch axis for a population).

    Attributes:
        objective: energy density in the objective's unit (W.h.kg-1 or W.h.m-3).
        energy: discharge energy [W.h]; capacity: discharge capacity [A.h].
        mass: cell mass [kg]; volume: cell volume [m3].
        status: the simulation's `Status` code; delivered: whether it ran the whole experiment.
        max_temperature: the highest cell temperature [K] at the output times (each step's end
            among them): the ambient for an isothermal model.
    """

    objective: jax.Array
    energy: jax.Array
    capacity: jax.Array
    mass: jax.Array
    volume: jax.Array
    status: jax.Array
    delivered: jax.Array
    max_temperature: jax.Array


def check_objective(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}.")
    return objective


def cell_outcome(model, q: ParameterSet, experiment, *, objective="gravimetric", densities=None, **simulate_kwargs) -> Outcome:
    """Simulate one cell `q` and measure it (`Outcome`)."""
    sol = simulate(model, q, experiment, **simulate_kwargs)
    mass, volume = cell_mass(q, densities), cell_volume(q)
    value = sol.energy / (mass if objective == "gravimetric" else volume)
    return Outcome(value, sol.energy, sol.capacity, mass, volume, sol.status, sol.delivered, jnp.nanmax(sol.temperature))


def design_cell(p: ParameterSet, space: DesignSpace, u, *, initial_soc=1.0, lithium="set", ratio=None) -> ParameterSet:
    """The cell of design `u` (unit box): the design's values put into `p`, its lithium
    (`lithium="set"`: the set's initial concentrations fix the cyclable lithium, as PyBaMM's
    initial_soc does; ``"formation"``: `ratio` times the positive electrode's capacity), and its
    initial state of charge."""
    q = space.apply(p, u)
    if lithium == "formation":
        q = with_formation_lithium(q, ratio)
    if initial_soc is not None:
        q = with_initial_soc(q, initial_soc)
    return q


def design_objective(
    model,
    params: ParameterSet,
    experiment,
    space: DesignSpace,
    *,
    objective: str = "gravimetric",
    initial_soc=1.0,
    lithium: str = "set",
    densities: Mapping[str, float] | None = None,
    **simulate_kwargs,
):
    """``f(u) -> Outcome``: the energy density of the design at `u` (the unit box of `space`)
    under `experiment`, a pure JAX function (jit, grad and vmap it). The set's own densities are
    checked now (a missing one raises `MissingDensityError`), not inside the traced function.

    `lithium`: ``"set"`` keeps the cyclable lithium of the set's initial concentrations, which
    then scales with the designed electrode's thickness as ``c_init x active fraction x
    thickness`` (PyBaMM's rule; it is what PyBOP's design example computes, see docs/design.md),
    or ``"formation"``: a fixed fraction of the positive electrode's capacity (`formation_ratio`
    of the set), so the negative electrode's excess is what the design trades.

    Example:
        >>> space = DesignSpace.create(p, ["Positive electrode thickness [m]=65e-6:100e-6"])
        >>> f = design_objective(jaxcell.SPMe(), p, "Discharge at 1C until 2.5 V", space)
        >>> value, grad = jax.value_and_grad(lambda u: f(u).objective)(space.to_unit(space.initial(p)))
    """
    check_objective(objective)
    if lithium not in LITHIUM:
        raise ValueError(f"lithium must be one of {', '.join(LITHIUM)}, got {lithium!r}.")
    _densities(params, densities)
    if not isinstance(experiment, Experiment):
        experiment = Experiment(experiment if isinstance(experiment, (list, tuple)) else [experiment])
    ratio = formation_ratio(params) if lithium == "formation" else None
    if ratio is not None and float(ratio) > 1:
        raise ValueError(f"lithium='formation': the set's cyclable lithium is {float(ratio):.4g} times the positive "
                         "electrode's capacity (more than it can hold).")

    def f(u) -> Outcome:
        q = design_cell(params, space, u, initial_soc=initial_soc, lithium=lithium, ratio=ratio)
        return cell_outcome(model, q, experiment, objective=objective, densities=densities, **simulate_kwargs)

    return f
