"""Cell-level geometry and bookkeeping shared by every model."""

import jax
import jax.numpy as jnp


def electrode_area(p):
    """Total electrode-pair area [m2]: height x width x number of parallel electrode pairs."""
    return (
        p["Electrode height [m]"]
        * p["Electrode width [m]"]
        * p["Number of electrodes connected in parallel to make a cell"]
    )


def current_density(current, p):
    """Applied current density [A.m-2] from the cell current [A] (positive for discharge)."""
    return current / electrode_area(p)


def surface_area_per_volume(domain, p):
    """Active surface area per electrode volume a = 3 eps_s / R [m-1] for spherical particles."""
    D = domain.capitalize()
    return 3.0 * p[f"{D} electrode active material volume fraction"] / p[f"{D} particle radius [m]"]


def volumetric_heat_capacity(p):
    """Thickness-weighted volumetric heat capacity of the stack, current collectors included
    [J.m-3.K-1] (the lumped model's rho c_p)."""
    parts = [
        ("Negative current collector", "Negative current collector thickness [m]"),
        ("Negative electrode", "Negative electrode thickness [m]"),
        ("Separator", "Separator thickness [m]"),
        ("Positive electrode", "Positive electrode thickness [m]"),
        ("Positive current collector", "Positive current collector thickness [m]"),
    ]
    num = 0.0
    den = 0.0
    for name, thickness in parts:
        if thickness not in p:  # e.g. BPX sets have no current collectors
            continue
        L = p[thickness]
        num = num + p[f"{name} density [kg.m-3]"] * p[f"{name} specific heat capacity [J.kg-1.K-1]"] * L
        den = den + L
    return num / den


# PyBaMM's model-level OCP keeps the stoichiometry inside [OCP_STO_TOL, 1 - OCP_STO_TOL] where
# it evaluates the set's functions (its tolerance "U__c_s"), and adds a barrier near either end
OCP_STO_TOL = 1e-10
# barrier a softplus(-b (sto - c)): 1 mV at sto = 0.001, about 1 V at sto = 0 (PyBaMM's values)
_BARRIER_A = 205.0568621937484
_BARRIER_B = 6910.192179565431
_BARRIER_C = -7.7e-4


def ocp_barrier(sto):
    """The term [V] that PyBaMM adds to every electrode OCP so that it rises steeply as the
    stoichiometry approaches 0 and falls steeply as it approaches 1 (1 mV at 0.001 from an end,
    about 1 V at the end itself, below 1e-30 V between 0.01 and 0.99). It keeps the voltage
    finite and monotonic where a particle's surface is driven past its stoichiometry window."""

    def rising(s):
        return _BARRIER_A * jax.nn.softplus(-_BARRIER_B * (s - _BARRIER_C))

    return rising(sto) - rising(1.0 - sto)


def open_circuit_potential(domain, sto, T, p):
    """Electrode OCP [V] at stoichiometry `sto` and temperature `T` [K] as the models use it
    (PyBaMM's model-level OCP): the set's OCP and entropic change dU/dT evaluated at `sto`
    clipped to [`OCP_STO_TOL`, 1 - `OCP_STO_TOL`], U + (T - T_ref) dU/dT, plus `ocp_barrier`
    of the unclipped `sto`.

    Example:
        >>> p = jaxcell.load_parameters("Chen2020")
        >>> open_circuit_potential("negative", jnp.array([0.0, 0.5]), 298.15, p)  # about [3.38, 0.13] V: 1 V of barrier at 0
    """
    D = domain.capitalize()
    s = jnp.clip(sto, OCP_STO_TOL, 1.0 - OCP_STO_TOL)
    U = p.evaluate(f"{D} electrode OCP [V]", s)
    dUdT = p.evaluate(f"{D} electrode OCP entropic change [V.K-1]", s)
    return U + (T - p["Reference temperature [K]"]) * dUdT + ocp_barrier(sto)


STO_EPS = 1e-9


def clip_stoichiometry(sto):
    """Keep a stoichiometry inside (0, 1) where it enters square roots and logs."""
    return jnp.clip(sto, STO_EPS, 1.0 - STO_EPS)
