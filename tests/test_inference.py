"""Inference: priors in natural units, the likelihood through the solver, and recovery of a
known parameter from noisy synthetic data by MAP with its Laplace approximation."""

import jax
import numpy as np
import numpyro.distributions as dist
import pytest
from conftest import compiled_names

import jaxcell
from jaxcell.inference import cell_model, check_prior, default_prior, fit_map

D_POS = "Positive particle diffusivity [m2.s-1]"


def test_default_priors_live_in_the_parameters_range(chen):
    lognormal = default_prior(D_POS, chen[D_POS])
    assert lognormal.support is dist.constraints.positive
    np.testing.assert_allclose(float(jax.numpy.exp(lognormal.loc)), float(chen[D_POS]), rtol=1e-12)  # median = nominal
    frac = default_prior("Positive electrode porosity", chen["Positive electrode porosity"])
    x = np.asarray(frac.sample(jax.random.key(0), (20000,)))
    assert x.min() > 0 and x.max() < 1
    np.testing.assert_allclose(np.median(x), float(chen["Positive electrode porosity"]), rtol=0.02)
    with pytest.raises(ValueError, match="outside the parameter's range"):
        check_prior(D_POS, dist.Normal(1e-14, 1e-15))  # puts mass on negative diffusivities
    with pytest.raises(ValueError, match=r"outside the parameter's range \(in \(0, 1\)\)"):
        check_prior("Negative electrode porosity", dist.Uniform(0.0, 2.0))
    check_prior(D_POS, dist.TruncatedNormal(1e-14, 1e-15, low=0.0))
    with pytest.raises(ValueError, match="centre must be too"):
        default_prior(D_POS, -1.0)


def test_map_recovers_a_known_diffusivity(chen):
    """Synthetic data from the SPM with the positive diffusivity at 0.6 x Chen2020's, 1 mV
    Gaussian noise (fixed seed), prior centred on Chen2020's value (a factor 1.7 off): the MAP
    estimate lies within 3 Laplace standard deviations of the truth, the Laplace interval is
    narrow (the data determine it), and the noise scale is recovered. A second fit, another
    cell's data with another prior, runs without compiling anything."""
    model = jaxcell.SPM()
    exp = jaxcell.Experiment(["Discharge at 1C for 15 minutes", "Rest for 5 minutes"])
    t = np.linspace(0.0, 1200.0, 41)
    truth = 0.6 * float(chen[D_POS])
    v = np.asarray(jaxcell.simulate(model, chen.update({D_POS: truth}), exp, t_eval=t).voltage)
    v = v + 0.001 * np.random.default_rng(1).standard_normal(t.size)
    res = fit_map(cell_model, model, chen, exp, t, v, priors={D_POS: default_prior(D_POS, chen[D_POS])})
    assert res.converged
    s = res.summary(jax.random.key(1))
    est, sd = float(res.params[D_POS]), float(s[D_POS]["sd"])
    assert abs(est - truth) < 3 * sd and sd < 0.05 * truth, (est / truth, sd / truth)
    assert s[D_POS]["q05"] < est < s[D_POS]["q95"]
    assert 0.0007 < float(res.params["sigma"]) < 0.0013
    ident = res.identifiability()
    assert ident["names"] == (D_POS, "sigma") and np.all(ident["eigenvalues"] > 0)

    # another cell's data (and another prior centre): the compiled potential is reused
    truth = 1.4 * float(chen[D_POS])
    v = np.asarray(jaxcell.simulate(model, chen.update({D_POS: truth}), exp, t_eval=t).voltage)
    v = v + 0.001 * np.random.default_rng(2).standard_normal(t.size)
    priors = {D_POS: default_prior(D_POS, 1.2 * chen[D_POS])}  # its own arithmetic may compile (eager jnp)
    with compiled_names() as compiles:
        res = fit_map(cell_model, model, chen, exp, t, v, priors=priors)
    assert res.converged and not compiles, compiles
    sd = float(res.summary(jax.random.key(1))[D_POS]["sd"])
    assert abs(float(res.params[D_POS]) - truth) < 3 * sd < 0.15 * truth


