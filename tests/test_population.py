"""Manufacturing variation: marginals, hierarchy, copulas, physical ranges, reproducibility,
spec files, and a simulated population with impossible cells.

Statistical checks compare an estimate with its exact expectation within Z standard errors
(the standard error from the exact sampling distribution of the estimator, stated at each
check); the seeds are fixed, so every check is deterministic.
"""

import json

import jax
import numpy as np
import pandas as pd
import pytest
import scipy.stats as ss
from scipy.integrate import quad
from scipy.special import owens_t

import jaxcell
from jaxcell.cli import main
from jaxcell.population import (
    GaussianCopula,
    Hierarchy,
    ParameterVariation,
    StudentTCopula,
    Variation,
    VariationError,
    default_variation,
    not_delivered,
    plot_population,
    population_summary,
    population_table,
    sample_population,
    sample_values,
    transformed_deviations,
)

Z = 5.0  # tolerance, in standard errors
L_NEG, L_POS = "Negative electrode thickness [m]", "Positive electrode thickness [m]"
EPS_NEG, EPS_POS, EPS_SEP = (
    "Negative electrode porosity",
    "Positive electrode porosity",
    "Separator porosity",
)
AM_NEG = "Negative electrode active material volume fraction"
R_NEG, R_POS = "Negative particle radius [m]", "Positive particle radius [m]"
R_C = "Contact resistance [Ohm]"
T_PLUS = "Cation transference number"
EXP = "Discharge at 1C until 3.0 V"  # the structure (one discharge step) other test files compile
N_CELLS = 5  # small population simulated here and by the CLI test: one compile for both


def _within(estimate, expected, se, what):
    assert abs(estimate - expected) <= Z * se, (
        f"{what}: {estimate} vs {expected} (se {se:.3g}, {abs(estimate - expected) / se:.1f} se)"
    )


def _cdf_check(x, cdf, points, what):
    """The empirical CDF at `points` against `cdf`, each within Z binomial standard errors."""
    n = x.size
    for q in points:
        F = cdf(q)
        _within(np.mean(x <= q), F, np.sqrt(F * (1 - F) / n), f"{what}: P(x <= {q})")


def test_marginals_match_spec(chen):
    """Each family's deviation in its transformed space has the distribution the spec says."""
    t_raw, t_cop = 5.0, 3.0
    p, alpha, s_tail = 0.02, 1.5, 0.3
    v = Variation(
        [
            ParameterVariation(L_NEG, rel_std=0.02),  # log space, sigma = rel_std
            ParameterVariation(
                EPS_NEG, std=0.005
            ),  # logit space, sigma = std / (c (1 - c))
            ParameterVariation(T_PLUS, std=0.01),  # no range rule: the value itself
            ParameterVariation(
                R_POS, "log_student_t", sigma=0.05, df=t_raw
            ),  # on its own: t scores
            ParameterVariation(
                R_NEG, "log_student_t", sigma=0.05, df=t_cop
            ),  # in a Gaussian copula: t quantile
            ParameterVariation(L_POS, "lognormal", sigma=0.03),
            ParameterVariation(
                R_C,
                "pareto_tail",
                center=1e-3,
                sigma=s_tail,
                tail_probability=p,
                tail_index=alpha,
            ),
        ],
        copulas=[GaussianCopula((R_NEG, L_POS), 0.4)],
    )
    n = 100_000
    d = {k: np.asarray(x) for k, x in transformed_deviations(chen, v, n, 11).items()}
    x = {k: np.asarray(val) for k, val in sample_values(chen, v, n, 11).items()}

    c = float(chen[EPS_NEG])
    for name, sigma in [
        (L_NEG, 0.02),
        (EPS_NEG, 0.005 / (c * (1 - c))),
        (T_PLUS, 0.01),
        (L_POS, 0.03),
    ]:
        _within(d[name].mean(), 0.0, sigma / np.sqrt(n), f"{name} mean")
        _within(
            d[name].var(ddof=1),
            sigma**2,
            sigma**2 * np.sqrt(2 / (n - 1)),
            f"{name} variance",
        )
    np.testing.assert_allclose(
        np.log(x[L_NEG] / float(chen[L_NEG])), d[L_NEG], rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        np.log(x[EPS_NEG] / (1 - x[EPS_NEG])) - np.log(c / (1 - c)),
        d[EPS_NEG],
        atol=1e-12,
    )
    # the lognormal in the original space: mean c exp(s^2 / 2)
    m = float(chen[L_POS]) * np.exp(0.03**2 / 2)
    _within(x[L_POS].mean(), m, x[L_POS].std() / np.sqrt(n), "lognormal mean")

    for name, df in [(R_POS, t_raw), (R_NEG, t_cop)]:
        _cdf_check(
            d[name] / 0.05,
            ss.t(df).cdf,
            [-4.0, -1.5, -0.3, 0.0, 0.7, 2.0, 6.0],
            f"{name} student_t",
        )
    # Pareto tail: Gaussian body below the 1 - p quantile, P(d > s z_p + c) = p exp(-alpha c)
    dc = d[R_C]
    _cdf_check(
        dc / s_tail, ss.norm.cdf, [-2.5, -1.0, 0.0, 1.0, 2.0], "pareto_tail body"
    )
    z_p = ss.norm.isf(p)
    for extra in (0.0, 0.5, 1.5, 3.0):
        q = p * np.exp(-alpha * extra)
        _within(
            np.mean(dc > s_tail * z_p + extra),
            q,
            np.sqrt(q * (1 - q) / n),
            f"pareto tail beyond +{extra}",
        )
    assert x[R_C].min() > 0


