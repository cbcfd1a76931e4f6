"""Simulation-based calibration (Talts et al. 2018) of the Laplace approximation: draw parameters
from the prior, simulate data from them, fit every replicate, and check that the truth's rank
among the posterior draws is uniform and that central intervals cover it as often as they claim.

The replicates are fitted together: numpyro's potential as a function of the data, `vmap`ped
over replicates and compiled once, minimised by a damped Newton method in the unconstrained
space (Hessian by central differences of the batched gradient, as `fit_map` does for one fit).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from jax.flatten_util import ravel_pytree

from .._checks import check_int
from ._fit import _checked_start, _newton_batch, _starting_points, _strategy


def sbc_ranks(truth, draws) -> dict:
    """The rank of each replicate's true value among its posterior draws: name -> integer array
    (R,) in 0..L, from `truth` (name -> (R,)) and `draws` (name -> (R, L)). Under a calibrated
    posterior every rank is equally likely."""
    return {k: np.sum(np.asarray(draws[k]) < np.asarray(truth[k])[:, None], axis=1) for k in truth}


def rank_uniformity(ranks, n_draws: int, n_bins: int | None = None) -> dict:
    """p-value of a chi-square test of uniform ranks (0..`n_draws`) in `n_bins` equal bins (by
    default about R / 10, at most 20, and a divisor of n_draws + 1): name -> p-value."""
    out = {}
    for k, r in ranks.items():
        r = np.asarray(r)
        bins = n_bins or _bins(r.size, n_draws)
        counts = np.bincount(r * bins // (n_draws + 1), minlength=bins)
        out[k] = float(scipy.stats.chisquare(counts).pvalue)
    return out


def _bins(n_replicates: int, n_draws: int) -> int:
    target = max(2, min(20, n_replicates // 10))
    divisors = [b for b in range(2, n_draws + 2) if (n_draws + 1) % b == 0]
    return min(divisors, key=lambda b: abs(b - target)) if divisors else target


def interval_coverage(truth, draws, level: float = 0.9) -> dict:
    """Share of replicates whose central `level` interval of the L draws holds the truth. The
    interval runs between order statistics of the draws: the truth is inside when its rank is
    at least k = round((1 - level) / 2 (L + 1)) and below L + 1 - k, which a calibrated
    posterior gives with probability `level` exactly when (1 - level) / 2 (L + 1) is a whole
    number (L = 99 for 90 %); interpolated quantiles of few draws would cover less than
    `level` even then (about 88.5 % for 99 draws)."""
    out = {}
    for k, r in sbc_ranks(truth, draws).items():
        L = np.asarray(draws[k]).shape[1]
        lo = int(round((1 - level) / 2 * (L + 1)))
        out[k] = float(np.mean((r >= lo) & (r < L + 1 - lo)))
    return out


@dataclasses.dataclass(frozen=True)
class SBCResult:
    """Simulation-based calibration of `n_replicates` fits.

    Attributes:
        truth: name -> (R,) the parameters the data were simulated from (prior draws).
        data: (R, ...) the simulated observations.
        ranks: name -> (R,) the truth's rank among `n_draws` posterior draws.
        converged: (R,) whether each replicate's fit converged (the ranks use only these).
        p_values: name -> chi-square p-value of uniform ranks.
        coverage: name -> share of converged replicates whose central 90 % interval holds the truth.
        modes: name -> (R,) each replicate's maximum a posteriori point.
        means, sds: name -> (R,) the means and standard deviations of its draws.
        pareto_k: (R,) the Pareto k of each replicate's importance weights (None without
            importance sampling).
    """

    truth: dict
    data: np.ndarray
    ranks: dict
    n_draws: int
    converged: np.ndarray
    p_values: dict
    coverage: dict
    modes: dict
    means: dict
    sds: dict
    pareto_k: np.ndarray | None = None

    @property
    def names(self) -> tuple:
        return tuple(self.ranks)

    def table(self):
        """One row per parameter: converged replicates, the uniformity p-value, the 90 %
        coverage and its binomial standard error (pandas DataFrame)."""
        import pandas as pd

        n = int(self.converged.sum())
        se = np.sqrt(0.9 * 0.1 / max(n, 1))
        return pd.DataFrame(
            [{"parameter": k, "replicates": n, "rank p-value": self.p_values[k], "coverage 90%": self.coverage[k],
              "coverage se": se} for k in self.names]
        ).set_index("parameter")

    def plot(self, path=None, n_bins: int | None = None):
        """Rank histograms, one panel per parameter, with the band that 99 % of the bins of a
        uniform histogram stay in (binomial). Returns the figure; saves it to `path` if given."""
        import matplotlib.pyplot as plt

        n = int(self.converged.sum())
        bins = n_bins or _bins(n, self.n_draws)
        fig, axes = plt.subplots(1, len(self.names), figsize=(3.2 * len(self.names), 2.8), squeeze=False)
        lo, hi = scipy.stats.binom.ppf([0.005, 0.995], n, 1 / bins)
        for ax, k in zip(axes[0], self.names):
            counts = np.bincount(self.ranks[k] * bins // (self.n_draws + 1), minlength=bins)
            ax.axhspan(lo, hi, color="0.85", label="99 % of uniform")
            ax.bar(np.arange(bins), counts, width=1.0, color="C0", edgecolor="white")
            ax.set_title(f"{_short(k)}\np = {self.p_values[k]:.2f}, 90 % cover {self.coverage[k]:.0%}", fontsize=8)
            ax.set_xlabel("rank bin")
        axes[0][0].set_ylabel("replicates")
        axes[0][0].legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


def _short(name: str) -> str:
    return name.split(" [")[0]


def calibrate(model, *args, n_replicates: int = 100, n_draws: int = 99, observed: str = "observed",
              site: str = "V", key=None, init=None, importance: int = 0, progress_bar: bool = True,
              **kwargs) -> SBCResult:
    """Simulation-based calibration of the Laplace approximation of the numpyro `model`
    (called as model(*args, **kwargs, observed=data); `site` is its observed sample site).

    1. `n_replicates` draws of the parameters and of the data from the prior predictive (one
       vmapped, compiled simulation of all replicates);
    2. every replicate's maximum a posteriori point and Laplace approximation, all replicates
       at once (damped Newton; `init`: name -> starting value in natural units, default the
       priors' medians);
    3. `n_draws` draws from each replicate's approximation; the truth's rank among them, a
       chi-square test of uniform ranks and the coverage of central 90 % intervals, over the
       replicates whose fit converged.

    `importance`: with M > 0, the draws are corrected by importance sampling
    (`importance_resample`): M proposals per replicate from a Student-t around the Laplace
    Gaussian, weighted by the exact posterior, Pareto-smoothed, and `n_draws` resampled; the
    potential is evaluated at every proposal (M solves per replicate). `SBCResult.pareto_k`
    then holds each replicate's Pareto k (above 0.7 the weights are unreliable).

    Example:
        >>> res = calibrate(cell_model, jaxcell.SPMe(), p, exp, t, priors=priors, n_replicates=100)
        >>> res.table(); res.plot("sbc.png")
    """
    from numpyro.infer import Predictive

    if n_replicates < 2 or n_draws < 1:
        raise ValueError(f"n_replicates must be at least 2 and n_draws at least 1, got {n_replicates} and {n_draws}.")
    key = jax.random.key(0) if key is None else key
    k_prior, k_init, k_draw = jax.random.split(key, 3)
    prior = Predictive(model, num_samples=n_replicates, parallel=True)(k_prior, *args, **{**kwargs, observed: None})
    if site not in prior:
        raise ValueError(f"the model has no sample site {site!r} to simulate data from (sites: {sorted(prior)}).")
    data = prior[site]

    fit = _batched_fit(model, args, {**kwargs, observed: data[0]}, lambda y: (args, {**kwargs, observed: y}), data,
                       k_init, init, progress_bar)
    converged = fit.converged
    truth = {k: np.asarray(prior[k]) for k in fit.names}
    if importance:
        zs, pareto_k = importance_resample(fit.potential, fit.z, fit.hessian, importance, n_draws, k_draw,
                                           progress_bar=progress_bar)
        draws, means, sds = _natural_draws(fit.natural, zs, np.all(np.isfinite(zs), axis=(1, 2)))
    else:
        draws, means, sds = _laplace_draws(fit.natural, fit.z, fit.hessian, n_draws, k_draw)
        pareto_k = None
    kept_truth = {k: v[converged] for k, v in truth.items()}
    kept_draws = {k: v[converged] for k, v in draws.items()}
    ranks = sbc_ranks(kept_truth, kept_draws)
    return SBCResult(
        truth=truth, data=np.asarray(data), ranks=ranks, n_draws=n_draws, converged=converged,
        p_values=rank_uniformity(ranks, n_draws), coverage=interval_coverage(kept_truth, kept_draws),
        modes=fit.modes, means=means, sds=sds, pareto_k=pareto_k,
    )


@dataclasses.dataclass(frozen=True)
class _BatchedFit:
    names: tuple
    z: np.ndarray  # (B, d) unconstrained optima
    value: np.ndarray  # (B,) the potential there
    hessian: np.ndarray  # (B, d, d)
    converged: np.ndarray  # (B,)
    natural: object  # z (d,) -> name -> value in natural units
    modes: dict  # name -> (B,) the optima in natural units
    potential: object  # (z (B, m, d), batch) -> the potential at every row's m points (B, m)


def _batched_fit(model, args0, kwargs0, bind, batch, key, init, progress_bar) -> _BatchedFit:
    """MAP points of `model` for every element of `batch` at once: `bind(b)` gives the model's
    (args, kwargs) for one element b (a traced slice of `batch`), (args0, kwargs0) those of the
    first element, concrete, for numpyro's initial trace. numpyro's potential is vmapped over the
    batch and compiled once; `_newton_batch` minimises it from the priors' medians (or `init`,
    name -> value in natural units)."""
    from numpyro.infer.util import potential_energy

    (start,), to_natural = _starting_points(model, [key], args0, kwargs0, init)
    names = tuple(start)
    unravel = ravel_pytree(start)[1]

    def natural(z):
        values = to_natural(unravel(z))
        return {k: values[k] for k in names}

    def potential(z, b):
        a, kw = bind(b)
        return potential_energy(model, a, kw, unravel(z))

    value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(potential)))
    batch = jax.tree.map(jnp.asarray, batch)
    n = jax.tree.leaves(batch)[0].shape[0]
    # numpyro's search where the first element's potential is not finite at the start, as given the model
    start = _checked_start(start, lambda z: value_and_grad(jnp.tile(ravel_pytree(z)[0], (n, 1)), batch)[0][0], model,
                           key, args0, kwargs0, _strategy(init))
    z0 = np.tile(np.asarray(ravel_pytree(start)[0], float), (n, 1))
    z, value, H, _, converged = _newton_batch(lambda z_: _host(value_and_grad(jnp.asarray(z_), batch)), z0, progress_bar)
    modes = {k: np.asarray(v) for k, v in jax.vmap(natural)(jnp.asarray(z)).items()}
    at_points = jax.jit(jax.vmap(jax.vmap(potential, (0, None)), (0, 0)))
    return _BatchedFit(names, z, value, H, converged, natural, modes, lambda zs: np.asarray(at_points(jnp.asarray(zs), batch)))


def _host(out):
    value, grad = out
    return np.asarray(value, float), np.asarray(grad, float)


def _laplace_draws(natural, z, H, n_draws, key):
    """n_draws from each row's Gaussian N(z, H^-1) in the unconstrained space, in natural units:
    name -> (R, n_draws); and the draws' means and standard deviations."""
    R, d = z.shape
    eps = np.asarray(jax.random.normal(key, (R, n_draws, d)))
    ok, chol = _laplace_factor(H)
    return _natural_draws(natural, z[:, None, :] + np.einsum("rij,rnj->rni", chol, eps), ok)


