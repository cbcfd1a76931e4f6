"""SEI ageing: closed-form moments of the gamma-clock model and its variance split, monotone
paths, the lithium-inventory bound, the memory check, seeds, the feedback map and
electrochemical check-ups.

Monte Carlo checks compare with exact values and allow 4 standard errors. The variance-split
estimators are means over independent cells, so their standard errors are estimated from the
per-cell terms. Designs share shapes so that the sampler compiles once per law."""

import argparse
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from numpyro.distributions import LogNormal, Normal
from scipy import stats

import jaxcell
from jaxcell.ageing import (
    DiffusionLimited,
    MixedLimited,
    ReactionLimited,
    SEIFilm,
    age_population,
    aged_parameters,
    ageing_clock,
    capacity_fade,
    fade_variance_split,
    film_resistance,
    lithium_inventory,
    lithium_lost,
    max_thickness,
    simulate_sei,
    variance_split,
)
from jaxcell.ageing import _population, _sde
from jaxcell.ageing._cli import add_age_parser
from jaxcell.ageing._population import DEPLETED
from jaxcell.ageing._sde import _paths_jit
from jaxcell.cli import main
from jaxcell.physics.constants import F

M, K, CYCLES = 4000, 8, 100.0
TS = np.array([0.5, 50.0, 100.0])
CHECKUP = "Discharge at 1C until 2.5 V"  # age_population's default check-up
L0 = 5e-9
NU = 2.0  # clock variance [cycle]
LOG_MU, LOG_S = np.log(1e-9), 0.25  # lognormal rate constants across cells
# moments of the lognormal rate constant k
E_K = np.exp(LOG_MU + LOG_S**2 / 2)
VAR_K = (np.exp(LOG_S**2) - 1) * np.exp(2 * LOG_MU + LOG_S**2)
E_K2 = np.exp(2 * LOG_MU + 2 * LOG_S**2)


def _split_errors(tau2, sig2, m, k):
    """Exact standard errors of the balanced one-way estimators for Gaussian data: between-cell
    variance of the means B, within-cell variance W, heterogeneity B - W/K, total."""
    se_b = (tau2 + sig2 / k) * np.sqrt(2.0 / (m - 1))
    se_w = sig2 * np.sqrt(2.0 / (m * (k - 1)))
    se_het = np.sqrt(se_b**2 + (se_w / k) ** 2)
    se_tot = np.sqrt(se_b**2 + (se_w * (1 - 1 / k)) ** 2)
    return se_b, se_w, se_het, se_tot


def _check_moments(x, mean, heterogeneity, intrinsic):
    """x: (M, K, T) samples; checks the mean and the variance split against exact values, with
    standard errors from the per-cell terms of each estimator (cells are independent)."""
    x = np.asarray(x)
    m, k = x.shape[:2]
    split = variance_split(x)
    cell_mean = x.mean(axis=1)
    within = x.var(axis=1, ddof=1)
    between = (cell_mean - cell_mean.mean(axis=0)) ** 2 * m / (m - 1)
    for estimate, exact, terms in (
        (cell_mean.mean(axis=0), mean, cell_mean),
        (split.intrinsic, intrinsic, within),
        (split.heterogeneity, heterogeneity, between - within / k),
        (split.total, heterogeneity + intrinsic, between + within * (1 - 1 / k)),
    ):
        se = terms.std(axis=0, ddof=1) / np.sqrt(m)
        np.testing.assert_array_less(np.abs(np.asarray(estimate) - exact), 4 * se)
    return split


def test_variance_split_of_equal_samples_is_zero_not_a_share():
    """Fades that all sit at the lithium inventory are equal: their variance is round-off
    (8e-31 (A.h)^2 from the means), which read as a heterogeneity share of 100 % (the command
    line printed 26.9 % for such a run). No spread is resolved: every part is 0, the share NaN.
    A spread of 1e-9 A.h beside them is still split."""
    x = np.full((20, 3, 2), 5.25299706160239)
    x[:, :, 1] += 1e-9 * np.arange(20)[:, None]  # cells differ, replicates do not
    split = variance_split(x)
    assert float(split.total[0]) == 0.0 and float(split.heterogeneity[0]) == 0.0 and float(split.intrinsic[0]) == 0.0
    assert np.isnan(float(split.heterogeneity_fraction[0]))
    np.testing.assert_allclose(float(split.heterogeneity[1]), np.var(1e-9 * np.arange(20), ddof=1), rtol=1e-4)
    assert float(split.heterogeneity_fraction[1]) == pytest.approx(1.0, abs=1e-4)
    x[3, 1, 0] = np.nan  # a failed path is not "no spread"
    assert np.isnan(float(variance_split(x).total[0]))


