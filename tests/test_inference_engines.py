"""The engines and result conversions on a conjugate model whose posterior is known in closed
form (normal mean, known noise): MAP/Laplace exact, SVI and NUTS within Monte Carlo error;
summary tables and arviz InferenceData of all three."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from jaxcell.inference import fit_map, fit_svi, run_nuts, summary_table, to_inference_data

PRIOR_SD = 10.0


def conjugate(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, PRIOR_SD))
    numpyro.sample("y", dist.Normal(mu, 1.0).expand([y.shape[0]]).to_event(1), obs=y)


@pytest.fixture(scope="module")
def data():
    y = 2.0 + np.random.default_rng(0).standard_normal(20)
    precision = 1 / PRIOR_SD**2 + y.size
    return y, y.sum() / precision, precision**-0.5  # data, exact posterior mean and sd


def test_map_laplace_is_exact(data):
    y, mean, sd = data
    res = fit_map(conjugate, y)
    assert res.converged
    np.testing.assert_allclose(float(res.params["mu"]), mean, rtol=1e-6)
    np.testing.assert_allclose(np.sqrt(res.covariance[0, 0]), sd, rtol=1e-4)
    table = summary_table(res, n=20000)
    assert list(table.columns) == ["mean", "sd", "q05", "q95"]
    assert abs(table.loc["mu", "mean"] - mean) < 4 * sd / np.sqrt(20000)
    np.testing.assert_allclose(table.loc["mu", "q95"] - table.loc["mu", "q05"], 2 * 1.6449 * sd, rtol=0.03)
    assert to_inference_data(res, n=100).posterior["mu"].shape == (1, 100)


def test_map_convergence_is_judged_by_the_newton_decrement(data):
    # BFGS given no step at all: at the prior median, eight posterior sd from the optimum: the Newton polish with the Laplace
    # Hessian (exact here: the potential is quadratic) reaches it, and the decrement says so
    y, mean, sd = data
    res = fit_map(conjugate, y, max_steps=0)
    assert res.steps == 0 and res.converged and res.decrement < 1e-2
    np.testing.assert_allclose(float(res.params["mu"]), mean, rtol=1e-6)


def test_svi_normal_guide_reaches_the_exact_posterior(data):
    y, mean, sd = data
    res = fit_svi(conjugate, y, num_steps=3000, learning_rate=0.02, num_samples=4000, progress_bar=False)
    assert res.converged
    mu = res.samples["mu"]
    assert abs(mu.mean() - mean) < 0.1 * sd + 4 * sd / np.sqrt(mu.size)
    np.testing.assert_allclose(mu.std(), sd, rtol=0.1)
    with pytest.raises(ValueError, match="guide must be one of"):
        fit_svi(conjugate, y, guide="laplace")


@pytest.mark.parametrize("chain_method, chains", [("sequential", 2), ("vectorized", 4)])
def test_nuts_table_has_r_hat_and_ess(data, chain_method, chains):
    y, mean, sd = data
    mcmc = run_nuts(conjugate, y, num_warmup=300, num_samples=500, num_chains=chains, progress_bar=False,
                    key=jax.random.key(1), chain_method=chain_method)
    table = summary_table(mcmc)
    assert list(table.columns) == ["mean", "sd", "q05", "q95", "r_hat", "ess"]
    assert table.loc["mu", "r_hat"] < 1.01 and table.loc["mu", "ess"] > 200
    assert abs(table.loc["mu", "mean"] - mean) < 4 * sd / np.sqrt(table.loc["mu", "ess"])
    assert table.attrs["divergences"] == 0
    idata = to_inference_data(mcmc)
    assert idata.posterior["mu"].shape == (chains, 500)


def test_nuts_warm_started_from_a_map_fit(data):
    """Chains started from a MAP fit's Laplace approximation, with its covariance as the inverse
    mass matrix kept through a short warmup (step size only), sample the exact posterior; the
    chains start apart; an unconverged fit is refused."""
    y, mean, sd = data
    res = fit_map(conjugate, y)
    mcmc = run_nuts(conjugate, y, init=res, adapt_mass_matrix=False, num_warmup=100, num_samples=1000, num_chains=2,
                    chain_method="vectorized", progress_bar=False, key=jax.random.key(2))
    mass = np.asarray(mcmc.last_state.adapt_state.inverse_mass_matrix)  # one per chain, over the flat potential
    np.testing.assert_allclose(mass.reshape(-1), np.full(2, res.covariance[0, 0]), rtol=1e-12)
    mu = np.asarray(mcmc.get_samples(group_by_chain=True)["mu"])
    table = summary_table(mcmc)
    assert table.loc["mu", "r_hat"] < 1.01 and table.attrs["divergences"] == 0
    assert abs(mu.mean() - mean) < 4 * sd / np.sqrt(table.loc["mu", "ess"])
    np.testing.assert_allclose(mu.std(), sd, rtol=0.1)
    with pytest.raises(ValueError, match="did not converge"):
        run_nuts(conjugate, y, init=fit_map(conjugate, y, max_steps=0, tol=0.0), progress_bar=False)


def log_conjugate(y):
    """The conjugate model in the log of a positive site: log s has the closed-form posterior of
    `conjugate`'s mean (prior sd 1 here), with a deterministic site beside it."""
    s = numpyro.sample("s", dist.LogNormal(0.0, 1.0))
    numpyro.deterministic("log_s", jnp.log(s))
    numpyro.sample("y", dist.Normal(jnp.log(s), 1.0).expand([y.shape[0]]).to_event(1), obs=y)