def _laplace_factor(H):
    """Where each row's Hessian (R, d, d) is positive definite, and the Cholesky factor of its
    inverse, the Laplace covariance (of the identity where it is not). A Hessian that is not
    finite (a solve failed next to that fit's point) is not positive definite."""
    ok = _positive_definite(H)
    return ok, np.linalg.cholesky(np.linalg.inv(np.where(ok[:, None, None], H, np.eye(H.shape[-1]))))


def _positive_definite(H):
    """Which rows' Hessians (R, d, d) are finite and positive definite (numpy's eigensolver
    raises on a non-finite one, so those are not asked)."""
    finite = np.all(np.isfinite(H), axis=(1, 2))
    return finite & np.all(np.linalg.eigvalsh(np.where(finite[:, None, None], H, np.eye(H.shape[-1]))) > 0, axis=1)


def _natural_draws(natural, zs, ok):
    draws = {k: np.asarray(v) for k, v in jax.jit(jax.vmap(jax.vmap(natural)))(jnp.asarray(zs)).items()}
    draws = {k: np.where(ok[:, None], v, np.nan) for k, v in draws.items()}
    return draws, {k: v.mean(axis=1) for k, v in draws.items()}, {k: v.std(axis=1, ddof=1) for k, v in draws.items()}


def student_t_proposals(k_eps, k_chi, z, chol, n: int, df: float):
    """n draws per row of a multivariate Student-t with `df` degrees of freedom around each row's
    Laplace approximation (mode z (R, d), `chol` (R, d, d) the Cholesky factor of its
    covariance), from the keys of its normal and chi-square parts: (draws (R, n, d), their log
    density up to a constant per row (R, n))."""
    R, d = z.shape
    eps = np.asarray(jax.random.normal(k_eps, (R, n, d)))
    scale = np.sqrt(df / np.asarray(jax.random.chisquare(k_chi, df, (R, n))))
    zs = z[:, None, :] + np.einsum("rij,rnj->rni", chol, eps * scale[..., None])
    m2 = np.sum((eps * scale[..., None]) ** 2, axis=-1)
    return zs, -0.5 * (df + d) * np.log1p(m2 / df)


