"""`simulate`: run a model under an experiment with diffrax, events located by bisection."""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from .experiment import Experiment, Step
from .models._base import AbstractCellModel
from .parameters import ParameterSet
from .solution import Solution, Status, StepEnd

# Surface stoichiometry at which an experiment stops: beyond it OCP fits and the exchange
# current's square roots are no longer defined.
STO_LIMIT = 1e-6
# Newton iterations for the current of a voltage or power step (scalar, quadratically convergent).
NEWTON_ITERS = 12
N_OUT_PER_STEP = 400


class Options(eqx.Module):
    """Solver settings for `simulate` (static: changing them recompiles)."""

    rtol: float = eqx.field(static=True, default=1e-6)
    atol: float = eqx.field(static=True, default=1e-8)
    max_steps: int = eqx.field(static=True, default=20_000)
    solver: diffrax.AbstractSolver = eqx.field(static=True, default_factory=diffrax.Kvaerno5)
    n_out_per_step: int = eqx.field(static=True, default=N_OUT_PER_STEP)


def _solve_current(g, I0):
    """Root of the scalar function g(I) by Newton's method from I0 (fixed iteration count, so it
    is jit/vmap/grad friendly)."""

    def body(_, I):
        r, dr = jax.jvp(g, (I,), (jnp.ones_like(I),))
        return I - r / jnp.where(dr == 0, 1.0, dr)

    return jax.lax.fori_loop(0, NEWTON_ITERS, body, I0)


def _control(model, step: Step, p, t0):
    """current(t, y) [A] that realises the step's control."""
    value = step.value * p["Nominal cell capacity [A.h]"] if step.c_rate else step.value
    if step.mode == "current":
        return lambda t, y: value
    if step.mode == "drive":
        return lambda t, y: jnp.interp(t - t0, step.drive_time, step.drive_current)
    if step.mode == "voltage":
        return lambda t, y: _solve_current(lambda I: model.voltage(y, I, p) - value, jnp.zeros_like(value))
    if step.mode == "power":
        def current(t, y):
            I0 = value / model.open_circuit_voltage(y, p)
            return _solve_current(lambda I: I * model.voltage(y, I, p) - value, I0)
        return current
    raise ValueError(f"Unknown step mode {step.mode!r}.")


def _max_duration(step: Step, p):
    """Duration bound [s] of a step without 'for ...': twice the time to pass the nominal
    capacity at the step's current (8 hours for a voltage hold)."""
    if step.has_duration:
        return step.duration
    Q = p["Nominal cell capacity [A.h]"] * 3600.0
    if step.mode == "current":
        I = jnp.abs(step.value * p["Nominal cell capacity [A.h]"] if step.c_rate else step.value)
        return 2.0 * Q / jnp.maximum(I, 1e-12)
    if step.mode == "power":
        return 2.0 * Q * p["Upper voltage cut-off [V]"] / jnp.maximum(jnp.abs(step.value), 1e-12)
    return jnp.asarray(8 * 3600.0)


def _outputs(model, current, p):
    def fn(t, state, args):
        y, q = state
        I = current(t, y)
        return jnp.stack([model.voltage(y, I, p), I, q, model.temperature(y)])
    return fn