def _gaussian_posterior_mean(y, prior_sd=1.0, noise=0.1):
    """Posterior mean of mu ~ N(0, prior_sd), y_i ~ N(mu, noise)."""
    y = np.atleast_1d(y)
    return (y.sum() / noise**2) / (1 / prior_sd**2 + y.size / noise**2)


def test_fit_map_with_arguments_that_cannot_be_traced():
    """Models whose arguments cannot be inputs of a shared compiled program still fit exactly:
    one that needs an argument's values while traced (a cell index that sets a shape), and one
    given an object compared by identity, refitted after its data changed in place (a program
    keyed by the object would have kept the old data as constants). Conjugate Gaussians: the
    MAP points are the closed-form posterior means."""
    import numpyro

    def indexed(index, observed=None):
        n = int(np.max(np.asarray(index))) + 1
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0).expand([n]).to_event(1))
        numpyro.sample("y", dist.Normal(mu[np.asarray(index)], 0.1).to_event(1), obs=observed)

    y = np.array([0.5, -0.2, -0.4])
    res = fit_map(indexed, np.array([0, 1, 1]), observed=y)
    np.testing.assert_allclose(res.params["mu"], [_gaussian_posterior_mean(y[:1]), _gaussian_posterior_mean(y[1:])],
                               rtol=1e-6)

    class Box:
        def __init__(self, y):
            self.y = y

    def boxed(box):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu, 0.1).expand([box.y.size]).to_event(1), obs=box.y)

    box = Box(np.array([0.3, 0.35]))
    np.testing.assert_allclose(fit_map(boxed, box).params["mu"], _gaussian_posterior_mean(box.y), rtol=1e-6)
    box.y[:] = [0.8, 0.9]
    np.testing.assert_allclose(fit_map(boxed, box).params["mu"], _gaussian_posterior_mean(box.y), rtol=1e-6)


def test_points_after_a_stop_count_as_the_cut_off_it_stopped_at():
    """A cell that reaches its cut-off before the measurement ends: the measured points after the
    stop are compared with the cut-off it stopped at (named by the solve's status), so the
    likelihood is continuous as the stop moves past a measured time (comparing them with a fixed
    0 V made it jump there by (V / sigma)^2 / 2), and an early stop far from the measurement's
    end is still penalised. Analytic: V(t) = 4 - t / c until the 2 V cut-off at t = 2c.

    The cut-off is the one the status names, not the one nearer the last simulated voltage: at
    the end of a discharge the voltage falls so fast that the last measured time before the stop
    can read above the cut-offs' midpoint (3.14 V with cut-offs 2.0 and 4.2 V: an LG M50 1C
    record fitted by the SPM), and a discharge was then compared with 4.2 V after its stop."""
    from numpyro.infer.util import log_density

    from jaxcell import Status
    from jaxcell.inference import hold_last_voltage, voltage_likelihood

    nan = np.nan
    stops = [Status.LOWER_CUTOFF, Status.UPPER_CUTOFF, Status.LOWER_CUTOFF, Status.STOICHIOMETRY_LIMIT]
    predicted = np.array([[3.0, 2.5, nan, nan], [4.0, 4.1, nan, nan], [3.9, 3.14, nan, nan], [3.9, 3.5, nan, nan]])
    held = np.asarray(hold_last_voltage(predicted, (2.0, 4.2), np.array(stops)))
    np.testing.assert_array_equal(held, [[3.0, 2.5, 2.0, 2.0], [4.0, 4.1, 4.2, 4.2], [3.9, 3.14, 2.0, 2.0],
                                         [3.9, 3.5, 3.5, 3.5]])
    np.testing.assert_array_equal(np.asarray(hold_last_voltage(np.array([3.0, 2.5, nan]))), [3.0, 2.5, 2.5])
    np.testing.assert_array_equal(np.asarray(hold_last_voltage(np.full((1, 3), nan), (2.0, 4.2), np.array([1]))), [[0.0] * 3])
    with pytest.raises(TypeError, match="status"):
        hold_last_voltage(predicted, (2.0, 4.2))

    t = np.linspace(0.0, 10.0, 11)
    measured = 4.0 - t / 5.05  # the "cell": c = 5.05, its end (2 V) at 10.1 s, after the last point

    def log_likelihood(c):
        predicted = np.where(t <= 2 * c, 4.0 - t / c, nan)  # NaN after the stop, as a solve gives
        status = Status.LOWER_CUTOFF if 2 * c < t[-1] else Status.COMPLETED
        return float(log_density(lambda: voltage_likelihood(predicted, measured, 0.01, cut_offs=(2.0, 4.2), status=status),
                                 (), {}, {})[0])

    # c crosses 5.0, where the stop (2c) passes the last measured time (10 s)
    c = np.array([4.999, 4.9999, 5.0001, 5.001])
    ll = np.array([log_likelihood(ci) for ci in c])
    assert abs(ll[2] - ll[1]) < 0.2 * abs(ll[3] - ll[0])  # a tenth of the step, about a tenth of the change
    # with the point after the stop counted as 0 V the step was -(2.02 / 0.01)^2 / 2 = -20400
    assert abs(ll[2] - ll[1]) < 1.0
    # stopping far before the measurement's end is still far less likely
    assert log_likelihood(3.0) < ll[3] - 1e3


