"""SEI ageing SDE: closed-form moments, the variance split, reflection, seeds, the feedback map
and electrochemical check-ups.

Monte Carlo checks compare with exact values and allow 4 standard errors, the standard errors
computed from the true parameters (every sampled quantity here is Gaussian, so the standard
errors of the variance estimators are exact). Designs share shapes so that the SDE compiles
once per law: M = 400 cells x K = 10 replicates, 100 cycles in steps of 1 cycle."""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from numpyro.distributions import LogNormal, Normal

import jaxcell
from jaxcell.ageing import (
    DiffusionLimited,
    MixedLimited,
    ReactionLimited,
    SEIFilm,
    age_population,
    aged_parameters,
    capacity_fade,
    fade_variance_split,
    film_resistance,
    lithium_lost,
    simulate_sei,
    variance_split,
)
from jaxcell.ageing._cli import add_age_parser
from jaxcell.ageing._sde import _paths_jit
from jaxcell.physics.constants import F

M, K, CYCLES = 400, 10, 100.0
TS = np.array([25.0, 50.0, 100.0])
CHECKUP = "Discharge at 1C until 2.5 V"  # age_population's default check-up
L0 = 50e-9  # far enough above the reflecting floor that no path reaches it (> 10 sigma)


def _split_errors(tau2, sig2, m=M, k=K):
    """Exact standard errors of the balanced one-way estimators for Gaussian data: between-cell
    variance of the means B, within-cell variance W, heterogeneity B - W/K, total."""
    se_b = (tau2 + sig2 / k) * np.sqrt(2.0 / (m - 1))
    se_w = sig2 * np.sqrt(2.0 / (m * (k - 1)))
    se_het = np.sqrt(se_b**2 + (se_w / k) ** 2)
    se_tot = np.sqrt(se_b**2 + (se_w * (1 - 1 / k)) ** 2)
    return se_b, se_w, se_het, se_tot


def _check_moments(x, mean, tau2, sig2):
    """x: (M, K, T) samples of a Gaussian quantity with cell effect variance tau2 and noise
    variance sig2; checks the mean and the three variance estimates against the truth."""
    split = variance_split(x)
    _, se_w, se_het, se_tot = _split_errors(tau2, sig2)
    se_mean = np.sqrt((tau2 + sig2 / K) / M)
    np.testing.assert_array_less(
        np.abs(np.asarray(x).mean(axis=(0, 1)) - mean), 4 * se_mean
    )
    np.testing.assert_array_less(np.abs(split.intrinsic - sig2), 4 * se_w)
    np.testing.assert_array_less(np.abs(split.heterogeneity - tau2), 4 * se_het)
    np.testing.assert_array_less(np.abs(split.total - (tau2 + sig2)), 4 * se_tot)


def test_rate_laws_and_closed_forms():
    """Each law's noise-free closed form starts at L0 and solves dL/dt = rate(L)."""
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
        assert law.deterministic_thickness(0.0, 5e-9, rates) == pytest.approx(
            5e-9, rel=1e-14
        )
        np.testing.assert_allclose(
            law.thickness(law.growth(123e-9)), 123e-9, rtol=1e-15
        )
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


def test_reaction_law_moments_and_variance_split():
    """L(t) = L0 + k t + sigma W_t with k ~ N(mu, s^2): E = L0 + mu t, heterogeneity s^2 t^2,
    intrinsic sigma^2 t (the two parts equal at t = 100)."""
    mu, s, sigma = 1e-9, 2e-10, 2e-9
    law = ReactionLimited(reaction_rate=Normal(mu, s), noise=sigma)
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
    _check_moments(paths.thickness, L0 + mu * TS, s**2 * TS**2, sigma**2 * TS)


def test_diffusion_law_moments_in_l_squared():
    """The sqrt(t) law in its growth variable: L^2 = L0^2 + 2 k t + sigma W_t with
    k ~ N(mu, s^2): E = L0^2 + 2 mu t, heterogeneity 4 s^2 t^2, intrinsic sigma^2 t."""
    mu, s, sigma = 5e-17, 1e-17, 2e-16
    law = DiffusionLimited(diffusion_rate=Normal(mu, s), noise=sigma)
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
        paths.thickness**2, L0**2 + 2 * mu * TS, 4 * s**2 * TS**2, sigma**2 * TS
    )