def _run_step(model, step, p, t0, y0, q0, stopped, ts, opts: Options):
    """Integrate one step. Returns (t_end, y_end, q_end, outputs at ts (n, 4), outputs at t_end,
    step end code, experiment status code)."""
    current = _control(model, step, p, t0)
    out_fn = _outputs(model, current, p)
    sign = jnp.sign(step.value) if step.mode != "drive" else jnp.asarray(1.0)

    def vfun(t, state):
        y, _ = state
        return model.voltage(y, current(t, y), p)

    V0 = vfun(t0, (y0, q0))
    conds, kinds = [], []
    already = jnp.asarray(False)
    if step.has_until_voltage:
        # discharge ends on a down-crossing, charge on an up-crossing
        conds.append(lambda t, y, args, **kw: sign * (vfun(t, y) - step.until_voltage))
        kinds.append(("step", StepEnd.VOLTAGE))
        already = already | (sign * (V0 - step.until_voltage) <= 0)
    if step.has_until_current:
        I_lim = step.until_current * p["Nominal cell capacity [A.h]"] if step.until_c_rate else step.until_current
        conds.append(lambda t, y, args, **kw: jnp.abs(current(t, y[0])) - I_lim)
        kinds.append(("step", StepEnd.CURRENT))
        already = already | (jnp.abs(current(t0, y0)) <= I_lim)
    start_stop = jnp.asarray(Status.COMPLETED)
    if step.mode != "voltage":
        V_min, V_max = p["Lower voltage cut-off [V]"], p["Upper voltage cut-off [V]"]
        conds += [lambda t, y, args, **kw: vfun(t, y) - V_min, lambda t, y, args, **kw: V_max - vfun(t, y)]
        kinds += [("stop", Status.LOWER_CUTOFF), ("stop", Status.UPPER_CUTOFF)]
        start_stop = jnp.where(V0 < V_min - 1e-6, Status.LOWER_CUTOFF, start_stop)
        start_stop = jnp.where(V0 > V_max + 1e-6, Status.UPPER_CUTOFF, start_stop)

    def sto_margin(t, y, args, **kw):
        sn, sp = model.surface_stoichiometries(y[0], p)
        return jnp.min(jnp.stack([sn, 1 - sn, sp, 1 - sp])) - STO_LIMIT

    conds.append(sto_margin)
    kinds.append(("stop", Status.STOICHIOMETRY_LIMIT))
    start_stop = jnp.where(already, Status.COMPLETED, start_stop)  # the step's own end wins

    skip = stopped | already | (start_stop != Status.COMPLETED)
    t1 = t0 + jnp.where(skip, 0.0, _max_duration(step, p))

    def f(t, state, args):
        y, _ = state
        I = current(t, y)
        return model.rhs(t, y, I, p), I / 3600.0

    controller = diffrax.PIDController(rtol=opts.rtol, atol=opts.atol, pcoeff=0.3, icoeff=0.4)
    if step.mode == "drive":
        controller = diffrax.ClipStepSizeController(controller, jump_ts=t0 + step.drive_time)
    # Every condition is oriented to cross from positive to negative, so their minimum crosses
    # zero at the first of them: one continuous function, located by bisection.
    def first_crossing(t, y, args, **kw):
        return jnp.min(jnp.stack([jnp.asarray(c(t, y, args), jnp.float64) for c in conds]))

    event = diffrax.Event(first_crossing, root_finder=optx.Bisection(rtol=1e-12, atol=1e-7), direction=False)
    saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=jnp.clip(ts, t0, t1), fn=out_fn), diffrax.SubSaveAt(t1=True)])
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(f), opts.solver, t0, t1, None, (y0, q0), saveat=saveat,
        stepsize_controller=controller, event=event, max_steps=opts.max_steps, throw=False,
        adjoint=diffrax.RecursiveCheckpointAdjoint(),
    )
    outs, (y_end, q_end) = sol.ys[0], sol.ys[1]
    y_end, q_end, t_end = y_end[-1], q_end[-1], sol.ts[1][-1]
    final = out_fn(t_end, (y_end, q_end), None)

    end = jnp.where(step.has_duration, StepEnd.DURATION, StepEnd.MAX_DURATION)
    status = jnp.asarray(Status.COMPLETED)
    # which condition fired: the one at zero at the end (the step's own wins a tie with a cut-off)
    values = jnp.stack([c(t_end, (y_end, q_end), None) for c in conds])
    bonus = jnp.asarray([1e-6 if kind == "step" else 0.0 for kind, _ in kinds])
    fired = jnp.argmin(values - bonus)
    codes = jnp.asarray([int(code) for _, code in kinds])
    is_step = jnp.asarray([kind == "step" for kind, _ in kinds])
    event = sol.result == diffrax.RESULTS.event_occurred
    end = jnp.where(event, jnp.where(is_step[fired], codes[fired], StepEnd.STOPPED), end)
    status = jnp.where(event & ~is_step[fired], codes[fired], status)
    failed = (sol.result != diffrax.RESULTS.successful) & (sol.result != diffrax.RESULTS.event_occurred)
    fail_code = jnp.where(sol.result == diffrax.RESULTS.max_steps_reached, Status.MAX_STEPS, Status.SOLVER_FAILURE)
    status = jnp.where(failed, fail_code, status)
    end = jnp.where(failed, StepEnd.STOPPED, end)
    status = jnp.where(start_stop != Status.COMPLETED, start_stop, status)
    end = jnp.where(start_stop != Status.COMPLETED, StepEnd.STOPPED, end)
    end = jnp.where(already, StepEnd.ALREADY_MET, end)
    status = jnp.where(stopped, Status.COMPLETED, status)
    end = jnp.where(stopped, StepEnd.NOT_RUN, end)
    return t_end, y_end, q_end, outs, final, end, status