def test_rate_laws_and_closed_forms():
    """Each law's noise-free closed form starts at L0 exactly and solves dL/dt = rate(L)."""
    cases = [
        (ReactionLimited(), jnp.array([2.5e-10])),
        (DiffusionLimited(), jnp.array([3.5e-17])),
        (MixedLimited(), jnp.array([1e-9, 3.5e-17])),
    ]
    for law, rates in cases:
        for t in (0.0, 3.0, 700.0):
            L, dLdt = jax.jvp(
                lambda s, law=law, r=rates: law.deterministic_thickness(s, 5e-9, r),
                (t,),
                (1.0,),
            )
            np.testing.assert_allclose(dLdt, law.rate(L, rates), rtol=1e-12)
        assert law.deterministic_thickness(0.0, 5e-9, rates) == 5e-9
    # the sqrt(t) law, and the mixed law's two limits
    assert DiffusionLimited.deterministic_thickness(
        1000.0, 0.0, jnp.array([2e-17])
    ) == pytest.approx(np.sqrt(2 * 2e-17 * 1000.0), rel=1e-14)
    fast_reaction = MixedLimited.deterministic_thickness(
        500.0, 5e-9, jnp.array([1e3, 3.5e-17])
    )
    assert fast_reaction == pytest.approx(
        np.sqrt(25e-18 + 2 * 3.5e-17 * 500.0), rel=1e-9
    )
    fast_diffusion = MixedLimited.deterministic_thickness(
        500.0, 5e-9, jnp.array([2.5e-10, 1e3])
    )
    assert fast_diffusion == pytest.approx(5e-9 + 2.5e-10 * 500.0, rel=1e-9)


def test_ageing_clock_is_a_gamma_process():
    """tau(t) ~ Gamma(t / nu, nu) at every checkpoint, with independent increments: a
    Kolmogorov-Smirnov test of each marginal (one interval shorter than nu, where the gamma
    shape is below 1) and Cov(tau(s), tau(t)) = nu min(s, t). A reaction law with k = 1
    m/cycle from L0 = 0 reads the clock off, L = tau. nu = 0 is the clock tau = t."""
    law = ReactionLimited(reaction_rate=1.0, clock_variance=NU)
    run = {"n_cells": M, "replicates": K, "cycles": CYCLES, "checkpoints": TS}
    tau = np.asarray(
        simulate_sei(law, key=jax.random.key(5), initial_thickness=0.0, **run).thickness
    ).reshape(M * K, TS.size)
    assert np.all(np.diff(tau, axis=1) >= 0) and tau.min() >= 0
    for j, t in enumerate(TS):
        assert stats.kstest(tau[:, j], stats.gamma(t / NU, scale=NU).cdf).pvalue > 1e-3
    # Cov(tau(50), tau(100)) = Var(tau(50)) = nu * 50; the product of the centred values has
    # variance Var(tau50) Var(tau100) + Cov^2 (Isserlis, to leading order)
    n = M * K
    cov = np.cov(tau[:, 1], tau[:, 2])[0, 1]
    assert abs(cov - NU * 50) < 4 * np.sqrt((NU * 50 * NU * 100 + (NU * 50) ** 2) / n)
    ts = jnp.asarray(TS)
    np.testing.assert_array_equal(ageing_clock(jax.random.key(0), ts, 0.0), ts)


def test_reaction_law_moments_and_variance_split():
    """L(t) = L0 + k tau(t) with k lognormal and tau a gamma clock independent of k:
    E = L0 + E[k] t, heterogeneity Var(k) t^2, intrinsic E[k^2] nu t (the intrinsic part
    leads at the first checkpoint, the heterogeneity at cycle 100)."""
    law = ReactionLimited(reaction_rate=LogNormal(LOG_MU, LOG_S), clock_variance=NU)
    paths = simulate_sei(
        law,
        n_cells=M,
        replicates=K,
        cycles=CYCLES,
        checkpoints=TS,
        key=jax.random.key(1),
        initial_thickness=L0,
    )
    assert paths.thickness.shape == (M, K, TS.size)
    split = _check_moments(
        paths.thickness, L0 + E_K * TS, VAR_K * TS**2, E_K2 * NU * TS
    )
    frac = np.asarray(split.heterogeneity_fraction)
    assert frac[0] < 0.5 < frac[-1]


