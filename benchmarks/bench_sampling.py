"""Posterior sampling: jaxcell's NUTS (numpyro, gradients through the solver) against PyBOP's
samplers on PyBOP's own example problem, in one process.

The problem is PyBOP 26.3's ``examples/scripts/getting_started/monte_carlo_sampling.py``:

* data: PyBaMM's SPM, Chen2020 from 50 % state of charge (``set_initial_state(0.5)``),
  "Discharge at 0.5C for 3 minutes (5 second period)" (37 points), plus Gaussian noise of 5 mV
  (seeded here);
* unknowns: both electrodes' active material volume fractions, priors Normal(0.68, 0.02) and
  Normal(0.65, 0.02) (PyBOP samples their logarithms), and the noise level sigma with PyBOP's
  default prior for ``GaussianLogLikelihood``, Uniform(1e-10, 0.03);
* initial concentrations are those of 50 % at the nominal fractions for every sample (PyBOP's
  ``set_initial_state`` is applied once, before the fractions vary); jaxcell does the same with
  ``jaxcell.with_initial_soc`` once, outside the model.

Samplers, each with 3 chains:

* PyBOP ``DifferentialEvolutionMCMC`` and ``HaarioBardenetACMC`` (PINTS), ``--pybop-iterations``
  per chain (default 5000) of which ``--pybop-warmup`` (default 1000) are discarded;
* jaxcell: numpyro NUTS through ``jaxcell.simulate`` (SPM, float64, rtol 1e-6), chains one after
  another (``jaxcell.inference.run_nuts``), ``--warmup`` (500) and ``--samples`` (1000) each.
  A first short run (1 warm-up draw, 1 sample) compiles the solve and its gradient; the wall
  time is the 3-chain run after it (whatever it still compiles included), and the figure with
  the first run's time added is reported too. ``--chains``, ``--chain-method vectorized``;
  ``--warm-start``: a MAP fit first (its time is part of the wall time; its first, compiling,
  call part of the compile figure), the chains started from its Laplace approximation, whose
  covariance is the mass matrix, and the warmup adapting the step size only.
* jaxcell independence Metropolis-Hastings (``jaxcell.inference.run_imh``): a MAP fit, then
  ``--imh-chains`` (16) chains of ``--imh-warmup`` (100) + ``--imh-samples`` (1000) proposals
  from the Student-t (``--imh-df``, 5) around its Laplace approximation, the potentials of all
  of them in batched forward solves. A first MAP fit and a run of one chunk compile; the wall
  time is a second MAP fit and the sampling.

Every sampler's kept draws go through the same estimators (numpyro's split R-hat and effective
sample size over the chains); the figure of merit is the smallest ESS of the three unknowns per
second of sampling. Output: a table on stdout and ``--out`` JSON.

Usage (needs ``pip install pybop`` beside ``.[bench]``)::

    python benchmarks/bench_sampling.py
    python benchmarks/bench_sampling.py --chains 16 --chain-method vectorized --warm-start --warmup 150
    python benchmarks/bench_sampling.py --pybop-iterations 300 --pybop-warmup 100 --warmup 50 --samples 50   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import numpy as np  # noqa: E402

import jaxcell  # noqa: E402

NAMES = ["Negative electrode active material volume fraction", "Positive electrode active material volume fraction"]
PRIOR = {NAMES[0]: (0.68, 0.02), NAMES[1]: (0.65, 0.02)}
SIGMA_TRUE, SIGMA_MAX = 0.005, 0.03
STEP = "Discharge at 0.5C for 3 minutes (5 second period)"


def make_data(seed):
    import pybamm

    pv = pybamm.ParameterValues("Chen2020")
    pv.set_initial_state(0.5)
    sol = pybamm.Simulation(pybamm.lithium_ion.SPM(), parameter_values=pv, experiment=pybamm.Experiment([STEP])).solve()
    t, i, v = sol.t, sol["Current [A]"].data, sol["Voltage [V]"].data
    noisy = v + np.random.default_rng(seed).normal(0.0, SIGMA_TRUE, len(v))
    return t, i, noisy, v


def chain_stats(chains):
    """chains: (n_chains, n_draws, n_params) -> per-parameter R-hat and ESS (numpyro's estimators)."""
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    chains = np.asarray(chains, dtype=float)
    return ([float(split_gelman_rubin(chains[..., k])) for k in range(chains.shape[-1])],
            [float(effective_sample_size(chains[..., k])) for k in range(chains.shape[-1])])


def run_pybop(kind, t, i, v, iterations, warmup, seed):
    import pybamm
    import pybop

    np.random.seed(seed)
    pv = pybamm.ParameterValues("Chen2020")
    pv.set_initial_state(0.5)
    dataset = pybop.Dataset({"Time [s]": t, "Current [A]": i, "Voltage [V]": v})
    pv.update({name: pybop.Parameter(distribution=pybop.Gaussian(*PRIOR[name]), transformation=pybop.LogTransformation())
               for name in NAMES})
    simulator = pybop.pybamm.Simulator(pybamm.lithium_ion.SPM(), parameter_values=pv, protocol=dataset)
    problem = pybop.LogPosterior(simulator, pybop.GaussianLogLikelihood(dataset))  # 26.3: the posterior is the problem
    options = pybop.PintsSamplerOptions(n_chains=3, max_iterations=iterations, warm_up_iterations=warmup, verbose=False)
    sampler = getattr(pybop, kind)(problem, options=options)
    t0 = time.perf_counter()
    result = sampler.run()
    wall = time.perf_counter() - t0
    chains = np.asarray(result.chains)  # (chains, kept draws, parameters): the fractions, then sigma
    return chains, wall


def _jaxcell_problem(t, v):
    """The example's problem for jaxcell: (parameters, model, priors, the fits' keywords, the
    model's arguments)."""
    import numpyro.distributions as dist

    p = jaxcell.with_initial_soc(jaxcell.load_parameters("Chen2020"), 0.5)
    model = jaxcell.SPM()
    experiment = STEP.split(" (")[0]
    priors = {name: dist.TruncatedNormal(mu, sd, low=0.0, high=1.0) for name, (mu, sd) in PRIOR.items()}
    kw = dict(priors=priors, noise_prior=dist.Uniform(1e-10, SIGMA_MAX))
    return p, model, priors, kw, (model, p, experiment, np.asarray(t), np.asarray(v))


def run_jaxcell(t, i, v, warmup, samples, seed, chains=3, chain_method="sequential", warm_start=False):
    import jaxcell.inference as inf

    assert np.allclose(i, i[0]), "the data are one constant-current step"
    p, model, priors, kw, args = _jaxcell_problem(t, v)
    key = jax.random.key(seed)
    start = {}
    if warm_start:  # the MAP fit's Laplace approximation starts the chains and is the mass matrix
        t0 = time.perf_counter()
        inf.fit_map(inf.cell_model, *args, **kw)  # compiles the potential and its gradient
        first_map = time.perf_counter() - t0
        t0 = time.perf_counter()
        start = dict(init=inf.fit_map(inf.cell_model, *args, **kw), adapt_mass_matrix=False)
        map_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    inf.run_nuts(inf.cell_model, *args, key=key, num_warmup=1, num_samples=1, num_chains=1 if chain_method == "sequential" else chains,
                 chain_method=chain_method, progress_bar=False, **start, **kw)
    first = time.perf_counter() - t0 + (first_map if warm_start else 0.0)
    t0 = time.perf_counter()
    mcmc = inf.run_nuts(inf.cell_model, *args, key=key, num_warmup=warmup, num_samples=samples, num_chains=chains,
                        chain_method=chain_method, progress_bar=False, **start, **kw)
    wall = time.perf_counter() - t0 + (map_s if warm_start else 0.0)  # the MAP fit is part of the sampling
    s = mcmc.get_samples(group_by_chain=True)
    chains = np.stack([np.asarray(s[n]) for n in NAMES] + [np.asarray(s["sigma"])], axis=-1)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    divergences = int(np.sum(np.asarray(extra["diverging"])))
    return chains, wall, first, divergences


def run_jaxcell_imh(t, i, v, samples, seed, chains, warmup, df):
    """jaxcell's independence Metropolis-Hastings (`run_imh`) around a MAP fit: (chains, wall
    time of the fit and the sampling, time of the compiling first calls, acceptance rates).
    The first calls (a MAP fit, and a run of one chunk) compile the potential's gradient and the
    vmapped potential; the timed run is a second MAP fit and the sampling."""
    import jaxcell.inference as inf
    from jaxcell.inference._imh import CHUNK

    p, model, priors, kw, args = _jaxcell_problem(t, v)
    t0 = time.perf_counter()
    fit = inf.fit_map(inf.cell_model, *args, **kw)
    inf.run_imh(fit, key=jax.random.key(seed + 1), num_samples=CHUNK, num_chains=1, num_warmup=0,
                progress_bar=False)  # one full chunk: the timed run's program
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit = inf.fit_map(inf.cell_model, *args, **kw)
    res = inf.run_imh(fit, key=jax.random.key(seed), num_samples=samples, num_chains=chains, num_warmup=warmup,
                      df=df, progress_bar=False)
    wall = time.perf_counter() - t0
    s = res.get_samples(group_by_chain=True)
    out = np.stack([np.asarray(s[n]) for n in NAMES] + [np.asarray(s["sigma"])], axis=-1)
    return out, wall, first, res.acceptance.tolist(), res.failed, res.pareto_k


def summarise(label, chains, wall, **more):
    rhat, ess = chain_stats(chains)
    row = {"sampler": label, "draws_per_chain": int(chains.shape[1]), "wall_s": wall, "r_hat": rhat, "ess": ess,
           "min_ess": min(ess), "ess_per_s": min(ess) / wall, "mean": chains.reshape(-1, chains.shape[-1]).mean(0).tolist(),
           "sd": chains.reshape(-1, chains.shape[-1]).std(0).tolist(), **more}
    print(f"{label:28s} {wall:8.1f} s  min ESS {min(ess):8.1f}  ESS/s {min(ess) / wall:8.2f}  "
          f"R-hat {max(rhat):.3f}  mean {np.round(row['mean'], 4)}", flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pybop-iterations", type=int, default=5000)
    ap.add_argument("--pybop-warmup", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--samplers", nargs="+",
                    default=["DifferentialEvolutionMCMC", "HaarioBardenetACMC", "jaxcell NUTS", "jaxcell IMH"])
    ap.add_argument("--chains", type=int, default=3, help="jaxcell NUTS chains")
    ap.add_argument("--chain-method", default="sequential", choices=["sequential", "vectorized"],
                    help="jaxcell NUTS: chains one after another, or all in one vmapped program")
    ap.add_argument("--warm-start", action="store_true",
                    help="jaxcell NUTS: fit the MAP first (its time counted), start the chains from its Laplace "
                         "approximation, its covariance the mass matrix, warmup adapting the step size only")
    ap.add_argument("--imh-chains", type=int, default=16, help="jaxcell IMH chains")
    ap.add_argument("--imh-samples", type=int, default=1000, help="jaxcell IMH kept draws per chain")
    ap.add_argument("--imh-warmup", type=int, default=100, help="jaxcell IMH draws dropped at each chain's start")
    ap.add_argument("--imh-df", type=float, default=5.0, help="jaxcell IMH: the Student-t proposal's degrees of freedom")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(_common.RESULTS, "sampling_latest.json"))
    args = ap.parse_args(argv)

    import pybop

    t, i, v, v_clean = make_data(args.seed)
    out = {"machine": {"cpu_model": _common.cpu_model(), "cpu_count": os.cpu_count(), "load_avg_at_start": list(os.getloadavg())},
           "versions": {"jaxcell": jaxcell.__version__, "pybop": pybop.__version__, "jax": jax.__version__},
           "git": _common.git_info(), "settings": vars(args), "data_points": len(t), "results": []}
    print(f"{len(t)} points, noise {SIGMA_TRUE * 1e3:.1f} mV; truth: fractions {PRIOR[NAMES[0]][0]}, {PRIOR[NAMES[1]][0]} "
          "(the set's values), sigma 0.005", flush=True)
    for name in args.samplers:
        if name == "jaxcell IMH":
            chains, wall, first, acceptance, failed, k = run_jaxcell_imh(t, i, v, args.imh_samples, args.seed,
                                                                         args.imh_chains, args.imh_warmup, args.imh_df)
            out["results"].append(summarise(name, chains, wall, first_call_s=first, acceptance=acceptance,
                                            failed_proposals=failed, pareto_k=k, wall_with_compile_s=wall + first))
            out["results"][-1]["ess_per_s_with_compile"] = out["results"][-1]["min_ess"] / (wall + first)
        elif name == "jaxcell NUTS":
            chains, wall, first, div = run_jaxcell(t, i, v, args.warmup, args.samples, args.seed, args.chains, args.chain_method,
                                                   args.warm_start)
            out["results"].append(summarise(name, chains, wall, first_call_s=first, divergences=div,
                                            wall_with_compile_s=wall + first))
            out["results"][-1]["ess_per_s_with_compile"] = out["results"][-1]["min_ess"] / (wall + first)
        else:
            chains, wall = run_pybop(name, t, i, v, args.pybop_iterations, args.pybop_warmup, args.seed)
            out["results"].append(summarise(f"PyBOP {name}", chains, wall))
        out["load_avg_now"] = list(os.getloadavg())
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    best = max((r for r in out["results"] if r["sampler"].startswith("PyBOP")), key=lambda r: r["ess_per_s"], default=None)
    for ours in (r for r in out["results"] if r["sampler"].startswith("jaxcell")):
        if best:
            print(f"{ours['sampler']} / best PyBOP ({best['sampler']}): {ours['ess_per_s'] / best['ess_per_s']:.1f}x ESS/s "
                  f"({ours['ess_per_s_with_compile'] / best['ess_per_s']:.1f}x with compile)")


if __name__ == "__main__":
    main()
