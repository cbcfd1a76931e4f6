"""Benchmark jaxcell's DFN (or SPMe) against PyBaMM's (IDAKLU) at equal accuracy, Chen2020, 1C discharge to 2.5 V, isothermal.

``--model SPMe`` runs every step below with the SPMe in both libraries instead: the reference is
``tests/data/pybamm/SPMefine_Chen2020_1.0C.csv`` (PyBaMM's SPMe on the same fine mesh, rtol 1e-8),
jaxcell's candidates are ``DEFAULT_MESHES["SPMe"]`` (a sixth number in a mesh is the SPMe's
``r_stretch``; without it the SPMe's shells are uniform, as PyBaMM's), and the JSON is
``results/spme_latest.json``.

Everything runs in one process, and by default both libraries run on one thread: IDAKLU's default
``num_threads=1``, and XLA's CPU intra-op pool limited to one thread (``--xla-threads 1``; see
``_common.init_xla_cpu``: batched LAPACK LUs, which an earlier DFN solver used, hung with a small
multi-thread pool; the DFN solver no longer calls LAPACK, the SPM/SPMe dense solve still does).

1. Accuracy and single solve. Reference: ``tests/data/pybamm/DFNfine_Chen2020_1.0C.csv``
   (PyBaMM DFN on a fine mesh, IDAKLU rtol 1e-8; columns t_s, V_V, Q_Ah). RMS and max voltage
   difference [mV] on the reference's times after t = 1 s (jaxcell's double layers charge within
   microseconds; docs/dfn.md) up to the earlier end time, and the end-time difference [%]. Both
   libraries are evaluated *at* the reference times (jaxcell ``t_eval``, PyBaMM ``t_interp``).

   * PyBaMM ``pybamm.lithium_ion.DFN()``, ``IDAKLUSolver(rtol=r, atol=1e-8)`` for r in ``--pybamm-rtols``, its default mesh
     (20 points per domain) and a coarser one ``{x_n: 16, x_s: 8, x_p: 16, r_n: 15, r_p: 15}``,
     both with uniform shells and with shells thinner towards the particle surface
     (``pybamm.Exponential1DSubMesh``, side "right", stretch 2; jaxcell's shells are stretched
     too); the coarsest ``{x_n: 10, x_s: 5, x_p: 10, r_n: 10, r_p: 10}`` (the sizes of jaxcell's
     coarsest candidate) with stretched shells only (uniform ones were 2.6 mV off in a scratch
     run); and, unless ``--no-pybamm-fine`` and the default mesh is within ``--target-mV``, a
     finer mesh ``{x_n: 30, x_s: 15, x_p: 30, r_n: 30, r_p: 30}``;
   * jaxcell ``jaxcell.DFN(...)`` (Rodas4 with the structured linear solve) on each mesh of
     ``--meshes`` (``default``: 40/20/40 x-nodes, 20 shells; ``20,20,20,20,20``: PyBaMM's default
     mesh sizes; ``16,8,16,12,12``; ``10,5,10,10,10``) with ``simulate(..., rtol=r, atol=1e-8)`` for r in ``--rtols``.

   For each: warm single solve (median of ``--repeats`` after a warm-up), and for jaxcell the first
   call (trace + compile + solve: its compile time from ``jax.monitoring``) and a check that new
   parameter values do not recompile. "Equal accuracy" = within ``--target-mV`` RMS of the
   reference; the headline uses each library's fastest (mesh, rtol) that meets it (fastest by the
   minimum of the warm repeats; the ratios are of medians). A second,
   like-for-like line compares the two on the same mesh sizes (PyBaMM's default, 20 nodes per
   domain and 20 shells), each at its fastest rtol within the target.

2. Population: ``bench_population.run_config("DFN", --n-batch, ...)`` at the headline jaxcell mesh and rtol
   (see ``bench_population.py``: ``jaxcell.default_variation()`` cells, the same values as PyBaMM
   inputs on a symbolic mesh, PyBaMM's default DFN mesh; throughput, compile time, XLA and RSS
   memory per cell, worst-cell agreement; skipped with its estimate past ``--max-seconds``).

3. Gradient (headline jaxcell mesh and rtol): ``jax.jit(jax.grad(loss))`` of the voltage RMSE against the reference (at its times
   in (1 s, 3300 s)) with respect to 10 Chen2020 parameters (both thicknesses, porosities,
   particle radii, particle diffusivities, reaction rate constants), default reverse mode
   (``RecursiveCheckpointAdjoint``): compile times of the forward and gradient functions, warm
   medians and their ratio. Forward mode: ``jax.jit(jax.jacfwd(loss))`` with
   ``adjoint=diffrax.ForwardMode()``, and its agreement with reverse mode.

The JSON has the machine (CPU, cores, versions, XLA threads), the git commit and the uncommitted
changes of ``jaxcell/`` the run imported, and the load average through the run; it is rewritten
after each stage (``"complete": false`` until the end).

Usage::

    python benchmarks/bench_dfn.py [--n-batch 1000] [--repeats 5]
    python benchmarks/bench_dfn.py --model SPMe --batch-size 32
    python benchmarks/bench_dfn.py --meshes 10,5,10,5,5 --rtols 1e-3 --pybamm-rtols 1e-3 --repeats 1 --n-batch 2 --skip-gradient   # smoke test

Writes ``benchmarks/results/dfn_latest.json`` (``spme_latest.json`` with ``--model SPMe``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
import warnings

import _common as C
import bench_population
import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import jaxcell

_PYBAMM_DATA = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "pybamm"
# converged references (PyBaMM on the fine mesh of tests/data/make_references.py, IDAKLU rtol 1e-8)
REFERENCES = {name: _PYBAMM_DATA / f"{name}fine_Chen2020_1.0C.csv" for name in ("DFN", "SPMe")}
REFERENCE = REFERENCES["DFN"]
FINE_VAR_PTS = {"x_n": 30, "x_s": 15, "x_p": 30, "r_n": 30, "r_p": 30}
COARSE_VAR_PTS = {"x_n": 16, "x_s": 8, "x_p": 16, "r_n": 15, "r_p": 15}
COARSEST_VAR_PTS = {"x_n": 10, "x_s": 5, "x_p": 10, "r_n": 10, "r_p": 10}
PARTICLE_STRETCH = 2.0  # pybamm.Exponential1DSubMesh's stretch (most accurate of 1.15, 1.5, 2.0 at 15 shells)
SAME_MESH = "20,20,20,20,20"  # PyBaMM's default DFN and SPMe mesh sizes (x_n, x_s, x_p, r_n, r_p)
DEFAULT_MESHES = {  # jaxcell's candidates for each model (--meshes)
    "DFN": ["default", SAME_MESH, "16,8,16,12,12", "10,5,10,10,10"],
    "SPMe": ["default", "10,5,10,20,20", "10,5,10,12,12,3", "10,5,10,10,10,4", "6,3,6,10,10,4"],
}
T_FIT_MAX = 3300.0  # gradient loss: reference times in (1 s, T_FIT_MAX)
GRAD_PARAMS = [
    "Negative electrode thickness [m]",
    "Positive electrode thickness [m]",
    "Negative electrode porosity",
    "Positive electrode porosity",
    "Negative particle radius [m]",
    "Positive particle radius [m]",
    "Negative particle diffusivity [m2.s-1]",
    "Positive particle diffusivity [m2.s-1]",
    "Negative electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]",
    "Positive electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]",
]


def _acc_text(acc):
    return f"RMS {acc['rms_mV']:.3f} mV, max {acc['max_mV']:.3f} mV, end {acc['dt_end_pct']:+.4f} %"


def bench_pybamm_single(label, var_pts, ref, repeats, I_1C, rtol=C.RTOL, particle_stretch=None, name="DFN"):
    built, solver, build_s = C.pybamm_build(name, [C.I_APP], symbolic_mesh=False, var_pts=var_pts, rtol=rtol,
                                            particle_stretch=particle_stretch)
    y0 = built.concatenated_initial_conditions
    n_states = int(y0.shape[0]) if y0 is not None else None
    (t, v, term), first, med, times = C.pybamm_single(built, solver, {C.I_APP: I_1C}, ref[:, 0], repeats)
    acc = C.accuracy(ref, t, v, float(t[-1]))
    print(f"PyBaMM {label} mesh {var_pts or 'default'} ({n_states} states), rtol {rtol:g}: build {build_s:.2f} s, first solve "
          f"{first*1e3:.1f} ms, warm median {med*1e3:.2f} ms; vs reference: {_acc_text(acc)} ({term})", flush=True)
    return {
        "mesh": label, "var_pts": var_pts or "default (20 per domain)", "particle_stretch": particle_stretch,
        "n_states": n_states, "rtol": rtol,
        "atol": C.ATOL, "build_s": build_s, "first_solve_s": first, "single_median_s": med,
        "single_times_s": times, "termination": term, "vs_reference": acc,
    }


def parse_mesh(text, name="DFN"):
    """``default`` or ``n_x_n,n_x_s,n_x_p,n_r_n,n_r_p[,r_stretch]``: a `jaxcell.DFN` (or `jaxcell.SPMe`;
    without ``r_stretch``, the model's default: 4 for the DFN, 1 (uniform shells) for the SPMe)."""
    cls = {"DFN": jaxcell.DFN, "SPMe": jaxcell.SPMe}[name]
    if text == "default":
        return cls()
    values = text.split(",")
    if len(values) not in (5, 6):
        raise ValueError(f"--meshes: expected 'default' or n_x_n,n_x_s,n_x_p,n_r_n,n_r_p[,r_stretch]; got {text!r}")
    kwargs = dict(zip(("n_x_n", "n_x_s", "n_x_p", "n_r_n", "n_r_p"), (int(v) for v in values[:5])))
    if len(values) == 6:
        kwargs["r_stretch"] = float(values[5])
    return cls(**kwargs)


def bench_jaxcell_single(mesh, p, rtol, ref, repeats, name="DFN"):
    model = parse_mesh(mesh, name)
    sol, res = C.jaxcell_single(model, p, ref[:, 0], repeats, rtol=rtol, atol=C.ATOL)
    res.update(mesh=mesh, n_states=int(np.size(model.initial_state(p))), rtol=rtol, atol=C.ATOL, vs_reference=C.accuracy(ref, ref[:, 0], np.asarray(sol.voltage), res["t_end_s"]))
    print(f"jaxcell mesh {mesh} ({res['n_states']} states), rtol={rtol:g}: first call {res['first_call_s']:.2f} s ({res['first_call_compiles']} compiles, "
          f"{res['first_call_compile_s']:.2f} s trace+lower+compile), warm median {res['single_median_s']*1e3:.2f} ms, "
          f"recompiles on repeat/new params: {res['recompiles_after_first']}; status {res['status']}; vs reference: "
          f"{_acc_text(res['vs_reference'])}", flush=True)
    return res


def gradient_loss(model, p, rtol, ref):
    """The gradient benchmark's loss: the voltage RMSE against the reference at its times in
    (1 s, T_FIT_MAX), a function of the GRAD_PARAMS values (and optionally diffrax's adjoint).
    Returns (loss, theta0, t_fit)."""
    mask = (ref[:, 0] > 1.0) & (ref[:, 0] < T_FIT_MAX)
    t_fit, v_fit = jnp.asarray(ref[mask, 0]), jnp.asarray(ref[mask, 1])
    theta0 = {k: jnp.asarray(float(p[k])) for k in GRAD_PARAMS}

    def loss(theta, adjoint=None):
        sol = jaxcell.simulate(model, p.update(theta), C.EXPERIMENT, rtol=rtol, atol=C.ATOL, t_eval=t_fit,
                               adjoint=adjoint)
        return jnp.sqrt(jnp.mean((sol.voltage - v_fit) ** 2))

    return loss, theta0, t_fit


def bench_gradient(model, p, rtol, ref, repeats, jacfwd=True):
    loss, theta0, t_fit = gradient_loss(model, p, rtol, ref)

    def timed(fn, label, reps):
        """First call (seconds, compile seconds) and warm median of a jitted function of theta0."""
        s0 = C.compile_seconds()
        t0 = time.perf_counter()
        val = jax.block_until_ready(fn(theta0))
        first, compile_s = time.perf_counter() - t0, C.compile_seconds() - s0
        med, times = C.median_time(lambda: jax.block_until_ready(fn(theta0)), reps)
        print(f"{label}: first {first:.2f} s ({compile_s:.2f} s compile), warm median {med*1e3:.1f} ms", flush=True)
        C.log_load(f"gradient {label} end")
        return val, {f"{label}_first_s": first, f"{label}_compile_s": compile_s, f"{label}_median_s": med,
                     f"{label}_times_s": times}

    res = {"parameters": GRAD_PARAMS, "rtol": rtol, "atol": C.ATOL, "n_fit_times": int(t_fit.size),
           "fit_window_s": [1.0, T_FIT_MAX], "adjoint": "RecursiveCheckpointAdjoint(checkpoints=128) (default)"}
    val, r = timed(jax.jit(loss), "forward", repeats)
    res.update(r, loss_V=float(val))
    g, r = timed(jax.jit(jax.grad(loss)), "grad", repeats)
    g = {k: float(v) for k, v in g.items()}
    res.update(r, gradient=g, grad_over_forward=r["grad_median_s"] / res["forward_median_s"],
               forward_plus_grad_first_calls_s=res["forward_first_s"] + r["grad_first_s"])
    print(f"loss {float(val)*1e3:.4f} mV; reverse gradient = {res['grad_over_forward']:.2f} x forward; finite: "
          f"{all(np.isfinite(list(g.values())))}", flush=True)
    if jacfwd:
        jf = jax.jit(jax.jacfwd(lambda th: loss(th, adjoint=diffrax.ForwardMode())))
        gf, r = timed(jf, "jacfwd", max(3, repeats // 2))
        rel = max(abs(float(gf[k]) - g[k]) / max(abs(g[k]), 1e-300) for k in GRAD_PARAMS)
        res.update(r, jacfwd_over_forward=r["jacfwd_median_s"] / res["forward_median_s"],
                   jacfwd_max_rel_diff_to_grad=rel)
        print(f"forward mode = {res['jacfwd_over_forward']:.2f} x forward; max rel. diff. to reverse {rel:.2e}",
              flush=True)
    return res


def summary(out):
    h = out["headline"]
    rows = [
        f"{'':<34}{'PyBaMM':>14}{'jaxcell':>14}{'jaxcell speed-up':>22}",
        (f"{'single solve, warm median [ms]':<34}{h['pybamm_single_ms']:>14.2f}{h['jaxcell_single_ms']:>14.2f}"
         f"{h['single_ratio']:>22.2f}"),
        f"{'accuracy vs fine ref [mV RMS]':<34}{h['pybamm_rms_mV']:>14.3f}{h['jaxcell_rms_mV']:>14.3f}",
        f"{'end time vs fine ref [%]':<34}{h['pybamm_dt_end_pct']:>14.4f}{h['jaxcell_dt_end_pct']:>14.4f}",
        "",
        f"PyBaMM: {h['pybamm_config']}; jaxcell: {h['jaxcell_config']}",
        (f"jaxcell first call (trace + compile + solve): {h['jaxcell_first_call_s']:.1f} s "
         f"({h['jaxcell_first_call_compile_s']:.1f} s compile)"),
    ]
    sm = out.get("same_mesh")
    if sm:
        rows.insert(2, f"{'same mesh (20/20/20, 20 shells) [ms]':<34}{sm['pybamm_single_ms']:>14.2f}"
                       f"{sm['jaxcell_single_ms']:>14.2f}{sm['single_ratio']:>22.2f}")
        rows.append(f"same mesh: PyBaMM rtol {sm['pybamm_rtol']:g} ({sm['pybamm_rms_mV']:.3f} mV), jaxcell rtol "
                    f"{sm['jaxcell_rtol']:g} ({sm['jaxcell_rms_mV']:.3f} mV)")
    pop = out.get("population")
    if pop and "skipped" not in pop:
        rows.insert(2, f"{'population [cells/s]':<34}{pop['pybamm']['cells_per_s']:>14.2f}"
                       f"{pop['jaxcell']['cells_per_s']:>14.2f}{pop['ratio_jaxcell_over_pybamm']:>22.2f}")
        xmem = pop.get("xla_memory", {}).get("bytes_per_cell")
        rows.append(f"population: {pop['n']} cells, jaxcell chunk {pop['batch_size']}, PyBaMM default mesh; worst "
                    f"cell {pop['agreement']['max_rms_mV']:.3f} mV RMS apart; jaxcell memory "
                    + (f"{xmem/2**20:.2f} MiB/cell (XLA), " if xmem else "")
                    + f"{pop['jaxcell']['rss_increase_per_cell_bytes']/2**20:.2f} MiB/cell (RSS increase)")
    elif pop:
        rows.append(f"population: {pop['skipped']}")
    g = out.get("gradient")
    if g:
        rows.append(f"gradient of 10 parameters (reverse, warm): {g['grad_over_forward']:.2f} x forward solve; "
                    f"compile forward {g['forward_compile_s']:.1f} s + gradient {g['grad_compile_s']:.1f} s")
        if "jacfwd_over_forward" in g:
            rows.append(f"forward mode (jacfwd, 10 tangents): {g['jacfwd_over_forward']:.2f} x forward solve")
    rows.append("jaxcell speed-up: PyBaMM time / jaxcell time, or jaxcell cells/s / PyBaMM cells/s (> 1: jaxcell faster)")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", choices=["DFN", "SPMe"], default="DFN",
                    help="the model of both libraries, each against its converged reference (REFERENCES)")
    ap.add_argument("--n-batch", type=int, default=1000, help="cells in the population")
    ap.add_argument("--batch-size", type=int, default=1000, help="jaxcell simulate_batch chunk size")
    ap.add_argument("--max-seconds", type=float, default=1800.0,
                    help="skip the population if its estimated time after a pilot exceeds this")
    ap.add_argument("--repeats", type=int, default=5, help="repeats of warm timings")
    ap.add_argument("--population-repeats", type=int, default=3,
                    help="timed population runs per library, alternating; the median counts")
    ap.add_argument("--meshes", nargs="+", default=None,
                    help="jaxcell meshes: 'default' or n_x_n,n_x_s,n_x_p,n_r_n,n_r_p[,r_stretch] (default: DEFAULT_MESHES[--model])")
    ap.add_argument("--rtols", type=float, nargs="+", default=[1e-6, 1e-4, 1e-3], help="jaxcell rtols")
    ap.add_argument("--pybamm-rtols", type=float, nargs="+", default=[1e-6, 1e-4, 1e-3],
                    help="PyBaMM IDAKLU rtols (the headline takes PyBaMM's fastest (mesh, rtol) within the target)")
    ap.add_argument("--target-mV", type=float, default=1.0, help="'equal accuracy': RMS vs reference below this")
    ap.add_argument("--no-pybamm-fine", action="store_true",
                    help="skip PyBaMM's finer mesh when its default mesh is within --target-mV")
    ap.add_argument("--no-memory-analysis", action="store_true",
                    help="skip XLA's memory analysis of the population chunk (an extra compile)")
    ap.add_argument("--skip-population", action="store_true")
    ap.add_argument("--skip-gradient", action="store_true")
    ap.add_argument("--skip-jacfwd", action="store_true")
    ap.add_argument("--xla-threads", type=int, default=1, choices=[0, 1],
                    help="1: one-thread XLA intra-op pool; 0: XLA's default (may hang, see _common.init_xla_cpu)")
    ap.add_argument("--seed", type=int, default=0, help="population key")
    ap.add_argument("--out", type=pathlib.Path, default=None,
                    help="JSON to write (default: results/dfn_latest.json, results/spme_latest.json)")
    args = ap.parse_args()
    name = args.model
    args.meshes = args.meshes or DEFAULT_MESHES[name]
    args.out = args.out or C.RESULTS / f"{name.lower()}_latest.json"
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    C.init_xla_cpu(one_thread=args.xla_threads == 1)

    info = C.machine_info()
    print("Machine:", json.dumps(info, indent=1), flush=True)
    C.log_load("start")
    t_start = time.perf_counter()
    ref = np.loadtxt(REFERENCES[name], delimiter=",", skiprows=1)
    p = jaxcell.load_parameters(C.SET)
    I_1C = float(p["Nominal cell capacity [A.h]"])
    out = {"machine": info, "complete": False, "settings": {
        "model": name, "parameter_set": C.SET, "experiment": C.EXPERIMENT, "thermal": "isothermal",
        "reference": str(REFERENCES[name]),
        "reference_rows": int(ref.shape[0]), "pybamm_rtols": args.pybamm_rtols, "atol": C.ATOL, "jaxcell_rtols": args.rtols,
        "jaxcell_meshes": args.meshes, "target_rms_mV": args.target_mV, "repeats": args.repeats, "n_batch": args.n_batch,
        "batch_size": args.batch_size, "population_repeats": args.population_repeats, "seed": args.seed, "jaxcell_solver": "the model's default: Rodas4 (DFN: StructuredSolve, SPMe: BandedSolve)",
        "xla_intra_op_threads": info["xla_intra_op_threads"],
    }}

    def save(stage):
        out.update(completed_stage=stage, load_log=C.LOAD_LOG)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1) + "\n")

    # ---- 1: accuracy and single solves ----
    print("\n=== PyBaMM single solve and accuracy ===", flush=True)
    pb = [bench_pybamm_single("default", None, ref, args.repeats, I_1C, rtol, name=name) for rtol in args.pybamm_rtols]
    pb += [bench_pybamm_single("coarse", COARSE_VAR_PTS, ref, args.repeats, I_1C, rtol, name=name)
           for rtol in args.pybamm_rtols]
    # shells thinner towards the surface, as jaxcell's: far more accurate per shell
    for label, var_pts in (("default, stretched shells", None), ("coarse, stretched shells", COARSE_VAR_PTS),
                           ("coarsest, stretched shells", COARSEST_VAR_PTS)):
        pb += [bench_pybamm_single(label, var_pts, ref, args.repeats, I_1C, rtol, particle_stretch=PARTICLE_STRETCH,
                                   name=name) for rtol in args.pybamm_rtols]
    if min(r["vs_reference"]["rms_mV"] for r in pb) >= args.target_mV or not args.no_pybamm_fine:
        pb += [bench_pybamm_single("fine", FINE_VAR_PTS, ref, args.repeats, I_1C, rtol, name=name)
               for rtol in args.pybamm_rtols]
    out["pybamm_single"] = pb
    C.log_load("PyBaMM single end")
    print("\n=== jaxcell single solve and accuracy ===", flush=True)
    jx = [bench_jaxcell_single(mesh, p, rtol, ref, args.repeats, name) for mesh in args.meshes for rtol in args.rtols]
    out["jaxcell_single"] = jx
    C.log_load("jaxcell single end")
    save("single")

    def fastest_within(runs, ok=lambda r: True):
        """The fastest run within the target (or, when none is, the most accurate), and whether
        one was. Fastest by the minimum of the warm repeats, not their median: the choice is a
        decision, and on a machine whose speed drifts by 10-30% over minutes the minimum is the
        steadier statistic (with the median, the choice of mesh flipped between two runs six
        minutes apart). The ratios reported are still of medians."""
        good = [r for r in runs if r["vs_reference"]["rms_mV"] < args.target_mV and ok(r)]
        if good:
            return min(good, key=lambda r: min(r["single_times_s"])), True
        return min(runs, key=lambda r: r["vs_reference"]["rms_mV"]), False

    jx_h, ok_jx = fastest_within(jx, lambda r: r["status"] == 0)
    pb_h, ok_pb = fastest_within(pb)
    print(f"\nheadline: jaxcell mesh {jx_h['mesh']} rtol={jx_h['rtol']:g} ({'within' if ok_jx else 'NOT within'} "
          f"{args.target_mV} mV), PyBaMM {pb_h['mesh']} mesh rtol={pb_h['rtol']:g} ({'within' if ok_pb else 'NOT within'} "
          f"{args.target_mV} mV)", flush=True)
    same_jx = [r for r in jx if r["mesh"] == SAME_MESH]
    same_pb = [r for r in pb if r["mesh"] == "default"]
    if same_jx and same_pb:
        (sj, okj), (sp, okp) = fastest_within(same_jx, lambda r: r["status"] == 0), fastest_within(same_pb)
        out["same_mesh"] = {
            "mesh": SAME_MESH, "jaxcell_rtol": sj["rtol"], "pybamm_rtol": sp["rtol"],
            "jaxcell_single_ms": sj["single_median_s"] * 1e3, "pybamm_single_ms": sp["single_median_s"] * 1e3,
            "single_ratio": sp["single_median_s"] / sj["single_median_s"], "jaxcell_rms_mV": sj["vs_reference"]["rms_mV"],
            "pybamm_rms_mV": sp["vs_reference"]["rms_mV"], "both_within_target": okj and okp,
        }
    model_h = parse_mesh(jx_h["mesh"], name)

    # ---- 2: population ----
    if not args.skip_population:
        out["population"] = bench_population.run_config(
            name, args.n_batch, batch_size=args.batch_size, max_seconds=args.max_seconds, seed=args.seed,
            rtol=jx_h["rtol"], pybamm_rtol=pb_h["rtol"], memory_analysis=not args.no_memory_analysis, model=model_h,
            repeats=args.population_repeats)
        save("population")

    # ---- 3: gradient ----
    if not args.skip_gradient:
        print("\n=== gradient ===", flush=True)
        out["gradient"] = bench_gradient(model_h, p, jx_h["rtol"], ref, args.repeats, jacfwd=not args.skip_jacfwd)
        save("gradient")

    C.log_load("end")
    info["uptime_at_end"] = C.uptime_line()
    out["total_s"] = time.perf_counter() - t_start
    out["headline"] = {
        "pybamm_config": f"{name} {pb_h['mesh']} mesh ({pb_h['n_states']} states), IDAKLU rtol={pb_h['rtol']:g} "
                         f"atol={C.ATOL:g}",
        "jaxcell_config": f"{name} mesh {jx_h['mesh']} ({jx_h['n_states']} states), rtol={jx_h['rtol']:g} atol={C.ATOL:g}",
        "jaxcell_rtol": jx_h["rtol"], "jaxcell_mesh": jx_h["mesh"], "pybamm_mesh": pb_h["mesh"], "pybamm_rtol": pb_h["rtol"],
        "pybamm_single_ms": pb_h["single_median_s"] * 1e3, "jaxcell_single_ms": jx_h["single_median_s"] * 1e3,
        "single_ratio": pb_h["single_median_s"] / jx_h["single_median_s"],
        "pybamm_rms_mV": pb_h["vs_reference"]["rms_mV"], "jaxcell_rms_mV": jx_h["vs_reference"]["rms_mV"],
        "pybamm_dt_end_pct": pb_h["vs_reference"]["dt_end_pct"],
        "jaxcell_dt_end_pct": jx_h["vs_reference"]["dt_end_pct"],
        "jaxcell_first_call_s": jx_h["first_call_s"], "jaxcell_first_call_compile_s": jx_h["first_call_compile_s"],
        "both_within_target": ok_jx and ok_pb,
    }
    out["summary"] = summary(out)
    out["complete"] = True
    save("end")

    print("\n" + out["summary"])
    print(f"Machine: {info['cpu_model']}, {info['cpu_count']} cores, {info['platform']}; jax {info['jax']}, diffrax "
          f"{info['diffrax']}, pybamm {info['pybamm']}; XLA intra-op threads {info['xla_intra_op_threads']}")
    print(f"uptime at start: {info['uptime_at_start']}\nuptime at end:   {info['uptime_at_end']}")
    print(f"Total benchmark time: {out['total_s']:.1f} s. Wrote {args.out}")


if __name__ == "__main__":
    main()