def test_a_measured_point_that_is_not_finite_is_named():
    """A NaN in the measured voltage made every density NaN, and a fit ended in numpyro's
    "Cannot find valid initial parameters"; it is refused by name and index, also from a fit,
    and a masked one (padding) is allowed."""
    import numpyro

    from jaxcell.inference import temperature_likelihood, voltage_likelihood

    def model(observed, mask=None):
        mu = numpyro.sample("mu", dist.Normal(3.7, 0.1))
        voltage_likelihood(mu * np.ones(3), observed, 0.01, mask=mask)

    y = np.array([3.70, np.nan, 3.72])
    with pytest.raises(ValueError, match=r"observed values of 'V' are not finite at 1 point\(s\), the first at index 1"):
        fit_map(model, y)
    exact = (3.7 / 0.1**2 + (3.70 + 3.72) / 0.01**2) / (1 / 0.1**2 + 2 / 0.01**2)  # conjugate Gaussian
    np.testing.assert_allclose(fit_map(model, y, mask=np.isfinite(y)).params["mu"], exact, rtol=1e-6)
    with numpyro.handlers.seed(rng_seed=0), pytest.raises(ValueError, match=r"'T' .* index 1, 2 \(inf\)"):
        temperature_likelihood(np.zeros((2, 3)), np.array([[1.0, 2.0, 3.0], [1.0, 2.0, np.inf]]), 1.0)


def test_observed_values_of_the_wrong_length_are_named_before_the_solve(chen):
    """Measured voltages fewer than the output times got numpyro's "Model and guide shapes
    disagree at site: 'V'" after the solve had compiled (about 25 s); `cell_model` refuses them
    before the solve is traced, and `voltage_likelihood` whatever model calls it."""
    import numpyro

    from jaxcell.inference import voltage_likelihood

    D = "Positive particle diffusivity [m2.s-1]"
    t = np.linspace(0.0, 600.0, 11)
    with compiled_names() as compiled, pytest.raises(ValueError, match=r"observed has shape \(8,\) and t_eval \(11,\)"):
        fit_map(cell_model, jaxcell.SPM(), chen, "Discharge at 1C for 10 minutes", t, np.full(8, 3.7),
                priors={D: default_prior(D, float(chen[D]))})
    assert not [n for n in compiled if "simulate" in str(n)]
    with numpyro.handlers.seed(rng_seed=0), pytest.raises(ValueError, match=r"'V' have shape \(8,\), the simulated ones \(11,\)"):
        voltage_likelihood(np.full(11, 3.7), np.full(8, 3.7), 0.01)


