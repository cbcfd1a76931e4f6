"""Helpers shared by the benchmarks (``bench_spm_spme.py``, ``bench_dfn.py``, ``bench_population.py``).

* settings every benchmark uses: Chen2020, "Discharge at 1C until 2.5 V", the output window
  ``[0, T_END]``, IDAKLU/jaxcell tolerances;
* ``init_xla_cpu``: create JAX's CPU client, optionally with a one-thread XLA intra-op pool;
* compile counting and compile time from ``jax.monitoring``;
* timing (``median_time``), memory (``RssSampler``, ``peak_rss_bytes``, XLA's memory analysis
  of ``simulate_batch``'s compiled chunk), load logging, machine and git information;
* voltage differences between two solutions on a common grid (``voltage_error``, ``accuracy``);
* PyBaMM: a built model with input parameters, optionally on a symbolic mesh (so electrode
  thicknesses and particle radii can be inputs), and an IDAKLU solve for one or a list of inputs.

Import this module before anything else runs a JAX computation (it registers the compile
listener), and call ``init_xla_cpu`` before anything creates JAX's CPU client: any JAX
computation, ``jax.devices()``, or ``import pybamm`` (this module imports PyBaMM lazily).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time

import jax
import numpy as np

import jaxcell

# PyBaMM is imported inside the functions that use it: importing it creates JAX's CPU client,
# which `init_xla_cpu` must do.

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"
SET = "Chen2020"
EXPERIMENT = "Discharge at 1C until 2.5 V"
T_END = 4320.0  # 1.2 h: the 1C discharge ends near 3556 s
RTOL, ATOL = 1e-6, 1e-8
I_APP = "Current function [A]"
L_N = "Negative electrode thickness [m]"
R_P = "Positive particle radius [m]"


# -- XLA's CPU thread pool --------------------------------------------------------------------------
def init_xla_cpu(one_thread: bool) -> None:
    """Create JAX's CPU client now. With `one_thread`, XLA's intra-op thread pool gets one thread:
    the process is pinned to one CPU while the client is created (the pool size comes from the
    affinity mask) and every thread gets the full mask back right after, so the OS can still
    schedule the process on any core.

    Why: jaxlib's batched LAPACK LU (``lapack_dgetrf_ffi``, used by the DFN's macro solve, and
    batched over the cells under ``vmap``) splits large batches over the intra-op pool and blocks
    the calling pool thread on a counter; on a 2-core machine two such LUs running at once can
    each block one of the two threads and the process hangs at 0 % CPU (seen while developing
    ``bench_dfn.py``). With one pool thread jaxlib runs every batch inline.
    """
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        raise RuntimeError("init_xla_cpu must run before JAX's CPU client exists (first computation, "
                           "jax.devices(), import pybamm).")
    mask = os.sched_getaffinity(0)
    if one_thread:
        os.sched_setaffinity(0, {min(mask)})
    try:
        jax.block_until_ready(jax.numpy.ones(2) + 1.0)
    finally:
        if one_thread:
            for tid in os.listdir("/proc/self/task"):
                try:
                    os.sched_setaffinity(int(tid), mask)
                except OSError:
                    pass


def _count_threads(name):
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            n += pathlib.Path(f"/proc/self/task/{tid}/comm").read_text().strip() == name
        except OSError:
            pass
    return n


# -- compile counting and compile time (jax.monitoring) ---------------------------------------------
_COMPILES = [0]
_COMPILE_S = [0.0]
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


def _on_event(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
        _COMPILES[0] += 1
    if event in _COMPILE_EVENTS:
        _COMPILE_S[0] += duration


jax.monitoring.register_event_duration_secs_listener(_on_event)


def compiles() -> int:
    """Backend (XLA) compilations so far."""
    return _COMPILES[0]


def compile_seconds() -> float:
    """Seconds spent so far tracing, lowering and compiling (XLA)."""
    return _COMPILE_S[0]


# -- timing -----------------------------------------------------------------------------------------
def interleaved_medians(fns, arg, rounds, repeats):
    """Each of `fns` (name -> jitted function of `arg`) timed in `rounds` alternating rounds of
    `repeats` calls: (every call's seconds, median seconds), by name."""
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name] += median_time(lambda fn=fn: jax.block_until_ready(fn(arg)), repeats)[1]
    return times, {name: float(statistics.median(t)) for name, t in times.items()}


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


