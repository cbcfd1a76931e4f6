"""Compile time of the DFN gradient benchmark's loss, each measurement in a fresh process.

The loss is ``bench_dfn.gradient_loss``: the voltage RMSE of a 1C discharge (Chen2020, 1527
reference times) as a function of 10 parameters, at the headline mesh and rtol of the last
``bench_dfn.py`` run (read from ``results/dfn_latest.json``; ``--mesh`` and ``--rtol`` override
them). Each
configuration runs in a new Python process that has compiled nothing before (JAX's persistent
cache off, no PyBaMM) and times first calls, which are tracing, lowering, XLA's compile and one
run:

* ``separate``: ``jax.jit(loss)``, then ``jax.jit(jax.grad(loss))`` (a solve and a gradient as
  two functions, as ``bench_dfn.py`` times them);
* ``value_and_grad``: ``jax.jit(jax.value_and_grad(loss))`` (both from one function).

XLA's CPU intra-op thread pool: JAX's default (one thread per core) and one thread, the setting
``bench_dfn.py`` times everything with. XLA's compile runs faster with the default pool.

XLA's CPU code generators: its default fusion emitters, and its classic ones
(``XLA_FLAGS=--xla_cpu_use_fusion_emitters=false``, what the test suite compiles with). Each run
also times its compiled functions' warm calls (median of 10), since the generators change the
code that runs, not what it computes.

Usage::

    python benchmarks/bench_compile.py

Writes ``benchmarks/results/compile_latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import _common as C

HEADLINE = C.RESULTS / "dfn_latest.json"  # bench_dfn.py's last run: its headline mesh and rtol
CLASSIC = "--xla_cpu_use_fusion_emitters=false"
# (mode, one XLA thread, classic code generators)
CONFIGS = [(m, one, classic) for classic in (0, 1) for one in (0, 1) for m in ("separate", "value_and_grad")]


def headline() -> tuple[str, float]:
    """jaxcell's headline (mesh, rtol) of the last `bench_dfn.py` run."""
    with open(HEADLINE) as f:
        h = json.load(f)["headline"]
    return h["jaxcell_mesh"], float(h["jaxcell_rtol"])


def child(mode: str, one_thread: bool, mesh: str, rtol: float) -> dict:
    import jax

    jax.config.update("jax_enable_compilation_cache", False)  # nothing read from an earlier run
    C.init_xla_cpu(one_thread=one_thread)
    import bench_dfn as B
    import numpy as np

    import jaxcell

    p = jaxcell.load_parameters(C.SET)
    ref = np.loadtxt(B.REFERENCE, delimiter=",", skiprows=1)
    loss, theta0, _ = B.gradient_loss(B.parse_mesh(mesh), p, rtol, ref)
    fns = {"forward": jax.jit(loss), "grad": jax.jit(jax.grad(loss))} if mode == "separate" else {
        "value_and_grad": jax.jit(jax.value_and_grad(loss))}
    out = {"mode": mode}
    for name, fn in fns.items():
        s0, t0 = C.compile_seconds(), time.perf_counter()
        jax.block_until_ready(fn(theta0))
        out[name + "_first_call_s"] = time.perf_counter() - t0
        out[name + "_compile_s"] = C.compile_seconds() - s0
        warm = []
        for _ in range(10):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(theta0))
            warm.append(time.perf_counter() - t0)
        out[name + "_warm_ms"] = 1e3 * sorted(warm)[len(warm) // 2]
    out["total_first_calls_s"] = sum(v for k, v in out.items() if k.endswith("_first_call_s"))
    out["xla_intra_op_threads"] = C.machine_info()["xla_intra_op_threads"]  # (imports PyBaMM: after the timings)
    out["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", nargs=4, metavar=("MODE", "ONE_THREAD", "MESH", "RTOL"), help=argparse.SUPPRESS)
    ap.add_argument("--mesh", help="x_n,x_s,x_p,r_n,r_p (default: the headline of results/dfn_latest.json)")
    ap.add_argument("--rtol", type=float, help="default: the headline's")
    ap.add_argument("--out", default=str(C.RESULTS / "compile_latest.json"))
    args = ap.parse_args()
    if args.child:
        mode, one, mesh, rtol = args.child
        print(json.dumps(child(mode, one == "1", mesh, float(rtol))), flush=True)
        return
    mesh, rtol = args.mesh, args.rtol
    if mesh is None or rtol is None:
        h_mesh, h_rtol = headline()
        mesh, rtol = mesh or h_mesh, rtol or h_rtol
    print(f"mesh {mesh}, rtol {rtol:g}", flush=True)
    runs = []
    for mode, one, classic in CONFIGS:
        env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
        flags = env.get("XLA_FLAGS", "").replace(CLASSIC, "")
        env["XLA_FLAGS"] = f"{flags} {CLASSIC}".strip() if classic else flags.strip()
        proc = subprocess.run([sys.executable, __file__, "--child", mode, str(one), mesh, repr(rtol)], capture_output=True, text=True,
                              env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"the {mode} run (one XLA thread: {bool(one)}) failed:\n{proc.stderr[-4000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        runs.append(r)
        times = ", ".join(f"{k[:-len('_first_call_s')]} {v:.1f} s" for k, v in r.items() if k.endswith("_first_call_s"))
        warm = ", ".join(f"{k[:-len('_warm_ms')]} {v:.1f} ms" for k, v in r.items() if k.endswith("_warm_ms"))
        print(f"{mode}, XLA threads {r['xla_intra_op_threads']}, {'classic' if classic else 'default'} code generators: "
              f"first calls {times}; total {r['total_first_calls_s']:.1f} s; warm {warm}", flush=True)
    info = C.machine_info()
    print(f"Machine: {info['cpu_model']}, {info['cpu_count']} cores; jax {info['jax']}, diffrax {info['diffrax']}")
    info.pop("xla_intra_op_threads")  # (this process's; each run records its own)
    with open(args.out, "w") as f:
        json.dump({"machine": info, "mesh": mesh, "rtol": rtol, "runs": runs}, f, indent=1)
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
