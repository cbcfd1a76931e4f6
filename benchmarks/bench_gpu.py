"""Population throughput on whatever JAX device is present (a GPU when there is one), float64.

For each setting, model (SPMe, DFN; Chen2020, isothermal, "Discharge at 1C until 2.5 V", jaxcell's
default manufacturing variation) and population size n:

* **largest chunk that fits**: XLA's memory analysis of the compiled chunk function at a probe
  chunk size gives bytes per cell; the largest chunk is the device's memory (``bytes_limit`` of
  ``device.memory_stats()``, or the host's available memory on a CPU) times ``--memory-fraction``
  divided by that. A chunk that still runs out of memory is halved and retried (recorded);
* **compile**: the first call's wall time and the seconds JAX reports for tracing, lowering and
  compiling (``jax.monitoring``);
* **throughput**: a second, warm call on all n cells in chunks of min(n, largest chunk); cells/s;
* **memory**: bytes per cell from XLA's analysis and, on a GPU, the device's peak bytes in use
  divided by the chunk size (only where the case raised the process's peak: JAX cannot reset it),
  and from each the largest chunk that would fit in ``--memory-fraction`` of the device;
* **agreement**: the first ``--check`` cells solved one by one on the CPU (``jax.default_device``);
  the largest |dV| [mV] on the output grid and the largest end-time difference [s]. On a CPU-only
  machine this compares the batched solve with single solves;
* status counts (``jaxcell.Status`` names) and which device the chunk ran on;
* with ``--gradient``, for each size: ``jax.vmap(jax.value_and_grad(loss))`` over the cells in
  one compiled call, where a cell's loss is the RMSE of its voltage (at the output times before
  ``--fit-until``) against the nominal cell's, a function of the cell's own ten parameters of
  ``bench_dfn.GRAD_PARAMS`` (solver's default adjoint). Gradients per second, the ratio to the same
  vmapped loss without its gradient, compile time, how many cells' gradients are finite, and the
  first ``--check`` cells' gradients against the same cells' single gradients on the CPU (largest
  relative difference; at the smallest size only).

Settings (``--settings``): ``headline``, each model's mesh and rtol of the CPU benchmark's headline
(``results/spme_latest.json``, ``results/dfn_latest.json``: the fastest setting within 1 mV RMS of
the converged reference, the one the PyBaMM ratios use); ``default``, the model's defaults at rtol
1e-6. ``--budget-s`` skips a case whose compile plus two runs, projected from the model's previous
case, would end past the budget (recorded as skipped), so a run on a lent machine ends in time.

Default sizes: 10^3, 10^4, 10^5 on an accelerator; 8 and 32 on a CPU (the suite smoke-tests the
script with a tiny run). Output: a table on stdout and ``--out`` JSON (rewritten after each case).

Usage::

    python benchmarks/bench_gpu.py                        # SPMe and DFN at the default sizes
    python benchmarks/bench_gpu.py --models SPMe --sizes 1000 10000 --out results/gpu_spme.json
    python benchmarks/bench_gpu.py --settings headline default --budget-s 480
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  (registers the compile listener before any JAX computation)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxcell  # noqa: E402
from bench_dfn import GRAD_PARAMS, parse_mesh  # noqa: E402
from jaxcell.solution import Status  # noqa: E402

MODELS = ("SPMe", "DFN")
HEADLINE_JSON = {"SPMe": "spme_latest.json", "DFN": "dfn_latest.json"}


def model_setting(name, setting):
    """(model, rtol, description) of `setting` for the model `name`."""
    if setting == "default":
        return parse_mesh("default", name), _common.RTOL, "defaults"
    with open(_common.RESULTS / HEADLINE_JSON[name]) as f:
        head = json.load(f)["headline"]
    desc = f"mesh {head['jaxcell_mesh']}, rtol {head['jaxcell_rtol']:g} (CPU headline, {HEADLINE_JSON[name]})"
    return parse_mesh(head["jaxcell_mesh"], name), float(head["jaxcell_rtol"]), desc


def device_memory_limit(device) -> tuple[int, str]:
    """Bytes the device can hold and where the figure comes from."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), "device bytes_limit"
    return int(_common.mem_available_bytes()), "host MemAvailable"