def test_diffusion_law_moments_in_l_squared():
    """The sqrt(t) law on the gamma clock: L^2 = L0^2 + 2 k tau(t), so E = L0^2 + 2 E[k] t,
    heterogeneity 4 Var(k) t^2, intrinsic 4 E[k^2] nu t."""
    law = DiffusionLimited(diffusion_rate=LogNormal(LOG_MU, LOG_S), clock_variance=NU)
    paths = simulate_sei(
        law,
        n_cells=M,
        replicates=K,
        cycles=CYCLES,
        checkpoints=TS,
        key=jax.random.key(2),
        initial_thickness=L0,
    )
    _check_moments(
        paths.thickness**2,
        L0**2 + 2 * E_K * TS,
        4 * VAR_K * TS**2,
        4 * E_K2 * NU * TS,
    )


def test_zero_noise_is_the_deterministic_law():
    """With clock_variance = 0 every path is sqrt(L0^2 + 2 k_D t) for its cell's k_D; changing
    the clock variance, rates and key does not recompile."""
    run = {
        "n_cells": M,
        "replicates": K,
        "cycles": CYCLES,
        "checkpoints": TS,
        "initial_thickness": L0,
    }
    simulate_sei(
        DiffusionLimited(diffusion_rate=LogNormal(LOG_MU, LOG_S)),
        key=jax.random.key(2),
        **run,
    )
    compiled = _paths_jit._cached._cache_size()
    paths = simulate_sei(
        DiffusionLimited(clock_variance=0.0), key=jax.random.key(3), **run
    )
    assert _paths_jit._cached._cache_size() == compiled
    k_d = np.asarray(paths.rates)[:, 0]
    exact = np.sqrt(L0**2 + 2 * k_d[:, None, None] * TS)
    np.testing.assert_allclose(
        paths.thickness, np.broadcast_to(exact, (M, K, TS.size)), rtol=1e-13
    )
    assert np.std(np.log(k_d)) == pytest.approx(
        0.25, rel=0.1
    )  # the default lognormal spread


def test_mixed_law_is_exact_on_the_clock():
    """The clock of a path depends on the key only, so a reaction law with k_R = 1 m/cycle
    reads it off (L - L0 = tau); the mixed law's path with the same key solves its implicit
    closed form (L - L0)/k_R + (L^2 - L0^2)/(2 k_D) = tau at every checkpoint, with no
    discretisation error."""
    # the shapes of test_every_path_is_non_decreasing: no new compile
    run = {"n_cells": 50, "replicates": 2, "cycles": 1000.0, "checkpoints": np.arange(1001.0)}
    key = jax.random.key(11)
    tau = np.asarray(
        simulate_sei(ReactionLimited(reaction_rate=1.0), key=key, **run).thickness
    ) - L0
    k_r, k_d = 1e-9, 3.5e-17
    L = np.asarray(
        simulate_sei(
            MixedLimited(reaction_rate=k_r, diffusion_rate=k_d), key=key, **run
        ).thickness
    )
    np.testing.assert_allclose(
        (L - L0) / k_r + (L**2 - L0**2) / (2 * k_d), tau, rtol=1e-10, atol=1e-9
    )
    assert np.any(np.abs(tau[..., -1] - 1000.0) > 1.0)  # a random clock, not tau = t


def test_every_path_is_non_decreasing():
    """SEI growth is irreversible: with each default law, over every cycle of 1000, no cell's
    thickness, fade or resistance ever decreases, and the fade is never negative (0 at cycle
    0 exactly)."""
    chen = jaxcell.load_parameters("Chen2020")
    for law in (ReactionLimited(), DiffusionLimited(), MixedLimited()):
        res = age_population(
            chen,
            law,
            n_cells=50,
            replicates=2,
            cycles=1000.0,
            key=jax.random.key(0),
            checkpoints=np.arange(1001.0),
        )
        for x in (res.thickness, res.fade, res.resistance):
            assert np.all(np.diff(np.asarray(x), axis=-1) >= 0), type(law).__name__
        fade = np.asarray(res.fade)
        assert np.all(fade[..., 0] == 0.0) and fade.min() >= 0.0
        # and it does grow: the default laws take about 10% of the capacity in 1000 cycles
        assert 0.05 < np.median(fade[..., -1]) / 5.0 < 0.2


