"""The isothermal SPM through measured records (drive cycles): jaxcell's exact solve
(`ModalSolve`) against Rodas4 and against PyBaMM (IDAKLU), in one process, one thread each.

The records: the LG M50 1C discharge at 25 degC (``data/lgm50_25degC_discharges.csv``), its
measured current as a drive cycle (linear between samples), once at full resolution (3597
points) and once thinned to 61 points as the fits in ``notebooks/identification.ipynb`` and
``inference_lgm50.py`` use it. Chen2020 with its lower cut-off at 2.0 V (as those fits), the
outputs at the record's own times. For each record:

* jaxcell, ``solver=None`` (the exact solve) and ``solver=default_solver(SPM())`` (Rodas4,
  rtol 1e-6, atol 1e-8): the first call (trace, compile and solve), a warm solve, the value and
  gradient of a sum of squared voltage errors with respect to four parameters (the thicknesses
  and diffusivities a fit identifies, through `inference.simulate_voltage`, as the fits
  differentiate it), the same for 16 cells under ``vmap``, and 250 cells' forward solves under
  ``vmap``; medians of 3 rounds of ``--repeats`` calls (batches: of 3 calls);
* PyBaMM's SPM with the same current (``pybamm.Interpolant`` of the record) and the negative
  diffusivity as an input, IDAKLU at rtol 1e-6, atol 1e-8: a warm solve and 250 cells as a list
  of inputs;
* agreement: jaxcell's exact solve against Rodas4 at rtol 1e-10 (the same discrete equations),
  and against PyBaMM at rtol 1e-10 (a different mesh: the models' difference).

    python benchmarks/bench_records_spm.py [--repeats 10] [--cells 250] [--skip-pybamm]

Writes ``benchmarks/results/records_spm_latest.json``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from _common import (
    HERE,
    RESULTS,
    init_xla_cpu,
    interleaved_medians,
    machine_info,
    write_results,
)

import jaxcell

D_N = "Negative particle diffusivity [m2.s-1]"
NAMES = ["Negative electrode thickness [m]", "Positive electrode thickness [m]", D_N,
         "Positive particle diffusivity [m2.s-1]"]


def records():
    """The 1C record at full resolution and thinned to 61 points (the identification notebook's rule)."""
    data = pd.read_csv(HERE / "data" / "lgm50_25degC_discharges.csv")
    g = data[data.c_rate == 1.0].reset_index(drop=True)
    t = g.t_s.to_numpy()
    idx = np.unique(np.r_[0, 1, np.searchsorted(t, np.linspace(t[1], t[-1], 59)), len(g) - 1])
    return {"full": g, "thinned_61": g.iloc[idx].reset_index(drop=True)}


def bench_jaxcell(p, rec, solver, args):
    from jaxcell.inference import read_measurements, stack_records
    from jaxcell.inference._model import simulate_voltage

    r = stack_records(read_measurements(rec))
    t, current, measured = r.t[0], r.current[0], r.voltage[0]
    exp = jaxcell.Experiment([jaxcell.DriveCycle(t, current)])
    model = jaxcell.SPM()
    kw = {} if solver is None else {"solver": solver}
    x0 = {k: jnp.asarray(p[k]) for k in NAMES}

    def voltage(x):
        return jaxcell.simulate(model, p.update(x), exp, t_eval=t, **kw).voltage

    def loss(x):
        if solver is None:
            v = simulate_voltage(model, p, x, exp, t)[0]
        else:  # simulate_voltage picks the solver; this is the same forward-mode derivative with Rodas4
            v = voltage(x)
        return jnp.nansum((v - measured) ** 2)

    t0 = time.perf_counter()
    jax.block_until_ready(jax.jit(voltage)(x0))
    first = time.perf_counter() - t0
    spread = {k: v * jnp.exp(jnp.linspace(-0.2, 0.2, 16)) for k, v in x0.items()}
    wide = {k: v * jnp.exp(jnp.linspace(-0.2, 0.2, args.cells)) for k, v in x0.items()}
    fns = {"solve": (jax.jit(voltage), x0), "value_and_grad": (jax.jit(jax.value_and_grad(loss)), x0),
           "value_and_grad_x16": (jax.jit(jax.vmap(jax.value_and_grad(loss))), spread),
           f"solve_x{args.cells}": (jax.jit(jax.vmap(voltage)), wide)}
    out = {"segments": int(t.size - 1), "first_call_s": first}
    for name, (fn, a) in fns.items():
        t0 = time.perf_counter()
        jax.block_until_ready(fn(a))
        out[f"{name}_first_s"] = time.perf_counter() - t0
        batched = name.endswith(("x16", f"x{args.cells}"))
        out[f"{name}_s"] = interleaved_medians({name: fn}, a, 1 if batched else 3, 3 if batched else args.repeats)[1][name]
    return out, (t, current, np.asarray(voltage(x0)))


def bench_pybamm(t, current, ts, args):
    import pybamm

    model = pybamm.lithium_ion.SPM()
    pv = pybamm.ParameterValues("Chen2020")
    d0 = float(pv[D_N])
    pv.update({"Current function [A]": pybamm.Interpolant(t, current, pybamm.t), "Lower voltage cut-off [V]": 2.0,
               D_N: "[input]"})

    def solve(rtol, atol, inputs):
        solver = pybamm.IDAKLUSolver(rtol=rtol, atol=atol, output_variables=["Voltage [V]"])
        sim = pybamm.Simulation(model, parameter_values=pv, solver=solver)
        sim.build()
        return lambda inp: solver.solve(sim.built_model, [0.0, float(t[-1])], inputs=inp, t_interp=ts)

    run = solve(1e-6, 1e-8, None)
    one = {D_N: d0}
    run(one)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        run(one)
        times.append(time.perf_counter() - t0)
    cells = [{D_N: d0 * float(f)} for f in np.exp(np.linspace(-0.2, 0.2, args.cells))]
    t0 = time.perf_counter()
    run(cells)
    batch = time.perf_counter() - t0
    tight = solve(1e-10, 1e-12, None)(one)
    return {"solve_s": float(np.median(times)), f"solve_x{args.cells}_s": batch}, (tight.t, tight["Voltage [V]"].data)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--cells", type=int, default=250)
    ap.add_argument("--skip-pybamm", action="store_true")
    args = ap.parse_args()
    init_xla_cpu(one_thread=True)
    jax.config.update("jax_enable_x64", True)
    from jaxcell.simulate import default_solver

    p = jaxcell.load_parameters("Chen2020").update({"Lower voltage cut-off [V]": 2.0})
    out = {"machine": machine_info(), "args": vars(args), "records": {}}
    for name, rec in records().items():
        print(f"== {name}", flush=True)
        res = {}
        res["exact"], (t, current, v_exact) = bench_jaxcell(p, rec, None, args)
        print("exact", res["exact"], flush=True)
        res["rodas4"], _ = bench_jaxcell(p, rec, default_solver(jaxcell.SPM()), args)
        print("rodas4", res["rodas4"], flush=True)
        exp = jaxcell.Experiment([jaxcell.DriveCycle(t, current)])
        tight = np.asarray(jaxcell.simulate(jaxcell.SPM(), p, exp, t_eval=t, solver=default_solver(jaxcell.SPM()),
                                            rtol=1e-10, atol=1e-12).voltage)
        res["exact_vs_rodas4_rtol1e-10_max_mV"] = float(1e3 * np.nanmax(np.abs(v_exact - tight)))
        if not args.skip_pybamm:
            import pybamm

            try:
                res["pybamm"], (tp, vp) = bench_pybamm(t, current, t, args)
                n = min(len(tp), len(t))
                res["exact_vs_pybamm_rtol1e-10_rms_mV"] = float(1e3 * np.sqrt(np.mean((v_exact[:n] - vp[:n]) ** 2)))
            except pybamm.SolverError as e:  # reported, not hidden
                res["pybamm_failed"] = str(e)
            print("pybamm", res.get("pybamm", res.get("pybamm_failed")), flush=True)
        for k in ("solve_s", f"solve_x{args.cells}_s"):
            res.setdefault("ratios", {})[k] = {"rodas4_over_exact": res["rodas4"][k] / res["exact"][k]}
            if "pybamm" in res:
                res["ratios"][k]["pybamm_over_exact"] = res["pybamm"][k] / res["exact"][k]
        res["ratios"]["value_and_grad_s"] = {"rodas4_over_exact": res["rodas4"]["value_and_grad_s"]
                                             / res["exact"]["value_and_grad_s"]}
        res["ratios"]["value_and_grad_x16_s"] = {"rodas4_over_exact": res["rodas4"]["value_and_grad_x16_s"]
                                                 / res["exact"]["value_and_grad_x16_s"]}
        out["records"][name] = res
    write_results(out, RESULTS / "records_spm_latest.json")


if __name__ == "__main__":
    main()