def test_a_noise_scale_that_goes_to_zero_is_named():
    """Data the model fits exactly (noise-free synthetic data) drive the noise scale to zero,
    where the posterior has no peak: the fit said only that the Hessian was not positive
    definite, "the data do not determine some direction". Its message names the noise scale."""
    import numpyro

    from jaxcell.inference import voltage_likelihood

    def model(observed):
        mu = numpyro.sample("mu", dist.Normal(3.7, 0.1))
        sigma = numpyro.sample("sigma", dist.HalfNormal(0.01))
        voltage_likelihood(mu * np.ones(5), observed, sigma)

    res = fit_map(model, np.full(5, 3.71))
    assert not res.converged and "The noise scale 'sigma' went to" in res.message, res.message
    with pytest.raises(ValueError, match="noise-free synthetic data"):
        res.summary()
    assert "noise scale" not in fit_map(model, np.array([3.70, 3.72, 3.71, 3.69, 3.73])).message


def test_an_open_circuit_voltage_curve_identifies_the_stoichiometry_window(chen):
    """`ocv_curve_voltage` is the set's open-circuit voltage over its own window when the ends
    are the set's 0 % and 100 % voltages, and meets a curve's ends exactly; its derivative
    through the window's root finds matches central finite differences; and a noisy synthetic
    curve (2 mV, fixed seed) of a cell with a thicker positive electrode and less lithium gives
    both back by MAP within three Laplace standard deviations, with the noise scale."""
    import numpyro

    from jaxcell.inference import ocv_curve_voltage, ocv_likelihood, sample_parameters
    from jaxcell.soc import open_circuit_voltage

    soc = np.linspace(0.0, 1.0, 101)
    ends = (float(chen["Open-circuit voltage at 0% SOC [V]"]), float(chen["Open-circuit voltage at 100% SOC [V]"]))
    x0, x100, y0, y100 = (float(w) for w in jaxcell.stoichiometry_window(chen))
    own = np.asarray(open_circuit_voltage(chen, x0 + soc * (x100 - x0), y0 - soc * (y0 - y100)))
    np.testing.assert_allclose(np.asarray(ocv_curve_voltage(chen, soc, ends)), own, atol=1e-12)
    v = np.asarray(ocv_curve_voltage(chen, soc, (2.9, 4.15)))
    np.testing.assert_allclose(v[[0, -1]], [2.9, 4.15], atol=1e-9)
    assert np.all(np.diff(v) > 0)

    L_P, LI = "Positive electrode thickness [m]", "Initial concentration in positive electrode [mol.m-3]"
    truth = {L_P: float(chen[L_P]) * 1.08, LI: float(chen[LI]) * 0.96}
    for name in truth:
        f = lambda a: ocv_curve_voltage(chen.update({**truth, name: a}), soc, (2.9, 4.15))  # noqa: E731
        a, h = truth[name], truth[name] * 1e-6
        fd = (np.asarray(f(a + h)) - np.asarray(f(a - h))) / (2 * h)
        np.testing.assert_allclose(np.asarray(jax.jacfwd(f)(a)), fd, rtol=0, atol=1e-6 * np.abs(fd).max())

    v_obs = np.asarray(ocv_curve_voltage(chen.update(truth), soc, (2.9, 4.15)))
    v_obs = v_obs + 0.002 * np.random.default_rng(0).standard_normal(soc.size)

    def model(p, soc, voltage, priors):
        q = sample_parameters(p, priors)
        ocv_likelihood(q, soc, voltage, numpyro.sample("sigma", dist.HalfNormal(0.01)), ends=(2.9, 4.15))

    res = fit_map(model, chen, soc, v_obs, priors={k: default_prior(k, chen[k]) for k in truth})
    assert res.converged
    table = res.summary()
    for name, value in truth.items():
        assert abs(table[name]["mean"] - value) < 3 * table[name]["sd"], (name, table[name], value)
        assert table[name]["sd"] < 0.01 * value  # the curve determines it
    assert 0.0016 < table["sigma"]["mean"] < 0.0024

    for bad, match in [((soc + 0.5, v_obs), r"soc must lie in \[0, 1\]"), ((soc[:-1], v_obs), "same length"),
                       ((soc, np.where(soc > 0.5, np.nan, v_obs)), "finite")]:
        with pytest.raises(ValueError, match=match):
            numpyro.handlers.seed(ocv_likelihood, 0)(chen, *bad, 0.01, ends=(2.9, 4.15))
    with pytest.raises(ValueError, match="first below the second"):
        numpyro.handlers.seed(ocv_likelihood, 0)(chen, soc, v_obs, 0.01, ends=(4.15, 2.9))
    with pytest.raises(ValueError, match=r"ends \(3, 10\) V: the open-circuit voltage does not reach"):
        ocv_curve_voltage(chen, soc, (3.0, 10.0))  # beyond what the set's lithium allows