# -- memory -----------------------------------------------------------------------------------------
def _proc_kib(path, key):
    with open(path) as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def rss_now_bytes():
    return _proc_kib("/proc/self/status", "VmRSS:")


def mem_available_bytes():
    return _proc_kib("/proc/meminfo", "MemAvailable:")


def peak_rss_bytes():
    """The process's peak RSS so far (``getrusage``; Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class RssSampler:
    """Largest VmRSS seen while the block runs (sampled every `dt` s from a thread; XLA releases
    the GIL while it computes). `base` is the RSS when the block starts, `max` the largest seen."""

    def __init__(self, dt=0.02):
        self.dt, self.base, self.max = dt, 0, 0
        self._stop = threading.Event()

    def _loop(self):
        while not self._stop.is_set():
            self.max = max(self.max, rss_now_bytes())
            time.sleep(self.dt)

    def __enter__(self):
        self.base = self.max = rss_now_bytes()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.max = max(self.max, rss_now_bytes())

    @property
    def increase(self):
        return self.max - self.base


def xla_chunk_memory(model, cells, ts, rtol=RTOL, atol=ATOL):
    """XLA's memory analysis of `simulate_batch`'s compiled chunk function for a chunk of `cells`
    (a batched ParameterSet; its batch size is the chunk size). An extra compile:
    ``lower().compile()`` does not share jit's cache. Uses jaxcell internals
    (``jaxcell.batch._simulate_chunk``, ``jaxcell.simulate._prepare``) only for this estimate."""
    from jaxcell.batch import _simulate_chunk
    from jaxcell.simulate import _prepare

    call_args = _prepare(model, cells, EXPERIMENT, jax.numpy.asarray(ts), rtol, atol, 20_000, None, None, outputs_in_loop=True)
    t0 = time.perf_counter()
    compiled = _simulate_chunk.lower(*call_args).compile()
    compiled = getattr(compiled, "compiled", compiled)
    ma = compiled.memory_analysis()
    return {
        "temp_bytes": int(ma.temp_size_in_bytes), "argument_bytes": int(ma.argument_size_in_bytes),
        "output_bytes": int(ma.output_size_in_bytes),
        "total_bytes": int(ma.temp_size_in_bytes + ma.argument_size_in_bytes + ma.output_size_in_bytes),
        "compile_s": time.perf_counter() - t0,
    }


# -- machine, load and git --------------------------------------------------------------------------
LOAD_LOG = []


def log_load(label):
    """Record and print the load average (the machine may be shared, so the load is part of the result)."""
    la = [round(x, 2) for x in os.getloadavg()]
    LOAD_LOG.append({"at": label, "time": time.strftime("%H:%M:%S"), "loadavg_1_5_15": la})
    print(f"[load {time.strftime('%H:%M:%S')} {label}: {la}]", flush=True)


def _run(*cmd):
    try:
        return subprocess.run(cmd, cwd=HERE.parent, capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"{cmd[0]} failed: {e}"


def uptime_line():
    return _run("uptime").strip()


def git_info():
    """Commit and uncommitted changes of jaxcell/ (the code this run imported)."""
    diff = _run("git", "diff", "HEAD", "--", "jaxcell")
    return {
        "head": _run("git", "rev-parse", "HEAD").strip(),
        "dirty_jaxcell_files": _run("git", "status", "--short", "--", "jaxcell").splitlines(),
        "jaxcell_diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None,
        "jaxcell_diff_stat": _run("git", "diff", "HEAD", "--stat", "--", "jaxcell").strip(),
    }


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info():
    """Platform, CPU, versions, JAX devices and threads, load average and git state."""
    import diffrax
    import equinox
    import jaxlib
    import pybamm

    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "diffrax": diffrax.__version__,
        "equinox": equinox.__version__,
        "jaxcell": jaxcell.__version__,
        "pybamm": pybamm.__version__,
        "jax_devices": [str(d) for d in jax.devices()],
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "xla_intra_op_threads": _count_threads("tf_XLAEigen"),
        "load_avg_at_start": list(os.getloadavg()),
        "uptime_at_start": uptime_line(),
        "git": git_info(),
    }


# -- voltage differences ----------------------------------------------------------------------------
def voltage_error(t_ref, v_ref, t_end_ref, t_other, v_other, t_end_other, *, t_min=None, include_end=False):
    """RMS and max |dV| [mV] (other - ref) on the reference's times that are also times of
    `other` (matched to 1e-9 relative), before both end-of-discharge times (up to and including
    the earlier one with `include_end`) and after `t_min` if given; and the end-time difference
    other - ref [s]. A reference solved on a grid ends with its event time, which is not on the
    grid: it is left out unless `other` was evaluated there."""
    t_ref, v_ref = np.asarray(t_ref, float), np.asarray(v_ref, float)
    t_other, v_other = np.asarray(t_other, float), np.asarray(v_other, float)
    t_stop = min(t_end_ref, t_end_other)
    idx = np.clip(np.searchsorted(t_other, t_ref), 0, t_other.size - 1)
    hit = np.abs(t_other[idx] - t_ref) <= 1e-9 * np.maximum(1.0, np.abs(t_ref))
    mask = hit & ((t_ref <= t_stop) if include_end else (t_ref < t_stop))
    if t_min is not None:
        mask &= t_ref > t_min
    dv = v_other[idx[mask]] - v_ref[mask]
    ok = np.isfinite(dv)
    dv = dv[ok]
    return {
        "rms_mV": float(np.sqrt(np.mean(dv**2)) * 1e3) if dv.size else float("nan"),
        "max_mV": float(np.max(np.abs(dv)) * 1e3) if dv.size else float("nan"),
        "n_points": int(dv.size),
        "n_nonfinite": int((~ok).sum()),
        "dt_end_s": float(t_end_other - t_end_ref),
    }


def accuracy(ref, t, v, t_end):
    """`voltage_error` against a reference table (columns t [s], V [V]; its last row is its end
    time) on its times in (1 s, earlier end], with the end-time difference in % too."""
    err = voltage_error(ref[:, 0], ref[:, 1], ref[-1, 0], t, v, t_end, t_min=1.0, include_end=True)
    err.update({"t_end_s": float(t_end), "t_end_ref_s": float(ref[-1, 0]),
                "dt_end_pct": float((t_end / ref[-1, 0] - 1.0) * 100.0)})
    return err


# -- PyBaMM -----------------------------------------------------------------------------------------
SYMBOLIC_DOMAINS = ("negative electrode", "separator", "positive electrode", "negative particle", "positive particle")


def pybamm_build(name, inputs, *, symbolic_mesh, rtol=RTOL, atol=ATOL, threads=1, var_pts=None, options=None,
                 values=None, particle_stretch=None):
    """Build PyBaMM's `name` model (isothermal, Chen2020 updated with `values`) with the parameters
    `inputs` as ``[input]``; with `symbolic_mesh`, ``pybamm.SymbolicUniform1DSubMesh`` on the x and
    r domains, so thicknesses and particle radii (which set the mesh) can be inputs. IDAKLU with
    `rtol`, `atol`, `threads` and the voltage as its only output variable. `particle_stretch`:
    ``pybamm.Exponential1DSubMesh`` in the particles, shells thinner towards the surface (side
    "right", that stretch), like jaxcell's `r_stretch`.
    Returns (built model, solver, build seconds)."""
    import pybamm

    model_class = {"SPM": pybamm.lithium_ion.SPM, "SPMe": pybamm.lithium_ion.SPMe, "DFN": pybamm.lithium_ion.DFN}[name]
    model = model_class(options) if options else model_class()
    pv = pybamm.ParameterValues(SET)
    pv.update(dict(values or {}))
    pv.update({k: "[input]" for k in inputs})
    submesh = dict(model.default_submesh_types)
    if symbolic_mesh:
        submesh.update({dom: pybamm.SymbolicUniform1DSubMesh for dom in SYMBOLIC_DOMAINS})
    if particle_stretch is not None:
        stretched = pybamm.MeshGenerator(pybamm.Exponential1DSubMesh, submesh_params={"side": "right", "stretch": particle_stretch})
        submesh.update({"negative particle": stretched, "positive particle": stretched})
    solver_options = {"num_threads": threads} if threads != 1 else None
    solver = pybamm.IDAKLUSolver(rtol=rtol, atol=atol, output_variables=["Voltage [V]"], options=solver_options)
    sim = pybamm.Simulation(model, parameter_values=pv, solver=solver, submesh_types=submesh, var_pts=var_pts)
    t0 = time.perf_counter()
    sim.build()
    return sim.built_model, solver, time.perf_counter() - t0


def pybamm_solve(built, solver, inputs, ts):
    """Solve on [0, T_END] with output at `ts` and read the voltage: (t, V, termination), or a
    list of them for a list of inputs (PyBaMM's list-of-inputs solve)."""
    sols = solver.solve(built, [0.0, T_END], inputs=inputs, t_interp=ts)
    if isinstance(inputs, list):
        return [(s.t, s["Voltage [V]"].data, s.termination) for s in sols]
    return sols.t, sols["Voltage [V]"].data, sols.termination


def pybamm_single(built, solver, inputs, ts, repeats):
    """One PyBaMM solve timed cold (the first solve sets the solver up), then the median of
    `repeats` warm solves. Returns ((t, V, termination), first seconds, median, all times)."""
    t0 = time.perf_counter()
    out = pybamm_solve(built, solver, inputs, ts)
    first = time.perf_counter() - t0
    med, times = median_time(lambda: pybamm_solve(built, solver, inputs, ts), repeats)
    return out, first, med, times


# -- jaxcell ----------------------------------------------------------------------------------------
def jaxcell_single(model, p, ts, repeats, **kwargs):
    """jaxcell's single solve (`kwargs` go to `simulate`) at the times `ts`: the first call
    (trace + compile + solve; its compile count and seconds), the median of `repeats` warm calls
    after a warm-up (``jax.block_until_ready``), and a check that new parameter values and a new
    Experiment object reuse the compiled solve. Returns (solution, dict)."""
    ts = jax.numpy.asarray(ts)

    experiment = jaxcell.Experiment([EXPERIMENT])

    def run(q=p, exp=experiment):
        return jax.block_until_ready(jaxcell.simulate(model, q, exp, t_eval=ts, **kwargs))

    c0, s0 = compiles(), compile_seconds()
    t0 = time.perf_counter()
    sol = run()
    first = time.perf_counter() - t0
    first_compiles, first_compile_s = compiles() - c0, compile_seconds() - s0
    run()  # warm-up
    c0 = compiles()
    med, times = median_time(run, repeats)
    run(p.update({L_N: float(p[L_N]) * 1.02, R_P: float(p[R_P]) * 0.98}), jaxcell.Experiment([EXPERIMENT]))
    return sol, {
        "first_call_s": first, "first_call_compiles": first_compiles, "first_call_compile_s": first_compile_s,
        "single_median_s": med, "single_times_s": times, "recompiles_after_first": compiles() - c0,
        "status": int(sol.status), "step_end": np.asarray(sol.step_end).tolist(),
        "t_end_s": float(sol.step_end_time[-1]),
    }


def batch_agreement(ts, sols, pb_batch, t_min=None):
    """jaxcell's batch (`sols`, on the grid `ts`) against PyBaMM's list-of-inputs solve of the
    same cells (`pb_batch`: (t, V, termination) per cell), cell by cell with `voltage_error`
    (PyBaMM as reference, times after `t_min`): the worst cell's RMS and max |dV| [mV] and
    |dt_end| [s], and more."""
    V = np.asarray(sols.voltage)
    t_end = np.asarray(sols.step_end_time)[:, -1]
    errs = [voltage_error(t, v, t[-1], ts, V[i], t_end[i], t_min=t_min) for i, (t, v, _) in enumerate(pb_batch)]
    rms = np.array([e["rms_mV"] for e in errs])
    finite = np.isfinite(rms).any()
    return {
        "max_rms_mV": float(np.nanmax(rms)) if finite else float("nan"),
        "max_max_mV": float(np.nanmax([e["max_mV"] for e in errs])) if finite else float("nan"),
        "max_abs_dt_end_s": float(np.max(np.abs([e["dt_end_s"] for e in errs]))),
        "n_nonfinite": int(sum(e["n_nonfinite"] for e in errs)),
        "t_end_range_s": [float(np.nanmin(t_end)), float(np.nanmax(t_end))],
        "worst_rms_cell": int(np.nanargmax(rms)) if finite else None,
        "median_rms_mV": float(np.nanmedian(rms)) if finite else float("nan"),
        "cells_without_points": int(sum(e["n_points"] == 0 for e in errs)),
        "pybamm_t_end_range_s": [float(min(t[-1] for t, _, _ in pb_batch)), float(max(t[-1] for t, _, _ in pb_batch))],
    }


def write_results(out: dict, path) -> None:
    """Write a benchmark's results `out` (with the load average at the end added) as JSON to `path`."""
    out = {**out, "load_avg_at_end": list(os.getloadavg())}
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}")