def test_zero_noise_is_the_deterministic_law():
    """With sigma = 0 every path is sqrt(L0^2 + 2 k_D t) for its cell's k_D (Euler is exact
    for the constant drift of L^2); changing noise, rates and key does not recompile."""
    run = {
        "n_cells": M,
        "replicates": K,
        "cycles": CYCLES,
        "checkpoints": TS,
        "initial_thickness": L0,
    }
    simulate_sei(
        DiffusionLimited(diffusion_rate=Normal(5e-17, 1e-17)),
        key=jax.random.key(2),
        **run,
    )
    compiled = _paths_jit._cached._cache_size()
    paths = simulate_sei(DiffusionLimited(noise=0.0), key=jax.random.key(3), **run)
    assert _paths_jit._cached._cache_size() == compiled
    k_d = np.asarray(paths.rates)[:, 0]
    exact = np.sqrt(L0**2 + 2 * k_d[:, None, None] * TS)
    np.testing.assert_allclose(
        paths.thickness, np.broadcast_to(exact, (M, K, TS.size)), rtol=1e-13
    )
    assert np.std(np.log(k_d)) == pytest.approx(
        0.25, rel=0.1
    )  # the default lognormal spread


def test_mixed_law_euler_converges_at_order_one():
    """The mixed law's drift depends on L: Euler's error against the closed form halves with
    the step, and Euler overshoots (it takes each step at the rate of the thinner film)."""
    law = MixedLimited(reaction_rate=1e-9, diffusion_rate=3.5e-17, noise=0.0)
    exact = float(
        MixedLimited.deterministic_thickness(CYCLES, 5e-9, jnp.array([1e-9, 3.5e-17]))
    )
    errors = []
    for dt in (2.0, 1.0):
        paths = simulate_sei(
            law,
            n_cells=2,
            cycles=CYCLES,
            checkpoints=[CYCLES],
            key=jax.random.key(0),
            dt=dt,
        )
        errors.append((float(paths.thickness[0, 0, -1]) - exact) / exact)
    assert errors[0] > 0 and errors[1] > 0
    assert errors[0] / errors[1] == pytest.approx(2.0, rel=0.05)


def test_reflection_at_zero_is_the_discrete_skorokhod_map():
    """No drift, L0 = 0: each Euler step is reflected at 0, y_n = max(y_{n-1} + dW, 0), whose
    mean is exactly sigma sqrt(dt / (2 pi)) sum_{k<=n} k^(-1/2) (Spitzer's identity for the
    maximum of a Gaussian random walk)."""
    sigma = 1e-9
    law = ReactionLimited(reaction_rate=0.0, noise=sigma)
    paths = simulate_sei(
        law,
        n_cells=M,
        replicates=K,
        cycles=CYCLES,
        checkpoints=TS,
        key=jax.random.key(4),
        initial_thickness=0.0,
    )
    L = np.asarray(paths.thickness).reshape(M * K, -1)
    assert L.min() >= 0.0
    exact = np.array(
        [
            sigma * np.sqrt(1 / (2 * np.pi)) * np.sum(np.arange(1, n + 1) ** -0.5)
            for n in TS.astype(int)
        ]
    )
    se = L.std(axis=0, ddof=1) / np.sqrt(M * K)
    np.testing.assert_array_less(np.abs(L.mean(axis=0) - exact), 4 * se)


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
    law = ReactionLimited(reaction_rate=Normal(1e-9, 2e-10), noise=2e-9)
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

    # the negative electrode's lithium is all in the film at L0 + c0 R_n V_SEI / 6 = 2.8 um
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
    law = ReactionLimited(reaction_rate=2.5e-10, noise=0.0)
    res = age_population(
        chen,
        law,
        n_cells=1,
        cycles=1000.0,
        key=jax.random.key(0),
        checkups=[0, 500, 1000],
        model=spm,
    )
    assert np.all(np.asarray(res.checkup_status) == 0)
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
    cap_li = np.array(
        [jax.tree.map(lambda x, i=i: x[i], thin).capacity for i in range(3)]
    )
    lost_li = cap_li[0] - cap_li[1:]
    assert np.all(lost_li <= fade[1:]) and np.all(lost_li > 0.9 * fade[1:])
    assert np.all(cap[1:] < cap_li[1:])  # film resistance: the cut-off comes earlier
    df = res.to_pandas()
    rows = df[df.capacity_Ah.notna()]
    np.testing.assert_array_equal(rows.cycle, [0.0, 500.0, 1000.0])
    np.testing.assert_allclose(rows.capacity_Ah, cap)


def test_cli_age_writes_csv_plot_and_split(tmp_path, capsys):
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
    assert png.stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "variance split" in text and "check-ups (SPM" in text and "heterog." in text

    bad = parser.parse_args(
        ["age", "--checkups", "0,x", "--output", str(tmp_path / "x.csv")]
    )
    assert bad.func(bad) == 2
    assert "--checkups expects comma-separated cycles" in capsys.readouterr().err