def peak_device_bytes(device):
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def run_chunks(model, cells, ts, chunk, rtol):
    """simulate_batch with `chunk` cells per compiled call. A chosen chunk that does not fit is
    simulate_batch's MemoryError: halve it (rounding up, as simulate_batch's default does) and
    record the sizes that did not fit."""
    retries = []
    while True:
        try:
            t0 = time.perf_counter()
            sol = jaxcell.simulate_batch(model, cells, _common.EXPERIMENT, batch_size=chunk, t_eval=ts,
                                         rtol=rtol, atol=_common.ATOL, progress=False)
            jax.block_until_ready(sol.voltage)
            return sol, time.perf_counter() - t0, chunk, retries
        except MemoryError:
            if chunk == 1:
                raise
            retries.append(chunk)
            chunk = math.ceil(chunk / 2)


def cpu_check(model, cells, ts, sol, k, rtol):
    """Largest |dV| [mV] and end-time difference [s] between the batch's first k cells and the
    same cells solved one at a time on the CPU."""
    cpu = jax.devices("cpu")[0]
    dv, dt = 0.0, 0.0
    with jax.default_device(cpu):
        for i in range(k):
            p = jax.tree.map(lambda x: x[i], cells)
            one = jaxcell.simulate(model, p, _common.EXPERIMENT, t_eval=ts, rtol=rtol, atol=_common.ATOL)
            va, vb = np.asarray(sol.voltage[i]), np.asarray(one.voltage)
            both = np.isfinite(va) & np.isfinite(vb)
            if np.any(np.isfinite(va) != np.isfinite(vb)):
                dv = math.inf
            elif both.any():
                dv = max(dv, 1e3 * float(np.max(np.abs(va[both] - vb[both]))))
            dt = max(dt, abs(float(sol.step_end_time[i][-1]) - float(one.step_end_time[-1])))
    return dv, dt


