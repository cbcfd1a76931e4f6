"""Design optimisation: jaxcell's gradient-based design against PyBOP's particle swarm on PyBOP's
own problem, and jaxcell's robust design under manufacturing variation with its Monte Carlo check.

PyBOP's problem (examples/scripts/design_optimisation/maximising_energy.py in PyBOP 26.3): SPMe,
Chen2020 from full charge, "Discharge at 1C until 2.5 V" then "Hold at 2.5 V for 30 minutes or
until 10 mA"; design variables positive electrode thickness 65-100 um and positive particle
radius 2-9 um; maximise the gravimetric energy density (PyBOP's cell mass with the example's
density mapping). Run in an environment with PyBaMM and PyBOP (PyBOP parts are skipped without
them, with --no-pybop):

    python benchmarks/bench_design.py                  # everything (about 30-40 min on 2 cores)
    python benchmarks/bench_design.py --no-pybop --methods L-BFGS-B --no-robust

Parts, each timed in this process:
1. PyBOP: the objective at the start, a 15 x 15 grid (--grid N), its particle swarm (PSO, the
   example's 10 iterations; --pso-iterations) with the evaluations and wall time it used.
2. jaxcell: `optimise_design` with each of --methods (L-BFGS-B on the unit box, BFGS on the
   logit coordinates, adam), each from the set's values, max 25 gradient evaluations: the
   optimum, the evaluation at which it came within 0.2 % of PyBOP's grid best, wall time
   (compilation included, and separately).
3. Robust design (--no-robust skips it): the same problem with a capacity floor --min-capacity
   (5.05 A.h) and --alpha (0.05) over jaxcell's default manufacturing variation with every cell
   drawn independently (the hierarchy's levels kept as variance, one cell per pack, so that a
   sample of --n-samples cells sees as many production lots), by `optimise_robust_design`; the
   deterministic optimum and the robust one are each checked on a fresh population of --check
   cells (`check_design`), and the robust one also with the default hierarchy (96-cell packs) for
   the pack failure rate against `cell_alpha`'s independent-cell formula.

Writes benchmarks/results/design_latest.json.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

import jaxcell
from jaxcell import design
from jaxcell.population import Variation, default_variation

try:
    from _common import RESULTS, git_info, machine_info
except ImportError:  # run from elsewhere
    from benchmarks._common import RESULTS, git_info, machine_info

L_P, R_P = "Positive electrode thickness [m]", "Positive particle radius [m]"
STEPS = ["Discharge at 1C until 2.5 V", "Hold at 2.5 V for 30 minutes or until 10 mA"]
VARY = [f"{L_P}=65e-6:100e-6", f"{R_P}=2e-6:9e-6"]
BOUNDS = {L_P: (65e-6, 100e-6), R_P: (2e-6, 9e-6)}


def run_pybop(args, out):
    import importlib.util
    import sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "make_reference", Path(__file__).resolve().parents[1] / "tests" / "data" / "design" / "make_reference.py")
    ref = importlib.util.module_from_spec(spec)
    sys.modules["make_reference"] = ref
    spec.loader.exec_module(ref)
    import pybop

    sim, grav, vol = ref.example_problems()
    t0 = time.perf_counter()
    x0 = [7.56e-5, 5.22e-6]
    f0 = float(grav(x0))
    out["pybop"] = {"initial_objective": f0, "initial_seconds": time.perf_counter() - t0}
    print(f"PyBOP start: {f0:.3f} Wh/kg")
    if args.grid:
        t0 = time.perf_counter()
        Ls = np.linspace(*BOUNDS[L_P], args.grid)
        Rs = np.linspace(*BOUNDS[R_P], args.grid)
        grid = np.array([[float(grav([L, R])) for R in Rs] for L in Ls])
        i, j = np.unravel_index(np.nanargmax(grid), grid.shape)
        out["pybop"]["grid"] = {
            "n": args.grid, "best": float(grid[i, j]), "at": {L_P: float(Ls[i]), R_P: float(Rs[j])},
            "seconds": time.perf_counter() - t0, "values": grid.tolist(),
        }
        print(f"PyBOP grid {args.grid}x{args.grid}: best {grid[i, j]:.3f} at {Ls[i]:.3g}, {Rs[j]:.3g} "
              f"({time.perf_counter() - t0:.0f} s)")
    if args.pso_iterations:
        t0 = time.perf_counter()
        options = pybop.PintsOptions(max_iterations=args.pso_iterations)
        optim = pybop.PSO(grav, options=options)
        result = optim.run()
        best = float(grav(result.x))
        out["pybop"]["pso"] = {
            "iterations": args.pso_iterations, "best": best, "x": [float(v) for v in result.x],
            "evaluations": int(getattr(result, "n_evaluations", 0) or 0) or None,
            "seconds": time.perf_counter() - t0,
        }
        print(f"PyBOP PSO: {best:.3f} Wh/kg at {result.x} in {time.perf_counter() - t0:.0f} s, "
              f"evaluations {out['pybop']['pso']['evaluations']}")


def run_deterministic(args, out, p, target):
    out["jaxcell_deterministic"] = {}
    for method in args.methods:
        t0 = time.perf_counter()
        res = design.optimise_design(jaxcell.SPMe(), p, STEPS, VARY, method=method, max_evaluations=25)
        within = [e["evaluation"] for e in res.path if target is not None and e["objective"] >= (1 - 2e-3) * target]
        row = res.to_dict()
        row.update(first_evaluation_within_0p2_percent=within[0] if within else None, seconds=time.perf_counter() - t0)
        out["jaxcell_deterministic"][method] = row
        print(f"jaxcell {method}: {res.objective:.3f} Wh/kg at {res.design}, {res.evaluations} gradient evaluations, "
              f"within 0.2 % of {target} after {row['first_evaluation_within_0p2_percent']}, {row['seconds']:.0f} s, "
              f"{res.message}")
    # one warm gradient, after the compiles above
    space = design.DesignSpace.create(p, VARY)
    f = design.design_objective(jaxcell.SPMe(), p, STEPS, space)
    vg = jax.jit(jax.value_and_grad(lambda u: f(u).objective))
    u0 = space.to_unit(space.initial(p))
    t0 = time.perf_counter()
    jax.block_until_ready(vg(u0))
    compile_and_run = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(3):
        jax.block_until_ready(vg(u0))
    out["jaxcell_gradient_seconds"] = {"first_call": compile_and_run, "warm": (time.perf_counter() - t0) / 3}
    print(f"one gradient: {out['jaxcell_gradient_seconds']}")


def independent(variation: Variation) -> Variation:
    """The same variation with every cell its own pack (levels' variances kept)."""
    d = variation.to_dict()
    d["hierarchy"] = {"modules_per_pack": 1, "cells_per_module": 1}
    return Variation.from_dict(d)


def run_robust(args, out, p):
    var = independent(default_variation())
    model = jaxcell.SPMe()
    if args.deterministic_design:  # the deterministic optimum of part 2 (its compile takes minutes)
        det_design = json.loads(open(args.deterministic_design).read())["jaxcell_deterministic"]["L-BFGS-B"]["design"]
    else:
        det_design = design.optimise_design(model, p, STEPS, VARY, max_evaluations=25).design
    t0 = time.perf_counter()
    rob = design.optimise_robust_design(model, p, STEPS, VARY, var, min_capacity=args.min_capacity, alpha=args.alpha,
                                        n_samples=args.n_samples, key=1, max_evaluations=args.robust_evaluations)
    robust_seconds = time.perf_counter() - t0
    print(f"robust: {rob.objective:.3f} Wh/kg (mean) at {rob.design}, {rob.evaluations} evaluations, "
          f"{robust_seconds:.0f} s, constraint {rob.constraint:.3g}, {rob.message}")
    checks = {}
    for name, d in (("deterministic", det_design), ("robust", rob.design)):
        c = design.check_design(model, p, STEPS, d, var, args.check, key=12345, min_capacity=args.min_capacity)
        checks[name] = c.to_dict()
        print(f"check {name}: P(fail) = {c.failure_probability:.4f} +- {c.stderr:.4f}, mean {c.mean_objective:.3f} Wh/kg, "
              f"mean capacity {c.mean_capacity:.4f} A.h, not delivered {c.not_delivered}, {c.seconds:.0f} s")
    hier = design.check_design(model, p, STEPS, rob.design, default_variation(), args.check, key=12345,
                               min_capacity=args.min_capacity)
    checks["robust_hierarchical"] = hier.to_dict()
    n_pack = 96
    checks["pack_formula"] = {
        "cells_per_pack": n_pack,
        "pack_failure_if_independent": 1 - (1 - hier.failure_probability) ** n_pack,
        "pack_failure_measured": hier.pack_failure_probability,
        "n_packs": int(np.ceil(args.check / n_pack)),
    }
    print(f"hierarchical check of the robust design: P(cell) = {hier.failure_probability:.4f} +- {hier.stderr:.4f}, "
          f"pack failure measured {hier.pack_failure_probability:.3f} vs independent-cell formula "
          f"{checks['pack_formula']['pack_failure_if_independent']:.3f}")
    out["robust"] = {
        "min_capacity": args.min_capacity, "alpha": args.alpha, "n_samples": args.n_samples,
        "deterministic": det_design, "robust": rob.to_dict(), "robust_seconds": robust_seconds, "checks": checks,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-pybop", action="store_true")
    ap.add_argument("--grid", type=int, default=15)
    ap.add_argument("--pso-iterations", type=int, default=10)
    ap.add_argument("--methods", nargs="*", default=["L-BFGS-B", "BFGS", "adam"])
    ap.add_argument("--no-robust", action="store_true")
    ap.add_argument("--min-capacity", type=float, default=5.05)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--n-samples", type=int, default=64)
    ap.add_argument("--robust-evaluations", type=int, default=40)
    ap.add_argument("--check", type=int, default=10_000)
    ap.add_argument("--deterministic-design", default=None, metavar="JSON",
                    help="take the deterministic optimum from a results file of part 2 instead of optimising again")
    ap.add_argument("--out", default=None, help="default results/design_latest.json (design_robust_latest.json "
                    "for --robust-only)")
    ap.add_argument("--robust-only", action="store_true", help="only part 3 (no PyBOP, no --methods)")
    args = ap.parse_args()
    if args.robust_only:
        args.no_pybop, args.methods, args.no_robust = True, [], False
    args.out = args.out or str(RESULTS / ("design_robust_latest.json" if args.robust_only else "design_latest.json"))
    out = {"machine": machine_info(), "git": git_info(), "args": vars(args)}
    p = jaxcell.load_parameters("Chen2020")
    target = None
    if not args.no_pybop:
        run_pybop(args, out)
        target = out["pybop"].get("grid", {}).get("best")
    if target is None:
        target = 417.477  # PyBOP 26.3's grid best on this machine (tests/data/design/pybop_reference.json)
    if args.methods:
        run_deterministic(args, out, p, target)
    if not args.no_robust:
        run_robust(args, out, p)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1, default=float)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