def test_hierarchy_variance_split(chen):
    """Pack, module and cell deviations are independent and add: a nested analysis of
    variance recovers each level's variance, and the total variance is their sum."""
    s_p, s_m, s_c = 0.02, 0.015, 0.01
    mpp, cpm, packs = 5, 8, 2000
    n = mpp * cpm * packs
    v = Variation(
        [ParameterVariation(L_NEG, sigma={"pack": s_p, "module": s_m, "cell": s_c})],
        hierarchy=Hierarchy(modules_per_pack=mpp, cells_per_module=cpm),
    )
    d = np.asarray(transformed_deviations(chen, v, n, 3)[L_NEG])
    pack, module = v.hierarchy.layout(n)
    assert pack.max() == packs - 1 and module.max() == packs * mpp - 1

    by_module = d.reshape(packs * mpp, cpm)
    module_means = by_module.mean(axis=1)
    by_pack = module_means.reshape(packs, mpp)
    pack_means = by_pack.mean(axis=1)
    # mean squares, each ~ expected * chi2(k) / k
    k_cell, k_module, k_pack = packs * mpp * (cpm - 1), packs * (mpp - 1), packs - 1
    ms_cell = ((by_module - module_means[:, None]) ** 2).sum() / k_cell
    ms_module = ((by_pack - pack_means[:, None]) ** 2).sum() / k_module
    ms_pack = pack_means.var(ddof=1)
    e_cell = s_c**2
    e_module = s_m**2 + s_c**2 / cpm
    e_pack = s_p**2 + s_m**2 / mpp + s_c**2 / (mpp * cpm)
    for ms, e, k, what in [
        (ms_cell, e_cell, k_cell, "cell"),
        (ms_module, e_module, k_module, "module"),
        (ms_pack, e_pack, k_pack, "pack"),
    ]:
        _within(ms, e, e * np.sqrt(2 / k), f"{what} mean square")
    # total: var_pack + var_module + var_cell (the sample variance's expectation, and its
    # standard error from the three independent chi-square sums of squares)
    expected = (
        s_c**2 + s_m**2 * (n - cpm) / (n - 1) + s_p**2 * (n - mpp * cpm) / (n - 1)
    )
    se = np.sqrt(
        2
        * (
            k_cell * e_cell**2
            + k_module * (cpm * e_module) ** 2
            + k_pack * (cpm * mpp * e_pack) ** 2
        )
    ) / (n - 1)
    _within(d.var(ddof=1), expected, se, "total variance")
    assert (
        abs(expected - (s_p**2 + s_m**2 + s_c**2)) < 0.05 * se
    )  # finite-n correction: negligible


def _kendall_se_bound(tau, n):
    """Daniels & Kendall (1947): Var(tau_hat) <= 2 (1 - tau^2) / n."""
    return np.sqrt(2 * (1 - tau**2) / n)


