"""Distribution names that say which space they live in, the truncated Gaussian in a parameter's
own units, bounded t distributions, and the Butler-Volmer skew that a symmetric spread of the
reaction rate produces in the overpotential.

Statistical checks compare an estimate with its exact value within Z standard errors; the seeds
are fixed, so every check is deterministic.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as ss
from scipy.integrate import quad
from scipy.special import ndtri

from jaxcell.parameters._functions import mass_action_exchange_current
from jaxcell.physics.kinetics import overpotential
from jaxcell.population import (
    GaussianCopula,
    Hierarchy,
    ParameterVariation,
    StudentTCopula,
    Variation,
    VariationError,
    default_variation,
    sample_values,
    transformed_deviations,
)
from jaxcell.population._distributions import truncated_normal_quantile

Z = 5.0  # tolerance, in standard errors
R_NEG, R_POS = "Negative particle radius [m]", "Positive particle radius [m]"
L_NEG = "Negative electrode thickness [m]"
EPS_NEG, EPS_POS = "Negative electrode porosity", "Positive electrode porosity"
AM_NEG = "Negative electrode active material volume fraction"
T_PLUS = "Cation transference number"
K_POS = "Positive electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]"


def _within(estimate, expected, se, what):
    assert abs(estimate - expected) <= Z * se, (
        f"{what}: {estimate} vs {expected} (se {se:.3g}, {abs(estimate - expected) / se:.1f} se)"
    )


def _check_truncnorm(x, loc, sd, low, high, what):
    """Sample mean and variance against the truncated Gaussian's closed forms, the empirical CDF
    at its quantiles, and every value strictly inside the bounds."""
    a, b = (low - loc) / sd, (high - loc) / sd
    mean, var, _, kurt = ss.truncnorm.stats(a, b, loc, sd, moments="mvsk")
    n = x.size
    assert np.all((x > low) & (x < high)), f"{what}: a value on or outside ({low}, {high})"
    _within(x.mean(), mean, np.sqrt(var / n), f"{what} mean")
    mu4 = (kurt + 3) * var**2
    _within(x.var(ddof=1), var, np.sqrt((mu4 - var**2) / n), f"{what} variance")
    for q in (0.001, 0.05, 0.3, 0.5, 0.8, 0.99):
        F = np.mean(x <= ss.truncnorm.ppf(q, a, b, loc, sd))
        _within(F, q, np.sqrt(q * (1 - q) / n), f"{what}: P(x <= quantile {q})")


def test_truncated_normal_quantile_tails():
    """The quantile function against closed forms in both far tails: a half-normal's upper
    quantile at probability 1e-30 is -ndtri(1e-30 / 2) (beyond what a lower-tail-only quantile
    reaches, about 8.3), and a normal truncated to (-inf, loc). Next to a bound where the density
    is not small the quantile is accurate to rounding of the scale (absolute, 1e-15), and never on
    the bound."""
    z = np.array([-35.0, -12.0, -3.0, 0.0, 1.0, 12.0, 35.0])
    u, u_c = ss.norm.cdf(z), ss.norm.sf(z)
    # half-normal: P(X > x) = 2 Phi(-x), so the quantile at (u, u_c) is -ndtri(u_c / 2)
    x = np.asarray(truncated_normal_quantile(jnp.asarray(u), jnp.asarray(u_c), 0.0, 1.0, 0.0, jnp.inf))
    np.testing.assert_allclose(x, -ndtri(u_c / 2), rtol=1e-13, atol=1e-15)
    assert np.all(x > 0)
    assert x[-1] > 12  # the 1e-30 upper tail is resolved, not cut at 1 - 2^-53
    # the same for a negated half-normal: truncated to (-inf, 0)
    x = np.asarray(truncated_normal_quantile(jnp.asarray(u), jnp.asarray(u_c), 0.0, 1.0, -jnp.inf, 0.0))
    np.testing.assert_allclose(x, ndtri(u / 2), rtol=1e-13, atol=1e-15)
    assert np.all(x < 0)
    # scaled and shifted, two-sided, against scipy at moderate probabilities
    q = np.array([1e-6, 0.01, 0.3, 0.5, 0.9, 1 - 1e-6])
    for loc, sd, low, high in [(1.0, 0.4, 0.0, np.inf), (0.3, 0.2, 0.0, 0.45), (-1.0, 0.5, 0.0, np.inf)]:
        x = np.asarray(truncated_normal_quantile(jnp.asarray(q), jnp.asarray(1 - q), loc, sd, low, high))
        ref = ss.truncnorm.ppf(q, (low - loc) / sd, (high - loc) / sd, loc, sd)
        np.testing.assert_allclose(x, ref, rtol=1e-9, atol=1e-15)


def test_truncated_normal_marginals(chen):
    """``truncated_normal`` is a Gaussian in the parameter's units truncated to its physical range
    and to the spec's bounds, sampled exactly: its moments and quantiles are the truncated
    Gaussian's, for a positive parameter cut at 0, a fraction cut at a user bound, a
    three-level spread (the levels' variances add up to the parent's) and a member of a Gaussian
    copula (whose rank correlation is still (2/pi) arcsin(rho))."""
    c_r, c_e, c_l = float(chen[R_POS]), float(chen[EPS_NEG]), float(chen[L_NEG])
    v = Variation(
        [
            # mean / sd = 2.5: 0.6 % of the parent Gaussian lies below 0
            ParameterVariation(R_POS, "truncated_normal", rel_std=0.4),
            ParameterVariation(
                EPS_NEG, "truncated_normal", std={"pack": 0.03, "module": 0.04, "cell": 0.06}, upper=0.3
            ),
            ParameterVariation(R_NEG, "truncated_normal", rel_std=0.1, lower=float(chen[R_NEG]) * 0.95),
            ParameterVariation(L_NEG, "lognormal", sigma=0.05),
        ],
        copulas=[GaussianCopula((R_NEG, L_NEG), 0.6)],
    )
    n = 100_000
    x = {k: np.asarray(val) for k, val in sample_values(chen, v, n, 3).items()}
    _check_truncnorm(x[R_POS], c_r, 0.4 * c_r, 0.0, np.inf, "radius at 0")
    _check_truncnorm(x[EPS_NEG], c_e, np.sqrt(0.03**2 + 0.04**2 + 0.06**2), 0.0, 0.3, "porosity")
    c_n = float(chen[R_NEG])
    _check_truncnorm(x[R_NEG], c_n, 0.1 * c_n, 0.95 * c_n, np.inf, "radius above 0.95 c")
    assert abs(np.median(x[L_NEG]) / c_l - 1) < 1e-3
    tau = 2 / np.pi * np.arcsin(0.6)
    _within(
        ss.kendalltau(x[R_NEG][:20_000], x[L_NEG][:20_000]).statistic,
        tau,
        np.sqrt(2 * (1 - tau**2) / 20_000),
        "Kendall tau of a truncated normal and a lognormal",
    )
    # an active fraction follows a truncated-normal porosity and keeps porosity + active <= 1
    assert np.all(x[EPS_NEG] + x[AM_NEG] <= 1 + 1e-15)


def test_truncated_normal_hierarchy_and_t_copula(chen):
    """Cells of one module share the module's and the pack's normal score: the correlation of
    two cells' scores is (s_pack^2 + s_module^2) / s_total^2 within a module and
    s_pack^2 / s_total^2 between modules of a pack, while every cell's value is still the
    truncated Gaussian. In a t copula (tail dependence), the marginal stays exact."""
    s_p, s_m, s_c = 0.02, 0.01, 0.02
    s_t = np.sqrt(s_p**2 + s_m**2 + s_c**2)
    cpm, mpp, packs = 4, 2, 5_000
    n = cpm * mpp * packs
    v = Variation(
        [
            ParameterVariation(EPS_POS, "truncated_normal", std={"pack": s_p, "module": s_m, "cell": s_c}),
            ParameterVariation(T_PLUS, "truncated_normal", std=0.1, lower=0.1, upper=0.4),
            ParameterVariation(R_POS, "log_student_t", sigma=0.1, df=3),
        ],
        copulas=[StudentTCopula((EPS_POS, T_PLUS, R_POS), [[1, 0.5, 0.3], [0.5, 1, 0.3], [0.3, 0.3, 1]], df=3)],
        hierarchy=Hierarchy(modules_per_pack=mpp, cells_per_module=cpm),
    )
    d = np.asarray(transformed_deviations(chen, v, n, 4)[EPS_POS]).reshape(packs, mpp, cpm)
    x = {k: np.asarray(val) for k, val in sample_values(chen, v, n, 4).items()}
    rho_w, rho_b = (s_p**2 + s_m**2) / s_t**2, s_p**2 / s_t**2
    # the sample variance of n correlated standard normals: Var = 2 tr(C^2) / n^2
    tr_c2 = n * (1 + (cpm - 1) * rho_w**2 + cpm * (mpp - 1) * rho_b**2)
    _within(d.var(ddof=1), 1.0, np.sqrt(2 * tr_c2) / n, "total score variance")
    # one pair of cells per pack (independent pairs); Var(r) = (1 - rho^2)^2 / packs
    for a, b, rho, what in [
        (d[:, 0, 0], d[:, 0, 1], rho_w, "within a module"),
        (d[:, 0, 0], d[:, 1, 0], rho_b, "between modules"),
    ]:
        r = np.corrcoef(a, b)[0, 1]
        _within(r, rho, (1 - rho**2) / np.sqrt(packs), f"score correlation {what}")
    # the marginal over cells: exact, but cells of a pack are dependent, so the effective
    # sample size for the CDF check is the number of packs (one cell per pack)
    one = x[EPS_POS].reshape(packs, mpp * cpm)[:, 0]
    _check_truncnorm(one, float(chen[EPS_POS]), s_t, 0.0, 1.0, "porosity, one cell per pack")
    _check_truncnorm(x[T_PLUS], float(chen[T_PLUS]), 0.1, 0.1, 0.4, "transference number in a t copula")


def test_names_say_the_space(chen):
    """``normal`` and ``student_t`` on a positive parameter or a fraction are the log- and
    logit-space distributions: they still sample exactly as before (the same draws as
    ``lognormal`` / ``log_student_t`` / ``logit_normal``), with a DeprecationWarning that names
    the new name and says what they are. On an unconstrained parameter they are what they say,
    without a warning. The default variation uses only the honest names."""
    n = 2000
    cases = [
        ("normal", "lognormal", R_POS, {}, "a lognormal"),
        ("normal", "logit_normal", EPS_NEG, {}, "a logit-normal"),
        ("student_t", "log_student_t", R_NEG, {"df": 3.0}, "infinite for every df"),
    ]
    spec = lambda i: Variation([ParameterVariation(c[2], c[i], sigma=0.05, **c[3]) for c in cases])
    with pytest.warns(DeprecationWarning) as rec:
        a = sample_values(chen, spec(0), n, 0)
    messages = [str(r.message) for r in rec if r.category is DeprecationWarning]
    assert len(messages) == 3 and all(r.filename == __file__ for r in rec)
    for (old, new, name, _, says), message in zip(cases, messages):
        assert name in message and f"use {new!r}" in message and says in message, message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = sample_values(chen, spec(1), n, 0)
    for _, _, name, _, _ in cases:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sample_values(chen, Variation([ParameterVariation(T_PLUS, "normal", std=0.01)]), n, 0)
        sample_values(chen, default_variation(), 10, 0)
    with pytest.raises(VariationError, match="logit_normal distribution is for fractions in .0, 1.; this parameter is a positive"):
        sample_values(chen, Variation([ParameterVariation(R_POS, "logit_normal", sigma=0.1)]), 4, 0)
    with pytest.raises(VariationError, match="log_student_t distribution is for positive quantities; this parameter is unconstrained"):
        sample_values(chen, Variation([ParameterVariation(T_PLUS, "log_student_t", sigma=0.1, df=3)]), 4, 0)


def test_log_t_bounded_exactly(chen):
    """A log-t has no finite mean in natural units (sampled values reach many times the
    center); with ``lower`` and ``upper`` it is the t distribution truncated exactly to
    ``(log(lower / c), log(upper / c)) / sigma``, on its own and inside a Gaussian copula."""
    c, s, df = float(chen[R_POS]), 0.1, 2.0
    lo, hi = 0.8 * c, 2.0 * c
    v = Variation(
        [
            ParameterVariation(R_POS, "log_student_t", sigma={"module": s}, df=df, lower=lo, upper=hi),
            ParameterVariation(R_NEG, "log_student_t", sigma=s, df=df, upper=1.5 * float(chen[R_NEG])),
            ParameterVariation(L_NEG, "lognormal", sigma=0.02),
        ],
        copulas=[GaussianCopula((R_NEG, L_NEG), 0.5)],
    )
    n = 40_000
    x = {k: np.asarray(val) for k, val in sample_values(chen, v, n, 9).items()}
    for name, low, high in [(R_POS, lo, hi), (R_NEG, 0.0, 1.5 * float(chen[R_NEG]))]:
        cn = float(chen[name])
        r = x[name]
        assert np.all((r > low) & (r < high)), name
        t_lo = np.log(low / cn) / s if low > 0 else -np.inf
        t_hi = np.log(high / cn) / s
        F_lo, F_hi = ss.t.cdf(t_lo, df), ss.t.cdf(t_hi, df)
        for ratio in (0.7, 0.9, 1.0, 1.1, 1.4):
            q = (ss.t.cdf(np.log(ratio) / s, df) - F_lo) / (F_hi - F_lo)
            if 0 < q < 1:
                _within(np.mean(r <= ratio * cn), q, np.sqrt(q * (1 - q) / n), f"{name} P(x <= {ratio} c)")
    # unbounded, the same spread reaches absurd radii
    free = sample_values(chen, Variation([ParameterVariation(R_POS, "log_student_t", sigma=s, df=df)]), n, 9)
    assert float(np.max(np.asarray(free[R_POS]))) > 10 * c


def test_bounds_and_spread_errors(chen, tmp_path):
    """Bad bounds and spreads are refused with the entry, the key and the accepted range; a spec
    with bounds goes through TOML and JSON unchanged."""
    cases = [
        (dict(distribution="truncated_normal", sigma=0.1), "give its standard deviation as std"),
        (dict(distribution="lognormal", sigma=0.1, upper=1.0), "upper applies to the truncated_normal and t distributions"),
        (dict(distribution="truncated_normal", std=1e-7, lower=2e-6, upper=1e-6), "lower must be below upper"),
        (
            dict(distribution="log_student_t", sigma={"pack": 0.1, "cell": 0.1}, df=3, upper=1e-5),
            "bounds on a t distribution need a single varying level, got pack, cell",
        ),
        (dict(distribution="truncated_normal", rel_std=0.1, center=1e-5, upper=1e-6), r"the center 1e-05 must lie in \(lower, upper\)"),
        (dict(distribution="lognormal", sigma=0.1, df=3), "df applies to the log_student_t distribution, not lognormal"),
    ]
    for kw, message in cases:
        with pytest.raises(VariationError, match=message):
            ParameterVariation(R_POS, **kw)
    with pytest.raises(VariationError, match=r"lower = -1.0 is outside the physical range \[0.0, inf\] of a positive parameter"):
        sample_values(chen, Variation([ParameterVariation(R_POS, "truncated_normal", rel_std=0.1, lower=-1.0)]), 4, 0)
    with pytest.raises(VariationError, match=r"upper = 1.5 is outside the physical range \[0.0, 1.0\] of a fraction"):
        sample_values(chen, Variation([ParameterVariation(EPS_NEG, "truncated_normal", std=0.01, upper=1.5)]), 4, 0)
    with pytest.raises(VariationError, match=r"the center .* must lie in \(lower, upper\) = \(0.3, 1.0\)"):
        sample_values(chen, Variation([ParameterVariation(EPS_NEG, "truncated_normal", std=0.01, lower=0.3)]), 4, 0)
    with pytest.raises(VariationError, match="truncated_normal cannot vary an active material volume fraction"):
        sample_values(chen, Variation([ParameterVariation(AM_NEG, "truncated_normal", std=0.01)]), 4, 0)
    spec = Variation(
        [
            ParameterVariation(R_POS, "truncated_normal", rel_std={"pack": 0.1, "cell": 0.05}, lower=1e-6),
            ParameterVariation(R_NEG, "log_student_t", sigma=0.1, df=3, upper=2e-5),
        ]
    )
    for suffix in ("toml", "json"):
        path = tmp_path / f"spec.{suffix}"
        spec.to_file(path)
        assert Variation.from_file(path) == spec, suffix


def _skewness_with_se(y):
    """Sample skewness and its standard error from the influence function of
    m3 / m2^(3/2): psi = z^3 - 3 z - (3/2) g (z^2 - 1), z the standardised value."""
    z = (y - y.mean()) / y.std()
    g = np.mean(z**3)
    psi = z**3 - 3 * z - 1.5 * g * (z**2 - 1)
    return g, psi.std() / np.sqrt(y.size)


def test_butler_volmer_skew(chen):
    """A symmetric (truncated-Gaussian) spread of the reaction rate constant gives a right-skewed
    reaction overpotential at fixed current: eta = (2RT/F) asinh(j / (2 i0)) is convex and
    decreasing in i0, so the delta method gives skewness ~ 3 s g''(m) / |g'(m)| > 0. The
    sampled skewness matches a quadrature over the truncated Gaussian, which tends to the delta
    method for a small spread; the rate constants themselves are (nearly) symmetric."""
    m_k, rel = float(chen[K_POS]), 0.25
    s_k = rel * m_k
    T = 298.15
    c_max = float(chen["Maximum concentration in positive electrode [mol.m-3]"])
    # the exchange current at half lithiation and 1 M electrolyte; the current drives it at
    # j / (2 i0) = 2, well into the nonlinear part of the asinh
    i0_per_k = float(mass_action_exchange_current(1.0, 1000.0, 0.5 * c_max, c_max))
    j = 4.0 * m_k * i0_per_k

    def eta(k):
        return overpotential(j, k * i0_per_k, T)

    v = Variation([ParameterVariation(K_POS, "truncated_normal", rel_std=rel)])
    n = 200_000
    k = np.asarray(sample_values(chen, v, n, 21)[K_POS])
    y = np.asarray(eta(jnp.asarray(k)))

    a = -m_k / s_k
    pdf = lambda x: ss.truncnorm.pdf(x, a, np.inf, m_k, s_k)

    def exact_skew(f, loc=m_k, sd=s_k):
        """Skewness of f(X), X the Gaussian (loc, sd) truncated to (0, inf), by quadrature of
        its central moments (the density is below 1e-31 beyond 12 sd)."""
        w = lambda x: ss.truncnorm.pdf(x, -loc / sd, np.inf, loc, sd)
        moment = lambda g: quad(
            lambda x: g(float(f(x))) * w(x), max(0.0, loc - 12 * sd), loc + 12 * sd,
            epsabs=0, epsrel=1e-12, limit=200,
        )[0]
        mu = moment(lambda e: e)
        return moment(lambda e: (e - mu) ** 3) / moment(lambda e: (e - mu) ** 2) ** 1.5

    g_y, se_y = _skewness_with_se(y)
    g_k, se_k = _skewness_with_se(k)
    skew_eta = exact_skew(eta)
    _within(g_y, skew_eta, se_y, "skewness of the overpotential")
    _within(g_k, ss.truncnorm.stats(a, np.inf, moments="s"), se_k, "skewness of the rate constant")
    assert skew_eta > 0.5 and abs(g_k) < 0.05 and g_y > 10 * abs(g_k)
    assert quad(pdf, 0, m_k + 12 * s_k, epsrel=1e-12)[0] == pytest.approx(1.0, abs=1e-9)

    # the delta method's sign and, for a small spread, its value
    d1 = jax.grad(eta)(m_k)
    d2 = jax.grad(jax.grad(eta))(m_k)
    assert d1 < 0 and d2 > 0
    small = 0.01 * m_k
    delta = 3 * small * float(d2) / abs(float(d1))
    assert exact_skew(eta, m_k, small) == pytest.approx(delta, rel=0.02)