def potential_in_chunks(potential, zs, chunk: int, desc: str, progress_bar: bool):
    """`potential(zs (R, m, d))` -> (R, m) on all of zs (R, n, d), min(chunk, n) points of every
    row per call, always that number (the last call's padded by repeating its final point), so
    that a compiled, vmapped potential is compiled once."""
    from tqdm.auto import tqdm

    n = zs.shape[1]
    chunk = min(chunk, n)

    def at(i):
        part = zs[:, i:i + chunk]
        pad = chunk - part.shape[1]
        return np.asarray(potential(np.concatenate([part, np.repeat(part[:, -1:], pad, axis=1)], axis=1)))[:, :chunk - pad]

    return np.concatenate([at(i) for i in tqdm(range(0, n, chunk), desc=desc, disable=not progress_bar)], axis=1)


def importance_resample(potential, z, H, n_proposals: int, n_draws: int, key, *, df: float = 5.0,
                        chunk: int = 25, progress_bar: bool = False):
    """Draws from each row's exact posterior by Pareto-smoothed importance sampling around its
    Laplace approximation (z (R, d), Hessian H (R, d, d) of the potential, the negative log
    density, in the unconstrained space): `n_proposals` proposals from a multivariate Student-t
    with `df` degrees of freedom and the Laplace covariance (heavier tails than the posterior's,
    as importance sampling needs), log weights -potential - log proposal, smoothed by arviz's
    PSIS, and `n_draws` resampled by those weights. `potential(zs (R, m, d))` -> (R, m) gives
    the potential at m points of every row; it is called on `chunk` proposals at a time, always
    the same number (the last call's padded by repeating its final proposal).
    Returns (draws (R, n_draws, d), pareto_k (R,)): NaN draws and k = inf where the Hessian is
    not positive definite."""
    from arviz import psislw

    check_int(n_proposals, "n_proposals (importance sampling's proposals)", 2)
    check_int(n_draws, "n_draws")
    check_int(chunk, "chunk")
    if not (np.isfinite(df) and df > 0):
        raise ValueError(f"df (the Student-t proposal's degrees of freedom) must be positive, got {df!r}.")
    ok, chol = _laplace_factor(H)
    k_eps, k_chi, k_pick = jax.random.split(key, 3)
    zs, log_q = student_t_proposals(k_eps, k_chi, z, chol, n_proposals, df)
    U = potential_in_chunks(potential, zs, chunk, "importance weights", progress_bar)
    log_w = np.where(np.isfinite(U), -U - log_q, -np.inf)
    ok &= np.isfinite(log_w).any(axis=1)
    log_w = np.where(ok[:, None], log_w - log_w.max(axis=1, keepdims=True), 0.0)
    smoothed, pareto_k = psislw(log_w)
    w = np.exp(smoothed - smoothed.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(k_pick)).ravel())
    pick = np.stack([rng.choice(n_proposals, n_draws, p=wr) for wr in w])
    draws = np.take_along_axis(zs, pick[..., None], axis=1)
    return np.where(ok[:, None, None], draws, np.nan), np.where(ok, np.asarray(pareto_k, float), np.inf)