def test_copula_rank_correlations(chen):
    """Kendall's tau of every pair is (2/pi) arcsin(rho) for Gaussian and t copulas, whatever
    the marginals (a 3x3 Gaussian copula on normal scores; a t copula mapped through its CDF to
    a Pareto-tail and a normal marginal). The t quantile map is checked in
    test_marginals_match_spec."""
    rho3 = [[1.0, 0.5, -0.3], [0.5, 1.0, 0.2], [-0.3, 0.2, 1.0]]
    v = Variation(
        [
            ParameterVariation(L_NEG, rel_std=0.02),
            ParameterVariation(EPS_NEG, rel_std=0.03),
            ParameterVariation(R_NEG, "lognormal", sigma=0.05),
            ParameterVariation(
                R_C,
                "pareto_tail",
                center=1e-3,
                sigma=0.3,
                tail_probability=0.05,
                tail_index=1.0,
            ),
            ParameterVariation(R_POS, rel_std=0.02),
        ],
        copulas=[
            GaussianCopula((L_NEG, EPS_NEG, R_NEG), rho3),
            StudentTCopula((R_C, R_POS), -0.6, df=3.0),
        ],
    )
    n = 200_000
    x = {k: np.asarray(val) for k, val in sample_values(chen, v, n, 5).items()}
    pairs = [
        (L_NEG, EPS_NEG, 0.5),
        (L_NEG, R_NEG, -0.3),
        (EPS_NEG, R_NEG, 0.2),
        (R_C, R_POS, -0.6),
    ]
    for a, b, rho in pairs:
        tau = 2 / np.pi * np.arcsin(rho)
        _within(
            ss.kendalltau(x[a], x[b]).statistic,
            tau,
            _kendall_se_bound(tau, n),
            f"Kendall tau {a} / {b}",
        )
    # a parameter outside the copulas is independent of them
    _within(
        ss.kendalltau(x[L_NEG], x[R_C]).statistic,
        0.0,
        _kendall_se_bound(0.0, n),
        "independent pair",
    )


def _orthant_normal(h, rho):
    """P(Z1 > h, Z2 > h) for standard normals with correlation rho (Owen 1956, equal limits:
    Phi(-h) - 2 T(h, sqrt((1 - rho) / (1 + rho))))."""
    return ss.norm.sf(h) - 2 * owens_t(h, np.sqrt((1 - rho) / (1 + rho)))


def _orthant_t(a, rho, nu):
    """P(T1 > a, T2 > a) for a bivariate t: normals scaled by one sqrt(chi2_nu / nu)."""
    f = lambda w: ss.chi2.pdf(w * nu, nu) * nu * _orthant_normal(a * np.sqrt(w), rho)
    return quad(f, 0, np.inf, epsabs=1e-15, epsrel=1e-9, limit=200)[0]


def test_tail_dependence(chen):
    """Upper tail dependence P(U2 > q | U1 > q) at q = 0.995: the t copula's matches the exact
    value of the t copula (which tends to 2 t_{nu+1}(-sqrt((nu+1)(1-rho)/(1+rho))) as q -> 1),
    the Gaussian copula's matches the Gaussian value (which tends to 0)."""
    rho, nu, q, n = 0.5, 4.0, 0.995, 400_000
    lam_limit = 2 * ss.t(nu + 1).cdf(-np.sqrt((nu + 1) * (1 - rho) / (1 + rho)))
    lam_t = _orthant_t(ss.t(nu).ppf(q), rho, nu) / (1 - q)
    lam_g = _orthant_normal(ss.norm.ppf(q), rho) / (1 - q)
    # the exact finite-q values approach the limits
    q_far = 1 - 1e-7
    assert (
        abs(_orthant_t(ss.t(nu).isf(1 - q_far), rho, nu) / (1 - q_far) - lam_limit)
        < 2e-3
    )
    assert _orthant_normal(ss.norm.isf(1 - q_far), rho) / (1 - q_far) < 0.2 * lam_g

    def empirical(v):
        x = sample_values(chen, v, n, 8)
        a, b = np.asarray(x[R_NEG]), np.asarray(x[R_POS])
        return np.mean((a > np.quantile(a, q)) & (b > np.quantile(b, q))) / (1 - q)

    marg = lambda fam, **kw: [
        ParameterVariation(R_NEG, fam, sigma=0.1, **kw),
        ParameterVariation(R_POS, fam, sigma=0.1, **kw),
    ]
    est_t = empirical(
        Variation(
            marg("log_student_t", df=nu),
            copulas=[StudentTCopula((R_NEG, R_POS), rho, df=nu)],
        )
    )
    est_g = empirical(
        Variation(marg("lognormal"), copulas=[GaussianCopula((R_NEG, R_POS), rho)])
    )
    m = n * (1 - q)
    _within(est_t, lam_t, np.sqrt(lam_t * (1 - lam_t) / m), "t copula tail dependence")
    _within(
        est_g,
        lam_g,
        np.sqrt(lam_g * (1 - lam_g) / m),
        "Gaussian copula tail dependence",
    )
    assert est_t > 2 * est_g and lam_t - lam_limit < 0.03


