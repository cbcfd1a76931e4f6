"""Butler-Volmer kinetics (one electron, PyBaMM's symmetric form)."""

import jax
import jax.numpy as jnp

from .constants import F, R_GAS


@jax.custom_jvp
def arcsinh(x):
    """arcsinh(x) = sign(x) log(|x| + sqrt(1 + x^2)) for |x| below 1e150: to the last digit or
    two of max(|arcsinh x|, 1) (so within 4.4e-16 where |x| < 0.5, coarse relative to tiny
    values); its derivative is the closed form 1 / sqrt(1 + x^2), by a rule.

    The same function as `jnp.arcsinh`, written out because XLA's own takes longer on CPUs: in
    the SPMe's voltage, evaluated at every output time of a population, it was about a third of
    the time (benchmarks/README.md)."""
    a = jnp.abs(x)
    return jnp.copysign(jnp.log(a + jnp.sqrt(1.0 + a * a)), x)


@arcsinh.defjvp
def _arcsinh_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return arcsinh(x), dx / jnp.sqrt(1.0 + x * x)


def butler_volmer(eta, j0, T):
    """Interfacial current density j [A.m-2] for overpotential `eta` [V] (symmetric, alpha = 0.5).

    j = 2 j0 sinh(F eta / (2 R T)); positive j is oxidation (delithiation of the particle).
    """
    return 2.0 * j0 * jnp.sinh(F * eta / (2.0 * R_GAS * T))


def overpotential(j, j0, T):
    """Reaction overpotential [V] that drives current density `j` [A.m-2]: the inverse of
    `butler_volmer`, eta = (2 R T / F) arcsinh(j / (2 j0))."""
    return 2.0 * R_GAS * T / F * arcsinh(j / (2.0 * j0))