def test_nuts_draws_in_natural_units_and_deterministic_sites_on_request(data):
    """The sampler's draws come back in the site's own units (s > 0, its log distributed as the
    closed form says); deterministic=True adds the deterministic site, leaving the chains
    themselves bit for bit the same."""
    y = data[0] / 2.0  # log s near 1
    precision = 1.0 + y.size
    mean, sd = y.sum() / precision, precision**-0.5
    runs = [run_nuts(log_conjugate, y, num_warmup=200, num_samples=1000, num_chains=2, chain_method="vectorized",
                     progress_bar=False, key=jax.random.key(3), deterministic=d) for d in (False, True)]
    plain, full = (r.get_samples() for r in runs)
    assert set(plain) == {"s"} and set(full) == {"s", "log_s"}
    s = np.asarray(plain["s"])
    np.testing.assert_array_equal(s, np.asarray(full["s"]))
    np.testing.assert_allclose(np.asarray(full["log_s"]), np.log(s), rtol=1e-14)
    ess = summary_table(runs[0]).loc["s", "ess"]
    assert np.all(s > 0) and abs(np.log(s).mean() - mean) < 4 * sd / np.sqrt(ess)
    np.testing.assert_allclose(np.log(s).std(), sd, rtol=0.1)


def bounded_by_another(y):
    """b's upper bound is another site, a: its draws must be mapped with each draw's own a."""
    a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
    b = numpyro.sample("b", dist.Uniform(0.0, a))
    numpyro.sample("y", dist.Normal(b, 0.1).expand([y.shape[0]]).to_event(1), obs=y)


def test_a_bound_that_depends_on_another_site():
    """With b ~ Uniform(0, a) and data at b = 1.5, the starting point's a = 1 (the prior's
    median) must not confine b to (0, 1): the MAP point and NUTS's draws put b near 1.5, and
    every draw, NUTS's and the Laplace approximation's, below its own a."""
    y = 1.5 + 0.1 * np.random.default_rng(4).standard_normal(20)
    res = fit_map(bounded_by_another, y)
    assert res.converged and abs(float(res.params["b"]) - 1.5) < 0.1 and float(res.params["a"]) > 1.45
    lap = res.sample(jax.random.key(5), 2000)
    # (the Laplace approximation, a Gaussian across the curved ridge b < a, spreads b downwards:
    # median 1.41; mapped with the starting point's bound, a = 1, not one draw would pass 1)
    assert np.all(lap["b"] < lap["a"]) and np.mean(lap["b"] > 1.0) > 0.8
    mcmc = run_nuts(bounded_by_another, y, num_warmup=300, num_samples=500, progress_bar=False, key=jax.random.key(6))
    draws = mcmc.get_samples()
    assert np.all(np.asarray(draws["b"]) < np.asarray(draws["a"])) and abs(float(np.mean(draws["b"])) - 1.5) < 0.1


def double_well(tilt):
    """A posterior with two modes: potential (x^2 - 4)^2 + tilt x (plus the prior's x^2 / 18),
    minima near x = -2 (the lower, for tilt > 0) and x = +2."""
    x = numpyro.sample("x", dist.Normal(0.0, 3.0))
    numpyro.factor("well", -((x**2 - 4.0) ** 2 + tilt * x))


def test_map_starts_find_the_lower_of_two_modes():
    """A fit started in the basin of the higher mode converges there, and says so only through
    `optima`; further starts from prior draws find the lower mode, and the result is it."""
    with pytest.raises(ValueError, match=r"init names 'X', which is not a sampled site of the model; its sites are \['x'\]"):
        fit_map(double_well, 0.5, init={"X": 3.0})  # a misspelt site was ignored: the fit started at the median
    one = fit_map(double_well, 0.5, init={"x": 3.0})
    assert one.converged and abs(float(one.params["x"]) - 2.0) < 0.1 and len(one.optima) == 1
    many = fit_map(double_well, 0.5, init={"x": 3.0}, starts=8, key=jax.random.key(1))
    assert many.converged and abs(float(many.params["x"]) + 2.0) < 0.1
    optima = np.asarray(many.optima)
    assert optima[0] == pytest.approx(one.potential) and many.potential == pytest.approx(np.nanmin(optima))
    assert one.potential - many.potential > 1.5  # the tilt puts the modes about 2 apart
    assert "ended more than one unit of potential above the best" in many.message
    with pytest.raises(ValueError, match="starts"):
        fit_map(double_well, 0.5, starts=0)