def test_values_stay_physical_under_extreme_specs(chen):
    """Spreads far beyond any real production: every value stays inside its physical range
    (ParameterSet's own range checks pass) and porosity + active fraction stays below 1."""
    v = Variation(
        [
            ParameterVariation(EPS_NEG, sigma=40.0),
            ParameterVariation(EPS_POS, rel_std=5.0),
            ParameterVariation(EPS_SEP, "logit_student_t", sigma=20.0, df=0.5),
            ParameterVariation(L_POS, "log_student_t", sigma=50.0, df=0.3),
            ParameterVariation(
                R_C,
                "pareto_tail",
                center=1e-3,
                sigma=30.0,
                tail_probability=0.5,
                tail_index=0.01,
            ),
        ]
    )
    n = 20_000
    cells = sample_population(chen, v, n, 1)
    get = lambda k: np.asarray(cells[k])
    for k in (EPS_NEG, EPS_POS, AM_NEG):
        assert np.all((get(k) > 0) & (get(k) < 1)), k
    assert np.all((get(EPS_SEP) > 0) & (get(EPS_SEP) <= 1))
    assert np.all(get(EPS_NEG) + get(AM_NEG) <= 1 + 1e-15)
    for k in (L_POS, R_C):
        assert np.all(np.isfinite(get(k)) & (get(k) > 0)), k
    # the spec really is extreme: values reach the ends of their ranges
    assert get(EPS_NEG).min() < 1e-12 and get(EPS_NEG).max() > 1 - 1e-12
    assert (
        get(L_POS).min() < 1e-100
        and get(L_POS).max() > 1e100
        and get(R_C).max() > 1e100
    )

    # an electrode with inactive solid (Marquis2019): the active fraction may vary on its own
    marquis = jaxcell.load_parameters("Marquis2019")
    w = Variation(
        [
            ParameterVariation(EPS_NEG, sigma=10.0),
            ParameterVariation(AM_NEG, sigma=10.0),
        ]
    )
    x = sample_values(marquis, w, n, 2)
    eps, am = np.asarray(x[EPS_NEG]), np.asarray(x[AM_NEG])
    assert np.all((am > 0) & (am < 1) & (eps + am <= 1 + 1e-15))
    assert am.max() > 0.99 * (1 - eps[np.argmax(am)])  # it does fill the solid at times


def test_active_fraction_follows_porosity(chen):
    """Chen2020's solid is all active material: varying the porosity moves the active fraction
    to 1 - porosity; varying the active fraction on its own is refused with a hint."""
    x = sample_values(
        chen, Variation([ParameterVariation(EPS_NEG, rel_std=0.05)]), 1000, 0
    )
    np.testing.assert_allclose(
        np.asarray(x[EPS_NEG]) + np.asarray(x[AM_NEG]), 1.0, rtol=0, atol=2e-16
    )
    with pytest.raises(
        VariationError,
        match="inactive solid.*Vary 'Negative electrode porosity' instead",
    ):
        sample_values(
            chen, Variation([ParameterVariation(AM_NEG, rel_std=0.01)]), 10, 0
        )


