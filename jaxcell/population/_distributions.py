"""Standard distributions of a parameter's deviation, the Student-t CDF and quantile, and the
truncated Gaussian's quantile in a parameter's own units.

Except for `truncated_normal_quantile`, everything here works on the *standardised* deviation
(unit scale); `_sample.py` multiplies by each level's scale. Quantile functions take a pair ``(u, u_c)`` with ``u_c = 1 - u`` computed
separately, so that both tails keep full float64 precision (``1 - u`` rounds to 0 for ``u``
within 1e-16 of 1, which would cut the upper tail at about 8 standard deviations).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betainc, gammaln, ndtr, ndtri

# Newton iterations of the Student-t quantile; 4 already reach about 1e-13 relative error
# against scipy over df in [0.3, 1e3] and lower-tail probabilities in [1e-300, 0.5].
T_QUANTILE_ITERS = 6
TINY = float(np.finfo(np.float64).tiny)


def normal_cdf_pair(z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(P(Z <= z), P(Z > z))`` for a standard normal ``Z``, each accurate in its own tail."""
    return ndtr(z), ndtr(-z)


def normal_quantile(u: jax.Array, u_c: jax.Array) -> jax.Array:
    """Standard normal quantile of ``u`` (``u_c = 1 - u``)."""
    return jnp.where(u < u_c, ndtri(u), -ndtri(u_c))


def _t_half_tail(t: jax.Array, df) -> jax.Array:
    """``P(T <= -|t|)`` for Student's t with `df` degrees of freedom (regularised incomplete
    beta: ``df / (df + t^2) ~ Beta(df/2, 1/2)``)."""
    x = df / (df + t * t)
    return 0.5 * betainc(0.5 * df, 0.5, x)


def t_cdf_pair(t: jax.Array, df) -> tuple[jax.Array, jax.Array]:
    """``(P(T <= t), P(T > t))`` for Student's t with `df` degrees of freedom."""
    half = _t_half_tail(t, df)
    return jnp.where(t < 0, half, 1.0 - half), jnp.where(t < 0, 1.0 - half, half)


def _t_logpdf(t, df):
    return (
        gammaln(0.5 * (df + 1.0))
        - gammaln(0.5 * df)
        - 0.5 * jnp.log(df * jnp.pi)
        - 0.5 * (df + 1.0) * jnp.log1p(t * t / df)
    )


def _t_lower_quantile(p: jax.Array, df) -> jax.Array:
    """The ``t <= 0`` with ``P(T <= t) = p`` for ``p`` in (0, 0.5].

    Newton's method on ``log F(t) = log p`` in the variable ``s = asinh(-t)``: near the centre
    ``s ~ -t`` and in the tail ``s ~ log|t|``, where ``log F`` is close to linear (a power law),
    so a handful of iterations converge everywhere. The start is the more extreme of the
    Cornish-Fisher guess (good near the centre) and the tail asymptote
    ``F(t) ~ x^(df/2) / (df B(df/2, 1/2))`` with ``x = df / (df + t^2)``, which lies between the
    answer and the centre (the asymptote underestimates ``F``).
    """
    a = 0.5 * df
    log_beta = gammaln(a) + gammaln(0.5) - gammaln(a + 0.5)
    log_x = (jnp.log(2.0 * p) + jnp.log(a) + log_beta) / a
    x = jnp.exp(jnp.minimum(log_x, 0.0))
    t_tail = -jnp.sqrt(df) * jnp.sqrt(jnp.maximum(1.0 / x - 1.0, 0.0))
    z = ndtri(p)
    t_cf = z + (z**3 + z) / (4.0 * df)
    s0 = jnp.arcsinh(-jnp.minimum(t_tail, t_cf))
    log_p = jnp.log(p)

    def newton(_, s):
        t = -jnp.sinh(s)
        log_f = jnp.log(_t_half_tail(t, df))
        slope = -jnp.exp(_t_logpdf(t, df) - log_f) * jnp.cosh(s)
        return jnp.maximum(s - (log_f - log_p) / slope, 0.0)

    t = -jnp.sinh(jax.lax.fori_loop(0, T_QUANTILE_ITERS, newton, s0))
    # p below ~1e-300 with df < 2 has a quantile beyond float64's range
    return jnp.where(jnp.isnan(t) | (p <= 0), -jnp.inf, t)