def cliff(x0):
    """A quadratic potential in (x, y) around 0 whose density is NaN for x > x0: a solve that
    fails past some parameter value."""
    x = numpyro.sample("x", dist.Normal(0.0, 3.0))
    y = numpyro.sample("y", dist.Normal(0.0, 3.0))
    numpyro.factor("f", -0.5 * (x**2 + (x - y) ** 2) * jax.numpy.where(x > x0, jax.numpy.nan, 1.0))


def test_map_next_to_a_failing_region_says_so_instead_of_crashing():
    """At an optimum whose neighbour (one finite-difference step away) has a NaN gradient the
    Hessian is not finite: the fit returns where it stopped, not converged, its message says
    why, and the Laplace approximation and identifiability refuse with a clear error (numpy's
    eigensolver raised LinAlgError in the Newton polish before)."""
    res = fit_map(cliff, 0.0, init={"x": 0.0, "y": 0.0})
    assert not res.converged
    assert "Hessian at the end point is not finite" in res.message
    assert abs(float(res.params["x"])) < 1e-12 and abs(float(res.params["y"])) < 1e-12
    for use in (lambda: res.sample(jax.random.key(0), 10), res.identifiability, res.summary):
        with pytest.raises(ValueError, match="not finite"):
            use()
    ok = fit_map(cliff, 1.0, init={"x": 0.0, "y": 0.0})  # the same potential with the failing region farther off
    assert ok.converged and abs(float(ok.params["x"])) < 1e-6


def test_a_start_where_the_potential_is_not_finite_is_searched_for(data):
    """fit_map finds its start without running the model op by op (only the sampled sites'
    values are computed), and checks it: where the potential is not finite there, numpyro's
    search takes over, as it would given the model: a given value outside the half-line the
    likelihood allows is refused with numpyro's error, and draws from the prior that fall
    outside it are drawn again, so every start converges to the closed-form optimum."""
    y, mean, _ = data

    def half_line(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, PRIOR_SD))
        numpyro.factor("mu > 0", jnp.where(mu > 0, 0.0, -jnp.inf))
        numpyro.sample("y", dist.Normal(mu, 1.0).expand([y.shape[0]]).to_event(1), obs=y)

    with pytest.raises(RuntimeError, match="Cannot find valid initial parameters"):
        fit_map(half_line, y, init={"mu": -1.0})
    res = fit_map(half_line, y, starts=6, key=jax.random.key(3))
    assert res.converged
    np.testing.assert_allclose(res.optima, res.potential, rtol=1e-9)  # every start found the optimum
    np.testing.assert_allclose(float(res.params["mu"]), mean, rtol=1e-6)


def test_bounds_inside_a_wrapped_support():
    """A site whose support's bounds are arrays inside `to_event` (a box of two intervals): its
    start and its map to natural units see those bounds (found by tracing the model, they are
    traced values), and the MAP point is the data's (noise 0.01, far inside the box)."""

    def box(y):
        x = numpyro.sample("x", dist.Uniform(0.0, jnp.array([1.0, 2.0])).to_event(1))
        numpyro.sample("y", dist.Normal(x, 0.01).to_event(1), obs=y)

    y = np.array([0.3, 1.2])
    res = fit_map(box, y)
    assert res.converged
    np.testing.assert_allclose(res.params["x"], y, atol=1e-3)


def test_short_chains_report_unknown_diagnostics_not_impossible_ones(data):
    """With fewer than 4 draws per chain numpyro's split R-hat asserts (a bare AssertionError,
    also from `jaxcell fit --method imh --samples 2` after its fit); with a few more, its
    effective sample size came out negative (-38 from 8 draws). Such figures are NaN: unknown,
    which no convergence rule passes. Bad chain counts are refused by name before sampling."""
    from jaxcell.inference import diagnostics, run_imh

    y, _, _ = data
    fit = fit_map(conjugate, y)
    def mu(n, key):
        return diagnostics(run_imh(fit, key=jax.random.key(key), num_chains=2, num_samples=n, num_warmup=0,
                                   progress_bar=False))["mu"]

    d = mu(2, 1)
    assert np.isnan(d["r_hat"]) and np.isnan(d["ess"])
    d = mu(4, 12)  # numpyro's estimator gives -36.8 for these 8 draws
    assert np.isfinite(d["r_hat"]) and np.isnan(d["ess"])
    d = mu(6, 1)
    assert np.isfinite(d["r_hat"]) and d["ess"] > 0
    assert np.isnan(summary_table(run_imh(fit, num_chains=2, num_samples=2, num_warmup=0, progress_bar=False))
                    .loc["mu", "r_hat"])
    with pytest.raises(ValueError, match="run_nuts: num_chains must be a positive integer"):
        run_nuts(conjugate, y, num_chains=0)