def test_fade_is_bounded_by_the_lithium_inventory_at_1e5_cycles():
    """Over 10^5 cycles the default sqrt(t) law would bind more lithium than a Chen2020 cell
    holds in many cells. No fade exceeds the inventory (5.25 A.h); the cells that reach it
    stay there from their depleted_cycle on, with the film at max_thickness; the end of life
    (80% of 5 A.h) comes first; and the run warns."""
    chen = jaxcell.load_parameters("Chen2020")
    with pytest.warns(RuntimeWarning, match="consumed the whole lithium inventory"):
        res = age_population(
            chen, DiffusionLimited(), n_cells=50, replicates=2, cycles=1e5, key=jax.random.key(0)
        )
    fade, L = np.asarray(res.fade), np.asarray(res.thickness)
    cyc = np.asarray(res.cycles)
    inventory = F * float(lithium_inventory(chen)) / 3600
    np.testing.assert_allclose(res.inventory_capacity, inventory, rtol=1e-15)
    assert fade.max() <= inventory * (1 + 1e-12)
    assert np.all(np.diff(fade, axis=-1) >= 0)
    dead = np.asarray(res.depleted_cycle)
    assert 0.1 < np.isfinite(dead).mean() < 0.9  # some cells, not all
    after = cyc[None, None, :] >= dead[..., None]  # NaN: never
    np.testing.assert_allclose(fade[after], inventory, rtol=1e-12)
    np.testing.assert_allclose(L[after], float(max_thickness(chen)), rtol=1e-14)
    assert np.all(L[~after] < float(max_thickness(chen)))
    eol = np.asarray(res.end_of_life_cycle)
    assert np.all(np.isfinite(eol[np.isfinite(dead)]))
    assert np.all(eol[np.isfinite(dead)] < dead[np.isfinite(dead)])
    # the end-of-life cycle is the first checkpoint with 1 A.h lost
    np.testing.assert_allclose(res.end_of_life_fade, 1.0, rtol=1e-15)
    i = np.argmax(fade >= 1.0, axis=-1)
    np.testing.assert_array_equal(np.where((fade >= 1.0).any(-1), cyc[i], np.nan), eol)
    df = res.to_pandas()
    assert df.depleted.sum() == after.sum()
    with pytest.raises(ValueError, match=r"end_of_life must be a fraction .* \(0, 1\)"):
        age_population(chen, DiffusionLimited(), n_cells=2, cycles=10.0, key=jax.random.key(0), end_of_life=80)
    with pytest.raises(ValueError, match="checkpoints is empty"):  # was named as out of range, which [] is not
        age_population(chen, DiffusionLimited(), n_cells=2, cycles=10.0, key=jax.random.key(0), checkpoints=[])


