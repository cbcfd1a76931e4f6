"""Recovery of known diffusivities by NUTS from a discharge simulated by PyBaMM (not by jaxcell).

The data: PyBaMM 26.10's SPMe (``--model``: SPM, SPMe or DFN, the same in both libraries) with Chen2020, both particle diffusivities changed to known values
(``--truth``: multiples of Chen2020's, default 1.5 and 0.6), "Discharge at 1C for 20 minutes"
then "Rest for 10 minutes", the voltage every 20 s (90 points, 10 s off the step change) plus Gaussian noise of ``--noise``
(2 mV, seeded). The fit: jaxcell's SPMe (`jaxcell.inference.cell_model`), priors log-normal
around Chen2020's values (`default_prior`, log-sd 0.5: the truth is off-centre by 0.8 and 1.0
prior sd), the noise scale half-normal (10 mV). A MAP fit with its Laplace approximation
first, then NUTS (``--chains`` chains one after another, ``--warmup`` and ``--samples`` each,
started from the MAP point; with ``--warm-start`` at draws of its Laplace approximation, whose
covariance is the mass matrix, the warmup adapting the step size only). The MAP fit is timed
twice (the first call compiles); NUTS's
compiles are timed by a first run of one draw, then the full run.

Passes when the true values lie in NUTS's central 90 % intervals, the posterior means are within
20 % of them, every R-hat is below 1.01 and no transition diverged.

    python benchmarks/recovery_pybamm.py [--chains 4] [--warmup 500] [--samples 500]
        [--starts 4] [--coverage-seeds 40] [--coverage-starts 2] [--skip-nuts] [--warm-start] [--imh]
        [--imh-samples 1000]

``--imh`` samples the same posterior by independence Metropolis-Hastings around the MAP fit
(``run_imh``: forward solves only, ``--chains`` chains of 100 + ``--imh-samples``) and applies
the same rule to its draws.

One run's 90 % intervals miss a true value one time in ten when they are calibrated, so a single
miss says little. ``--coverage-seeds N`` also fits N noise draws (seeds 1..N, the same PyBaMM
curve) by MAP and counts how often the Laplace approximation's 90 % intervals hold the truth
(the Laplace and NUTS intervals agree closely on this problem), each fit with
``--coverage-starts`` starts: from the priors' medians alone, 3 of 8 noise draws ended at a
second mode of the posterior (``fit_map``'s ``starts``).

``--bias-seeds N`` measures how far the model difference between the two libraries moves the fit:
for noise draws 1..N, the same noise is added to PyBaMM's curve and to jaxcell's own curve at
the truth, both are fitted by MAP, and the difference of the MAP estimates is counted in Laplace
posterior sds (a paired difference, free of the noise's own scatter). A third fit uses an SPMe
whose electrolyte conductivity is evaluated as PyBaMM 26.10's SPMe evaluates it (`PyBaMMKappaSPMe`,
below), to see how much of the difference that one term is.

Needs PyBaMM (``pip install ".[bench]"``). Writes benchmarks/results/recovery_pybamm_latest.json.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import _common as C  # noqa: E402
import jaxcell  # noqa: E402
from jaxcell.inference import cell_model, default_prior, diagnostics, fit_map, run_imh, run_nuts  # noqa: E402

NAMES = ["Negative particle diffusivity [m2.s-1]", "Positive particle diffusivity [m2.s-1]"]
EXPERIMENT = ["Discharge at 1C for 20 minutes", "Rest for 10 minutes"]
T = np.arange(10.0, 1800.0, 20.0)  # 90 times, none on the step change at 1200 s


# PyBaMM's mesh for --pybamm-fine. At the truth, jaxcell's default DFN is 2.37 mV RMS (11.6 mV at
# 10 s) from PyBaMM's DFN on its default mesh, and 0.37 mV from this one
FINE = {"x_n": 40, "x_s": 20, "x_p": 40, "r_n": 40, "r_p": 40}


def pybamm_data(truth: dict, noise: float, seed: int, model: str = "SPMe", fine: bool = False):
    import pybamm

    pv = pybamm.ParameterValues("Chen2020")
    pv.update(truth)
    sim = pybamm.Simulation(getattr(pybamm.lithium_ion, model)(), parameter_values=pv, **({"var_pts": FINE} if fine else {}),
                            experiment=pybamm.Experiment([s + " (1 second period)" for s in EXPERIMENT]))
    sol = sim.solve()
    v = np.interp(T, sol["Time [s]"].entries, sol["Voltage [V]"].entries)
    return v, v + np.random.default_rng(seed).normal(0.0, noise, T.size)


class PyBaMMKappaSPMe(jaxcell.SPMe):
    """jaxcell's SPMe with the electrolyte conductivity of its ohmic term evaluated where PyBaMM
    26.10's SPMe evaluates it: at its "X-averaged electrolyte concentration", which for a cell
    whose porosity varies between regions is not the x-average of c_e but the constant
    x_av(eps c_e) x_av(1 / eps) (PyBaMM's averaging rule pulls the time-constant porosity out of
    the x-average of eps c_e / eps although it varies in x; 1036.23 mol/m3 for Chen2020, also at
    t = 0, where c_e is 1000 everywhere). For the bias check only."""

    def _electrolyte_terms(self, y, i_app, p):
        dx, eps, _ = self._x_mesh(p)
        c_e0, L = p["Initial concentration in electrolyte [mol.m-3]"], jnp.sum(dx)
        c_pybamm = jnp.sum(eps * c_e0 * dx) / L * jnp.sum(dx / eps) / L

        class Kappa:  # the set, with the conductivity read at c_pybamm
            def __getitem__(self, name):
                return p[name]

            def evaluate(self, name, *args):
                if name == "Electrolyte conductivity [S.m-1]":
                    return p.evaluate(name, c_pybamm, args[1])
                return p.evaluate(name, *args)

        return super()._electrolyte_terms(y, i_app, Kappa())


def bias(p, truth, clean, noise, seeds, starts):
    """Paired MAP fits of PyBaMM's curve and jaxcell's own curve at the truth, each with the same
    noise draw (seeds 1..seeds): the shift of each unknown's MAP estimate that the model
    difference makes, in Laplace posterior sds, with jaxcell's SPMe and with `PyBaMMKappaSPMe`."""
    experiment = jaxcell.Experiment(EXPERIMENT)
    own = np.asarray(jaxcell.simulate(jaxcell.SPMe(), p.update(truth), experiment, t_eval=T).voltage)
    kappa = np.asarray(jaxcell.simulate(PyBaMMKappaSPMe(), p.update(truth), experiment, t_eval=T).voltage)
    rms = lambda a: float(np.sqrt(np.mean(a**2)))
    print(f"at the truth, PyBaMM's SPMe is {rms(clean - own) * 1e3:.3f} mV RMS from jaxcell's and "
          f"{rms(clean - kappa) * 1e3:.3f} mV from PyBaMMKappaSPMe")
    priors = {k: default_prior(k, p[k]) for k in NAMES}
    cases = {"PyBaMM's data, jaxcell's SPMe": (clean, jaxcell.SPMe()), "jaxcell's data, jaxcell's SPMe": (own, jaxcell.SPMe()),
             "PyBaMM's data, PyBaMMKappaSPMe": (clean, PyBaMMKappaSPMe())}
    z = {c: {k: [] for k in NAMES} for c in cases}
    inside = {c: {k: 0 for k in NAMES} for c in cases}
    for seed in range(1, seeds + 1):
        e = np.random.default_rng(seed).normal(0.0, noise, T.size)
        for c, (curve, model) in cases.items():
            fit = fit_map(cell_model, model, p, experiment, T, curve + e, priors=priors, starts=starts)
            s = fit.summary()
            for k in NAMES:
                z[c][k].append((float(fit.params[k]) - truth[k]) / s[k]["sd"])
                inside[c][k] += int(s[k]["q05"] <= truth[k] <= s[k]["q95"])
    base = "jaxcell's data, jaxcell's SPMe"
    out = {"seeds": seeds, "starts": starts, "rms_pybamm_minus_jaxcell_V": rms(clean - own),
           "rms_pybamm_minus_kappa_V": rms(clean - kappa), "cases": {}}
    for c in cases:
        out["cases"][c] = {k: {"mean_z": float(np.mean(z[c][k])), "sd_z": float(np.std(z[c][k], ddof=1)),
                               "shift_from_own_data_sd": float(np.mean(np.subtract(z[c][k], z[base][k]))),
                               "inside_90": inside[c][k] / seeds, "z": z[c][k]} for k in NAMES}
        print(c + ": " + "; ".join(f"{k.split(' [')[0]}: shift {v['shift_from_own_data_sd']:+.3f} sd, z {v['mean_z']:+.2f} "
                                   f"+- {v['sd_z']:.2f}, inside 90 % {v['inside_90']:.0%}" for k, v in out["cases"][c].items()))
    return out


