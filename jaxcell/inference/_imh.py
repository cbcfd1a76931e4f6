"""Independence Metropolis-Hastings around a MAP fit's Laplace approximation.

Every proposal is drawn from one fixed distribution (a Student-t around the Laplace
approximation), independent of the chain's state, so all of them can be weighed before any is
accepted: the potential at every proposal of every chain is one batched forward solve, as a
population is simulated, and the Metropolis-Hastings chains that follow cost nothing. No
gradient is taken. Where the Laplace approximation is close to the posterior, most proposals
are accepted and the draws are nearly independent; where it is not, the acceptance rate falls
and the effective sample size says so.
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import numpy as np

from .._checks import check_int
from ._calibration import potential_in_chunks, student_t_proposals
from ._fit import MAPResult

# proposals whose potentials one call of the vmapped forward solve evaluates: on PyBOP's
# sampling example (an SPM) 1000 gave 3960 solves/s on 2 cores against 2850 with 250
CHUNK = 1000
# share of failed proposals above which run_imh warns
FAILED_SHARE = 0.1


@dataclasses.dataclass(frozen=True)
class IMHResult:
    """Draws of `run_imh`: chains of independence Metropolis-Hastings.

    Attributes:
        z: (chains, draws, d) the kept states in the unconstrained space.
        acceptance: (chains,) the share of the proposals made from each chain's kept states that
            were accepted (NaN where there were none).
        failed: how many proposals had a potential that was not finite (a solve that failed
            there): never accepted.
        pareto_k: the Pareto k of all proposals' weights (posterior / proposal): below 0.7 the
            proposal covers the posterior's tails; above it, parts of the posterior the
            proposal rarely reaches are missed or sampled by chains stuck there, which the
            effective sample size does not show. NaN for fewer than 10 proposals.
        names: the sampled sites.
    """

    z: np.ndarray
    acceptance: np.ndarray
    failed: int
    pareto_k: float
    names: tuple
    _natural: object = dataclasses.field(repr=False)

    def get_samples(self, group_by_chain: bool = False) -> dict:
        """name -> draws in natural units: (chains, draws, ...) with `group_by_chain`, else the
        chains concatenated (chains * draws, ...); as numpyro's `MCMC.get_samples`."""
        c, n, d = self.z.shape
        draws = self._natural(self.z.reshape(c * n, d))
        if group_by_chain:
            return {k: v.reshape((c, n) + v.shape[1:]) for k, v in draws.items()}
        return draws


