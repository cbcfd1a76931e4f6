"""Population throughput: jaxcell ``simulate_batch`` against PyBaMM's IDAKLU list-of-inputs solve,
in one process, for the SPMe and the DFN (Chen2020, isothermal, "Discharge at 1C until 2.5 V").

The cells. ``jaxcell.sample_population(Chen2020, jaxcell.default_variation(), n,
jax.random.key(--seed))``. The default variation varies both electrode thicknesses, both
porosities (each electrode's active material volume fraction follows its porosity), both particle
radii, the contact resistance and the total heat transfer coefficient. Both libraries solve the
same cells: the sampled values of the first nine go to PyBaMM as input parameters, one dict per
cell:

* thicknesses and particle radii set PyBaMM's mesh, so its model is built on
  ``pybamm.SymbolicUniform1DSubMesh`` in the x and r domains (as ``bench_spm_spme.py``);
* porosities and active material volume fractions are plain inputs;
* the contact resistance needs PyBaMM's option ``{"contact resistance": "true"}`` (the voltage
  then loses I R_contact, as in jaxcell);
* the total heat transfer coefficient is read only by a lumped thermal model; both models here
  are isothermal, so it is reset to the set's value in jaxcell's cells (held fixed in both).

Each configuration (model, n):

1. PyBaMM: ``pybamm.lithium_ion.<model>(options)`` built with those inputs, ``IDAKLUSolver(rtol=1e-6,
   atol=1e-8, output_variables=["Voltage [V]"], options={"num_threads": --pybamm-threads})``;
   one warm-up solve (cell 0, sets the solver up), then the timed list-of-inputs solve
   ``solver.solve(model, [0, 4320 s], inputs=[...], t_interp=grid)`` of all n cells.
2. jaxcell: ``jaxcell.simulate_batch(model, cells, EXPERIMENT, batch_size=B, t_eval=grid,
   rtol=1e-6, atol=1e-8)`` with B = min(--batch-size, n):

   * the first call, on the first B cells (one chunk): its wall time and, from ``jax.monitoring``,
     the seconds spent tracing, lowering and compiling ("compile s"; 0 when an earlier
     configuration already compiled this model and chunk size);
   * the warm run: a second call on all n cells (the compiled chunk is reused), timed with
     ``jax.block_until_ready``; its cells/s is the throughput.
   * ``--repeats`` R (default 3): R - 1 more timed runs of all n cells by each library,
     alternating PyBaMM and jaxcell; each library's throughput is then that of its median run
     (the machine's speed drifts by tens of percent over minutes; every run is in the JSON).
3. Pilot and ``--max-seconds``: before that, both libraries solve the first k = min(n, B, --pilot)
   cells (jaxcell in one chunk of k; when k = B this is the first call of step 2). From it the
   configuration's remaining time is estimated; over ``--max-seconds`` it is skipped and reported
   as skipped with the estimate (JSON and table).
4. Memory per cell: XLA's memory analysis of the compiled chunk (temp + arguments + outputs,
   ``lower().compile().memory_analysis()``, an extra compile, once per model and B; divided by
   B) and the process RSS increase during the warm run (largest VmRSS sampled every 20 ms minus
   the RSS before it; divided by B, the cells in flight at once; it includes the solutions
   gathered so far). ``--no-memory-analysis`` skips the extra compile.
5. Agreement per cell on the common grid ``linspace(0, 4320 s, --n-out)``: RMS and max |dV|
   between jaxcell and PyBaMM on the grid times after 1 s and before both end-of-discharge times
   (jaxcell's DFN has double layers that charge within microseconds, so at t = 0 it shows the
   voltage at rest, PyBaMM's the loaded voltage; docs/dfn.md), and the end-time difference (jaxcell's ``step_end_time`` against PyBaMM's event time); the worst cell
   of each. Status counts: jaxcell ``Status`` codes, PyBaMM termination strings.

Threads. ``--xla-threads 1`` (default) gives XLA's CPU intra-op pool one thread (see
``_common.init_xla_cpu``: batched LAPACK LUs, which an earlier DFN solver used, hung with a small
multi-thread pool), and
IDAKLU runs with ``--pybamm-threads`` (default 1): by default both libraries use one core.
``--xla-threads 0`` keeps XLA's default pool (one thread per core).

Output: progress lines, then a markdown table (model, n, jaxcell and PyBaMM cells/s, their ratio,
compile s, bytes/cell, worst RMS mV, ...), and ``--out`` (JSON: machine with CPU model and core
count, git commit, settings, every configuration; rewritten after each configuration).

Usage::

    python benchmarks/bench_population.py                          # SPMe and DFN, n = 1000
    python benchmarks/bench_population.py --models SPMe --n 1000 10000 --batch-size 1000
    python benchmarks/bench_population.py --n 4 --models SPMe       # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import statistics
import time
import warnings

import _common as C
import jax
import jax.numpy as jnp
import numpy as np

import jaxcell

HEAT = "Total heat transfer coefficient [W.m-2.K-1]"
T_MIN = 1.0  # agreement on grid times after 1 s: at t = 0 jaxcell's DFN shows the voltage at rest
PYBAMM_OPTIONS = {"contact resistance": "true"}
JAXCELL_MODELS = {"SPMe": jaxcell.SPMe, "DFN": jaxcell.DFN}
DEFAULT_OUT = C.RESULTS / "population_latest.json"
_XLA_MEMORY = {}  # (model, chunk size, rtol) -> XLA memory analysis: one extra compile each


def population(n, seed):
    """The n sampled cells (a batched ParameterSet; the heat transfer coefficient held at the
    set's value) and the names of the parameters that go to PyBaMM as inputs."""
    p = jaxcell.load_parameters(C.SET)
    variation = jaxcell.default_variation()
    cells = jaxcell.sample_population(p, variation, n, jax.random.key(seed))
    cells = cells.update({HEAT: jnp.full((n,), float(p[HEAT]))})
    names = [k for k in jaxcell.population.varied_parameter_names(p, variation) if k != HEAT]
    return cells, names


def pybamm_inputs(cells, names, idx):
    cols = {k: np.asarray(cells[k]) for k in names}
    return [{k: float(cols[k][i]) for k in names} for i in idx]


def status_counts(values):
    keys, counts = np.unique(np.asarray(values), return_counts=True)
    return {str(k): int(c) for k, c in zip(keys, counts)}


def jaxcell_status_counts(status):
    return {jaxcell.Status(int(k)).name: c for k, c in status_counts(status).items()}


def subset(cells, k):
    return jax.tree.map(lambda x: x[:k], cells)


def first_call(model, cells, ts, rtol):
    """The first simulate_batch call for this chunk size (one chunk: all of `cells`): wall time,
    compile seconds and count, RSS increase."""
    c0, s0 = C.compiles(), C.compile_seconds()
    with C.RssSampler() as mem:
        t0 = time.perf_counter()
        sols = jax.block_until_ready(jaxcell.simulate_batch(
            model, cells, C.EXPERIMENT, batch_size=cells.batch_shape[0], t_eval=ts, rtol=rtol, atol=C.ATOL,
            progress=False))
        wall = time.perf_counter() - t0
    compile_s = C.compile_seconds() - s0
    n = cells.batch_shape[0]
    return sols, {
        "n_cells": n, "wall_s": wall, "compile_s": compile_s, "compiles": C.compiles() - c0,
        "run_per_cell_s": max(wall - compile_s, 1e-9) / n, "rss_increase_bytes": mem.increase,
    }


def run_config(name, n, *, batch_size, pybamm_threads=1, max_seconds=math.inf, pilot=8, seed=0, n_out=1001,
               rtol=C.RTOL, pybamm_rtol=C.RTOL, memory_analysis=True, model=None, repeats=1):
    """One configuration (model `name`, `n` cells): see the module docstring. `rtol` is jaxcell's,
    `pybamm_rtol` IDAKLU's; `model` a jaxcell model instance (default: `name`'s default mesh);
    `repeats` timed runs of all n cells for each library, alternating, the median reported.
    Returns a dict; ``"skipped"`` holds the reason when the pilot's estimate exceeds `max_seconds`."""
    print(f"\n=== {name}, n = {n} ===", flush=True)
    C.log_load(f"{name} n={n} start")
    t_cfg = time.perf_counter()
    ts = np.linspace(0.0, C.T_END, n_out)
    ts_j = jnp.asarray(ts)
    B = min(batch_size, n)
    k = min(n, B, pilot)
    cells, names = population(n, seed)
    model = JAXCELL_MODELS[name]() if model is None else model
    res = {"model": name, "jaxcell_model": repr(model), "n": n, "batch_size": B, "pilot_cells": k, "rtol": rtol, "pybamm_rtol": pybamm_rtol, "atol": C.ATOL,
           "pybamm_inputs": names, "pybamm_options": PYBAMM_OPTIONS}

    # ---- pilot: PyBaMM build + set-up, k cells each ----
    built, solver, build_s = C.pybamm_build(name, names, symbolic_mesh=True, threads=pybamm_threads,
                                            options=PYBAMM_OPTIONS, rtol=pybamm_rtol)
    inputs = pybamm_inputs(cells, names, range(n))
    t0 = time.perf_counter()
    C.pybamm_solve(built, solver, inputs[0], ts)  # warm-up: sets the solver up
    pb_setup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    C.pybamm_solve(built, solver, inputs[:k], ts)
    pb_pilot_cell = (time.perf_counter() - t0) / k
    sols_first, first = first_call(model, subset(cells, k), ts_j, rtol)
    jx_cell = first["run_per_cell_s"]
    print(f"pilot ({k} cells): PyBaMM build {build_s:.2f} s, set-up solve {pb_setup_s:.2f} s, "
          f"{pb_pilot_cell*1e3:.2f} ms/cell; jaxcell first call (chunk {k}) {first['wall_s']:.2f} s "
          f"({first['compile_s']:.2f} s compile, {first['compiles']} compiles) -> ~{jx_cell*1e3:.2f} ms/cell",
          flush=True)

    # ---- estimate the rest ----
    compile_est = first["compile_s"] if first["compile_s"] > 0.5 else 0.0
    mem_key = (repr(model), B, rtol)
    est = (pb_pilot_cell * n + jx_cell * n) * repeats
    if k < B:
        est += compile_est + jx_cell * B  # the first call at chunk size B
    if memory_analysis and mem_key not in _XLA_MEMORY:
        est += compile_est
    res["pilot"] = {"pybamm_build_s": build_s, "pybamm_setup_solve_s": pb_setup_s,
                    "pybamm_per_cell_s": pb_pilot_cell, "jaxcell_first_call": first, "estimate_rest_s": est}
    if est > max_seconds:
        res["skipped"] = f"estimated {est:.0f} s > --max-seconds {max_seconds:g}"
        print(f"SKIPPED: {res['skipped']}", flush=True)
        return res

    # ---- XLA memory analysis of the chunk of B cells (extra compile) ----
    if memory_analysis:
        if mem_key not in _XLA_MEMORY:
            _XLA_MEMORY[mem_key] = C.xla_chunk_memory(model, subset(cells, B), ts_j, rtol, C.ATOL)
        xmem = dict(_XLA_MEMORY[mem_key], bytes_per_cell=_XLA_MEMORY[mem_key]["total_bytes"] / B)
        print(f"XLA memory analysis, chunk of {B}: {xmem['total_bytes']/2**20:.1f} MiB "
              f"(temp {xmem['temp_bytes']/2**20:.1f} MiB) = {xmem['bytes_per_cell']/2**10:.0f} KiB/cell "
              f"(its compile {xmem['compile_s']:.1f} s); MemAvailable {C.mem_available_bytes()/2**30:.1f} GiB",
              flush=True)
        res["xla_memory"] = xmem

    # ---- PyBaMM: all n cells (the first of `repeats`; the others alternate with jaxcell's below) ----
    def run_pybamm():
        return C.pybamm_solve(built, solver, inputs, ts)

    def run_jaxcell():
        return jax.block_until_ready(jaxcell.simulate_batch(model, cells, C.EXPERIMENT, batch_size=B, t_eval=ts_j,
                                                            rtol=rtol, atol=C.ATOL, progress=False))

    C.log_load(f"{name} n={n} PyBaMM")
    t0 = time.perf_counter()
    pb = run_pybamm()
    pb_wall = time.perf_counter() - t0
    pb_walls = [pb_wall]
    res["pybamm"] = {"wall_s": pb_wall, "cells_per_s": n / pb_wall, "num_threads": pybamm_threads,
                     "terminations": status_counts([term for _, _, term in pb])}
    print(f"PyBaMM list-of-inputs solve, {n} cells: {pb_wall:.2f} s = {n/pb_wall:.2f} cells/s; "
          f"terminations {res['pybamm']['terminations']}", flush=True)

    # ---- jaxcell: first call at chunk size B (unless the pilot was it), then the warm run ----
    C.log_load(f"{name} n={n} jaxcell")
    if k < B:
        _, first = first_call(model, subset(cells, B), ts_j, rtol)
        print(f"jaxcell first call (chunk {B}): {first['wall_s']:.2f} s ({first['compile_s']:.2f} s compile, "
              f"{first['compiles']} compiles)", flush=True)
    res["jaxcell_first_call"] = first
    del sols_first
    c0, s0 = C.compiles(), C.compile_seconds()
    rss_peak0 = C.peak_rss_bytes()
    with C.RssSampler() as mem:
        t0 = time.perf_counter()
        sols = run_jaxcell()
        jx_wall = time.perf_counter() - t0
    res["jaxcell"] = {
        "wall_s": jx_wall, "cells_per_s": n / jx_wall, "recompiles": C.compiles() - c0,
        "recompile_s": C.compile_seconds() - s0, "status": jaxcell_status_counts(sols.status),
        "rss_before_bytes": mem.base, "rss_max_bytes": mem.max, "rss_increase_bytes": mem.increase,
        "rss_increase_per_cell_bytes": mem.increase / B, "peak_rss_before_bytes": rss_peak0,
        "peak_rss_after_bytes": C.peak_rss_bytes(),
    }
    print(f"jaxcell warm run, {n} cells in chunks of {B}: {jx_wall:.2f} s = {n/jx_wall:.2f} cells/s "
          f"({res['jaxcell']['recompiles']} recompiles); status {res['jaxcell']['status']}; RSS "
          f"{mem.base/2**20:.0f} -> {mem.max/2**20:.0f} MiB (+{mem.increase/B/2**10:.0f} KiB/cell)", flush=True)

    # ---- further timed runs, alternating (the machine's speed drifts): the medians count ----
    jx_walls = [jx_wall]
    for _ in range(repeats - 1):
        for run, walls in ((run_pybamm, pb_walls), (run_jaxcell, jx_walls)):
            t0 = time.perf_counter()
            run()
            walls.append(time.perf_counter() - t0)
    if repeats > 1:
        for lib, walls in (("pybamm", pb_walls), ("jaxcell", jx_walls)):
            res[lib].update(wall_s=statistics.median(walls), walls_s=walls, cells_per_s=n / statistics.median(walls))
        print(f"{repeats} runs each, alternating: PyBaMM {[round(n / w, 1) for w in pb_walls]} cells/s, jaxcell "
              f"{[round(n / w, 1) for w in jx_walls]} cells/s; medians {res['pybamm']['cells_per_s']:.2f} and "
              f"{res['jaxcell']['cells_per_s']:.2f}", flush=True)

    res["ratio_jaxcell_over_pybamm"] = res["jaxcell"]["cells_per_s"] / res["pybamm"]["cells_per_s"]
    res["agreement"] = C.batch_agreement(ts, sols, pb, t_min=T_MIN)
    res["config_wall_s"] = time.perf_counter() - t_cfg
    a = res["agreement"]
    print(f"throughput jaxcell / PyBaMM = {res['ratio_jaxcell_over_pybamm']:.3f} "
          f"({'jaxcell' if res['ratio_jaxcell_over_pybamm'] > 1 else 'PyBaMM'} faster); agreement: worst RMS "
          f"{a['max_rms_mV']:.3f} mV (cell {a['worst_rms_cell']}), worst max {a['max_max_mV']:.3f} mV, worst "
          f"|dt_end| {a['max_abs_dt_end_s']:.3f} s", flush=True)
    return res


def _fmt(x, spec):
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _compile_text(seconds):
    """An earlier configuration with the same model and chunk size compiled it already."""
    return f"{seconds:.1f}" if seconds >= 0.5 else f"{seconds:.1f} (cached)"


def table(results):
    head = ("| model | n | jaxcell cells/s | PyBaMM cells/s | ratio jaxcell/PyBaMM | compile s | "
            "XLA bytes/cell | RSS bytes/cell | worst RMS mV | worst abs dt_end s | jaxcell status | PyBaMM end |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        if "skipped" in r:
            rows.append(f"| {r['model']} | {r['n']} | skipped: {r['skipped']} |" + " |" * 9)
            continue
        jx, pb, a = r["jaxcell"], r["pybamm"], r["agreement"]
        rows.append(
            f"| {r['model']} | {r['n']} | {jx['cells_per_s']:.2f} | {pb['cells_per_s']:.2f} | "
            f"{r['ratio_jaxcell_over_pybamm']:.3f} | {_compile_text(r['jaxcell_first_call']['compile_s'])} | "
            f"{_fmt(r.get('xla_memory', {}).get('bytes_per_cell'), '.3g')} | "
            f"{_fmt(jx['rss_increase_per_cell_bytes'], '.3g')} | {_fmt(a['max_rms_mV'], '.3f')} | "
            f"{a['max_abs_dt_end_s']:.3f} | {jx['status']} | {pb['terminations']} |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["SPMe", "DFN"], choices=list(JAXCELL_MODELS))
    ap.add_argument("--n", type=int, nargs="+", default=[1000], help="population sizes")
    ap.add_argument("--batch-size", type=int, default=1000, help="jaxcell simulate_batch chunk size")
    ap.add_argument("--rtol", type=float, default=C.RTOL, help="jaxcell rtol")
    ap.add_argument("--pybamm-rtol", type=float, default=C.RTOL, help="PyBaMM IDAKLU rtol")
    ap.add_argument("--pybamm-threads", type=int, default=1, help="IDAKLU num_threads")
    ap.add_argument("--xla-threads", type=int, default=1, choices=[0, 1],
                    help="1: one-thread XLA intra-op pool; 0: XLA's default (see the docstring)")
    ap.add_argument("--max-seconds", type=float, default=math.inf,
                    help="skip (and report) a configuration whose estimated time after the pilot exceeds this")
    ap.add_argument("--pilot", type=int, default=8, help="cells in the pilot")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed runs of all cells per library, alternating; the median counts")
    ap.add_argument("--n-out", type=int, default=1001, help=f"output times on [0, {C.T_END:.0f} s]")
    ap.add_argument("--no-memory-analysis", action="store_true",
                    help="skip XLA's memory analysis of the chunk (an extra compile per model and chunk size)")
    ap.add_argument("--seed", type=int, default=0, help="population key: jax.random.key(seed)")
    ap.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="JSON results")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    C.init_xla_cpu(one_thread=args.xla_threads == 1)

    info = C.machine_info()
    print(f"Machine: {info['cpu_model']}, {info['cpu_count']} cores, XLA intra-op threads "
          f"{info['xla_intra_op_threads']}, jax {info['jax']}, pybamm {info['pybamm']}, jaxcell {info['jaxcell']}, "
          f"git {info['git']['head'][:10]}{' (jaxcell/ modified)' if info['git']['dirty_jaxcell_files'] else ''}",
          flush=True)
    out = {
        "machine": info,
        "settings": {
            "parameter_set": C.SET, "experiment": C.EXPERIMENT, "thermal": "isothermal",
            "variation": "jaxcell.default_variation()", "held_fixed": [HEAT], "seed": args.seed,
            "models": args.models, "n": args.n, "batch_size": args.batch_size,
            "pybamm_threads": args.pybamm_threads, "xla_threads": "1" if args.xla_threads == 1 else "default",
            "rtol": args.rtol, "pybamm_rtol": args.pybamm_rtol, "atol": C.ATOL, "n_out": args.n_out, "t_grid_end_s": C.T_END,
            "max_seconds": args.max_seconds if math.isfinite(args.max_seconds) else None, "pilot": args.pilot,
            "repeats": args.repeats,
        },
        "results": [],
        "complete": False,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    for name in args.models:
        for n in args.n:
            out["results"].append(run_config(
                name, n, batch_size=args.batch_size, pybamm_threads=args.pybamm_threads,
                max_seconds=args.max_seconds, pilot=args.pilot, seed=args.seed, n_out=args.n_out,
                rtol=args.rtol, pybamm_rtol=args.pybamm_rtol, memory_analysis=not args.no_memory_analysis,
                repeats=args.repeats))
            out["load_log"] = C.LOAD_LOG
            args.out.write_text(json.dumps(out, indent=1) + "\n")
    info["load_avg_at_end"] = list(os.getloadavg())
    info["uptime_at_end"] = C.uptime_line()
    out.update(total_s=time.perf_counter() - t_start, table=table(out["results"]), complete=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")

    la = [[round(x, 2) for x in info[k]] for k in ("load_avg_at_start", "load_avg_at_end")]
    print(f"\nChen2020, '{C.EXPERIMENT}', isothermal, default variation; jaxcell simulate_batch (batch_size = "
          f"min({args.batch_size}, n), rtol {args.rtol:g}, atol {C.ATOL:g}) vs PyBaMM IDAKLU list of inputs (rtol "
          f"{args.pybamm_rtol:g}, atol {C.ATOL:g}, {args.pybamm_threads} thread(s)); XLA intra-op threads "
          f"{info['xla_intra_op_threads']}; {info['cpu_model']}, {info['cpu_count']} cores; load average {la[0]} at "
          f"start, {la[1]} at end.\n")
    print(out["table"])
    print("\nratio = jaxcell cells/s / PyBaMM cells/s (> 1: jaxcell faster). compile s = trace + lower + compile "
          "in jaxcell's first call ('cached': compiled by an earlier configuration). bytes/cell: XLA memory "
          "analysis of one chunk / chunk size; RSS increase during the warm run / chunk size. worst RMS, dt_end: "
          "jaxcell vs PyBaMM, worst cell, on the common grid after 1 s.")
    print(f"Total {out['total_s']:.1f} s. Wrote {args.out}")


if __name__ == "__main__":
    main()