def test_named_binder_fraction_follows_a_varied_porosity():
    """A set that names its binder fraction (Marquis2019 with 0.1 of binder: 0.3 + 0.6 + 0.1 = 1):
    the sampler kept the active share of 1 - porosity and left the binder as it was, so
    porosity + active + binder passed 1 in 512 of 1000 cells, returned by `sample_values` without
    a word. Now every named part of the solid follows a varied porosity (each the same share of
    1 - porosity: the sum stays 1, the active-to-binder ratio 6); the active fraction varied on
    its own, which would leave the binder behind, is refused, naming both."""
    binder = "Negative electrode binder volume fraction"
    with_binder = jaxcell.load_parameters("Marquis2019").update({binder: 0.1}, check_already_exists=False)
    x = sample_values(with_binder, Variation([ParameterVariation(EPS_NEG, rel_std=0.1)]), 1000, 0)
    eps, am, b = (np.asarray(x[k]) for k in (EPS_NEG, AM_NEG, binder))
    assert eps.std() > 0.02  # the porosity does vary
    np.testing.assert_allclose(eps + am + b, 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(am / b, 6.0, rtol=1e-12)
    cells = jaxcell.sample_population(with_binder, Variation([ParameterVariation(EPS_NEG, rel_std=0.1)]), 1000, 0)
    np.testing.assert_array_equal(np.asarray(cells[binder]), b)  # the set's own check passes every cell
    with pytest.raises(VariationError, match=f"'{AM_NEG}' cannot vary on its own.*names '{binder}' too"):
        sample_values(with_binder, Variation([ParameterVariation(AM_NEG, rel_std=0.1)]), 10, 0)


def test_reproducible_from_key(chen):
    """Same key: bit-identical cells (under jit too); another key: other cells. Cell i does not
    depend on the population size, nor a parameter's draws on the other (uncoupled) ones."""
    v = Variation(
        [
            ParameterVariation(
                L_NEG, rel_std={"pack": 0.01, "module": 0.005, "cell": 0.003}
            ),
            ParameterVariation(EPS_NEG, rel_std=0.02),
            ParameterVariation(R_POS, "log_student_t", sigma=0.02, df=4.0),
        ],
        copulas=[GaussianCopula((L_NEG, EPS_NEG), -0.3)],
        hierarchy=Hierarchy(modules_per_pack=3, cells_per_module=4),
    )
    key = jax.random.key(7)
    a = sample_values(chen, v, 50, key)
    b = sample_values(chen, v, 50, 7)
    c = sample_values(chen, v, 50, jax.random.key(8))
    longer = jax.jit(lambda k: sample_population(chen, v, 80, k))(
        key
    )  # more cells, under jit
    more = sample_values(
        chen,
        v.with_parameters(ParameterVariation(R_C, center=1e-3, sigma=0.2)),
        50,
        key,
    )
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_array_equal(a[name], longer[name][:50])
        np.testing.assert_array_equal(a[name], more[name])
        assert not np.any(np.asarray(a[name]) == np.asarray(c[name])), name
    # an integer seed is a 64-bit one: beyond, numpy's OverflowError named no seed
    with pytest.raises(ValueError, match=r"key: an integer seed must fit in 64 bits"):
        sample_values(chen, v, 50, 2**70)
    # the layout: 4 cells per module, 3 modules per pack
    pack, module = v.hierarchy.layout(50)
    assert (
        module[:4].tolist() == [0] * 4
        and pack[:12].tolist() == [0] * 12
        and pack[12] == 1
    )


def test_spec_file_round_trip(tmp_path):
    """A spec written to TOML or JSON reads back equal (the default spec and a custom one)."""
    custom = Variation(
        [
            ParameterVariation(L_NEG, std={"pack": 1e-6, "cell": 5e-7}),
            ParameterVariation(
                R_C,
                "pareto_tail",
                center=3e-4,
                sigma=0.3,
                tail_probability=0.01,
                tail_index=1.5,
            ),
            ParameterVariation(R_NEG, "log_student_t", rel_std=0.03, df=4),
        ],
        copulas=[StudentTCopula([R_C, R_NEG], [[1, -0.4], [-0.4, 1]], df=3)],
        hierarchy=Hierarchy(modules_per_pack=4, cells_per_module=6),
        description='a "quoted" description',
    )
    for spec in (default_variation(), custom):
        for suffix in ("toml", "json"):
            path = tmp_path / f"spec.{suffix}"
            spec.to_file(path)
            assert Variation.from_file(path) == spec, suffix
    assert (
        len(default_variation().names) == 8
        and default_variation().hierarchy.cells_per_module == 12
    )


def _spec(**changes):
    """A valid spec as plain data, with one entry changed."""
    d = {
        "hierarchy": {"modules_per_pack": 2, "cells_per_module": 3},
        "parameter": [
            {"name": L_NEG, "distribution": "lognormal", "rel_std": 0.01},
            {"name": EPS_NEG, "distribution": "logit_normal", "rel_std": 0.02},
        ],
        "copula": [
            {
                "kind": "gaussian",
                "parameters": [L_NEG, EPS_NEG],
                "correlation": [[1, -0.3], [-0.3, 1]],
            }
        ],
    }
    for path, value in changes.items():
        *keys, last = path.split(".")
        target = d
        for k in keys:
            target = target[int(k)] if k.isdigit() else target[k]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return d


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"parameter.0.distribution": "gaussian"},
            r"parameter entry 0, variation of 'Negative electrode thickness \[m\]': unknown distribution 'gaussian' \(accepted: transformed_normal, lognormal, logit_normal, truncated_normal, log_student_t, logit_student_t, pareto_tail, normal, student_t\)",
        ),
        (
            {"parameter.1.rel_std": -0.02},
            r"parameter entry 1, variation of .Negative electrode porosity., rel_std: the cell level must be non-negative, got -0.02",
        ),
        (
            {"parameter.1.rel_std": {"pack": 0.01, "lot": 0.01}},
            r"unknown level\(s\) \['lot'\]",
        ),
        ({"parameter.0.std": 1e-6}, "give exactly one of std, rel_std, sigma"),
        (
            {"parameter.0.distribution": "student_t"},
            "the student_t distribution needs df",
        ),
        ({"parameter.0.df": 3}, "df applies to the log_student_t distribution, not lognormal"),
        ({"parameter.0.stdev": 1}, r"unknown key\(s\) \['stdev'\]"),
        (
            {
                "parameter.0.distribution": "pareto_tail",
                "parameter.0.tail_probability": 1.5,
                "parameter.0.tail_index": 1.0,
            },
            r"tail_probability must be in \(0, 1\), got 1.5",
        ),
        ({"copula.0.correlation": [[1, -0.3], [0.3, 1]]}, "must be symmetric"),
        (
            {"copula.0.correlation": [[1, 1.2], [1.2, 1]]},
            r"correlations must lie in \[-1, 1\]",
        ),
        (
            {"copula.0.correlation": 1.0},
            "not a valid correlation matrix: it must be positive definite",
        ),
        (
            {"copula.0.parameters": [L_NEG, "Positive electrode porosity"]},
            "not among the varied parameters",
        ),
        (
            {"copula.0.kind": "clayton"},
            "unknown kind 'clayton' .accepted: gaussian, t.",
        ),
        ({"copula.0.kind": "t"}, "needs df"),
        (
            {"hierarchy.cells_per_module": 0},
            "cells_per_module must be a positive integer",
        ),
        ({"seed": 3}, r"unknown top-level key\(s\) \['seed'\]"),
    ],
)
def test_spec_errors_name_the_entry(changes, message):
    with pytest.raises(VariationError, match=message):
        Variation.from_dict(_spec(**changes))