def run_imh(fit: MAPResult, *, key=None, num_samples: int = 1000, num_chains: int = 4, num_warmup: int = 100,
            df: float = 5.0, chunk: int = CHUNK, progress_bar: bool = True) -> IMHResult:
    """Independence Metropolis-Hastings from the exact posterior of a converged `fit_map` result.

    Each chain proposes from a multivariate Student-t (`df` degrees of freedom) with the
    Laplace approximation's mode and covariance, and accepts a proposal z' from state z with
    probability min(1, w(z') / w(z)), w = posterior / proposal density. The proposals do not
    depend on the state, so the potential at all num_chains x (num_warmup + num_samples) of
    them is evaluated first, `chunk` at a time in the fit's compiled, vmapped potential (a
    batch of forward solves, no gradient; compiled once per model, data shapes and `chunk`
    where the model's arguments allow, as `fit_map`'s gradient is), with a progress bar; the
    chains then run on those weights. The Student-t's tails are heavier than a Gaussian posterior's, so the weights are
    bounded and the chains converge whatever the start; each chain starts at its first proposal
    whose potential is finite, and its first `num_warmup` states are dropped.

    Fast where the Laplace approximation is close to the posterior: the acceptance rate (in
    the result) is then high and successive draws nearly independent. Where the posterior is
    skewed or heavy-tailed beyond the Student-t, the acceptance falls and the draws repeat:
    `diagnostics(result)` gives the effective sample size and split R-hat over the chains
    (numpyro's estimators, as for NUTS), which show it; use `run_nuts` there.

    A proposal whose potential is not finite (a solve that failed there) is never accepted and
    is counted in `result.failed`.

    Example:
        >>> res = fit_map(cell_model, model, p, exp, t, v, priors=priors)
        >>> draws = run_imh(res, num_chains=8, num_samples=1000)
        >>> diagnostics(draws)
    """
    if not isinstance(fit, MAPResult) or fit._potential is None:
        raise TypeError(f"run_imh needs a fit_map result (MAPResult), got {type(fit).__name__}.")
    if not fit.converged:
        raise ValueError(f"run_imh: the MAP fit did not converge ({fit.message}); its Laplace approximation "
                         "cannot be the proposal. Fit again (more steps, other starts) or use run_nuts.")
    for name, value, low in (("num_samples", num_samples, 1), ("num_chains", num_chains, 1),
                             ("num_warmup", num_warmup, 0), ("chunk", chunk, 1)):
        check_int(value, f"run_imh: {name}", low)
    if not (np.isfinite(df) and df > 0):
        raise ValueError(f"run_imh: df (the Student-t's degrees of freedom) must be positive, got {df!r}.")
    key = jax.random.key(0) if key is None else key
    k_eps, k_chi, k_u = jax.random.split(key, 3)
    chol = fit._cholesky()  # refuses a Hessian that is not positive definite
    n = num_warmup + num_samples
    # the chains' proposals as rows of one batch: (1, chains * n, d)
    zs, log_q = student_t_proposals(k_eps, k_chi, fit.unconstrained[None], chol[None], num_chains * n, df)
    U = potential_in_chunks(lambda z: np.asarray(fit._potential(z[0]))[None], zs, chunk, "potential at proposals",
                            progress_bar)
    zs, log_q, U = zs.reshape(num_chains, n, -1), log_q.reshape(num_chains, n), U.reshape(num_chains, n)
    log_w = np.where(np.isfinite(U), -U - log_q, -np.inf)
    log_u = np.log(np.asarray(jax.random.uniform(k_u, (num_chains, n))))
    empty = ~np.isfinite(log_w).any(axis=1)
    if empty.any():
        raise ValueError(f"run_imh: the potential was not finite at any of the {n} proposals of chain(s) "
                         f"{np.flatnonzero(empty).tolist()} ({int(np.sum(~np.isfinite(U)))} of {U.size} proposals "
                         "failed in all): check the model at the fit's point, or take more draws.")
    state, accepted, transition = _chains(log_w, log_u)
    kept = state[:, num_warmup:]
    z = np.take_along_axis(zs, kept[..., None], axis=1)
    pareto_k = _pareto_k(log_w.reshape(-1))
    failed = int(np.sum(~np.isfinite(U)))
    if failed > FAILED_SHARE * U.size:  # the Pareto k sees only the finite weights
        warnings.warn(f"run_imh: {failed} of {U.size} proposals failed (their potential is not finite: the solve failed "
                      "there) and were not accepted, each keeping its chain where it was: the Student-t proposes far into "
                      "where the model fails, which the Pareto k (of the finite weights) does not show. Check the "
                      "acceptance and effective sample size; a larger df proposes less far.", stacklevel=2)
    if pareto_k > 0.7:
        warnings.warn(f"run_imh: the proposals' importance weights have Pareto k {pareto_k:.2f}, above 0.7: the "
                      "posterior reaches where the Laplace approximation's Student-t rarely proposes, and the chains "
                      "may miss or stick in those parts whatever their effective sample size; use run_nuts, or a "
                      "smaller df.", stacklevel=2)
    steps = transition[:, num_warmup:].sum(axis=1)  # the moves the kept states were proposed by
    with np.errstate(invalid="ignore"):
        acceptance = np.where(steps > 0, accepted[:, num_warmup:].sum(axis=1) / np.maximum(steps, 1), np.nan)
    return IMHResult(z=z, acceptance=acceptance, failed=failed,
                     pareto_k=pareto_k, names=fit.names, _natural=fit._natural)


def _pareto_k(log_w) -> float:
    """The Pareto k of importance weights exp(log_w) (arviz's PSIS) over the finite ones (a
    failed proposal has none to fit). NaN for fewer than 10 of them: too few to fit a tail to."""
    from arviz import psislw

    finite = log_w[np.isfinite(log_w)]
    if finite.size < 10:
        return float("nan")
    return float(psislw((finite - finite.max())[None])[1][0])


def _chains(log_w, log_u):
    """Independence Metropolis-Hastings on precomputed log weights (chains, n), each row with at
    least one finite weight: each chain starts at its first proposal of finite weight (earlier
    ones, whose potential failed, are not states) and at each later step j moves to proposal j
    when log_u[:, j] < log_w[:, j] minus the current state's log weight; a failed proposal (-inf)
    is never taken. Returns (the index of the state at each step, whether step j moved, whether
    step j was a move proposed from a state, i.e. j after the chain's start)."""
    c, n = log_w.shape
    start = np.argmax(np.isfinite(log_w), axis=1)
    state = np.broadcast_to(start[:, None], (c, n)).copy()
    accepted = np.zeros((c, n), dtype=bool)
    transition = np.arange(n)[None, :] > start[:, None]
    current, w = start.copy(), log_w[np.arange(c), start]
    for j in range(1, n):
        move = transition[:, j] & (log_w[:, j] > -np.inf) & (log_u[:, j] < log_w[:, j] - w)
        current = np.where(move, j, current)
        w = np.where(move, log_w[:, j], w)
        state[:, j], accepted[:, j] = current, move
    return state, accepted, transition
