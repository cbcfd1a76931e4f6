"""Simulation-based calibration of the SPMe's Laplace posterior (`jaxcell.inference.calibrate`).

The problem: Chen2020's SPMe, "Discharge at 1C for 20 minutes" then "Rest for 10 minutes",
voltage at 61 times; unknowns the negative and positive particle diffusivities and the positive
electrode's reaction rate constant, each log-normal around Chen2020's value (log-sd 0.5,
`default_prior`), and the noise scale (half-normal, 5 mV). The replicates draw all four from the
prior, simulate the voltage with noise (one vmapped call), and are fitted together (damped
Newton on the vmapped potential, Laplace approximation); the truth's rank among 99 draws of each
replicate's approximation should be uniform and the central 90 % intervals should hold the truth
in 90 % of the replicates.

With ``--importance M`` the draws are corrected by Pareto-smoothed importance sampling (M
proposals per replicate, `jaxcell.inference.importance_resample`) and the results are written
as sbc_spme_importance_latest.*.

    python benchmarks/sbc_spme.py [--replicates 100] [--draws 99] [--seed 0] [--importance 0]

Writes benchmarks/results/sbc_spme_latest.json and sbc_spme_latest.png (rank histograms).
"""

from __future__ import annotations

import argparse
import json
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import numpyro.distributions as dist  # noqa: E402

import _common as C  # noqa: E402
import jaxcell  # noqa: E402
from jaxcell.inference import calibrate, cell_model, default_prior  # noqa: E402

NAMES = [
    "Negative particle diffusivity [m2.s-1]",
    "Positive particle diffusivity [m2.s-1]",
    "Positive electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]",
]
EXPERIMENT = ["Discharge at 1C for 20 minutes", "Rest for 10 minutes"]
T = np.linspace(0.0, 1800.0, 61)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--draws", type=int, default=99)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--importance", type=int, default=0, help="importance-sampling proposals per replicate")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.out is None:
        args.out = str(C.RESULTS / ("sbc_spme_importance_latest.json" if args.importance else "sbc_spme_latest.json"))

    p = jaxcell.load_parameters("Chen2020")
    priors = {k: default_prior(k, p[k]) for k in NAMES}
    machine = C.machine_info()
    t0 = time.perf_counter()
    res = calibrate(cell_model, jaxcell.SPMe(), p, jaxcell.Experiment(EXPERIMENT), T, priors=priors,
                    noise_prior=dist.HalfNormal(0.005), n_replicates=args.replicates, n_draws=args.draws,
                    key=jax.random.key(args.seed), importance=args.importance)
    wall = time.perf_counter() - t0
    table = res.table()
    print(table.to_string())
    print(f"{int(res.converged.sum())} of {res.converged.size} fits converged; wall time {wall:.0f} s (compiles included)")
    png = args.out.replace(".json", ".png")
    res.plot(png)
    out = {
        "machine": machine,
        "settings": {"model": "SPMe", "parameter_set": "Chen2020", "experiment": EXPERIMENT, "n_times": T.size,
                     "parameters": NAMES, "prior": "default_prior (log-normal, log-sd 0.5)",
                     "noise_prior": "HalfNormal(0.005)", "replicates": args.replicates, "draws": args.draws,
                     "seed": args.seed, "importance": args.importance},
        "wall_s": wall,
        "converged": int(res.converged.sum()),
        "p_values": res.p_values,
        "coverage_90": res.coverage,
        "coverage_se": float(np.sqrt(0.09 / max(int(res.converged.sum()), 1))),
        "ranks": {k: v.tolist() for k, v in res.ranks.items()},
        "pareto_k": None if res.pareto_k is None else res.pareto_k.tolist(),
        "figure": png,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out} and {png}")


if __name__ == "__main__":
    main()
