"""Building blocks shared by the parameter-set modules (written as jnp code)."""

import jax.numpy as jnp

from ..physics.constants import R_GAS

T_REF = 298.15  # [K] reference temperature of the published fits


def arrhenius(activation_energy, T, T_ref=T_REF):
    """Arrhenius factor exp(E/R (1/T_ref - 1/T)); 1 at T = T_ref."""
    return jnp.exp(activation_energy / R_GAS * (1.0 / T_ref - 1.0 / T))


def mass_action_exchange_current(k, c_e, c_s_surf, c_s_max):
    """k c_e^0.5 c_s^0.5 (c_max - c_s)^0.5 [A.m-2], the usual symmetric mass-action form."""
    return k * jnp.sqrt(c_e) * jnp.sqrt(c_s_surf) * jnp.sqrt(c_s_max - c_s_surf)


def sech2(x):
    """sech(x)^2 = 1/cosh(x)^2, written to neither overflow nor lose its gradient for large |x|."""
    e = jnp.exp(-2.0 * jnp.abs(x))
    return 4.0 * e / (1.0 + e) ** 2
