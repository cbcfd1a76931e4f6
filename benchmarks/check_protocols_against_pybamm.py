"""Random multi-step protocols, jaxcell against PyBaMM on the same model and mesh.

Each case draws a parameter set, a model, a thermal option, an initial state of charge and two to
five steps (constant current, rest, power, resistance, voltage holds, "or" between limits) within
the set's voltage window, runs them in PyBaMM 26.10 (IDAKLU, rtol 1e-8, atol 1e-10; 1e-8 for Ecker2015's DFN) and in
jaxcell (the same tolerances) at PyBaMM's output times, and writes one JSON line per case: the voltage's RMS and
largest difference away from step changes, the current's largest difference, and both
libraries' step end times.

Where they differ by design, the script aligns them instead of counting a difference:

- PyBaMM leaves a step whose limit holds at its start out of its solution; jaxcell keeps it as
  a step of zero length (`StepEnd.ALREADY_MET`). Steps are compared by jaxcell's steps that ran
  for more than 1 ms: the DFN's hold at a voltage whose current is below the hold's limit ends
  on that limit within microseconds, once its double layers have charged.
- In an experiment PyBaMM stops on the voltage cut-offs only 1 V beyond them (the voltage runs
  on to 1.5 V on a 2.5 V set); jaxcell stops on the cut-off itself. Times after jaxcell's stop
  are not compared, and such a case is marked `"pybamm_past_cutoff"`.
- The DFN in jaxcell has double layers: its voltage at a step change reaches the
  Butler-Volmer value within microseconds, PyBaMM's at once. Points within 2 s of a step
  change are not compared.

The output appends, per run, a line with the machine and git state, then one line per case.

    python benchmarks/check_protocols_against_pybamm.py --cases 40 --seed 2 --models SPM SPMe
    python benchmarks/check_protocols_against_pybamm.py --cases 10 --models DFN   # PyBaMM's fine mesh

Needs `pip install ".[bench]"`. Results: benchmarks/README.md ("Random protocols against PyBaMM").
"""

import argparse
import json
import time
import warnings

import numpy as np

FINE = {"x_n": 60, "x_s": 30, "x_p": 60, "r_n": 60, "r_p": 60}  # PyBaMM's mesh for the DFN


def random_steps(rng, lo, hi, capacity):
    """Two to five step strings inside the voltage window [lo, hi] of a cell of `capacity` A.h."""
    mid = 0.5 * (lo + hi)

    def v_low():
        return np.round(rng.uniform(lo + 0.15, mid), 2)

    def v_high():
        return np.round(rng.uniform(mid, hi - 0.05), 2)

    forms = [
        lambda c, m: f"Discharge at {c}C until {v_low()} V",
        lambda c, m: f"Discharge at {c}C for {m} minutes",
        lambda c, m: f"Rest for {m} minutes",
        lambda c, m: f"Charge at {c}C until {v_high()} V",
        lambda c, m: f"Hold at {v_high()} V until {int(rng.integers(20, 500))} mA",
        lambda c, m: f"Discharge at {np.round(rng.uniform(2, 12) * capacity / 5, 1)} W for {m} minutes",
        lambda c, m: f"Charge at {c}C for {m} minutes or until {v_high()} V",
        lambda c, m: f"Hold at {v_high()} V for {m} minutes",
        lambda c, m: f"Discharge at {np.round(rng.uniform(0.5, 3.0) * 5 / capacity, 2)} Ohm until {v_low()} V",
    ]
    return [forms[rng.integers(len(forms))](float(np.round(rng.uniform(0.2, 2.0), 2)), int(rng.integers(2, 40)))
            for _ in range(rng.integers(2, 6))]


