"""Benchmark jaxcell against PyBaMM (IDAKLU) for SPM and SPMe, Chen2020, 1C discharge to 2.5 V.

For each model:

1. PyBaMM, ``pybamm.IDAKLUSolver(rtol=1e-6, atol=1e-8, output_variables=["Voltage [V]"])``:

   * build "A": PyBaMM's default (numeric) mesh, ``"Current function [A]"`` as an input
     parameter. Warm single solve, median of ``--repeats`` after a warm-up.
   * build "B": the same, but ``"Negative electrode thickness [m]"`` and
     ``"Positive particle radius [m]"`` are input parameters too. They set the mesh
     (electrode thickness, particle radius), so this build uses
     ``pybamm.SymbolicUniform1DSubMesh`` for the x and r domains. The batch of N parameter sets
     is solved as a list of inputs, ``solver.solve(model, t_eval, inputs=[...], t_interp=...)``
     (PyBaMM's documented way; IDAKLU's default ``num_threads=1`` unless ``--pybamm-threads``).
   * accuracy of the rtol=1e-6 solve against a tight rtol=1e-8/atol=1e-10 solve (build A).

2. jaxcell: time of the first call (trace + compile + one solve), warm single solve (median of
   ``--repeats``, ``jax.block_until_ready``), a check that a call with new parameter values does
   not recompile, and ``jax.jit(jax.vmap(simulate))`` over the same N parameter sets (compiled
   ahead with ``.lower().compile()``, timed separately).

3. Voltage error of jaxcell against PyBaMM on PyBaMM's output times (the common ``t_interp``
   grid up to PyBaMM's end-of-discharge event) and the end-of-discharge time difference, for the
   single cell (against both PyBaMM solves) and across the batch (against PyBaMM's batch).

4. Gradient (unless ``--skip-gradient``): ``bench_dfn.bench_gradient``, the same measurement as
   the DFN's: ``jax.jit(jax.grad(loss))`` of the voltage RMSE against PyBaMM's tight solve (its
   times in (1 s, 3300 s)) with respect to the same 10 Chen2020 parameters, as a multiple of the
   warm forward solve of the loss, and forward mode (``jax.jacfwd``) for comparison.

Solver outputs are on the same grid for both libraries: ``t = linspace(0, 4320 s, --n-out)``.

Usage::

    python benchmarks/bench_spm_spme.py [--n-batch 1000] [--repeats 10]

Writes ``benchmarks/results/spm_spme_latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import time
import warnings

import bench_dfn
import jax
import jax.numpy as jnp
import numpy as np
from _common import (
    ATOL,
    EXPERIMENT,
    HERE,
    I_APP,
    L_N,
    R_P,
    RTOL,
    SET,
    T_END,
    batch_agreement,
    compiles,
    jaxcell_single,
    machine_info,
    pybamm_build,
    pybamm_single,
    pybamm_solve,
    voltage_error,
)

import jaxcell

RTOL_REF, ATOL_REF = 1e-8, 1e-10
SPREAD = 0.03  # batch parameters: uniform within +-3 % of the set's values


# -- benchmark ----------------------------------------------------------------------------------
def bench_model(name, args, ts, batch_L, batch_R):
    print(f"\n=== {name} ===", flush=True)
    res = {"model": name}
    p = jaxcell.load_parameters(SET)
    I_1C = float(p["Nominal cell capacity [A.h]"])  # 1C
    base = {I_APP: I_1C, L_N: float(p[L_N]), R_P: float(p[R_P])}
    batch_inputs = [{I_APP: I_1C, L_N: float(L), R_P: float(R)} for L, R in zip(batch_L, batch_R)]

    # ---- PyBaMM: single solve (build A) ----
    bmA, sA, build_A = pybamm_build(name, [I_APP], symbolic_mesh=False, rtol=RTOL, atol=ATOL)
    (pb_t, pb_v, pb_term), pb_first, pb_single, pb_single_all = pybamm_single(bmA, sA, {I_APP: I_1C}, ts, args.repeats)
    print(f"PyBaMM A (numeric mesh, input: current): build {build_A:.2f} s, first solve {pb_first*1e3:.1f} ms, "
          f"warm solve median {pb_single*1e3:.2f} ms; end t={pb_t[-1]:.2f} s ({pb_term})", flush=True)
    res["pybamm"] = {
        "build_s": build_A, "first_solve_s": pb_first, "single_median_s": pb_single,
        "single_times_s": pb_single_all, "t_end_s": float(pb_t[-1]), "termination": pb_term,
    }

    # ---- PyBaMM: tight reference ----
    bmR, sR, _ = pybamm_build(name, [I_APP], symbolic_mesh=False, rtol=RTOL_REF, atol=ATOL_REF)
    ref_t, ref_v, ref_term = pybamm_solve(bmR, sR, {I_APP: I_1C}, ts)
    res["pybamm"]["vs_tight"] = voltage_error(ref_t, ref_v, ref_t[-1], pb_t, pb_v, pb_t[-1])
    res["pybamm_ref"] = {"rtol": RTOL_REF, "atol": ATOL_REF, "t_end_s": float(ref_t[-1]), "termination": ref_term}
    print(f"PyBaMM rtol=1e-6 vs rtol=1e-8: {res['pybamm']['vs_tight']}", flush=True)

    # ---- PyBaMM: batch (build B, symbolic mesh) ----
    bmB, sB, _ = pybamm_build(name, [I_APP, L_N, R_P], symbolic_mesh=True, rtol=RTOL, atol=ATOL,
                              threads=args.pybamm_threads)
    (pbB_t, pbB_v, _), _, pbB_single, _ = pybamm_single(bmB, sB, base, ts, args.repeats)
    res["pybamm"]["symbolic_mesh_single_median_s"] = pbB_single
    res["pybamm"]["symbolic_vs_numeric_mesh"] = voltage_error(pb_t, pb_v, pb_t[-1], pbB_t, pbB_v, pbB_t[-1])
    print(f"PyBaMM B (symbolic mesh, inputs: current, L_n, R_p): warm single median {pbB_single*1e3:.2f} ms; "
          f"vs build A: {res['pybamm']['symbolic_vs_numeric_mesh']}", flush=True)
    batch_times, pb_batch = [], None
    for _ in range(args.batch_repeats):
        t0 = time.perf_counter()
        pb_batch = pybamm_solve(bmB, sB, batch_inputs, ts)
        batch_times.append(time.perf_counter() - t0)
    pb_batch_s = statistics.median(batch_times)
    n = len(batch_inputs)
    bad_term = sum("Minimum voltage" not in term for _, _, term in pb_batch)
    print(f"PyBaMM batch of {n}: {pb_batch_s:.2f} s ({pb_batch_s/n*1e3:.2f} ms/cell), runs {batch_times}; "
          f"non-voltage terminations: {bad_term}", flush=True)
    res["pybamm"].update({"batch_s": pb_batch_s, "batch_times_s": batch_times, "batch_per_cell_s": pb_batch_s / n,
                          "batch_bad_terminations": bad_term, "num_threads": args.pybamm_threads})

    # ---- jaxcell: single ----
    model = {"SPM": jaxcell.SPM, "SPMe": jaxcell.SPMe}[name]()
    exp = jaxcell.Experiment([EXPERIMENT])
    ts_j = jnp.asarray(ts)
    sol, res["jaxcell"] = jaxcell_single(model, p, ts_j, args.repeats)
    jx = res["jaxcell"]
    jx_t_end = jx["t_end_s"]
    print(f"jaxcell: first call {jx['first_call_s']:.2f} s ({jx['first_call_compiles']} compiles), warm single median "
          f"{jx['single_median_s']*1e3:.2f} ms, recompiles on repeat/new params: {jx['recompiles_after_first']}; "
          f"status {jx['status']} step_end {jx['step_end']} t_end {jx_t_end:.2f} s", flush=True)
    res["jaxcell"]["vs_pybamm"] = voltage_error(pb_t, pb_v, pb_t[-1], ts, np.asarray(sol.voltage), jx_t_end)
    res["jaxcell"]["vs_pybamm_tight"] = voltage_error(ref_t, ref_v, ref_t[-1], ts, np.asarray(sol.voltage), jx_t_end)
    print(f"jaxcell vs PyBaMM rtol=1e-6: {res['jaxcell']['vs_pybamm']}\n"
          f"jaxcell vs PyBaMM rtol=1e-8: {res['jaxcell']['vs_pybamm_tight']}", flush=True)

    # ---- jaxcell: batch ----
    batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + x.shape), p)
    batched = batched.update({L_N: jnp.asarray(batch_L), R_P: jnp.asarray(batch_R)})
    fn = jax.jit(jax.vmap(lambda q, t: jaxcell.simulate(model, q, exp, t_eval=t), in_axes=(0, None)))
    c0 = compiles()
    t0 = time.perf_counter()
    fn.lower(batched, ts_j).compile()
    jx_batch_compile = time.perf_counter() - t0
    batch_compile_count = compiles() - c0
    c0 = compiles()
    jb_times, sols = [], None
    for _ in range(args.batch_repeats):
        t0 = time.perf_counter()
        sols = jax.block_until_ready(fn(batched, ts_j))
        jb_times.append(time.perf_counter() - t0)
    batch_recompiles = compiles() - c0
    jx_batch_s = statistics.median(jb_times)
    status = np.asarray(sols.status)
    print(f"jaxcell batch of {n}: compile {jx_batch_compile:.2f} s ({batch_compile_count} compiles), run "
          f"{jx_batch_s:.2f} s ({jx_batch_s/n*1e3:.2f} ms/cell), runs {jb_times}; recompiles in timed runs: "
          f"{batch_recompiles}; statuses {np.unique(status, return_counts=True)}", flush=True)
    batch_err = batch_agreement(ts, sols, pb_batch)  # batch accuracy against PyBaMM's batch
    print(f"jaxcell batch vs PyBaMM batch (worst cell): {batch_err}", flush=True)
    res["jaxcell"].update({
        "batch_compile_s": jx_batch_compile, "batch_compile_count": batch_compile_count, "batch_s": jx_batch_s,
        "batch_times_s": jb_times, "batch_per_cell_s": jx_batch_s / n, "batch_recompiles": batch_recompiles,
        "batch_status_counts": {int(k): int(v) for k, v in zip(*np.unique(status, return_counts=True))},
        "batch_vs_pybamm": batch_err,
    })
    if not args.skip_gradient:
        print("-- gradient --", flush=True)
        res["jaxcell"]["gradient"] = bench_dfn.bench_gradient(model, p, RTOL, np.column_stack([ref_t, ref_v]),
                                                             args.repeats)
    return res


def table(results, n):
    rows = []
    head = (f"{'model':<6}{'PyBaMM 1 [ms]':>15}{'jaxcell 1 [ms]':>16}{'ratio 1':>9}"
            f"{'PyBaMM batch [ms/cell]':>24}{'jaxcell batch [ms/cell]':>25}{'ratio b':>9}"
            f"{'compile 1/b [s]':>17}{'dV RMS/max [mV]':>17}{'dt_end [s]':>12}")
    rows.append(head)
    rows.append("-" * len(head))
    for r in results:
        pb, jx = r["pybamm"], r["jaxcell"]
        e = jx["vs_pybamm_tight"]
        rows.append(
            f"{r['model']:<6}{pb['single_median_s']*1e3:>15.2f}{jx['single_median_s']*1e3:>16.2f}"
            f"{pb['single_median_s']/jx['single_median_s']:>9.2f}"
            f"{pb['batch_per_cell_s']*1e3:>24.3f}{jx['batch_per_cell_s']*1e3:>25.3f}"
            f"{pb['batch_per_cell_s']/jx['batch_per_cell_s']:>9.2f}"
            f"{jx['first_call_s']:>8.1f} /{jx['batch_compile_s']:>6.1f}"
            f"{e['rms_mV']:>9.3f} /{e['max_mV']:>6.3f}{e['dt_end_s']:>12.3f}"
        )
    for r in results:
        g = r["jaxcell"].get("gradient")
        if g:
            rows.append(f"{r['model']}: reverse-mode gradient (10 parameters) {g['grad_median_s']*1e3:.2f} ms = "
                        f"{g['grad_over_forward']:.2f} x the forward loss ({g['forward_median_s']*1e3:.2f} ms); "
                        f"forward mode {g['jacfwd_over_forward']:.2f} x; compile {g['forward_compile_s']:.1f} + "
                        f"{g['grad_compile_s']:.1f} s")
    rows.append("")
    rows.append(f"ratio = PyBaMM / jaxcell (>1: jaxcell faster); batch N = {n}; single = warm median. "
                "compile 1/b = jaxcell first call (trace+compile+solve) / vmapped batch .lower().compile().")
    rows.append("dV, dt_end: jaxcell (rtol 1e-6) vs PyBaMM IDAKLU rtol=1e-8/atol=1e-10 on PyBaMM's output grid; "
                "dt_end = t_end(jaxcell) - t_end(PyBaMM).")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-batch", type=int, default=1000, help="parameter sets in the batch (default 1000)")
    ap.add_argument("--repeats", type=int, default=10, help="repeats of the warm single solve (default 10)")
    ap.add_argument("--batch-repeats", type=int, default=1, help="timed repeats of the batch solve (default 1)")
    ap.add_argument("--n-out", type=int, default=1001, help="output times on [0, 4320 s] (default 1001)")
    ap.add_argument("--pybamm-threads", type=int, default=1, help="IDAKLU num_threads for the batch (default 1)")
    ap.add_argument("--models", nargs="+", default=["SPM", "SPMe"], choices=["SPM", "SPMe"])
    ap.add_argument("--skip-gradient", action="store_true", help="skip the gradient measurement")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=pathlib.Path, default=HERE / "results" / "spm_spme_latest.json")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    info = machine_info()
    print("Machine:", json.dumps(info, indent=1))
    ts = np.linspace(0.0, T_END, args.n_out)
    p = jaxcell.load_parameters(SET)
    rng = np.random.default_rng(args.seed)
    batch_L = float(p[L_N]) * (1 + rng.uniform(-SPREAD, SPREAD, args.n_batch))
    batch_R = float(p[R_P]) * (1 + rng.uniform(-SPREAD, SPREAD, args.n_batch))

    t_start = time.perf_counter()
    results = [bench_model(m, args, ts, batch_L, batch_R) for m in args.models]
    total = time.perf_counter() - t_start
    info["load_avg_at_end"] = list(os.getloadavg())

    print("\nSettings: Chen2020, '" + EXPERIMENT + f"', PyBaMM IDAKLUSolver(rtol={RTOL}, atol={ATOL}) vs jaxcell "
          f"simulate(rtol={RTOL}, atol={ATOL}; the SPM solved exactly by ModalSolve, the SPMe by Rodas4); {args.n_out} output times on [0, {T_END:.0f}] s; "
          f"batch: {L_N} and {R_P} uniform within +-{SPREAD*100:.0f} %.")
    print(f"Machine: {info['cpu_model']}, {info['cpu_count']} CPUs, jax {info['jax']} "
          f"{info['jax_devices']}, pybamm {info['pybamm']}; load average (1/5/15 min) at start "
          f"{info['load_avg_at_start']}, at end {[round(x, 2) for x in info['load_avg_at_end']]}\n")
    print(table(results, args.n_batch))
    print(f"\nTotal benchmark time: {total:.1f} s")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = {
        "machine": info,
        "settings": {
            "parameter_set": SET, "experiment": EXPERIMENT, "rtol": RTOL, "atol": ATOL,
            "ref_rtol": RTOL_REF, "ref_atol": ATOL_REF, "n_batch": args.n_batch, "repeats": args.repeats,
            "batch_repeats": args.batch_repeats, "n_out": args.n_out, "t_end_grid_s": T_END,
            "batch_spread": SPREAD, "batch_parameters": [L_N, R_P], "seed": args.seed,
            "pybamm_threads": args.pybamm_threads, "jaxcell_solver": {"SPM": "ModalSolve", "SPMe": "Rodas4"},
        },
        "results": results,
        "total_s": total,
        "table": table(results, args.n_batch),
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