def _simulate(model, params, experiment, t_eval, opts):
    y = model.initial_state(params)
    t, q = jnp.asarray(0.0), jnp.asarray(0.0)
    stopped = jnp.asarray(False)
    status = jnp.asarray(Status.COMPLETED)
    times, outputs, ends, end_times = [], [], [], []
    if t_eval is not None:
        out = jnp.full((t_eval.shape[0], 4), jnp.nan)
    for step in experiment.steps:
        if t_eval is None:
            ts = t + jnp.linspace(0.0, 1.0, opts.n_out_per_step) * _max_duration(step, params)
        else:
            ts = t_eval
        t_new, y_new, q_new, outs, final, end, st = _run_step(model, step, params, t, y, q, stopped, ts, opts)
        if t_eval is None:
            # times after the step's end repeat its final point: fixed shapes, exact end point
            valid = ts < t_new
            times.append(jnp.where(valid, ts, t_new))
            outputs.append(jnp.where(valid[:, None], outs, final))
        else:
            valid = (t_eval >= t) & (t_eval <= t_new) & ~stopped
            out = jnp.where(valid[:, None], outs, out)
        ends.append(end)
        end_times.append(t_new)
        status = jnp.where(stopped, status, st)
        stopped = stopped | (st != Status.COMPLETED)
        t, y, q = t_new, y_new, q_new
    if t_eval is None:
        t_out, out = jnp.concatenate(times), jnp.concatenate(outputs)
    else:
        t_out = t_eval
    return Solution(
        t=t_out, voltage=out[:, 0], current=out[:, 1], discharge_capacity=out[:, 2], temperature=out[:, 3],
        status=status, step_end=jnp.stack(ends), step_end_time=jnp.stack(end_times), final_state=y,
    )


_simulate_jit = eqx.filter_jit(_simulate)


def simulate(
    model: AbstractCellModel,
    params: ParameterSet,
    experiment: Experiment | str | list,
    *,
    t_eval=None,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    max_steps: int = 20_000,
    solver: diffrax.AbstractSolver | None = None,
) -> Solution:
    """Simulate `model` with parameters `params` under `experiment`.

    Returns a `Solution` with time [s], voltage [V], current [A] (positive on discharge),
    discharge capacity [A.h] and temperature [K], and a `status` saying whether every step
    finished or what stopped the experiment. Steps end exactly at their events (bisection on the
    solver's dense output), not at the next sample.

    With `t_eval=None` each step is sampled at 400 evenly spaced times over its maximum
    duration; times after the step ended repeat the step's final point, so arrays have a fixed
    length (needed under `jit`/`vmap`) and integrals such as energy are unaffected. With
    `t_eval` (global times [s], increasing) outputs are at those times, and NaN at times the
    experiment never reached (it stopped first; see `status`).

    Works under `jax.jit`, `jax.vmap` over a batched `ParameterSet` (one status per cell) and
    `jax.grad`. The solve is compiled once per (model, experiment structure, options); new
    parameter values reuse it.

    Example:
        >>> p = jaxcell.load_parameters("Chen2020")
        >>> sol = jaxcell.simulate(jaxcell.SPMe(), p, "Discharge at 1C until 2.5 V")
        >>> sol.discharge_capacity[-1], sol.message
    """
    if not isinstance(model, AbstractCellModel):
        raise TypeError(f"model must be a jaxcell model (SPM(), SPMe(), ...), got {type(model).__name__}.")
    if not isinstance(params, ParameterSet):
        raise TypeError(f"params must be a ParameterSet (jaxcell.load_parameters(...)), got {type(params).__name__}.")
    if not isinstance(experiment, Experiment):
        experiment = Experiment(experiment if isinstance(experiment, (list, tuple)) else [experiment])
    if t_eval is not None:
        t_eval = jnp.asarray(t_eval, dtype=jnp.float64)
        if t_eval.ndim != 1 or t_eval.size == 0:
            raise ValueError(f"t_eval must be a non-empty 1D array of times [s], got shape {t_eval.shape}.")
        if not isinstance(t_eval, jax.core.Tracer) and (np.any(np.diff(np.asarray(t_eval)) < 0) or np.asarray(t_eval)[0] < 0):
            raise ValueError("t_eval must be non-negative and increasing.")
    opts = Options(rtol=rtol, atol=atol, max_steps=max_steps, solver=solver if solver is not None else diffrax.Kvaerno5())
    return _simulate_jit(model, params, experiment, t_eval, opts)


