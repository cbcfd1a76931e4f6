"""Simulation-based calibration: the batched Laplace fits against a conjugate Gaussian model's
exact posterior, rank uniformity and coverage where the posterior is exact, and the checks
rejecting a posterior that is too narrow or biased. No cell is simulated here (the SPMe's
calibration is `benchmarks/sbc_spme.py`)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from jaxcell.inference import calibrate, interval_coverage, rank_uniformity, sbc_ranks

SCALE = np.array([0.7] * 4 + [0.3] * 4)
PRIOR = {"mu": (1.0, 2.0), "nu": (-1.0, 0.5)}


def gaussian(observed=None):
    """mu and nu with Gaussian priors; four observations of mu, four of mu + nu."""
    mu = numpyro.sample("mu", dist.Normal(*PRIOR["mu"]))
    nu = numpyro.sample("nu", dist.Normal(*PRIOR["nu"]))
    loc = jnp.concatenate([jnp.full(4, mu), jnp.full(4, mu + nu)])
    numpyro.sample("y", dist.Normal(loc, SCALE).to_event(1), obs=observed)


def exact_posterior(y):
    """The conjugate posterior's mean and covariance of (mu, nu) given one replicate's y."""
    A = np.zeros((8, 2))
    A[:, 0] = 1.0
    A[4:, 1] = 1.0
    m0 = np.array([PRIOR["mu"][0], PRIOR["nu"][0]])
    P0 = np.diag([PRIOR["mu"][1] ** -2, PRIOR["nu"][1] ** -2])
    W = np.diag(SCALE**-2)
    cov = np.linalg.inv(P0 + A.T @ W @ A)
    return cov @ (P0 @ m0 + A.T @ W @ y), cov


@pytest.fixture(scope="module")
def sbc():
    return calibrate(gaussian, n_replicates=300, n_draws=99, site="y", key=jax.random.key(4), progress_bar=False)


def test_batched_fits_reach_the_exact_posterior(sbc):
    """Every replicate converges, at the conjugate posterior's mean (1e-6), and its draws have
    the exact standard deviations (within their Monte Carlo error, 99 draws: 4 standard errors)."""
    assert sbc.converged.all()
    for i in range(5):
        mean, cov = exact_posterior(sbc.data[i])
        np.testing.assert_allclose([sbc.modes["mu"][i], sbc.modes["nu"][i]], mean, rtol=1e-6, atol=1e-8)
        sd = np.sqrt(np.diag(cov))
        for j, k in enumerate(("mu", "nu")):
            assert abs(sbc.sds[k][i] / sd[j] - 1) < 4 / np.sqrt(2 * 98), (k, i)


def test_exact_posterior_is_calibrated(sbc):
    """Where the Laplace approximation is the exact posterior, ranks are uniform (chi-square
    p-value above 0.001) and the 90 % intervals cover the truth within three binomial standard
    errors (300 replicates: 0.017)."""
    table = sbc.table()
    for k in ("mu", "nu"):
        assert sbc.p_values[k] > 1e-3, (k, sbc.p_values[k])
        assert abs(sbc.coverage[k] - 0.9) < 3 * np.sqrt(0.09 / 300), (k, sbc.coverage[k])
        assert table.loc[k, "replicates"] == 300


def test_checks_reject_a_narrow_or_biased_posterior():
    """Posteriors that are too narrow (sd 0.3 of the truth's spread) or shifted by one standard
    deviation fail both checks; the right posterior passes them (same seeds)."""
    rng = np.random.default_rng(0)
    truth = {"x": rng.standard_normal(300)}
    cases = {"right": rng.standard_normal((300, 99)), "narrow": 0.3 * rng.standard_normal((300, 99)),
             "biased": 1.0 + rng.standard_normal((300, 99))}
    for name, d in cases.items():
        ranks = sbc_ranks(truth, {"x": d})
        p, cover = rank_uniformity(ranks, 99)["x"], interval_coverage(truth, {"x": d})["x"]
        if name == "right":
            assert p > 1e-3 and abs(cover - 0.9) < 0.06, (name, p, cover)
        else:
            assert p < 1e-6 and cover < 0.8, (name, p, cover)


def test_calibrate_names_a_missing_site():
    with pytest.raises(ValueError, match="no sample site 'V'"):
        calibrate(gaussian, n_replicates=4, site="V", progress_bar=False)