def test_a_measured_temperature_identifies_the_heat_transfer_coefficient(chen, tmp_path):
    """`read_measurements(..., temperature=...)` reads a thermocouple column (degC to K) and
    refuses a name without its unit and a NaN; `temperature_likelihood` is the Gaussian of the
    rises from each row's first point; and `records_model(..., temperature=True)` recovers a
    known heat transfer coefficient (25 against Chen2020's 10 W.m-2.K-1) from a lumped SPM's
    noisy synthetic discharge (2 mV, 0.1 K; fixed seed) within three Laplace standard
    deviations, which the temperature makes narrow."""
    import numpyro
    import pandas as pd

    from jaxcell.inference import (MeasurementError, read_measurements, records_model, stack_records,
                                   temperature_likelihood)

    heat = "Total heat transfer coefficient [W.m-2.K-1]"
    model = jaxcell.SPM(thermal="lumped")
    t = np.r_[0.0, np.linspace(1.0, 3000.0, 30)]
    i = np.where(t > 0, 5.0, 0.0)
    rec = read_measurements(pd.DataFrame({"t_s": t, "I_A": i, "V_V": 4.0}))[0]
    sol = jaxcell.simulate(model, chen.update({heat: 25.0}), rec.experiment(), t_eval=t, initial_soc=1.0)
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"t_s": t, "I_A": i, "V_V": np.asarray(sol.voltage) + 0.002 * rng.standard_normal(t.size),
                       "T_cell_degC": np.asarray(sol.temperature) - 273.15 + 0.1 * rng.standard_normal(t.size)})
    recs = read_measurements(df, temperature="T_cell_degC")
    np.testing.assert_allclose(recs[0].temperature, df.T_cell_degC + 273.15, rtol=1e-15)
    stacked = stack_records(recs)

    with pytest.raises(ValueError, match="must end in its unit"):
        read_measurements(df, temperature="T_cell")
    with pytest.raises(MeasurementError, match=r"'T_cell_degC' is NaN \(empty\) at row 4"):
        read_measurements(df.assign(T_cell_degC=np.where(np.arange(t.size) == 4, np.nan, df.T_cell_degC)),
                          temperature="T_cell_degC")
    with pytest.raises(ValueError, match="needs a thermal model"):
        numpyro.handlers.seed(records_model, 0)(jaxcell.SPM(), chen, stacked, priors={}, temperature=True)
    with pytest.raises(ValueError, match="needs a measured temperature"):
        numpyro.handlers.seed(records_model, 0)(model, chen, stack_records(read_measurements(df)), priors={},
                                                temperature=True)

    pred, obs = np.array([[300.0, 301.0, 303.5]]), np.array([[290.0, 291.5, 292.0]])
    tr = numpyro.handlers.trace(numpyro.handlers.seed(temperature_likelihood, 0)).get_trace(pred, obs, 0.5)
    expected = np.sum(-0.5 * ((np.array([0.0, 1.0, 3.5]) - [0.0, 1.5, 2.0]) / 0.5) ** 2 - np.log(0.5 * np.sqrt(2 * np.pi)))
    np.testing.assert_allclose(float(tr["T"]["fn"].log_prob(tr["T"]["value"])), expected, rtol=1e-12)

    with compiled_names() as compiled:
        res = fit_map(records_model, model, chen, stacked, priors={heat: default_prior(heat, chen[heat])},
                      temperature=True, initial_soc=1.0)
    # the fit's start is found without the forward record solve, which nothing else in the fit runs
    assert compiled and not any("_solve_records" in name for name in compiled), compiled
    assert res.converged
    s = res.summary(jax.random.key(0))
    assert abs(s[heat]["mean"] - 25.0) < 3 * s[heat]["sd"] and s[heat]["sd"] < 0.03 * 25.0, s[heat]
    assert 0.05 < s["sigma_T"]["mean"] < 0.2