def test_spec_errors_against_a_parameter_set(chen, tmp_path):
    three = [
        [1, 0.9, -0.9],
        [0.9, 1, 0.2],
        [-0.9, 0.2, 1],
    ]  # each entry valid, together impossible
    with pytest.raises(VariationError, match="smallest eigenvalue"):
        GaussianCopula((L_NEG, EPS_NEG, R_C), three)
    with pytest.raises(
        jaxcell.UnknownParameterError,
        match="Did you mean 'Negative electrode porosity'",
    ):
        sample_values(
            chen,
            Variation([ParameterVariation("Negative electrode porosty", rel_std=0.01)]),
            4,
            0,
        )
    with pytest.raises(
        VariationError, match="is a function in parameter set 'Chen2020'"
    ):
        sample_values(
            chen,
            Variation([ParameterVariation("Negative electrode OCP [V]", sigma=0.01)]),
            4,
            0,
        )
    with pytest.raises(
        VariationError,
        match="center must be positive .* got 0.0 .*set a positive `center`",
    ):
        sample_values(chen, Variation([ParameterVariation(R_C, sigma=0.3)]), 4, 0)
    with pytest.raises(
        VariationError,
        match="lognormal distribution is for positive quantities; this parameter is a fraction",
    ):
        sample_values(
            chen, Variation([ParameterVariation(EPS_NEG, "lognormal", sigma=0.3)]), 4, 0
        )
    bad = tmp_path / "bad.toml"
    bad.write_text('[[parameter]]\nname = "x"\nrel_std = [0.1\n')
    with pytest.raises(VariationError, match="bad.toml: not valid TOML"):
        Variation.from_file(bad)
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {"parameter": [{"name": L_NEG, "rel_std": 0.01, "distribution": "weibull"}]}
        )
    )
    with pytest.raises(
        VariationError,
        match=r"bad.json: parameter entry 0, variation of .* unknown distribution .weibull.",
    ):
        Variation.from_file(bad)


