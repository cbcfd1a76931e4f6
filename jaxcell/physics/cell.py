"""Cell-level geometry and bookkeeping shared by every model."""

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


def open_circuit_potential(domain, sto, T, p):
    """Electrode OCP [V] at stoichiometry `sto` and temperature `T` [K], with the entropic term
    (T - T_ref) dU/dT."""
    D = domain.capitalize()
    U = p.evaluate(f"{D} electrode OCP [V]", sto)
    dUdT = p.evaluate(f"{D} electrode OCP entropic change [V.K-1]", sto)
    return U + (T - p["Reference temperature [K]"]) * dUdT


STO_EPS = 1e-9


def clip_stoichiometry(sto):
    """Keep a stoichiometry inside (0, 1) where it enters square roots and logs."""
    return jnp.clip(sto, STO_EPS, 1.0 - STO_EPS)
