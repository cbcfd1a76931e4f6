"""The SEI film's consequences: lithium consumed, capacity fade, film resistance, and the
aged `ParameterSet` that feeds them back into the electrochemical model."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..parameters import ParameterSet
from ..physics.cell import electrode_area, surface_area_per_volume
from ..physics.constants import F

_C_NEG = "Initial concentration in negative electrode [mol.m-3]"
_C_MAX = "Maximum concentration in negative electrode [mol.m-3]"
_R_CONTACT = "Contact resistance [Ohm]"


class SEIFilm(eqx.Module):
    """Properties of the negative electrode's SEI film (defaults: PyBaMM's Chen2020 values).

    Attributes:
        initial_thickness: formation thickness L0 [m] (PyBaMM: "Initial inner SEI thickness
            [m]" + "Initial outer SEI thickness [m]" = 2.5 nm + 2.5 nm). The fresh cell's
            parameters describe the cell with this film, so lithium loss counts from L0.
        partial_molar_volume: V_SEI [m3.mol-1], volume of one mole of SEI ("SEI partial molar
            volume [m3.mol-1]" = 9.585e-5: Li2EDC, 0.162 kg/mol at 1690 kg/m3, Safari et al.
            2009).
        lithium_per_sei: z, moles of lithium consumed per mole of SEI ("Ratio of lithium moles
            to SEI moles" = 2, two-electron reduction of ethylene carbonate).
        resistivity: rho_SEI [Ohm.m] ("SEI resistivity [Ohm.m]" = 2e5).

    Example:
        >>> film = SEIFilm(resistivity=1e5)
    """

    initial_thickness: float = 5e-9
    partial_molar_volume: float = 9.585e-5
    lithium_per_sei: float = 2.0
    resistivity: float = 2e5

    def __check_init__(self):
        for name in (
            "initial_thickness",
            "partial_molar_volume",
            "lithium_per_sei",
            "resistivity",
        ):
            value = getattr(self, name)
            if isinstance(value, jax.core.Tracer):
                continue
            v = np.asarray(value, dtype=float)
            low_ok = v >= 0 if name == "initial_thickness" else v > 0
            if v.shape != () or not np.isfinite(v) or not low_ok:
                rng = "non-negative" if name == "initial_thickness" else "positive"
                raise ValueError(
                    f"SEIFilm.{name} must be a finite {rng} number, got {value!r}."
                )

    @classmethod
    def from_parameters(cls, params: ParameterSet) -> SEIFilm:
        """The film described by PyBaMM-named SEI entries of `params`, where it has them
        (missing entries keep the defaults).

        Example:
            >>> p = p.update({"SEI resistivity [Ohm.m]": 1e5}, check_already_exists=False)
            >>> SEIFilm.from_parameters(p).resistivity
        """
        film = cls()
        L0 = film.initial_thickness
        if (
            "Initial inner SEI thickness [m]" in params
            or "Initial outer SEI thickness [m]" in params
        ):
            L0 = float(params.get("Initial inner SEI thickness [m]", 0.0)) + float(
                params.get("Initial outer SEI thickness [m]", 0.0)
            )
        return cls(
            initial_thickness=L0,
            partial_molar_volume=float(
                params.get(
                    "SEI partial molar volume [m3.mol-1]", film.partial_molar_volume
                )
            ),
            lithium_per_sei=float(
                params.get("Ratio of lithium moles to SEI moles", film.lithium_per_sei)
            ),
            resistivity=float(params.get("SEI resistivity [Ohm.m]", film.resistivity)),
        )


def sei_surface_area(params: ParameterSet):
    """Area of the negative particles' surface that carries the film, S = a_n L_n A [m2].

    a_n = 3 eps_s,n / R_n is the surface area per electrode volume [m-1], L_n the electrode
    thickness [m] and A the electrode area [m2] (height x width x parallel electrode pairs).
    Batched parameters give one area per cell. Chen2020: 3.36 m2.
    """
    return (
        surface_area_per_volume("negative", params)
        * params["Negative electrode thickness [m]"]
        * electrode_area(params)
    )


def lithium_inventory(params: ParameterSet):
    """Cyclable lithium of the fresh cell, n_inv = c_n,0 eps_s,n L_n A [mol].

    The lithium the negative electrode's particles hold at the initial (charged) state, which
    is where `aged_parameters` takes the SEI's lithium from: once the film has consumed it
    all, the negative electrode is empty at the top of charge and the cell has no capacity
    left. SEI growth cannot consume more lithium than this. Chen2020: 0.196 mol, 5.25 A.h
    (nominal capacity 5 A.h). Batched parameters give one value per cell.

    Example:
        >>> F * lithium_inventory(jaxcell.load_parameters("Chen2020")) / 3600  # 5.25 A.h
    """
    return (
        params[_C_NEG]
        * params["Negative electrode active material volume fraction"]
        * params["Negative electrode thickness [m]"]
        * electrode_area(params)
    )


def max_thickness(params: ParameterSet, film: SEIFilm | None = None):
    """The SEI thickness at which the film holds the whole lithium inventory [m],

        L_max = L0 + n_inv V_SEI / (z S) = L0 + c_n,0 R_n V_SEI / (3 z)

    (the geometry cancels). SEI growth stops there: no cyclable lithium is left to reduce the
    electrolyte. Chen2020 with the default film: 2.80 um.

    Example:
        >>> max_thickness(jaxcell.load_parameters("Chen2020"))  # 2.80e-6 m
    """
    film = SEIFilm() if film is None else film
    return film.initial_thickness + (
        lithium_inventory(params)
        * film.partial_molar_volume
        / (film.lithium_per_sei * sei_surface_area(params))
    )


def _check_thickness(thickness, params, film, what):
    """Raise `ValueError` if a concrete thickness lies outside [0, max_thickness]."""
    top = max_thickness(params, film)
    if isinstance(thickness, jax.core.Tracer) or isinstance(top, jax.core.Tracer):
        return
    L, top = np.broadcast_arrays(np.asarray(thickness, dtype=float), np.asarray(top))
    # the rounding of a thickness clipped at L_max by the caller is not an excess
    bad = ~((L >= 0) & (L <= top * (1 + 1e-12)))
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{what}: SEI thickness {L.ravel()[i]:.4g} m is outside [0, {top.ravel()[i]:.4g}] m; "
            f"above that the film would hold more lithium than the cell's inventory "
            f"(see max_thickness and lithium_inventory)."
        )


def lithium_lost(thickness, params: ParameterSet, film: SEIFilm | None = None):
    """Moles of cyclable lithium consumed by SEI growth beyond the formation film [mol].

        n_Li = z (L - L0) S / V_SEI

    (film volume grown, over the SEI's molar volume, times z lithium per SEI molecule).
    Chen2020 with the default film: 7.0e-5 mol per nm of growth. The film cannot hold more
    than the cell's lithium inventory: a concrete thickness above `max_thickness` (or below
    zero) raises `ValueError` (traced values are not checked).

    Args:
        thickness: SEI thickness L [m]; broadcasts against the batch shape of `params`.
        params: cell parameters (geometry of the negative electrode).
        film: SEI properties (default `SEIFilm()`).

    Example:
        >>> lithium_lost(100e-9, jaxcell.load_parameters("Chen2020"))
    """
    film = SEIFilm() if film is None else film
    _check_thickness(thickness, params, film, "lithium_lost")
    grown = jnp.asarray(thickness) - film.initial_thickness
    return (
        film.lithium_per_sei
        * grown
        * sei_surface_area(params)
        / film.partial_molar_volume
    )


def capacity_fade(thickness, params: ParameterSet, film: SEIFilm | None = None):
    """Capacity lost to SEI growth, Q_lost = F n_Li / 3600 [A.h].

    Every mole of lithium bound in the film is a mole the cell can no longer cycle. Chen2020
    with the default film: 1.88 mA.h per nm of growth (5 A.h cell). Bounded by the lithium
    inventory F n_inv / 3600 (5.25 A.h for Chen2020): thicker films raise `ValueError`.

    Example:
        >>> capacity_fade(100e-9, jaxcell.load_parameters("Chen2020"))  # about 0.18 A.h
    """
    film = SEIFilm() if film is None else film
    _check_thickness(thickness, params, film, "capacity_fade")
    return F * lithium_lost(thickness, params, film) / 3600.0


def film_resistance(thickness, params: ParameterSet, film: SEIFilm | None = None):
    """Ohmic resistance of the whole SEI film, R_SEI = rho_SEI L / S [Ohm].

    The film covers the particle surface S = a_n L_n A in parallel, so its resistance is the
    area-specific resistance rho_SEI L [Ohm.m2] over S (equivalently L / (sigma_SEI a_n L_n
    A) with sigma_SEI = 1/rho_SEI). Chen2020 with the default film: 0.06 mOhm per nm.

    Example:
        >>> film_resistance(100e-9, jaxcell.load_parameters("Chen2020"))  # about 6 mOhm
    """
    film = SEIFilm() if film is None else film
    return film.resistivity * jnp.asarray(thickness) / sei_surface_area(params)


def aged_parameters(
    params: ParameterSet, thickness, film: SEIFilm | None = None
) -> ParameterSet:
    """Parameters of cells aged to SEI thickness `thickness`: a batched `ParameterSet`.

    Two changes, both documented in docs/ageing.md:

    - lost lithium lowers the lithium inventory: "Initial concentration in negative electrode
      [mol.m-3]" falls by n_Li / (eps_s,n L_n A) (the cell starts from the same charged state
      of the positive electrode, with the lost lithium missing from the negative);
    - the film resistance R_SEI = rho_SEI L / S is added to "Contact resistance [Ohm]" (the
      electrochemical models have no SEI film of their own).

    Args:
        params: fresh cell parameters, one cell or a batch of n cells.
        thickness: SEI thickness of each cell [m], shape (n,) (a scalar gives one cell).
        film: SEI properties (default `SEIFilm()`).

    Raises `ValueError` (naming the cell) if the lost lithium would empty the negative
    electrode, i.e. the concentration would leave (0, c_max); for traced thicknesses the
    same check is an `eqx.error_if` at run time.

    Example:
        >>> aged = aged_parameters(p, jnp.array([5e-9, 100e-9, 200e-9]))
        >>> sols = jaxcell.simulate_batch(jaxcell.SPM(), aged, "Discharge at 1C until 2.5 V")
    """
    film = SEIFilm() if film is None else film
    L = jnp.asarray(thickness, dtype=jnp.float64)
    volume = (
        params["Negative electrode active material volume fraction"]
        * params["Negative electrode thickness [m]"]
        * electrode_area(params)
    )
    # concentration drop per metre of film growth [mol.m-4]
    drop = (
        film.lithium_per_sei
        * sei_surface_area(params)
        / (film.partial_molar_volume * volume)
    )
    c0, c_max = params[_C_NEG], params[_C_MAX]
    c = c0 - drop * (L - film.initial_thickness)
    bad = (c <= 0) | (c >= c_max)
    if isinstance(c, jax.core.Tracer):
        c = eqx.error_if(
            c, bad, "SEI thickness outside the range the lithium inventory allows."
        )
    elif np.any(bad):
        shape = np.shape(bad)
        i = np.unravel_index(int(np.flatnonzero(bad)[0]), shape) if shape else ()
        pick = lambda x: float(np.broadcast_to(np.asarray(x), shape)[i])
        lo = film.initial_thickness - (pick(c_max) - pick(c0)) / pick(drop)
        hi = film.initial_thickness + pick(c0) / pick(drop)
        where = f" of cell {i[0] if len(i) == 1 else i}" if shape else ""
        raise ValueError(
            f"SEI thickness {pick(L):.4g} m{where} would put '{_C_NEG}' at {pick(c):.4g} "
            f"outside (0, {pick(c_max):.6g}): the film would consume more lithium than the "
            f"negative electrode holds. Accepted thickness: {max(lo, 0.0):.4g} m to {hi:.4g} m."
        )
    R = params.get(_R_CONTACT, 0.0) + film_resistance(L, params, film)
    return params.update({_C_NEG: c, _R_CONTACT: R}, check_already_exists=False)
