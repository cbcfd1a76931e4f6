"""Law of total variance: heterogeneity between cells against intrinsic fluctuation."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float


class VarianceSplit(eqx.Module):
    """Var(Q) = Var_theta(E[Q|theta]) + E_theta(Var[Q|theta]), estimated from samples.

    Attributes:
        heterogeneity: Var_theta(E[Q|theta]), the spread of the cells' expected values.
        intrinsic: E_theta(Var[Q|theta]), the mean spread of one cell's noise replicates.
        total: heterogeneity + intrinsic, an unbiased estimate of Var(Q).
        n_cells: number of theta samples M; n_replicates: noise replicates per cell K.

    Arrays have the trailing shape of the samples (e.g. one value per checkpoint), in the
    samples' units squared.
    """

    heterogeneity: Float[Array, " *shape"]
    intrinsic: Float[Array, " *shape"]
    total: Float[Array, " *shape"]
    n_cells: int = eqx.field(static=True)
    n_replicates: int = eqx.field(static=True)

    @property
    def heterogeneity_fraction(self):
        """heterogeneity / total (NaN where the total is zero)."""
        return jnp.where(
            self.total != 0,
            self.heterogeneity / jnp.where(self.total != 0, self.total, 1.0),
            jnp.nan,
        )


def variance_split(samples) -> VarianceSplit:
    """Split the variance of a quantity Q into heterogeneity and intrinsic parts.

    `samples[i, k, ...]` is replicate k of cell i: M cells with parameters theta_i drawn from
    the population, K independent noise replicates of each (a balanced one-way random-effects
    design). The estimators are unbiased for any distribution of Q:

    - intrinsic: the mean over cells of the within-cell sample variance (ddof = 1),
      E[s_w^2] = E_theta(Var[Q|theta]);
    - heterogeneity: the sample variance of the cell means (ddof = 1) less the noise that
      averaging K replicates leaves in them, s_b^2 - s_w^2 / K, since
      E[s_b^2] = Var_theta(E[Q|theta]) + E_theta(Var[Q|theta]) / K.

    The heterogeneity estimate can come out slightly negative when it is small against the
    intrinsic part; it is returned as is (clipping at zero would bias it). Where the samples
    agree to round-off (total below (16 eps max|Q|)^2, e.g. every path at the cell's lithium
    inventory) all parts are 0 and the heterogeneity fraction NaN: no spread is resolved.

    Args:
        samples: array of shape (M, K, ...) with M >= 2 and K >= 2.

    Returns:
        `VarianceSplit` with arrays of shape samples.shape[2:].

    Example:
        >>> split = variance_split(fade)  # fade: (cells, replicates, checkpoints)
        >>> split.heterogeneity_fraction[-1]
    """
    x = jnp.asarray(samples, dtype=jnp.float64)
    if x.ndim < 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(
            "variance_split needs samples of shape (cells M, replicates K, ...) with M >= 2 "
            f"and K >= 2, got shape {x.shape}."
        )
    n_cells, n_rep = x.shape[0], x.shape[1]
    within = jnp.mean(jnp.var(x, axis=1, ddof=1), axis=0)
    between = jnp.var(jnp.mean(x, axis=1), axis=0, ddof=1)
    heterogeneity = between - within / n_rep
    # samples that agree to round-off resolve no spread: their variance is the rounding of the
    # means (8e-31 for 60 equal fades of 5.25 A.h, which read as a heterogeneity share of 100 %)
    # (NaN samples stay NaN: "not at or below the floor")
    resolved = ~(heterogeneity + within <= (16 * jnp.finfo(x.dtype).eps * jnp.max(jnp.abs(x), axis=(0, 1))) ** 2)
    within, heterogeneity = jnp.where(resolved, within, 0.0), jnp.where(resolved, heterogeneity, 0.0)
    return VarianceSplit(
        heterogeneity=heterogeneity,
        intrinsic=within,
        total=heterogeneity + within,
        n_cells=n_cells,
        n_replicates=n_rep,
    )