def timed(f):
    t0 = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="SPMe", choices=("SPM", "SPMe", "DFN"),
                    help="the model of both PyBaMM's data and jaxcell's fit (default SPMe; jaxcell's default mesh)")
    ap.add_argument("--pybamm-fine", action="store_true",
                    help="PyBaMM's data on a 40/20/40 mesh with 40 shells instead of its default (needed for the DFN)")
    ap.add_argument("--truth", type=float, nargs=2, default=[1.5, 0.6], help="multiples of Chen2020's diffusivities")
    ap.add_argument("--noise", type=float, default=0.002, help="noise sd [V]")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--starts", type=int, default=4, help="the MAP fit's starts (fit_map)")
    ap.add_argument("--coverage-seeds", type=int, default=0, help="MAP fits of this many more noise draws")
    ap.add_argument("--coverage-starts", type=int, default=2, help="starts of each coverage fit")
    ap.add_argument("--bias-seeds", type=int, default=0,
                    help="paired MAP fits of PyBaMM's and jaxcell's curves with this many noise draws (SPMe only)")
    ap.add_argument("--skip-nuts", action="store_true")
    ap.add_argument("--warm-start", action="store_true",
                    help="NUTS from the MAP fit: chains at draws of its Laplace approximation, its covariance the "
                         "mass matrix, the warmup adapting the step size only")
    ap.add_argument("--imh", action="store_true",
                    help="also sample by independence Metropolis-Hastings around the MAP fit (run_imh; --chains chains)")
    ap.add_argument("--imh-samples", type=int, default=1000, help="IMH draws kept per chain")
    ap.add_argument("--out", default=str(C.RESULTS / "recovery_pybamm_latest.json"))
    args = ap.parse_args()

    p = jaxcell.load_parameters("Chen2020")
    truth = {k: float(p[k]) * f for k, f in zip(NAMES, args.truth)}
    clean, v = pybamm_data(truth, args.noise, args.seed, args.model, args.pybamm_fine)
    machine = C.machine_info()
    model, experiment = getattr(jaxcell, args.model)(), jaxcell.Experiment(EXPERIMENT)
    mismatch = float(np.sqrt(np.mean((np.asarray(jaxcell.simulate(model, p.update(truth), experiment, t_eval=T).voltage)
                                      - clean) ** 2)))
    print(f"jaxcell's {args.model} at the truth is {mismatch * 1e3:.2f} mV RMS from PyBaMM's (noise {args.noise * 1e3:.1f} mV)")
    priors = {k: default_prior(k, p[k]) for k in NAMES}
    fit_args = (cell_model, model, p, experiment, T, v)

    def map_fit():
        return fit_map(*fit_args, priors=priors, starts=args.starts)

    res, map_first = timed(map_fit)
    _, map_again = timed(map_fit)
    print(f"MAP: {res.steps} steps, converged {res.converged}, {map_first:.1f} s first call, {map_again:.1f} s again")

    coverage = None
    if args.coverage_seeds:
        hits, t0, fits = {k: 0 for k in NAMES + ["sigma"]}, time.perf_counter(), []
        for seed in range(1, args.coverage_seeds + 1):
            noisy = clean + np.random.default_rng(seed).normal(0.0, args.noise, T.size)
            fit = fit_map(cell_model, model, p, experiment, T, noisy, priors=priors, starts=args.coverage_starts)
            lap_s = fit.summary()
            for k in hits:
                hits[k] += int(lap_s[k]["q05"] <= truth.get(k, args.noise) <= lap_s[k]["q95"])
            fits.append({"seed": seed, "converged": fit.converged, "optima": [None if np.isnan(x) else x for x in fit.optima],
                         "map": {k: float(v) for k, v in fit.params.items()}})
        coverage = {"seeds": args.coverage_seeds, "starts": args.coverage_starts,
                    "inside_90": {k: h / args.coverage_seeds for k, h in hits.items()},
                    "first_start_at_another_mode": sum(f["optima"][0] is None or f["optima"][0] > min(x for x in f["optima"] if x is not None) + 1
                                                       for f in fits),
                    "wall_s": time.perf_counter() - t0, "fits": fits}
        print(f"Laplace 90 % intervals over {args.coverage_seeds} noise draws hold the truth: "
              + ", ".join(f"{k.split(' [')[0]} {v:.0%}" for k, v in coverage["inside_90"].items())
              + f"; the first start ended at another mode in {coverage['first_start_at_another_mode']} of them")
    out = {"machine": machine, "settings": {**vars(args), "parameter_set": "Chen2020",
                                            "experiment": EXPERIMENT, "n_times": T.size,
                                            "prior": "default_prior (log-normal around Chen2020, log-sd 0.5)",
                                            "noise_prior": "HalfNormal(0.01)"},
           "model_mismatch_rms_V": mismatch,
           "map": {"steps": res.steps, "converged": bool(res.converged), "starts": args.starts,
                   "optima": [None if np.isnan(x) else x for x in res.optima], "first_call_s": map_first,
                   "compiled_s": map_again},
           "laplace_coverage": coverage}
    if args.bias_seeds:
        if args.model != "SPMe" or args.pybamm_fine:
            raise SystemExit("--bias-seeds compares the SPMe on PyBaMM's default mesh (jaxcell's default)")
        out["bias"] = bias(p, truth, clean, args.noise, args.bias_seeds, args.coverage_starts)
    def table(samples, d):
        """Each unknown's posterior against the truth; and whether the script's rule passes."""
        rows, ok, lap = [], True, res.summary()
        for k in NAMES + ["sigma"]:
            x = np.asarray(samples[k])
            true = truth.get(k, args.noise)
            q05, q95 = np.quantile(x, [0.05, 0.95])
            row = {"name": k, "truth": true, "mean": float(x.mean()), "sd": float(x.std(ddof=1)), "q05": float(q05),
                   "q95": float(q95), "mean_over_truth": float(x.mean() / true), "inside_90": bool(q05 <= true <= q95),
                   "r_hat": float(d[k]["r_hat"]), "ess": float(d[k]["ess"]),
                   "map": float(res.params[k]), "laplace_q05": float(lap[k]["q05"]),
                   "laplace_q95": float(lap[k]["q95"])}
            rows.append(row)
            if k in truth:
                ok &= row["inside_90"] and abs(row["mean_over_truth"] - 1) <= 0.2
            ok &= row["r_hat"] < 1.01
            print(f"{k:42s} truth {true:.3e}  mean/truth {row['mean_over_truth']:.3f}  90 % [{q05:.3e}, {q95:.3e}] "
                  f"{'holds' if row['inside_90'] else 'MISSES'} it  R-hat {row['r_hat']:.4f}  ESS {row['ess']:.0f}")
        return rows, ok

    if args.imh:  # independence Metropolis-Hastings around the MAP fit: forward solves only
        def imh():
            return run_imh(res, key=jax.random.key(args.seed), num_chains=args.chains, num_warmup=100,
                           num_samples=args.imh_samples, progress_bar=False)

        from jaxcell.inference._imh import CHUNK

        # a first call of one chunk compiles the timed run's program
        _, imh_first = timed(lambda: run_imh(res, num_chains=1, num_warmup=0, num_samples=CHUNK, progress_bar=False))
        draws, imh_run = timed(imh)
        d = diagnostics(draws)
        rows, ok = table(draws.get_samples(), d)
        print(f"IMH: {imh_run:.1f} s ({imh_first:.1f} s for a first call of one chunk, which compiles); acceptance "
              f"{np.round(d['acceptance'], 2)}, Pareto k {draws.pareto_k:.2f}, {draws.failed} failed proposals; "
              f"{'PASS' if ok else 'FAIL'}")
        out["imh"] = {"first_call_s": imh_first, "run_s": imh_run, "chains": args.chains, "samples": args.imh_samples,
                      "warmup": 100, "acceptance": d["acceptance"].tolist(), "pareto_k": draws.pareto_k,
                      "failed_proposals": draws.failed, "parameters": rows, "passed": bool(ok)}
    if args.skip_nuts:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
        print(f"wrote {args.out}")
        return

    start = dict(init=res, adapt_mass_matrix=False) if args.warm_start else dict(init=res.params)

    def nuts(warmup, samples, chains):
        return run_nuts(*fit_args, priors=priors, key=jax.random.key(args.seed), num_warmup=warmup,
                        num_samples=samples, num_chains=chains, progress_bar=False, **start)

    _, nuts_compile = timed(lambda: nuts(1, 1, 1))  # compiles the solve and its gradient
    mcmc, nuts_run = timed(lambda: nuts(args.warmup, args.samples, args.chains))
    d = diagnostics(mcmc)
    rows, ok = table(mcmc.get_samples(), d)
    ok &= d["divergences"] == 0
    leapfrogs = float(np.mean(np.asarray(mcmc.get_extra_fields()["num_steps"])))  # per kept draw
    min_ess = min(r["ess"] for r in rows)
    print(f"divergences {d['divergences']}; NUTS {nuts_run:.1f} s compiled, {nuts_compile:.1f} s for a first call of "
          f"one draw (compiles); {leapfrogs:.1f} leapfrog steps per kept draw; {min_ess / nuts_run:.3f} effective "
          f"samples a second (the least of the unknowns'); {'PASS' if ok else 'FAIL'}")
    out.update({"nuts": {"compile_s": nuts_compile, "run_s": nuts_run, "with_compile_s": nuts_compile + nuts_run,
                         "divergences": d["divergences"], "warm_start": args.warm_start,
                         "leapfrog_steps_per_draw": leapfrogs, "min_ess_per_s": min_ess / nuts_run},
                "parameters": rows, "passed": bool(ok)})
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