def test_outputs_that_do_not_fit_are_refused_before_any_compute(monkeypatch):
    """Checkpoints every cycle for 10^7 cycles of 10 cells x 2 replicates would take 7.5 GiB:
    refused with the sizes and the limit named, before sampling anything. The number of cycles
    itself costs nothing: 10^7 cycles at 101 checkpoints run."""

    def no_compute(*args, **kwargs):
        raise AssertionError("the population was sampled")

    chen = jaxcell.load_parameters("Chen2020")
    every_cycle = np.arange(0.0, 1e7 + 1.0)
    with monkeypatch.context() as m:
        m.setattr(_sde, "_paths_jit", no_compute)
        m.setattr(ReactionLimited, "sample_rates", no_compute)
        with pytest.raises(
            ValueError,
            match=r"needs 7\.45 GiB \(n_cells x replicates x checkpoints = 10 x 2 x 10000001 "
            r"values of 40 bytes\), above the limit max_output_bytes = 2 GiB",
        ):
            age_population(
                chen, ReactionLimited(), n_cells=10, replicates=2, cycles=1e7,
                key=jax.random.key(0), checkpoints=every_cycle,
            )
        with pytest.raises(ValueError, match="max_output_bytes = 0.5 GiB"):
            simulate_sei(
                ReactionLimited(), n_cells=10**6, replicates=10, cycles=10.0,
                key=jax.random.key(0), max_output_bytes=2**29,
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # every cell exhausts its lithium
        res = age_population(
            chen, DiffusionLimited(), n_cells=50, replicates=2, cycles=1e7, key=jax.random.key(0)
        )
    assert res.fade.shape == (50, 2, 101)
    assert np.all(np.isfinite(np.asarray(res.depleted_cycle)))


def test_seeds_reproduce_and_cells_do_not_depend_on_population_size():
    law = ReactionLimited()
    a = simulate_sei(law, n_cells=3, replicates=2, cycles=20.0, key=jax.random.key(7))
    b = simulate_sei(law, n_cells=3, replicates=2, cycles=20.0, key=jax.random.key(7))
    c = simulate_sei(law, n_cells=3, replicates=2, cycles=20.0, key=jax.random.key(8))
    np.testing.assert_array_equal(a.thickness, b.thickness)
    np.testing.assert_array_equal(a.rates, b.rates)
    assert not np.any(np.asarray(a.rates) == np.asarray(c.rates))
    assert np.all(
        np.asarray(a.thickness[:, :, 1:]) != np.asarray(c.thickness[:, :, 1:])
    )
    # replicates of a cell share its rate but not its noise
    assert np.all(
        np.asarray(a.thickness[:, 0, 1:]) != np.asarray(a.thickness[:, 1, 1:])
    )
    # cell i's rates (and so its paths) are the same in a population of 5
    np.testing.assert_array_equal(
        law.sample_rates(jax.random.key(7), 5)[:3],
        law.sample_rates(jax.random.key(7), 3),
    )


def test_variance_split_estimator_on_known_groups():
    """Q = mu_i + e_ik with mu_i ~ N(0, 4), e_ik ~ N(0, 1): parts 4 and 1; with no noise the
    intrinsic part is exactly zero and the heterogeneity is the variance of the cell values."""
    rng = np.random.default_rng(0)
    m, k = 2000, 5
    q = rng.normal(0, 2, (m, 1)) + rng.normal(0, 1, (m, k))
    split = variance_split(q)
    _, se_w, se_het, se_tot = _split_errors(4.0, 1.0, m, k)
    assert abs(float(split.intrinsic) - 1.0) < 4 * se_w
    assert abs(float(split.heterogeneity) - 4.0) < 4 * se_het
    assert abs(float(split.total) - 5.0) < 4 * se_tot
    assert float(split.heterogeneity_fraction) == pytest.approx(
        float(split.heterogeneity / split.total)
    )
    cells = rng.normal(size=(50, 1, 3))
    exact = variance_split(np.repeat(cells, 4, axis=1))
    np.testing.assert_array_equal(exact.intrinsic, 0.0)
    np.testing.assert_allclose(
        exact.heterogeneity, np.var(cells[:, 0], axis=0, ddof=1), rtol=1e-12
    )
    with pytest.raises(ValueError, match="K >= 2"):
        variance_split(np.ones((10, 1, 3)))


def test_fade_variance_split_scales_the_thickness_split():
    """Fade is affine in L (dQ/dL = F z S / (3600 V_SEI)), so its split is the thickness split
    times (dQ/dL)^2, at every checkpoint."""
    chen = jaxcell.load_parameters("Chen2020")
    law = ReactionLimited(reaction_rate=LogNormal(LOG_MU, LOG_S), clock_variance=NU)
    film = SEIFilm(initial_thickness=L0)
    key = jax.random.key(1)
    cycles, split = fade_variance_split(
        chen,
        law,
        n_cells=M,
        replicates=K,
        cycles=CYCLES,
        key=key,
        checkpoints=TS,
        film=film,
    )
    np.testing.assert_array_equal(cycles, TS)
    paths = simulate_sei(
        law,
        n_cells=M,
        replicates=K,
        cycles=CYCLES,
        checkpoints=TS,
        key=key,
        initial_thickness=L0,
    )
    thick = variance_split(paths.thickness)
    slope = float(capacity_fade(L0 + 1e-9, chen, film)) / 1e-9
    np.testing.assert_allclose(
        split.heterogeneity, slope**2 * thick.heterogeneity, rtol=1e-9
    )
    np.testing.assert_allclose(split.intrinsic, slope**2 * thick.intrinsic, rtol=1e-9)


def test_film_consequences_and_feedback_map():
    chen = jaxcell.load_parameters("Chen2020")
    film = SEIFilm()
    L = np.array([5e-9, 105e-9, 205e-9])
    eps, R_n, L_n = 0.75, 5.86e-6, 85.2e-6
    area = 0.065 * 1.58
    surface = 3 * eps / R_n * L_n * area
    n_li = 2.0 * (L - 5e-9) * surface / 9.585e-5
    np.testing.assert_allclose(lithium_lost(L, chen), n_li, rtol=1e-12)
    np.testing.assert_allclose(capacity_fade(L, chen), F * n_li / 3600, rtol=1e-12)
    assert float(capacity_fade(6e-9, chen)) == pytest.approx(
        1.879e-3, rel=1e-3
    )  # per nm
    np.testing.assert_allclose(film_resistance(L, chen), 2e5 * L / surface, rtol=1e-12)

    aged = aged_parameters(chen, L, film)
    assert aged.batch_shape == (3,)
    c = np.asarray(aged["Initial concentration in negative electrode [mol.m-3]"])
    # the geometry cancels: a concentration drop of z (L - L0) 3 / (R_n V_SEI)
    np.testing.assert_allclose(
        c, 29866.0 - 2 * (L - 5e-9) * 3 / (R_n * 9.585e-5), rtol=1e-12
    )
    # the lithium missing from the negative electrode is the lithium in the film
    np.testing.assert_allclose(
        (29866.0 - c) * eps * L_n * area * F / 3600, capacity_fade(L, chen), rtol=1e-12
    )
    np.testing.assert_allclose(
        aged["Contact resistance [Ohm]"], 2e5 * L / surface, rtol=1e-12
    )
    assert (
        aged["Positive electrode thickness [m]"]
        == chen["Positive electrode thickness [m]"]
    )

    # the lithium inventory: the negative electrode's lithium at the charged state, all of it in
    # the film at L0 + c0 R_n V_SEI / 6 = 2.8 um, where the fade is the whole inventory
    inventory = 29866.0 * eps * L_n * area
    assert float(lithium_inventory(chen)) == pytest.approx(inventory, rel=1e-12)
    top = 5e-9 + 29866.0 * R_n * 9.585e-5 / 6
    assert float(max_thickness(chen, film)) == pytest.approx(top, rel=1e-12)
    assert float(capacity_fade(top, chen)) == pytest.approx(F * inventory / 3600, rel=1e-12)
    assert F * inventory / 3600 == pytest.approx(5.253, abs=1e-3)  # 5 A.h nominal
    with pytest.raises(ValueError, match=r"capacity_fade: SEI thickness 3e-06 m .* 2\.801e-06\] m"):
        capacity_fade(np.array([1e-7, 3e-6]), chen)
    with pytest.raises(ValueError, match="lithium_lost: .*inventory"):
        lithium_lost(-1e-9, chen)
    with pytest.raises(
        ValueError, match=r"cell 1 .* Accepted thickness: 0 m to 2\.80\d*e-06 m"
    ):
        aged_parameters(chen, np.array([1e-7, 5e-5]), film)
    with pytest.raises(
        ValueError, match="SEIFilm.resistivity must be a finite positive"
    ):
        SEIFilm(resistivity=-1.0)
    with pytest.raises(ValueError, match="non-negative"):
        ReactionLimited(reaction_rate=-1e-10)
    with pytest.raises(ValueError, match="MixedLimited.clock_variance must be a finite non-negative"):
        MixedLimited(clock_variance=-1.0)
    with pytest.raises(ValueError, match="cell"):
        ReactionLimited(reaction_rate=Normal(0.0, 1e-10)).sample_rates(
            jax.random.key(0), 50
        )
    with pytest.raises(ValueError, match="scalar distribution"):
        DiffusionLimited(diffusion_rate=LogNormal(jnp.zeros(2), 1.0))


def test_checkups_through_simulate_batch(spm):
    """Aged cells lose capacity and energy at a 1C check-up; without film resistance the
    capacity lost is bounded by the lithium lost (and is most of it); the film resistance
    takes a little more. Every check-up batch here has 3 cells: one compile."""
    chen = jaxcell.load_parameters("Chen2020")
    law = ReactionLimited(reaction_rate=2.5e-10, clock_variance=0.0)
    res = age_population(
        chen,
        law,
        n_cells=1,
        cycles=1000.0,
        key=jax.random.key(0),
        checkups=[0, 500, 1000],
        model=spm,
    )
    assert np.all(np.asarray(res.checkup_status) == 0) and np.asarray(res.checkup_delivered).all()
    cap = np.asarray(res.checkup_capacity)[0]
    energy = np.asarray(res.checkup_energy)[0]
    assert np.all(np.diff(cap) < 0) and np.all(np.diff(energy) < 0)
    L = 5e-9 + 2.5e-10 * np.array([0.0, 500.0, 1000.0])
    np.testing.assert_allclose(
        np.asarray(res.thickness)[0, 0, [0, 50, 100]], L, rtol=1e-12
    )
    fade = np.asarray(capacity_fade(L, chen))

    thin = jaxcell.simulate_batch(
        spm, aged_parameters(chen, L, SEIFilm(resistivity=1e-12)), CHECKUP
    )
    cap_li = np.asarray(thin.capacity)
    lost_li = cap_li[0] - cap_li[1:]
    assert np.all(lost_li <= fade[1:]) and np.all(lost_li > 0.9 * fade[1:])
    assert np.all(cap[1:] < cap_li[1:])  # film resistance: the cut-off comes earlier
    df = res.to_pandas()
    rows = df[df.capacity_Ah.notna()]
    np.testing.assert_array_equal(rows.cycle, [0.0, 500.0, 1000.0])
    np.testing.assert_allclose(rows.capacity_Ah, cap)

    # 20000 cycles at 0.25 nm/cycle would be 5 um of film, more than the 2.8 um that hold the
    # whole lithium inventory: the film stops at 2.8 um and the last check-up finds no
    # lithium (capacity 0, status DEPLETED, no solve); the earlier ones are the cells above
    with pytest.warns(RuntimeWarning, match="1 consumed the whole lithium inventory"):
        dead = age_population(
            chen,
            law,
            n_cells=1,
            cycles=20000.0,
            key=jax.random.key(0),
            checkups=[0, 1000, 20000],
            model=spm,
        )
    np.testing.assert_array_equal(dead.checkup_status[0], [0, 0, DEPLETED])
    np.testing.assert_array_equal(dead.checkup_delivered[0], [True, True, False])
    np.testing.assert_allclose(dead.checkup_capacity[0, :2], cap[[0, 2]], rtol=1e-12)
    assert float(dead.checkup_capacity[0, 2]) == 0.0
    assert float(dead.thickness[0, 0, -1]) == pytest.approx(float(max_thickness(chen)), rel=1e-14)
    # L0 + k t reaches 2.8 um at cycle 11183; the first checkpoint after it is 11200
    assert float(dead.depleted_cycle[0, 0]) == 11200.0


def test_cli_age_counts_only_check_ups_that_delivered(tmp_path, capsys):
    """A check-up whose step is skipped (a charge to 4.2 V of a charged cell: its limit holds at
    the start) completes with 0 A.h. The summary counted such cells as check-ups that did not
    fail (a median capacity of 0, "failed 0"); it now counts the delivered ones only and says
    how many did not deliver, and the output has a delivered column."""
    out = tmp_path / "fade.csv"
    assert main(["age", "--n", "3", "--cycles", "10", "--replicates", "1", "--checkups", "0", "--experiment",
                 "Charge at 1C until 4.2 V", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "cycle 0: no check-up delivered the experiment; delivered 0 of 3, failed 0, not delivered otherwise 3" in text
    assert "capacity median" not in text
    df = pd.read_csv(out)
    rows = df[df.delivered.notna()]
    assert len(rows) == 3 and not rows.delivered.astype(bool).any() and (rows.status == 0).all()


def test_cli_age_explains_a_negative_heterogeneity(tmp_path, capsys):
    """Four cells with the default noise paths (seed 0): the unbiased heterogeneity estimate
    comes out negative at cycles 2.5 and 7.5 (-13.7 and -21.0 (mA.h)^2). The table says why,
    instead of leaving a negative variance unexplained."""
    assert main(["age", "--n", "4", "--cycles", "10", "--seed", "0", "--output", str(tmp_path / "fade.csv")]) == 0
    text = capsys.readouterr().out
    rows = [line.split() for line in text.splitlines() if line.strip().startswith(("2.5 ", "7.5 "))]
    assert rows and all(float(r[3]) < 0 for r in rows)
    assert "a negative heterogeneity is the unbiased estimator's sampling error" in text


def test_cli_age_writes_csv_plot_and_split(tmp_path, capsys, monkeypatch):
    parser = argparse.ArgumentParser(prog="jaxcell")
    add_age_parser(parser.add_subparsers(dest="command", required=True))
    out, png = tmp_path / "fade.csv", tmp_path / "fan.png"
    args = parser.parse_args(
        [
            "age",
            "--n",
            "3",
            "--cycles",
            "20",
            "--replicates",
            "2",
            "--law",
            "reaction",
            "--seed",
            "1",
            "--checkups",
            "0,20",
            "--model",
            "SPM",
            "--batch-size",
            "3",
            "--output",
            str(out),
            "--plot",
            str(png),
        ]
    )
    assert args.func(args) == 0
    df = pd.read_csv(out)
    assert list(df.columns[:7]) == [
        "cell",
        "replicate",
        "cycle",
        "reaction_rate_m_per_cycle",
        "thickness_m",
        "fade_Ah",
        "resistance_Ohm",
    ]
    assert len(df) == 3 * 101 and (df.replicate == 0).all()
    assert df.capacity_Ah.notna().sum() == 6 and (df.status >= 0).sum() == 6
    assert df.delivered.notna().sum() == 6 and df.delivered.dropna().astype(bool).all()
    assert png.stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "variance split" in text and "check-ups (SPM" in text and "heterog." in text
    assert text.count("; delivered 3 of 3, failed 0") == 2

    # bad input: exit status 2 and a message, through the command line's own entry point
    assert main(["age", "--checkups", "0,x", "--output", str(tmp_path / "x.csv")]) == 2
    assert "--checkups expects comma-separated cycles" in capsys.readouterr().err
    assert main(["age", "--end-of-life", "80", "--output", str(tmp_path / "x.csv")]) == 2
    assert "--end-of-life must be the remaining fraction of the nominal capacity, in (0, 1)" in (
        capsys.readouterr().err
    )

    # 10^7 cycles: every cell's film ends holding the whole lithium inventory; the fade stops
    # there, the cells are counted and a warning says so
    args = parser.parse_args(
        ["age", "--n", "3", "--cycles", "1e7", "--replicates", "2", "--output", str(out)]
    )
    assert args.func(args) == 0
    captured = capsys.readouterr()
    assert "lithium inventory (5.253 A.h) exhausted, film growth stopped: 6 of 6 paths" in captured.out
    assert "jaxcell: warning:" in captured.err and "6 consumed the whole lithium inventory" in captured.err
    df = pd.read_csv(out)
    assert df.fade_Ah.max() <= 5.253 and df.depleted.iloc[-1]

    # a population too large for --max-memory is refused before anything is loaded
    def no_run(*a, **k):
        raise AssertionError("the population was aged")

    monkeypatch.setattr(_population, "age_population", no_run)
    assert main(["age", "--n", "10000000", "--output", str(tmp_path / "y.csv")]) == 2
    err = capsys.readouterr().err
    assert "needs 226 GiB (--n 10000000 x --replicates 4 x 101 checkpoints x 40 bytes" in err
    assert "above the limit --max-memory = 2 GiB" in err


def _no_ageing(*args, **kwargs):
    raise AssertionError("the population was aged")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--output", "{tmp}/missing/fade.csv"], "--output '{tmp}/missing/fade.csv': directory '{tmp}/missing' does not exist"),
        (["--output", "{tmp}/fade.txt"], "--output '{tmp}/fade.txt': the file name must end in .csv"),
        (["--plot", "{tmp}/missing/fan.png"], "--plot '{tmp}/missing/fan.png': directory '{tmp}/missing' does not exist"),
        (["--plot", "/proc/fan.png"], "--plot '/proc/fan.png': cannot create a file in directory '/proc'"),
        (["--plot", "{tmp}/fan.xyz"], "--plot '{tmp}/fan.xyz': the file name must end in"),
        (["--experiment", "Discharge at C/0 for 1 hour"], "'c/0' divides by zero"),
        (["--experiment", "Discharge at 1e400 C for 1 s", "--checkups", "0"], "'1e400 c' overflows"),
    ],
)
def test_cli_age_bad_input_refused_before_ageing(tmp_path, capsys, monkeypatch, args, message):
    """Output paths and the check-up protocol are checked before the population is aged (they
    were found after the whole run, with a traceback): exit 2, one message naming the input."""
    monkeypatch.setattr(_population, "age_population", _no_ageing)
    argv = ["age", "--output", str(tmp_path / "fade.csv"), *[a.format(tmp=tmp_path) for a in args]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--seed", str(2**63), "argument --seed: expected an integer in [0, 2**63 - 1]"),
        ("--seed", "-1", "argument --seed: expected an integer in [0, 2**63 - 1]"),
        ("--max-memory", "0", "argument --max-memory: expected a positive number of GiB, got '0'"),
        ("--max-memory", "inf", "argument --max-memory: expected a positive number of GiB, got 'inf'"),
    ],
)
def test_cli_age_seed_and_memory_ranges(tmp_path, capsys, monkeypatch, option, value, message):
    """--seed takes the range of `jaxcell population`'s (2**63 overflowed jax.random.key, -1 was
    accepted); --max-memory a positive number of GiB, as for `population`."""
    monkeypatch.setattr(_population, "age_population", _no_ageing)
    with pytest.raises(SystemExit) as info:
        main(["age", option, value, "--output", str(tmp_path / "fade.csv")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_age_refuses_empty_checkups(tmp_path, capsys):
    """--checkups "" meant no check-ups, silently; it is bad input like --checkups x."""
    assert main(["age", "--checkups", "", "--output", str(tmp_path / "x.csv")]) == 2
    assert "--checkups expects comma-separated cycles, e.g. 0,500,1000, got ''" in capsys.readouterr().err
    # an empty entry was passed over, a repeated one merged: both silently
    for text, why in (("0,,5", ""), ("0,0", ": cycle 0 is named more than once")):
        assert main(["age", "--checkups", text, "--output", str(tmp_path / "x.csv")]) == 2
        assert f"--checkups expects comma-separated cycles, e.g. 0,500,1000, got {text!r}{why}" in capsys.readouterr().err
