"""Cell mass and volume from a `ParameterSet`, with PyBOP's definitions (``pybop.pybamm.cell_mass``
and ``cell_volume``).

The cell is one electrode stack of area height x width: negative current collector, negative
electrode, separator, positive electrode, positive current collector. Per unit area, each
electrode weighs thickness x (active fraction x active material density + porosity x electrolyte
density + (1 - active fraction - porosity) x carbon-binder density); the separator weighs
thickness x separator density (its pores' electrolyte is not counted separately, as in PyBOP);
each current collector thickness x its density. Tabs, can, pouch and the electrolyte outside the
pores are not included. The volume is the stack's area times its total thickness.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp

from ..parameters import ParameterSet

ELECTRODES = ("Negative", "Positive")


class MissingDensityError(ValueError):
    """A density the mass model needs is neither in the parameter set nor given."""


def _fallbacks() -> dict[str, str]:
    """PyBOP's density mapping in its design example (examples/scripts/design_optimisation/
    maximising_energy.py): the electrolyte takes the separator's density, the active material and
    the carbon-binder that of their electrode."""
    out = {"Electrolyte density [kg.m-3]": "Separator density [kg.m-3]"}
    for e in ELECTRODES:
        out[f"{e} electrode active material density [kg.m-3]"] = f"{e} electrode density [kg.m-3]"
        out[f"{e} electrode carbon-binder density [kg.m-3]"] = f"{e} electrode density [kg.m-3]"
    return out


DENSITY_NAMES = (
    "Electrolyte density [kg.m-3]",
    "Negative electrode active material density [kg.m-3]",
    "Negative electrode carbon-binder density [kg.m-3]",
    "Positive electrode active material density [kg.m-3]",
    "Positive electrode carbon-binder density [kg.m-3]",
    "Separator density [kg.m-3]",
    "Negative current collector density [kg.m-3]",
    "Positive current collector density [kg.m-3]",
)


def densities(p: ParameterSet, given: Mapping[str, float] | None = None) -> dict[str, jnp.ndarray]:
    """The eight densities [kg.m-3] of `DENSITY_NAMES` that `cell_mass` uses: each from `given`
    (a mapping by the same names), else from the set, else (for the electrolyte, active material
    and carbon-binder densities) from PyBOP's mapping: the electrolyte takes the separator's
    density, active material and carbon-binder that of their electrode ("Negative electrode
    density [kg.m-3]", ...). Raises `MissingDensityError` naming the first density found nowhere.

    Example:
        >>> densities(jaxcell.load_parameters("Chen2020"))["Electrolyte density [kg.m-3]"]
        Array(397., dtype=float64)
    """
    given = dict(given or {})
    unknown = sorted(set(given) - set(DENSITY_NAMES))
    if unknown:
        raise ValueError(f"unknown density {unknown[0]!r}; accepted names: {', '.join(DENSITY_NAMES)}.")
    fallback = _fallbacks()
    out = {}
    for name in DENSITY_NAMES:
        if name in given:
            value = jnp.asarray(given[name], jnp.float64)
        elif name in p and not callable(p[name]):
            value = p[name]
        elif name in fallback and fallback[name] in p and not callable(p[fallback[name]]):
            value = p[fallback[name]]
        else:
            via = f" (or {fallback[name]!r}, which it defaults to)" if name in fallback else ""
            raise MissingDensityError(
                f"parameter set {p.name!r} has no {name!r}{via}: the cell mass needs it. Add it to the set "
                f"(p.update({{{name!r}: value}}, check_already_exists=False)) or pass densities={{{name!r}: value}}."
            )
        out[name] = value
    return out


def electrode_area(p: ParameterSet):
    """Electrode area [m2]: "Electrode height [m]" x "Electrode width [m]"."""
    return p["Electrode height [m]"] * p["Electrode width [m]"]


def _thicknesses(p: ParameterSet):
    return {
        "negative current collector": p["Negative current collector thickness [m]"],
        "negative electrode": p["Negative electrode thickness [m]"],
        "separator": p["Separator thickness [m]"],
        "positive electrode": p["Positive electrode thickness [m]"],
        "positive current collector": p["Positive current collector thickness [m]"],
    }


def cell_volume(p: ParameterSet):
    """Cell volume [m3]: electrode area times the stack's thickness (both electrodes, separator and
    both current collectors), PyBOP's ``cell_volume``. Differentiable; works on batched sets.

    Example:
        >>> float(cell_volume(jaxcell.load_parameters("Chen2020")))  # 2.062e-05
    """
    return electrode_area(p) * sum(_thicknesses(p).values())


def mass_breakdown(p: ParameterSet, given: Mapping[str, float] | None = None) -> dict[str, jnp.ndarray]:
    """Mass [kg] of each part of the cell: "negative current collector", "negative electrode",
    "separator", "positive electrode", "positive current collector" (see the module docstring for
    what each includes). `given` overrides densities (see `densities`)."""
    rho = densities(p, given)
    area = electrode_area(p)
    L = _thicknesses(p)
    out = {}
    for e in ELECTRODES:
        active = p[f"{e} electrode active material volume fraction"]
        porosity = p[f"{e} electrode porosity"]
        per_volume = (
            active * rho[f"{e} electrode active material density [kg.m-3]"]
            + porosity * rho["Electrolyte density [kg.m-3]"]
            + (1.0 - active - porosity) * rho[f"{e} electrode carbon-binder density [kg.m-3]"]
        )
        out[f"{e.lower()} electrode"] = area * L[f"{e.lower()} electrode"] * per_volume
    out["separator"] = area * L["separator"] * rho["Separator density [kg.m-3]"]
    for e in ELECTRODES:
        key = f"{e.lower()} current collector"
        out[key] = area * L[key] * rho[f"{e} current collector density [kg.m-3]"]
    order = ("negative current collector", "negative electrode", "separator", "positive electrode",
             "positive current collector")
    return {k: out[k] for k in order}


def cell_mass(p: ParameterSet, given: Mapping[str, float] | None = None):
    """Cell mass [kg] with PyBOP's definition (``pybop.pybamm.cell_mass``): the sum of
    `mass_breakdown`. Densities the set lacks come from `given` or PyBOP's mapping (`densities`);
    a density found nowhere raises `MissingDensityError` naming it. Differentiable; works on
    batched sets.

    Example:
        >>> float(cell_mass(jaxcell.load_parameters("Chen2020")))  # 0.04559 kg
    """
    return sum(mass_breakdown(p, given).values())