def t_quantile(u: jax.Array, u_c: jax.Array, df) -> jax.Array:
    """Quantile of Student's t with `df` degrees of freedom at ``u`` (``u_c = 1 - u``)."""
    lower = _t_lower_quantile(jnp.minimum(u, u_c), df)
    return jnp.where(u < u_c, lower, -lower)


def pareto_tail_quantile(normal_score, u_c, tail_probability, tail_index, scale):
    """Quantile of the Gaussian body with a power-law (Pareto) upper tail, in log space.

    Below probability ``1 - p`` (``p = tail_probability``) it is ``scale * z`` with ``z`` the
    standard normal quantile; above, the exponential tail
    ``scale * z_p + log(p / u_c) / tail_index`` continues it (``z_p`` is the normal quantile at
    ``1 - p``), so ``P(d > scale * z_p + c) = p exp(-tail_index c)``: in the original space,
    ``x = center exp(d)`` has a Pareto tail ``P(X > x) ~ x^(-tail_index)``.
    """
    z_p = -ndtri(tail_probability)
    tail = scale * z_p + jnp.log(tail_probability / u_c) / tail_index
    return jnp.where(u_c > tail_probability, scale * normal_score, tail)


def truncated_normal_quantile(u, u_c, loc, scale, low, high):
    """Quantile at ``u`` (``u_c = 1 - u``) of the Gaussian ``N(loc, scale^2)`` truncated to
    ``(low, high)`` (either may be infinite), in the parameter's own units.

    numpyro's ``TruncatedNormal`` computes the quantile from the lower tail only, so above the
    median it would lose the upper tail to ``1 - u`` rounding; there the mirror image (the
    Gaussian truncated to ``(2 loc - high, 2 loc - low)``, reflected about `loc`) is evaluated at
    ``u_c`` instead. The result is moved inside ``(low, high)`` by at most rounding error, so a
    value never equals a bound.
    """
    from numpyro.distributions import Normal
    from numpyro.distributions.truncated import TwoSidedTruncatedDistribution

    def icdf(q, lo, hi):
        return TwoSidedTruncatedDistribution(Normal(loc, scale), lo, hi).icdf(q)

    lower_half = icdf(jnp.minimum(u, u_c), low, high)
    upper_half = 2.0 * loc - icdf(jnp.minimum(u, u_c), 2.0 * loc - high, 2.0 * loc - low)
    x = jnp.where(u <= u_c, lower_half, upper_half)
    # the neighbours of the bounds; TINY keeps them normal numbers (XLA flushes subnormals to 0)
    inside_low = jnp.maximum(jnp.nextafter(low, jnp.inf), low + TINY)
    inside_high = jnp.minimum(jnp.nextafter(high, -jnp.inf), high - TINY)
    return jnp.clip(x, inside_low, inside_high)


def truncate_uniform_pair(u, u_c, cdf_low, cdf_high):
    """Map a uniform pair ``(u, 1 - u)`` onto the probabilities of a distribution truncated to
    ``(low, high)``: ``(F(low) + u m, 1 - F(high) + u_c m)`` with ``m = F(high) - F(low)`` the
    mass kept, where ``cdf_low`` and ``cdf_high`` are ``(F, 1 - F)`` pairs at the bounds. Each
    tail is formed from its own side's probabilities, so neither loses precision."""
    mass = jnp.where(
        cdf_low[0] < cdf_high[1], cdf_high[0] - cdf_low[0], cdf_low[1] - cdf_high[1]
    )
    return cdf_low[0] + u * mass, cdf_high[1] + u_c * mass
