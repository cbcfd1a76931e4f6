"""Butler-Volmer kinetics (one electron, PyBaMM's symmetric form)."""

import jax.numpy as jnp

from .constants import F, R_GAS


def butler_volmer(eta, j0, T):
    """Interfacial current density j [A.m-2] for overpotential `eta` [V] (symmetric, alpha = 0.5).

    j = 2 j0 sinh(F eta / (2 R T)); positive j is oxidation (delithiation of the particle).
    """
    return 2.0 * j0 * jnp.sinh(F * eta / (2.0 * R_GAS * T))


def overpotential(j, j0, T):
    """Reaction overpotential [V] that drives current density `j` [A.m-2]: the inverse of
    `butler_volmer`, eta = (2 R T / F) arcsinh(j / (2 j0))."""
    return 2.0 * R_GAS * T / F * jnp.arcsinh(j / (2.0 * j0))
