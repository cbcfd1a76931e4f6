"""A reverse-mode gradient by replaying the solve's accepted steps, against `simulate`'s.

`jax.grad(simulate)` goes through diffrax's checkpointed loop: on the way back every step is run
again to take its derivative, and the derivative of the loop's own machinery (step-size control,
events, saving) is part of the program. This script measures an alternative on the gradient
benchmark's problem, without changing the library:

1. the adaptive solve, with no derivative, records the times of its accepted steps;
2. a `lax.scan` replays those steps with Rodas4's own step (its stages' reverse rule included) at
   the recorded times, and the outputs are the steps' dense interpolation at the output times.
   JAX's reverse mode of the scan keeps each step's residuals instead of running it again, and
   the program holds one step's derivative, not the loop's.

A third variant needs no recording pass: the adaptive solve itself written as a `lax.scan` of a
fixed number of attempts, accepted and rejected (diffrax's step, its step-size controller with
inputs that carry no derivative, and its clipping to the end), differentiated by JAX.

Both are the same discrete solution with the same step sizes, which diffrax's adjoint also
holds fixed, so the gradients must agree to rounding; the script says how closely they do.

The loss is the gradient benchmark's (`bench_dfn.py`): the voltage RMSE against PyBaMM's
converged DFN at its times in (1 s, 3300 s), with respect to the same ten parameters, at the
equal-accuracy setting (SPMe 10/5/10 nodes, 10 shells stretched 4x, 46 states; DFN 10/5/10 nodes,
10 shells at the model's default stretch, 246 states; rtol 1e-3; XLA on one thread, as there),
for "Discharge at 1C for 3300 seconds", which ends before the cut-off. The adaptive scan is also
measured with the event, against `simulate` on the benchmark's "Discharge at 1C until 2.5 V": the
loss then adds the end time [h] and 1e-6 x the final state's first entry, so that the cut-off
time's derivative (the implicit function theorem on the last step's interpolation) and the final
state's count. The functions (simulate's loss and gradient, the replay's loss and gradient, the
replay's first part alone, recording the steps, and the adaptive scan's gradient; with the event,
simulate's loss and gradient and the adaptive scan's gradient) are compiled first (first-call
seconds reported), then timed in alternating rounds (medians). `--max-steps` bounds the replayed steps and the
adaptive scan's attempts (static).

    python benchmarks/replay_gradient.py --model SPMe      # -> results/replay_gradient_spme.json
    python benchmarks/replay_gradient.py --model DFN
"""

from __future__ import annotations

import argparse
import time

import _common as C
import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from bench_dfn import GRAD_PARAMS, REFERENCES, T_FIT_MAX

import jaxcell
from jaxcell.simulate import default_solver
from jaxcell.solvers import N_TOTALS, CellField, RodasInterpolation, model_voltage

RTOL, ATOL = 1e-3, C.ATOL
V_CUT = 2.5  # C.EXPERIMENT's limit [V]
MODELS = {"SPMe": lambda: jaxcell.SPMe(n_x_n=10, n_x_s=5, n_x_p=10, n_r_n=10, n_r_p=10, r_stretch=4.0),
          "DFN": lambda: jaxcell.DFN(n_x_n=10, n_x_s=5, n_x_p=10, n_r_n=10, n_r_p=10)}
STEP = f"Discharge at 1C for {T_FIT_MAX:g} seconds"