@pytest.fixture(scope="module")
def population(chen):
    return sample_population(chen, default_variation(), N_CELLS, 0)


def _solo(spm, cells, i):
    return jaxcell.simulate(spm, jax.tree.map(lambda x: x[i], cells), EXP)


def test_impossible_cell_is_reported_and_neighbours_intact(spm, population):
    """One cell whose positive particles cannot take lithium (diffusivity 1e-30) ends at once:
    its surface fills and the open-circuit potential (steep at the stoichiometry limit, as
    PyBaMM's) takes the voltage to the 2.5 V limit within seconds. It gets its own outcome,
    the one it has alone, and every other cell equals its solo simulation."""
    name = "Positive particle diffusivity [m2.s-1]"
    cells = population.update({name: population[name].at[2].set(1e-30)})
    sols = jaxcell.simulate_batch(spm, cells, EXP, batch_size=2, progress=False)
    status = np.asarray(sols.status)
    table = population_table(cells, sols, default_variation())
    for i in range(5):
        solo = _solo(spm, cells, i)
        assert status[i] == int(solo.status) and list(np.asarray(sols.step_end[i])) == list(np.asarray(solo.step_end))
        assert status[i] == jaxcell.Status.COMPLETED or i == 2
        np.testing.assert_allclose(sols.voltage[i], solo.voltage, rtol=1e-9)
        assert table["capacity [A.h]"][i] == pytest.approx(float(solo.capacity), rel=1e-9)
        assert table["energy [W.h]"][i] == pytest.approx(float(solo.energy), rel=1e-9)
    assert table["status"][2] == jaxcell.Status(status[2]).name
    assert table["capacity [A.h]"][2] < 0.2 * table["capacity [A.h]"].median()
    assert list(table.columns[:3]) == ["cell", "pack", "module"] and AM_NEG in table


def test_open_weld_cell_in_a_population(spm, population):
    """A cell behind an open tab weld (10 Ohm: the voltage is below every limit under load)
    cannot start its discharge: it ends at once with no charge passed, and the neighbours in
    its chunk are untouched (this needs the event root-finder to accept cells without an
    event, see the note in the issue)."""
    cells = population.update({R_C: population[R_C].at[3].set(10.0)})
    sols = jaxcell.simulate_batch(spm, cells, EXP, batch_size=2, progress=False)
    assert int(sols.step_end[3, 0]) == jaxcell.StepEnd.ALREADY_MET
    assert float(np.nanmax(np.asarray(sols.discharge_capacity[3]))) == 0.0
    assert float(sols.capacity[3]) == 0.0
    # it did not deliver the discharge: reported, and left out of the summary's statistics
    # (it used to count as a completed 0 A.h cell: "failed 0 of 5")
    table = population_table(cells, sols, default_variation())
    assert list(table["delivered"]) == [True, True, True, False, True]
    assert table["outcome"][3] == "completed, but step 1 skipped (end condition held at the start)"
    s = population_summary(table)
    assert s.loc["cells", "capacity [A.h]"] == 4 and s.loc["not delivered", "capacity [A.h]"] == 1
    assert s.loc["failed", "capacity [A.h]"] == 0
    delivered = table["capacity [A.h]"][table["delivered"]]
    assert s.loc["min", "capacity [A.h]"] == delivered.min() > 3.0
    assert not_delivered(table) == {table["outcome"][3]: 1}
    for i in (0, 1, 2, 4):
        assert int(sols.status[i]) == jaxcell.Status.COMPLETED
        np.testing.assert_allclose(
            sols.voltage[i], _solo(spm, cells, i).voltage, rtol=1e-9
        )


