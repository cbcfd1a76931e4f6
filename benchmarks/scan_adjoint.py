"""`jaxcell.ScanAdjoint` against `simulate`'s default adjoint on the gradient benchmark's loss.

The loss is the gradient benchmark's (`bench_dfn.py`): the voltage RMSE against PyBaMM's
converged DFN at its times in (1 s, 3300 s), plus the 2.5 V cut-off's time [h], with respect to
the same ten parameters, at the equal-accuracy setting (SPMe 10/5/10 nodes, 10 shells stretched
4x; DFN 10/5/10 nodes, 10 shells; rtol 1e-3; XLA on one thread), for "Discharge at 1C until
2.5 V". Four functions: the forward solve and `jax.grad` with the default adjoint (diffrax's
checkpointed loop) and with `ScanAdjoint(max_steps)`. Each is called once (first call: trace and
compile, seconds), then timed in alternating rounds (medians). The ratios are to the default
forward solve; the gradients' largest relative difference says whether they are the same.

    python benchmarks/scan_adjoint.py --model SPMe      # -> results/scan_adjoint_spme.json
    python benchmarks/scan_adjoint.py --model DFN --max-steps 64
"""

from __future__ import annotations

import argparse
import time

import _common as C
import jax
import jax.numpy as jnp
import numpy as np
from bench_dfn import GRAD_PARAMS, REFERENCES, T_FIT_MAX

import jaxcell

MODELS = {"SPMe": lambda: jaxcell.SPMe(n_x_n=10, n_x_s=5, n_x_p=10, n_r_n=10, n_r_p=10, r_stretch=4.0),
          "DFN": lambda: jaxcell.DFN(n_x_n=10, n_x_s=5, n_x_p=10, n_r_n=10, n_r_p=10)}
RTOL = 1e-3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="SPMe")
    ap.add_argument("--max-steps", type=int, default=64, help="ScanAdjoint's bound on attempts (default 64)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    C.init_xla_cpu(one_thread=True)
    model, p = MODELS[args.model](), jaxcell.load_parameters(C.SET)
    ref = np.loadtxt(REFERENCES["DFN"], delimiter=",", skiprows=1)
    mask = (ref[:, 0] > 1.0) & (ref[:, 0] < T_FIT_MAX)
    t_fit, v_fit = jnp.asarray(ref[mask, 0]), jnp.asarray(ref[mask, 1])

    def loss(theta, adjoint):
        sol = jaxcell.simulate(model, p.update(theta), C.EXPERIMENT, t_eval=t_fit, rtol=RTOL, atol=C.ATOL, adjoint=adjoint)
        return jnp.sqrt(jnp.mean((sol.voltage - v_fit) ** 2)) + sol.step_end_time[0] / 3600.0

    theta = {k: jnp.asarray(float(p[k])) for k in GRAD_PARAMS}
    scan = jaxcell.ScanAdjoint(args.max_steps)
    fns = {"forward": jax.jit(lambda th: loss(th, None)), "gradient": jax.jit(jax.grad(lambda th: loss(th, None))),
           "ScanAdjoint forward": jax.jit(lambda th: loss(th, scan)),
           "ScanAdjoint gradient": jax.jit(jax.grad(lambda th: loss(th, scan)))}
    first, values = {}, {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        values[name] = jax.block_until_ready(fn(theta))
        first[name] = time.perf_counter() - t0
        print(f"{name:22s} first call {first[name]:6.1f} s", flush=True)
    times, med = C.interleaved_medians(fns, theta, args.rounds, args.repeats)
    ratio = {name: med[name] / med["forward"] for name in fns}
    for name in fns:
        print(f"{name:22s} median {med[name] * 1e3:8.2f} ms = {ratio[name]:5.2f} x the forward solve", flush=True)
    g, s = values["gradient"], values["ScanAdjoint gradient"]
    rel = max(abs(float(s[k] - g[k])) / abs(float(g[k])) for k in GRAD_PARAMS)
    print(f"gradients agree to {rel:.1e} relative; loss {float(values['forward']):.9f} against "
          f"{float(values['ScanAdjoint forward']):.9f}")
    out = {"machine": C.machine_info(), "model": args.model, "rtol": RTOL, "atol": C.ATOL, "experiment": C.EXPERIMENT,
           "output_times": int(t_fit.size), "parameters": GRAD_PARAMS, "max_steps": args.max_steps,
           "first_call_s": first, "median_s": med, "over_forward": ratio, "times_s": times,
           "gradient_max_rel_diff": rel}
    C.write_results(out, args.out or C.RESULTS / f"scan_adjoint_{args.model.lower()}.json")


if __name__ == "__main__":
    main()
