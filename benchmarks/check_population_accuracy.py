"""Accuracy of a DFN population against converged PyBaMM solutions of the same cells.

``bench_dfn.py`` reports each population cell's distance from PyBaMM's default-mesh solution (what
PyBaMM's list-of-inputs solve uses). That is not ground truth: both sit about 1 mV from the
converged solution. This script solves some of the same cells (``bench_population.population``,
seed 0) with PyBaMM's DFN on 60 points per domain and particle (separator 30; IDAKLU rtol 1e-8,
atol 1e-10, contact resistance on) and reports, on the population grid after 1 s, the RMS
distance from it of

* jaxcell's ``simulate_batch`` at the given meshes (rtol 1e-3, atol 1e-8: the benchmark's), and
* PyBaMM's default mesh at rtol 1e-3 (atol 1e-8).

Usage::

    python benchmarks/check_population_accuracy.py [--cells 666 377 0 1 2 3 500 999] [--meshes 10,5,10,10,10 16,8,16,12,12]

Writes ``benchmarks/results/population_accuracy_latest.json``.
"""

from __future__ import annotations

import argparse
import json

import _common as C
import bench_dfn as B
import bench_population as BP
import jax
import jax.numpy as jnp
import numpy as np

import jaxcell

FINE = {"x_n": 60, "x_s": 30, "x_p": 60, "r_n": 60, "r_p": 60}


def pybamm_voltage(cell_values, ts, var_pts, rtol, atol):
    """PyBaMM's DFN (contact resistance on) of one cell at the set's current (1C, as in the
    population benchmark), its voltage on `ts` (NaN after its end)."""
    built, solver, _ = C.pybamm_build("DFN", [], symbolic_mesh=False, rtol=rtol, atol=atol, var_pts=var_pts,
                                      options={"contact resistance": "true"}, values=cell_values)
    t, v, _ = C.pybamm_solve(built, solver, {}, ts)
    return np.interp(ts, t, v, right=np.nan)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="population size the cells are drawn from (seed 0)")
    ap.add_argument("--cells", type=int, nargs="+", default=[666, 377, 0, 1, 2, 3, 500, 999])
    ap.add_argument("--meshes", nargs="+", default=["10,5,10,10,10", "16,8,16,12,12"])
    ap.add_argument("--n-out", type=int, default=1001)
    args = ap.parse_args()
    C.init_xla_cpu(one_thread=True)
    cells, names = BP.population(args.n, 0)
    idx = np.asarray(args.cells)
    ts = np.linspace(0.0, C.T_END, args.n_out)
    rows = []
    jx = {}
    for mesh in args.meshes:
        sub = jax.tree.map(lambda x: x[idx], cells)
        sols = jaxcell.simulate_batch(B.parse_mesh(mesh), sub, C.EXPERIMENT, batch_size=len(idx), t_eval=jnp.asarray(ts),
                                      rtol=1e-3, atol=C.ATOL, progress=False)
        jx[mesh] = np.asarray(sols.voltage)
    for k, i in enumerate(idx):
        values = {n: float(cells[n][i]) for n in names}
        fine = pybamm_voltage(values, ts, FINE, 1e-8, 1e-10)
        default = pybamm_voltage(values, ts, None, 1e-3, C.ATOL)
        ok = (ts > 1.0) & np.isfinite(fine) & np.isfinite(default)
        for mesh in args.meshes:
            ok &= np.isfinite(jx[mesh][k])
        rms = lambda v: float(1e3 * np.sqrt(np.mean((v[ok] - fine[ok]) ** 2)))
        row = {"cell": int(i), "pybamm_default_mV": rms(default), **{f"jaxcell_{m}_mV": rms(jx[m][k]) for m in args.meshes}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = {"machine": C.machine_info(), "cells": rows, "meshes": args.meshes,
           "reference": "PyBaMM DFN, 60 points (separator 30), IDAKLU rtol 1e-8 atol 1e-10"}
    path = C.RESULTS / "population_accuracy_latest.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