def bench_model(name, setting, sizes, args, device, out, t_start):
    model, rtol, desc = model_setting(name, setting)
    p = jaxcell.load_parameters(_common.SET)
    ts = np.linspace(0.0, _common.T_END, args.n_out)
    cells_all = jaxcell.sample_population(p, jaxcell.default_variation(), max(sizes), jax.random.key(args.seed))
    cells_all = jax.device_get(cells_all)
    n_states = sum(math.prod(x.shape) for x in jax.tree.leaves(jax.eval_shape(model.initial_state, p)))
    print(f"{name} [{setting}]: {desc}, {n_states} states", flush=True)

    probe = min(args.probe, max(sizes))
    limit, source = device_memory_limit(device)
    if probe:
        mem = _common.xla_chunk_memory(model, jax.tree.map(lambda x: x[:probe], cells_all), ts, rtol)
        per_cell = mem["total_bytes"] / probe
        largest = max(1, int(args.memory_fraction * limit / per_cell))
        print(f"{name}: XLA estimates {per_cell / 1e6:.3f} MB per cell; {source} {limit / 1e9:.1f} GB "
              f"-> largest chunk ~{largest} cells", flush=True)
    else:  # no memory analysis: every population in one chunk
        mem, per_cell, largest = None, math.nan, max(sizes)

    last = None  # (compile s, other s per cell) of this model's previous case: projects the next one's time
    for n in sizes:
        base = {"model": name, "setting": setting, "setting_detail": desc, "n_states": n_states, "rtol": rtol, "n": n}
        if args.budget_s:
            projected = last[0] + n * last[1] if last else 0.0
            left = args.budget_s - (time.perf_counter() - t_start)
            if projected > left or left <= 0:
                out["results"].append({**base, "skipped": f"projected {projected:.0f} s, {left:.0f} s of the budget left"})
                print(f"{name:5s} n={n:7d} skipped: projected {projected:.0f} s > {left:.0f} s left", flush=True)
                continue
        cells = jax.tree.map(lambda x: x[:n], cells_all)
        chunk = min(n, largest)
        sol = None  # the previous case's results off the device before this case's peak
        c0, s0, peak0 = _common.compiles(), _common.compile_seconds(), peak_device_bytes(device)
        t_case = time.perf_counter()
        try:
            # the first call compiles (and halves the chunk until it fits); the second is timed
            t0 = time.perf_counter()
            chunk, retries = run_chunks(model, jax.tree.map(lambda x: x[:chunk], cells), ts, chunk, rtol)[2:]
            first_s = time.perf_counter() - t0
            sol, wall, used, more = run_chunks(model, cells, ts, chunk, rtol)
        except Exception as e:  # recorded, and the next case or model still runs
            out["results"].append({**base, "error": f"{type(e).__name__}: {str(e)[:500]}"})
            print(f"{name:5s} n={n:7d} failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
            if args.out:
                write(out, args.out)
            continue
        retries += more
        compile_s = _common.compile_seconds() - s0  # with the compiles of chunk sizes that did not fit
        status = np.asarray(sol.status)
        counts = {Status(int(c)).name: int((status == c).sum()) for c in np.unique(status)}
        dv, dt = cpu_check(model, cells, ts, sol, min(args.check, n), rtol) if args.check else (None, None)
        peak = peak_device_bytes(device)
        peak_per_cell = peak / used if peak and peak > (peak0 or 0) and not retries else None
        row = {
            **base, "chunk": used, "oom_retries_at": retries,
            "cells_per_s": n / wall, "warm_s": wall, "first_call_s": first_s,
            "compile_s": compile_s, "compiles": _common.compiles() - c0,
            "xla_bytes_per_cell": per_cell, "xla_memory_probe": {"chunk": probe, **mem} if mem else None,
            # the device's peak is the process's: per cell only where this case raised it
            # (and not after a chunk that did not fit: that attempt may have set it)
            "device_peak_bytes": peak, "device_peak_bytes_per_cell": peak_per_cell,
            # the largest chunk that fits in --memory-fraction of the device: from XLA's analysis
            # (--probe) and from this case's measured peak (an extrapolation: not run)
            "largest_chunk_estimate": largest if probe else None,
            "largest_chunk_from_peak": int(args.memory_fraction * limit / peak_per_cell) if peak_per_cell else None,
            "status_counts": counts,
            "cpu_check_cells": min(args.check, n), "cpu_check_max_dV_mV": dv, "cpu_check_max_dt_end_s": dt,
        }
        out["results"].append(row)
        sol = None
        print(f"{name:5s} n={n:7d} chunk={used:6d} {n / wall:10.1f} cells/s  compile {compile_s:6.1f} s  "
              f"{per_cell / 1e6:8.3f} MB/cell  CPU check {dv} mV {dt} s  {counts}", flush=True)
        if args.out:
            write(out, args.out)
        if args.gradient:
            fit = ts[(ts > 1.0) & (ts <= args.fit_until)]
            try:
                # single-cell CPU gradients compile once per model: checked at the smallest size only
                check = min(args.check, n) if n == min(sizes) else 0
                grow = bench_gradient_case(model, rtol, cells, fit, v_nominal(model, p, fit, rtol), n, check, base)
            except Exception as e:  # recorded, and the next case still runs
                grow = {**base, "part": "gradient", "error": f"{type(e).__name__}: {str(e)[:500]}"}
                print(f"{name:5s} n={n:7d} gradient failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
            out["results"].append(grow)
            if args.out:
                write(out, args.out)
        spent, fixed = time.perf_counter() - t_case, _common.compile_seconds() - s0
        last = (fixed, max(spent - fixed, 0.0) / n)


def v_nominal(model, p, ts, rtol):
    """The nominal cell's voltage at `ts`: the gradient part's target."""
    return jnp.asarray(jaxcell.simulate(model, p, _common.EXPERIMENT, t_eval=ts, rtol=rtol, atol=_common.ATOL).voltage)


def bench_gradient_case(model, rtol, cells, ts, v_nominal, n, check, base):
    """One size of the gradient part (see the module docstring): a result row."""
    thetas = {k: jnp.asarray(cells[k]) for k in GRAD_PARAMS}

    def loss(theta, cell):
        sol = jaxcell.simulate(model, cell.update(theta), _common.EXPERIMENT, t_eval=ts, rtol=rtol, atol=_common.ATOL)
        return jnp.sqrt(jnp.mean((sol.voltage - v_nominal) ** 2))

    fwd, vg = jax.jit(jax.vmap(loss)), jax.jit(jax.vmap(jax.value_and_grad(loss)))
    row = dict(base, part="gradient", parameters=GRAD_PARAMS, n_fit_times=int(ts.size), fit_until_s=float(ts[-1]))
    for label, fn in (("forward", fwd), ("grad", vg)):
        s0 = _common.compile_seconds()
        t0 = time.perf_counter()
        jax.block_until_ready(fn(thetas, cells))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = jax.block_until_ready(fn(thetas, cells))
        row.update({f"{label}_first_s": first, f"{label}_compile_s": _common.compile_seconds() - s0,
                    f"{label}_warm_s": time.perf_counter() - t0})
    row["grad_over_forward"] = row["grad_warm_s"] / row["forward_warm_s"]
    row["gradients_per_s"] = n / row["grad_warm_s"]
    g = np.stack([np.asarray(res[1][k]) for k in GRAD_PARAMS], axis=1)  # (n, 10)
    row["finite_gradients"] = int(np.isfinite(g).all(axis=1).sum())
    k = check
    if k:
        cpu = jax.devices("cpu")[0]
        with jax.default_device(cpu):
            one = jax.jit(jax.value_and_grad(loss))
            rel = 0.0
            for i in range(k):
                cell = jax.tree.map(lambda x: x[i], cells)
                gi = one({q: v[i] for q, v in thetas.items()}, cell)[1]
                gi = np.array([float(gi[q]) for q in GRAD_PARAMS])
                rel = max(rel, float(np.max(np.abs(g[i] - gi) / np.maximum(np.abs(gi), 1e-300))))
        row.update(cpu_check_cells=k, cpu_check_max_rel_grad_diff=rel)
    print(f"{base['model']:5s} n={n:7d} gradient: {row['gradients_per_s']:10.1f} cells/s, "
          f"{row['grad_over_forward']:.2f} x the vmapped loss, compile {row['grad_compile_s']:.1f} s, "
          f"finite {row['finite_gradients']}/{n}, CPU check max rel diff {row.get('cpu_check_max_rel_grad_diff')}", flush=True)
    return row


def write(out, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--settings", nargs="+", default=["headline"], choices=["headline", "default"],
                        help="headline: the CPU benchmark's equal-accuracy mesh and rtol (default); default: the model's defaults")
    parser.add_argument("--budget-s", type=float, default=0.0,
                        help="skip cases projected to end past this many seconds from the start (default 0: no budget)")
    parser.add_argument("--sizes", nargs="+", type=int, default=None,
                        help="population sizes (default 1000 10000 100000 on an accelerator, 8 32 on a CPU)")
    parser.add_argument("--n-out", type=int, default=100, help="output points per cell on [0, 4320 s] (default 100)")
    parser.add_argument("--check", type=int, default=4, help="cells compared with single CPU solves (default 4)")
    parser.add_argument("--probe", type=int, default=64,
                        help="chunk size of the memory analysis (default 64; 0: no analysis, each population in one chunk)")
    parser.add_argument("--memory-fraction", type=float, default=0.8,
                        help="share of the device memory a chunk may take (default 0.8)")
    parser.add_argument("--gradient", action="store_true",
                        help="also time the vmapped value_and_grad of each cell's voltage loss in 10 parameters")
    parser.add_argument("--fit-until", type=float, default=3000.0,
                        help="the gradient part's loss uses the output times in (1 s, this] (default 3000 s, before every cell's cut-off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(_common.RESULTS, "gpu_latest.json"))
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.sizes or []):
        parser.error("--sizes must be positive integers")
    if args.probe < 0 or args.check < 0 or args.n_out < 2 or not 0 < args.memory_fraction <= 1 or args.budget_s < 0:
        parser.error("--probe, --check and --budget-s must be >= 0, --n-out >= 2, --memory-fraction in (0, 1]")
    t_start = time.perf_counter()

    device = jax.devices()[0]
    accelerator = device.platform != "cpu"
    sizes = args.sizes or ([1000, 10_000, 100_000] if accelerator else [8, 32])
    out = {
        "device": str(device), "platform": device.platform, "device_kind": getattr(device, "device_kind", ""),
        "devices": [str(d) for d in jax.devices()], "cpu_model": _common.cpu_model(), "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "jax": jax.__version__, "jaxcell": jaxcell.__version__,
        "packages": {m: getattr(sys.modules.get(m), "__version__", None) for m in ("jaxlib", "diffrax", "equinox", "lineax", "numpy")},
        "x64": bool(jax.config.jax_enable_x64), "git": _common.git_info(),
        "settings": {"set": _common.SET, "experiment": _common.EXPERIMENT, "settings": args.settings, "atol": _common.ATOL,
                     "n_out": args.n_out, "sizes": sizes, "seed": args.seed, "budget_s": args.budget_s},
        "results": [],
    }
    print(f"device {device} ({out['device_kind']}), {len(out['devices'])} device(s), float64", flush=True)
    for setting in args.settings:
        for name in args.models:
            bench_model(name, setting, sizes, args, device, out, t_start)
    out["total_s"] = time.perf_counter() - t_start
    if args.out:
        write(out, args.out)
    return out


if __name__ == "__main__":
    main()