def test_summary_and_plot(population):
    """Statistics and plot of a table (a hand-made solution-free table with outputs)."""
    table = population_table(population, variation=default_variation())
    rng = np.random.default_rng(0)
    table["capacity [A.h]"] = 5 + 0.05 * rng.standard_normal(len(table))
    table["energy [W.h]"] = 18 + 0.2 * rng.standard_normal(len(table))
    table["success"] = [True, True, False, True, True]
    s = population_summary(table)
    ok = table[table.success]
    assert (
        s.loc["failed", "capacity [A.h]"] == 1 and s.loc["cells", "energy [W.h]"] == 4
    )
    assert s.loc["mean", "capacity [A.h]"] == pytest.approx(ok["capacity [A.h]"].mean())
    assert s.loc["cv", "energy [W.h]"] == pytest.approx(
        ok["energy [W.h]"].std() / ok["energy [W.h]"].mean()
    )
    assert s.loc["95%", "capacity [A.h]"] == pytest.approx(
        ok["capacity [A.h]"].quantile(0.95)
    )
    fig = plot_population(table, L_NEG)
    assert len(fig.axes) == 3 and fig.axes[2].get_xlabel() == L_NEG


def test_cli_population(tmp_path, capsys, chen, population):
    """`jaxcell population` writes one row per cell (the cells sample_population draws for the
    same seed) and prints the spread; a bad spec file is a clear error."""
    out, png = tmp_path / "cells.csv", tmp_path / "spread.png"
    spec = tmp_path / "spec.toml"
    default_variation().to_file(spec)
    code = main(
        [
            "population",
            "--model",
            "SPM",
            "--n",
            str(N_CELLS),
            "--seed",
            "0",
            "--variation",
            str(spec),
            "--experiment",
            EXP,
            "--batch-size",
            "2",
            "--output",
            str(out),
            "--plot",
            str(png),
        ]
    )
    assert code == 0
    df = pd.read_csv(out)
    assert len(df) == N_CELLS and {
        "cell",
        "pack",
        "module",
        L_NEG,
        AM_NEG,
        "capacity [A.h]",
        "energy [W.h]",
        "status",
    } <= set(df)
    np.testing.assert_allclose(df[L_NEG], np.asarray(population[L_NEG]), rtol=1e-9)
    assert (df.status == "COMPLETED").all() and df["capacity [A.h]"].between(3, 6).all()
    assert png.stat().st_size > 10_000
    text = capsys.readouterr().out
    assert (
        "capacity [A.h]" in text
        and "95%" in text
        and f"delivered  {N_CELLS} of {N_CELLS} cells" in text
    )

    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[parameter]]\nname = "Negative electrode thickness [m]"\ndistribution = "normal"\n'
    )
    assert (
        main(
            ["population", "--variation", str(bad), "--output", str(tmp_path / "x.csv")]
        )
        == 2
    )
    assert "give exactly one of std, rel_std, sigma" in capsys.readouterr().err


def test_reasons_for_not_delivering_are_counted_without_their_times():
    """Cells stopped in the same step for the same reason count as one reason: the outcome's
    stop time made every cell its own line (48 lines for 50 cells stopped at the cut-off)."""
    cut = "stopped: the voltage reached the lower voltage cut-off (in step 1, at t = {} s)"
    table = pd.DataFrame({
        "delivered": [False, False, True, False, False],
        "outcome": [cut.format("3554.52"), cut.format("3561.1"), "completed: every step ended on its own condition",
                    "stopped: the voltage reached the lower voltage cut-off (at the start of step 2)",
                    "stopped: the voltage reached the lower voltage cut-off (in step 2, at t = 7.5e+03 s)"],
    })
    assert not_delivered(table) == {
        "stopped: the voltage reached the lower voltage cut-off (in step 1)": 2,
        "stopped: the voltage reached the lower voltage cut-off (at the start of step 2)": 1,
        "stopped: the voltage reached the lower voltage cut-off (in step 2)": 1,
    }