def problem(name, max_steps):
    model, p = MODELS[name](), jaxcell.load_parameters(C.SET)
    ref = np.loadtxt(REFERENCES["DFN"], delimiter=",", skiprows=1)
    mask = (ref[:, 0] > 1.0) & (ref[:, 0] < T_FIT_MAX)
    t_fit, v_fit = jnp.asarray(ref[mask, 0]), jnp.asarray(ref[mask, 1])
    current = float(p["Nominal cell capacity [A.h]"])  # 1C [A]
    solver = default_solver(model)

    def rmse(v):
        return jnp.sqrt(jnp.mean((v - v_fit) ** 2))

    def sim_loss(theta):
        sol = jaxcell.simulate(model, p.update(theta), STEP, t_eval=t_fit, rtol=RTOL, atol=ATOL)
        return rmse(sol.voltage)

    def field_of(q):
        return CellField(model, q, lambda t, y: jnp.asarray(current, y.dtype), False, model.rhs_reads_time)

    def accepted_steps(q):
        """The adaptive solve's accepted step times (max_steps + 1, padded with the end) and their count."""
        y0 = (model.initial_state(q), jnp.zeros(N_TOTALS))
        ctrl = diffrax.PIDController(rtol=RTOL, atol=ATOL, pcoeff=0.3, icoeff=0.4)  # as `simulate`'s
        sol = diffrax.diffeqsolve(diffrax.ODETerm(field_of(q)), solver, 0.0, T_FIT_MAX, 0.01, y0,
                                  saveat=diffrax.SaveAt(steps=True, fn=lambda t, y, args: t),
                                  stepsize_controller=ctrl, max_steps=max_steps, throw=False)
        ts = jnp.where(jnp.isfinite(sol.ts), sol.ts, T_FIT_MAX)
        return jnp.concatenate([jnp.zeros(1), ts]), sol.stats["num_accepted_steps"]

    def replay_loss(theta):
        q = p.update(theta)
        ts, _ = jax.lax.stop_gradient(accepted_steps(jax.lax.stop_gradient(q)))
        field = field_of(q)
        term = diffrax.ODETerm(field)
        y0 = (model.initial_state(q), jnp.zeros(N_TOTALS))

        def body(carry, k):
            def step(y, f0):
                y1, _, dense, f1, _ = solver.step(term, ts[k], ts[k + 1], y, None, f0, False)
                return (y1, f1), dense

            def padding(y, f0):
                zero = jax.tree.map(jnp.zeros_like, y)
                return (y, f0), {"y0": y, "y1": y, "d1": zero, "d2": zero}

            return jax.lax.cond(ts[k + 1] > ts[k], step, padding, *carry)

        _, dense = jax.lax.scan(body, (y0, field(0.0, y0, None)), jnp.arange(max_steps))
        k = jnp.clip(jnp.searchsorted(ts, t_fit, side="right") - 1, 0, max_steps - 1)

        def voltage(t, k):
            y, _ = RodasInterpolation(ts[k], ts[k + 1], **jax.tree.map(lambda a: a[k], dense)).evaluate(t)
            return model_voltage(model, q, y, jnp.asarray(current))

        return rmse(jax.vmap(voltage)(t_fit, k))

    def scan_loss(theta, event=False):
        """The adaptive solve itself as a scan of `max_steps` attempts (accepted and rejected):
        diffrax's step, step-size controller and end clipping as in its loop, the controller's
        inputs without derivative (as diffrax holds the step sizes fixed). With `event`, to the
        2.5 V cut-off (`simulate`'s step limit, within its bound of twice the time to pass the
        nominal capacity): no attempt after the accepted step that crosses it; the crossing
        time on that step's interpolation by bisection, and its derivative by the implicit
        function theorem, dt = -dg / g'(t), g the voltage minus 2.5 V there."""
        q = p.update(theta)
        term = diffrax.ODETerm(field_of(q))
        ctrl = diffrax.PIDController(rtol=RTOL, atol=ATOL, pcoeff=0.3, icoeff=0.4)
        y0 = (model.initial_state(q), jnp.zeros(N_TOTALS))
        order = solver.error_order(term)
        t1 = 2.0 * 3600.0 if event else T_FIT_MAX  # simulate's bound for a 1C step with a limit
        floor = np.float64(t1)
        for _ in range(100):  # diffrax's clip to the end, 100 ULP before it
            floor = np.nextafter(floor, -np.inf)
        sg = jax.lax.stop_gradient

        def g(t, y):
            return model_voltage(model, q, y[0], jnp.asarray(current)) - V_CUT

        tnext, cstate = ctrl.init(term, 0.0, t1, sg(y0), 0.01, None, solver.func, order)

        def attempt(carry):
            tprev, tnext, y, f, cstate, _ = carry
            y1, err, dense, f1, _ = solver.step(term, tprev, tnext, y, None, f, False)
            err = jax.tree.map(lambda x: jnp.where(jnp.isnan(x), jnp.inf, x), err)
            keep, tp, tn, _, cs, _ = ctrl.adapt_step_size(sg(tprev), sg(tnext), sg(y), sg(y1), None, sg(err), order,
                                                          cstate)
            crossed = keep & (sg(g(tnext, y1)) <= 0) if event else jnp.asarray(False)
            tp = jnp.minimum(tp, t1)
            tn = jnp.where(tn > floor, jnp.where(keep, t1, tp + 0.5 * (t1 - tp)), tn)
            k = lambda a, b: jnp.where(keep, a, b)
            return ((tp, tn, jax.tree.map(k, y1, y), jax.tree.map(k, f1, f), cs, crossed),
                    (tprev, tnext, keep, crossed, dense))

        def finished(carry):
            zero = jax.tree.map(jnp.zeros_like, carry[2])
            no = jnp.asarray(False)
            return carry, (carry[0], carry[1], no, no, {"y0": carry[2], "y1": carry[2], "d1": zero, "d2": zero})

        init = (jnp.asarray(0.0), jnp.minimum(tnext, t1), y0, field_of(q)(0.0, y0, None), cstate, jnp.asarray(False))
        _, (a0, a1, kept, crossed, dense) = jax.lax.scan(
            lambda c, _: jax.lax.cond((c[0] < t1) & ~c[5], attempt, finished, c), init, None, length=max_steps)

        def interpolation(k):
            return RodasInterpolation(a0[k], a1[k], **jax.tree.map(lambda a: a[k], dense))

        inside = kept[None, :] & (a0[None, :] <= t_fit[:, None]) & (t_fit[:, None] <= a1[None, :])

        def voltage(t, k):
            return model_voltage(model, q, interpolation(k).evaluate(t)[0], jnp.asarray(current))

        loss = rmse(jax.vmap(voltage)(t_fit, jnp.argmax(inside, axis=1)))
        if not event:
            return loss
        last = interpolation(jnp.argmax(crossed))

        def G(tau):
            return g(tau, last.evaluate(tau))

        def halve(_, ab):
            m = 0.5 * (ab[0] + ab[1])
            below = sg(G(m)) <= 0
            return jnp.where(below, ab[0], m), jnp.where(below, m, ab[1])

        a, b = jax.lax.fori_loop(0, 60, halve, (sg(last.t0), sg(last.t1)))
        t_cut = sg(0.5 * (a + b))
        slope = sg(jax.jvp(G, (t_cut,), (jnp.ones_like(t_cut),))[1])
        t_end = t_cut - (G(t_cut) - sg(G(t_cut))) / slope  # its value t_cut, its derivative -dG / G'
        return loss + t_end / 3600.0 + 1e-6 * last.evaluate(t_end)[0][0]

    def sim_event_loss(theta):
        sol = jaxcell.simulate(model, p.update(theta), C.EXPERIMENT, t_eval=t_fit, rtol=RTOL, atol=ATOL)
        return rmse(sol.voltage) + sol.step_end_time[0] / 3600.0 + 1e-6 * sol.final_state[0]

    theta0 = {k: jnp.asarray(float(p[k])) for k in GRAD_PARAMS}
    n_steps = int(jax.jit(accepted_steps)(p)[1])
    return (model, theta0, sim_loss, replay_loss, scan_loss, sim_event_loss, lambda theta: scan_loss(theta, True),
            lambda theta: accepted_steps(p.update(theta)), n_steps, int(t_fit.size))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="SPMe")
    ap.add_argument("--max-steps", type=int, default=96, help="replayed steps, a static bound (default 96)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5, help="calls of each function per round")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    C.init_xla_cpu(one_thread=True)
    info = C.machine_info()
    (model, theta0, sim_loss, replay_loss, scan_loss, sim_event_loss, scan_event_loss, record, n_steps,
     n_fit) = problem(args.model, args.max_steps)
    if n_steps >= args.max_steps:
        raise SystemExit(f"the solve took {n_steps} steps, --max-steps is {args.max_steps}")
    # (the adaptive scan's attempts, rejected ones included, must fit in --max-steps too: its
    # gradient's agreement with simulate's says whether they did)
    fns = {"simulate forward": jax.jit(sim_loss), "simulate gradient": jax.jit(jax.grad(sim_loss)),
           "replay forward": jax.jit(replay_loss), "replay gradient": jax.jit(jax.grad(replay_loss)),
           "recording the steps": jax.jit(record), "adaptive scan gradient": jax.jit(jax.grad(scan_loss)),
           "with the event: simulate forward": jax.jit(sim_event_loss),
           "with the event: simulate gradient": jax.jit(jax.grad(sim_event_loss)),
           "with the event: adaptive scan gradient": jax.jit(jax.grad(scan_event_loss))}
    first, values = {}, {}
    for name, fn in fns.items():
        s0, t0 = C.compile_seconds(), time.perf_counter()
        values[name] = jax.block_until_ready(fn(theta0))
        first[name] = {"first_call_s": time.perf_counter() - t0, "compile_s": C.compile_seconds() - s0}
        f = first[name]
        print(f"{name:18s} first call {f['first_call_s']:6.1f} s ({f['compile_s']:.1f} s tracing and compiling)", flush=True)
    times, med = C.interleaved_medians(fns, theta0, args.rounds, args.repeats)
    g_sim = values["simulate gradient"]
    rel = {name: max(abs(float(values[name][k] - g_sim[k])) / abs(float(g_sim[k])) for k in GRAD_PARAMS)
           for name in ("replay gradient", "adaptive scan gradient")}
    g_ev = values["with the event: simulate gradient"]
    rel["with the event: adaptive scan gradient"] = max(
        abs(float(values["with the event: adaptive scan gradient"][k] - g_ev[k])) / abs(float(g_ev[k])) for k in GRAD_PARAMS)
    ratio = {name: med[name] / med["with the event: simulate forward" if name.startswith("with the event")
                                   else "simulate forward"] for name in fns}
    for name in fns:
        print(f"{name:18s} median {med[name] * 1e3:8.2f} ms = {ratio[name]:5.2f} x simulate's forward (of the same loss)",
              flush=True)
    print(f"{n_steps} accepted steps, {n_fit} output times; loss {float(values['simulate forward']) * 1e3:.6f} mV "
          f"(replay {float(values['replay forward']) * 1e3:.6f}); gradients agree with simulate's to "
          f"{rel['replay gradient']:.1e} (replay) and {rel['adaptive scan gradient']:.1e} (adaptive scan) relative; "
          f"with the event {rel['with the event: adaptive scan gradient']:.1e}")
    out = {"machine": info, "model": args.model, "states": int(model.initial_state(jaxcell.load_parameters(C.SET)).size),
           "rtol": RTOL, "atol": ATOL, "experiment": STEP, "accepted_steps": n_steps, "max_steps": args.max_steps,
           "output_times": n_fit, "parameters": GRAD_PARAMS, "first_calls": first, "median_s": med,
           "over_simulate_forward": ratio, "times_s": times, "gradient_max_rel_diff": rel}
    C.write_results(out, args.out or C.RESULTS / f"replay_gradient_{args.model.lower()}.json")


if __name__ == "__main__":
    main()
