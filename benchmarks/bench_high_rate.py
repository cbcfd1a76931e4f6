"""The DFN at 3C, where the electrolyte runs out before the cut-off: accuracy against PyBaMM's
converged curve (480 x-points per electrode, 120 shells; ``tests/data/pybamm``) and the warm
single-solve time of jaxcell's and PyBaMM's meshes, in one process, one thread each.

Each configuration is solved once on the reference's times (RMS voltage difference after the
first second up to the earlier end, `_common.accuracy`; end time), then timed on 100 output times over [0, 1440] s (the best of five warm
solves). jaxcell's atol is rtol / 100, PyBaMM's rtol / 1000 (each library's usual ratio).

Usage::

    python benchmarks/bench_high_rate.py

Writes ``benchmarks/results/high_rate_latest.json``.
"""

from __future__ import annotations

import json
import time

import _common as C

C.init_xla_cpu(one_thread=True)

import numpy as np  # noqa: E402

import jaxcell  # noqa: E402

REFERENCE = C.HERE.parent / "tests" / "data" / "pybamm" / "DFNconverged_Chen2020_3.0C.csv"
EXPERIMENT = "Discharge at 3C until 2.5 V"
T_OUT = np.linspace(0.0, 1440.0, 100)
# (x-nodes per electrode, separator, shells, rtol)
JAXCELL = [(40, 20, 20, 1e-6), (100, 20, 30, 1e-6), (100, 20, 30, 1e-4)]
PYBAMM = [(20, 20, 20, 1e-4), (120, 20, 60, 1e-4), (160, 20, 60, 1e-4), (120, 20, 80, 1e-4)]


def best_of(fn, repeats=5):
    """The fastest of `repeats` warm calls [s] (one call first, to compile)."""
    fn()
    return min(C.median_time(fn, repeats)[1])


def run_jaxcell(ref, p, n_x, n_s, n_r, rtol):
    model = jaxcell.DFN(n_x_n=n_x, n_x_s=n_s, n_x_p=n_x, n_r_n=n_r, n_r_p=n_r)
    kw = dict(rtol=rtol, atol=rtol * 1e-2)
    sol = jaxcell.simulate(model, p, EXPERIMENT, t_eval=ref[:, 0], **kw)
    t_end = float(sol.step_end_time[-1])
    rms = C.accuracy(ref, ref[:, 0], np.asarray(sol.voltage), t_end)["rms_mV"]
    seconds = best_of(lambda: jaxcell.simulate(model, p, EXPERIMENT, t_eval=T_OUT, **kw).voltage.block_until_ready())
    return {"library": "jaxcell", "mesh": [n_x, n_s, n_x, n_r], "rtol": rtol, "states": int(sum(model._sizes)),
            "end_s": t_end, "rms_mV": rms, "solve_ms": 1e3 * seconds}


def run_pybamm(ref, n_x, n_s, n_r, rtol):
    import pybamm

    params = pybamm.ParameterValues("Chen2020")
    params["Current function [A]"] = 3.0 * params["Nominal cell capacity [A.h]"]
    var_pts = {"x_n": n_x, "x_s": n_s, "x_p": n_x, "r_n": n_r, "r_p": n_r}
    sim = pybamm.Simulation(pybamm.lithium_ion.DFN(), parameter_values=params, var_pts=var_pts,
                            solver=pybamm.IDAKLUSolver(rtol=rtol, atol=rtol * 1e-3))
    keep = ref[:, 0] <= T_OUT[-1]
    sol = sim.solve([0.0, T_OUT[-1]], t_interp=ref[keep, 0])
    t, v = sol["Time [s]"].entries, sol["Voltage [V]"].entries
    rms = C.accuracy(ref, t, v, float(t[-1]))["rms_mV"]
    seconds = best_of(lambda: sim.solve([0.0, T_OUT[-1]], t_interp=T_OUT))
    return {"library": "PyBaMM", "mesh": [n_x, n_s, n_x, n_r], "rtol": rtol, "end_s": float(t[-1]), "rms_mV": rms,
            "solve_ms": 1e3 * seconds}


def main():
    ref = np.loadtxt(REFERENCE, delimiter=",", skiprows=1)
    p = jaxcell.load_parameters("Chen2020")
    rows = [run_jaxcell(ref, p, *c) for c in JAXCELL] + [run_pybamm(ref, *c) for c in PYBAMM]
    for r in rows:
        print(f"{r['library']:8s} mesh {r['mesh']} rtol {r['rtol']:g}: end {r['end_s']:.2f} s, "
              f"{r['rms_mV']:.3f} mV RMS, solve {r['solve_ms']:.1f} ms", flush=True)
    out = {"reference": REFERENCE.name, "reference_end_s": float(ref[-1, 0]), "experiment": EXPERIMENT,
           "machine": C.machine_info(), "git": C.git_info(), "rows": rows}
    path = C.RESULTS / "high_rate_latest.json"
    path.write_text(json.dumps(out, indent=1))
    print("written", path)


if __name__ == "__main__":
    main()