def run_case(rng, models):
    import pybamm

    import jaxcell

    set_name = ["Chen2020", "Marquis2019", "Ecker2015"][rng.integers(3)]
    model_name = models[rng.integers(len(models))]
    thermal = "isothermal" if set_name == "Ecker2015" else ["isothermal", "lumped"][rng.integers(2)]
    soc = float(np.round(rng.uniform(0.3, 1.0), 2))
    pv = pybamm.ParameterValues(set_name)
    steps = random_steps(rng, pv["Lower voltage cut-off [V]"], pv["Upper voltage cut-off [V]"],
                         pv["Nominal cell capacity [A.h]"])
    rec = {"set": set_name, "model": model_name, "thermal": thermal, "initial_soc": soc, "steps": steps}
    options = {"thermal": "lumped"} if thermal == "lumped" else {}
    # IDA's initialisation fails on Ecker2015's DFN at atol 1e-10 (tests/data/make_references.py)
    atol = 1e-8 if (set_name, model_name) == ("Ecker2015", "DFN") else 1e-10
    sim = pybamm.Simulation(getattr(pybamm.lithium_ion, model_name)(options=options), parameter_values=pv,
                            var_pts=FINE if model_name == "DFN" else None,
                            solver=pybamm.IDAKLUSolver(rtol=1e-8, atol=atol),
                            experiment=pybamm.Experiment(steps, period="10 seconds"))
    start = time.perf_counter()
    try:
        sol = sim.solve(initial_soc=soc)
        ref = [(s["Time [s]"].entries, s["Voltage [V]"].entries, s["Current [A]"].entries)
               for cycle in sol.cycles for s in cycle.steps]
    except Exception as e:  # PyBaMM's own failures (IDA on Ecker2015's DFN) are recorded, not compared
        rec["pybamm_error"] = f"{type(e).__name__}: {e}"[:300]
        return rec
    rec["pybamm_s"] = time.perf_counter() - start
    rec["pybamm_termination"] = sol.termination
    t, V, I = (np.concatenate([r[i] for r in ref]) for i in range(3))
    model = getattr(jaxcell, model_name)(**({"thermal": "lumped"} if thermal == "lumped" else {}))
    start = time.perf_counter()
    js = jaxcell.simulate(model, jaxcell.load_parameters(set_name), steps, t_eval=t, rtol=1e-8, atol=atol,
                          initial_soc=soc)
    rec["jaxcell_s"] = time.perf_counter() - start
    rec["jaxcell_message"] = js.message
    all_ends = np.asarray(js.step_end_time)
    lengths = np.diff(np.concatenate([[0.0], all_ends]))
    ran = [k for k, e in enumerate(np.asarray(js.step_end))
           if e not in (jaxcell.StepEnd.ALREADY_MET, jaxcell.StepEnd.NOT_RUN) and lengths[k] > 1e-3]
    ends = all_ends[ran]
    ref_ends = np.array([r[0][-1] for r in ref])
    n = min(len(ends), len(ref_ends))
    if n == 0:  # no step ran in one of them (a stop at the very start): nothing to align
        return rec
    rec["end_times_jaxcell"], rec["end_times_pybamm"] = ends.tolist(), ref_ends.tolist()
    stopped = int(js.status) in (jaxcell.Status.LOWER_CUTOFF, jaxcell.Status.UPPER_CUTOFF)
    last = n - 1 if stopped else n  # a cut-off stop: PyBaMM ran on past it
    rec["pybamm_past_cutoff"] = bool(stopped and ref_ends[n - 1] > ends[n - 1] + 1e-3)
    rec["largest_end_difference_s"] = float(np.max(np.abs(ends[:last] - ref_ends[:last]), initial=0.0))
    changes = np.concatenate([[0.0], ends, ref_ends])
    v, i = np.asarray(js.voltage), np.asarray(js.current)
    keep = np.all(np.abs(t[:, None] - changes[None, :]) > 2.0, axis=1) & np.isfinite(v)
    rec["points_compared"] = int(keep.sum())
    if keep.any():
        rec["rms_mV"] = float(1e3 * np.sqrt(np.mean((v[keep] - V[keep]) ** 2)))
        rec["largest_mV"] = float(1e3 * np.max(np.abs(v[keep] - V[keep])))
        rec["largest_current_difference_A"] = float(np.max(np.abs(i[keep] - I[keep])))
        rec["rms_current_difference_mA"] = float(1e3 * np.sqrt(np.mean((i[keep] - I[keep]) ** 2)))
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", nargs="+", default=["SPM", "SPMe"], choices=["SPM", "SPMe", "DFN"])
    ap.add_argument("--out", default="benchmarks/results/protocols_against_pybamm.jsonl")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import jax

    jax.config.update("jax_enable_x64", True)
    import _common as C

    rng = np.random.default_rng(args.seed)
    with open(args.out, "a") as f:
        f.write(json.dumps({"seed": args.seed, "cases": args.cases, "models": args.models,
                            "machine": C.machine_info()}) + "\n")  # one line per run, before its cases
        for case in range(args.cases):
            rec = {"seed": args.seed, "case": case, **run_case(rng, args.models)}
            f.write(json.dumps(rec) + "\n")
            f.flush()
            print({k: rec.get(k) for k in ("case", "set", "model", "thermal", "rms_mV", "largest_mV",
                                           "largest_end_difference_s", "pybamm_error")}, flush=True)


if __name__ == "__main__":
    main()
