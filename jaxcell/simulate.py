"""`simulate`: run a model under an experiment with diffrax, events located by bisection."""

from __future__ import annotations

import warnings

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from ._forward import in_forward_mode, solver_for_adjoint
from ._roots import frozen, implicit_root, nonzero
from ._modal import ModalSolve, Segments, modal_energy, modal_solve
from ._modal import why_not as modal_why_not
from ._scan import ScanAdjoint, scan_solve
from .experiment import MODES, Experiment
from .models._base import AbstractCellModel
from .parameters import ParameterSet
from .parameters._parameter_set import _value_rule
from .solution import Solution, Status, StepEnd, solved
from .soc import with_initial_soc
from .solvers import N_TOTALS, BandedSolve, CellField, DenseSolve, Rodas4, StructuredSolve, model_voltage

# Surface stoichiometry at which an experiment stops: beyond it OCP fits and the exchange
# current's square roots are no longer defined.
STO_LIMIT = 1e-6
# Newton iterations for the current of a voltage, power or resistance step (scalar, quadratically convergent).
NEWTON_ITERS = 12
# the relative residual below which the current of a voltage, power or resistance step counts as found (Newton
# converges quadratically: a found root's last residual is far below it)
NEWTON_TOLERANCE = 1e-6
N_OUT_PER_STEP = 400


def default_solver(model=None) -> diffrax.AbstractSolver:
    """The default solver of `model`: `Rodas4` (jaxcell/solvers.py), with the structured linear
    solve for models that describe their Jacobian `structure` (the DFN, docs/dfn.md), the banded
    one for models that declare their `jacobian_pattern` (SPM, SPMe) and a dense one otherwise.

    A Rosenbrock method has no Newton iteration to fail on the stiff electrolyte and
    double-layer modes, where an ESDIRK method's chord iteration (diffrax's Kvaerno5) rejects a
    large share of its steps; with its own dense output it gives the same voltage in fewer,
    cheaper steps (docs/dfn.md has the comparison)."""
    if getattr(model, "structure", None) is not None:
        return Rodas4(StructuredSolve())
    if getattr(model, "jacobian_pattern", None) is not None:
        return Rodas4(BandedSolve(model.jacobian_pattern))
    return Rodas4(DenseSolve())


# Checkpoints of reverse mode per step of an experiment: memory is bounded by this many states
# whatever the number of solver steps (recomputation grows only logarithmically). diffrax's
# default (one checkpoint per allowed step, max_steps of them) makes even the forward solve
# allocate a (max_steps, n_states) buffer, which stalls the DFN at fine meshes.
CHECKPOINTS = 128
# solver steps allowed per step of an experiment (`simulate`'s default)
MAX_STEPS = 20_000


def default_adjoint() -> diffrax.AbstractAdjoint:
    return diffrax.RecursiveCheckpointAdjoint(checkpoints=CHECKPOINTS)


class Options(eqx.Module):
    """Solver settings for `simulate` (static: changing them recompiles)."""

    rtol: float = eqx.field(static=True, default=1e-6)
    atol: float = eqx.field(static=True, default=1e-8)
    max_steps: int = eqx.field(static=True, default=MAX_STEPS)
    solver: diffrax.AbstractSolver = eqx.field(static=True, default_factory=lambda: default_solver())
    n_out_per_step: int = eqx.field(static=True, default=N_OUT_PER_STEP)
    adjoint: diffrax.AbstractAdjoint = eqx.field(static=True, default_factory=lambda: default_adjoint())
    outputs_in_loop: bool = eqx.field(static=True, default=False)  # see `simulate`, `_outputs_at`


def _solve_current(g, I0, scale):
    """Root of the scalar function g(I) by Newton's method from I0 (fixed iteration count, so it
    is jit/vmap friendly), and whether it was found: g's last Newton residual at most
    NEWTON_TOLERANCE x `scale` (the target's size). Where not (a power above the cell's maximum
    has no root), the iterate is finite but meaningless: a 3000 W discharge ran as a -210 A
    charge. It stays finite so that no NaN enters a gradient (0 x NaN where it is discarded);
    `_run_step` turns the flag into a status.

    Differentiated by the implicit function theorem (`_roots.implicit_root`): dI = -dg / g'(I) at the
    root, g's derivative with respect to whatever it closes over (state, parameters), not
    through the iterations, and to all orders, so the second-order products of Rodas4's reverse
    rule see it too. Reverse mode through the iterations made a held voltage's gradient program
    about three times the size of a constant current's (docs/dfn.md)."""
    g_conv, consts, fixed = frozen(g, I0)

    def body(_, carry):
        I, _ = carry
        r, dr = jax.jvp(lambda i: g_conv(i, *fixed), (I,), (jnp.ones_like(I),))
        return I - r / nonzero(dr), r

    I0 = jax.lax.stop_gradient(I0)
    I, r = jax.lax.fori_loop(0, NEWTON_ITERS, body, (I0, jnp.full_like(I0, jnp.inf)))
    return implicit_root(g_conv, I, *consts), jnp.abs(r) <= NEWTON_TOLERANCE * jnp.abs(scale)


def _amps(value, is_c_rate, p):
    """A current [A] from a value that may be a C-rate (multiple of the nominal capacity). A NaN
    value (a step without a current limit) stays NaN, but passes no NaN to the derivative with
    respect to the capacity: NaN x capacity in the branch `where` discards would (0 x NaN)."""
    finite = jnp.isfinite(value)
    safe = jnp.where(finite, value, 0.0)
    return jnp.where(finite, jnp.where(is_c_rate, safe * p["Nominal cell capacity [A.h]"], safe), value)


def _control(model, row, p, t0, modes):
    """current(t, y) [A] realising the step's control; `row` is one row of the StepTable and
    `modes` (static) the control modes the experiment uses. Only those modes are built: a
    constant-current experiment has no `lax.switch` and no Newton solve in its graph, which
    shortens the compile (most of all for gradients) and lets the solver know that the current
    does not depend on the state. The mode is not batched under `vmap` (cells share the
    protocol), so `lax.switch` runs only the branch of the step at hand.

    Returns (current, realised, state_dependent, time_dependent): realised(t, y) says whether
    the current realises the control (False where Newton found no current for a voltage,
    power or resistance step, `_solve_current`); the flags, whether the current may depend on the state
    (voltage, power or resistance control) and on time (drive cycles)."""
    value = _amps(row.value, row.c_rate, p)

    found = jnp.asarray(True)

    def constant(t, y):
        return value, found

    def drive(t, y):
        # against the same sums t0 + drive_time that the solver steps to: at a breakpoint the
        # current's slope is the next segment's, the one a step starting there needs
        return jnp.interp(t, t0 + row.drive_time, row.drive_current), found

    def voltage(t, y):
        return _solve_current(lambda I: model_voltage(model, p, y, I) - value, jnp.zeros_like(value), value)

    def power(t, y):
        # a first guess from the voltage at zero current, which (unlike the open-circuit
        # voltage) depends only on the part of the state the outputs are saved from
        I0 = value / model_voltage(model, p, y, jnp.zeros_like(value))
        return _solve_current(lambda I: I * model_voltage(model, p, y, I) - value, I0, value)

    def resistance(t, y):
        # the load's current: I R = V(I), from the current the voltage at zero current would drive.
        # A root at a voltage I R <= 0 is none: a charge through less than the cell's own
        # resistance has no current (its only roots lie where the model's voltage is negative)
        V0 = model_voltage(model, p, y, jnp.zeros_like(value))
        I, ok = _solve_current(lambda I: I * value - model_voltage(model, p, y, I), V0 / value, V0)
        return I, ok & (I * value > 0)

    branches = [(constant, drive, voltage, power, resistance)[m] for m in modes]
    state_dependent = any(m in (MODES["voltage"], MODES["power"], MODES["resistance"]) for m in modes)
    time_dependent = MODES["drive"] in modes
    if len(branches) == 1:
        both = branches[0]
    else:
        index = sum((row.mode > m).astype(jnp.int32) for m in modes[:-1])  # position of the mode in `modes`
        both = lambda t, y: jax.lax.switch(index, branches, t, y)  # noqa: E731
    return (lambda t, y: both(t, y)[0]), (lambda t, y: both(t, y)[1]), state_dependent, time_dependent


def _segments(row, p, span, modes):
    """The current of a step of duration `span` (a row of the StepTable; current, C-rate, rest
    or drive-cycle control) as `_modal.Segments`: one constant segment, or, where the
    experiment has drive cycles (`modes`, static), the cycle's intervals, cut at `span`, with
    the slopes of the cycle's linear interpolation (`_control`'s)."""
    I = _amps(row.value, row.c_rate, p)
    if MODES["drive"] not in modes:
        return Segments(jnp.zeros(1), jnp.reshape(span, (1,)), jnp.reshape(I, (1,)))
    drive = row.mode == MODES["drive"]
    n = row.drive_time.shape[0] - 1
    ends = jnp.where(drive, row.drive_time, jnp.where(jnp.arange(n + 1) == 0, 0.0, jnp.inf))
    ends = jnp.minimum(ends, span)
    slopes = jnp.diff(row.drive_current) / jnp.diff(row.drive_time)  # the times increase strictly
    return Segments(ends[:-1], jnp.diff(ends), jnp.where(drive, row.drive_current[:-1], I),
                    jnp.where(drive, slopes, 0.0))


def _max_duration(row, p):
    """Duration bound [s] of a step: its 'for ...' duration, else twice the time to pass the
    nominal capacity at its current or power (8 hours for a voltage hold), or, through a
    resistance, at the current it draws at the lower cut-off voltage. Never negative: a traced
    capacity or cut-off out of its range (the cell gets BAD_PARAMETERS) made t1 < t0, which
    diffrax raises on, and the whole batch was lost."""
    Q = p["Nominal cell capacity [A.h]"] * 3600.0
    I = jnp.abs(_amps(row.value, row.c_rate, p))
    by_mode = jnp.stack([
        2.0 * Q / jnp.maximum(I, 1e-12),
        row.drive_time[-1],
        jnp.asarray(8 * 3600.0),
        2.0 * Q * p["Upper voltage cut-off [V]"] / jnp.maximum(I, 1e-12),
        2.0 * Q / jnp.maximum(p["Lower voltage cut-off [V]"] / jnp.abs(row.value), 1e-12),
    ])[row.mode]
    return jnp.where(jnp.isfinite(row.duration), row.duration, jnp.maximum(by_mode, 0.0))


def _outputs(model, current, p):
    """The outputs at (t, (y, q)): voltage, current, net discharged charge (from the running
    totals q, `solvers.N_TOTALS`) and temperature."""
    def fn(t, state, args):
        y, q = state
        I = current(t, y)
        return jnp.stack([model_voltage(model, p, y, I), I, q[0] - q[1], model.temperature(y)])
    return fn


def _outputs_at(out_fn, ts, y_parts, qs, t_fill, y_fill, start):
    """`out_fn` at saved times `ts`, evaluated at all of them at once (vectorised): each saved
    part of the state, y[start:], is completed with y_fill[:start], on which the outputs do not
    depend. Times the solve did not reach (inf) are evaluated at (t_fill, y_fill, q = 0)
    instead, so no inf or NaN enters a gradient; the caller discards them.

    Why not in diffrax's save loop, one time after another: the voltage's derivative at each
    time is then its own small reverse-mode pass inside the loop, which makes a single cell's
    gradient slower; under `vmap` the loop is the faster one, so `simulate_batch` keeps it
    (docs/dfn.md)."""

    def one(t, y_part, q):
        ok = jnp.isfinite(t)
        y = jnp.concatenate([y_fill[:start], jnp.where(ok, y_part, y_fill[start:])])
        return out_fn(jnp.where(ok, t, t_fill), (y, jnp.where(ok, q, 0.0)), None)

    return jax.vmap(one)(ts, y_parts, qs)


BIG = 1e6  # value of a disabled event condition (never crosses zero)
# A step's own limit (V, or A for a hold's current) counts as met at the step's start within
# this: the event that ended the step before on the same limit leaves the state on either side
# of it by about 1e-12, which otherwise ran a step of zero length as "ended on its limit"
STEP_END_TOL = 1e-6
# The first trial step of every experiment step [s]. diffrax's own heuristic (a trial Euler step,
# Hairer's rule for explicit methods) gives about 1 ms for a 1C DFN, shorter than Rodas4 needs;
# a step too long at high currents is rejected and shortened (docs/dfn.md).
FIRST_STEP = 0.01


@jax.custom_jvp
def _finite_tangent(x):
    """The identity, whose derivative passes only finite tangents (others become 0), for forward
    mode (diffrax's ForwardMode): it reads the tangents' values, so reverse mode cannot transpose
    it. An event's time is differentiated through a linear solve (optimistix's implicit rule)
    that raises on non-finite input: in forward mode a tangent that overflowed (a parameter
    pushed to an absurd value, as a sampler's first trial steps do) stopped the whole program
    there, where the outputs' own derivatives are merely not finite. It guards the event
    condition's value, so a tangent that came through the state or straight from the parameters
    is caught alike. (Reverse mode never forms that tangent where the outputs do not depend on
    the event's time.)"""
    return x


@_finite_tangent.defjvp
def _finite_tangent_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return x, jnp.where(jnp.isfinite(dx), dx, jnp.zeros_like(dx))


def _run_step(model, row, p, t0, y0, q0, stopped, ts, opts: Options, modes: tuple):
    """Integrate one step. Returns (t_end, y_end, q_end, outputs at ts (n, 4), outputs at t_end,
    step end code, experiment status code)."""
    current, realised, state_dependent, time_dependent = _control(model, row, p, t0, modes)
    time_dependent = time_dependent or model.rhs_reads_time
    out_fn = _outputs(model, current, p)
    is_hold = row.mode == 2
    # discharge (value > 0) ends on a voltage down-crossing, charge on an up-crossing; "Charge at
    # 0 A" is -0.0, a charge (its limit is above the voltage, and it rests until then)
    sign = jnp.where(jnp.signbit(row.value), -1.0, 1.0)
    has_v, has_i = ~jnp.isnan(row.until_voltage), ~jnp.isnan(row.until_current)
    I_lim = _amps(row.until_current, row.until_c_rate, p)
    V_min, V_max = p["Lower voltage cut-off [V]"], p["Upper voltage cut-off [V]"]
    depletion = model.electrolyte_margin
    # a current limit is met where the current, in the direction it flows at the step's start,
    # falls to the limit: |I| - I_lim dips below zero only briefly where a hold's current changes
    # sign, and the solver stepped over the dip (a hold "until 1 mA" ran on for 6000 s more)
    i_sign = jnp.where(current(t0, y0) < 0, -1.0, 1.0)

    def conditions(t, state, current=current):
        """Every end condition, oriented to cross from positive to negative; disabled ones BIG.
        Order: step voltage, step current, lower cut-off, upper cut-off, stoichiometry,
        electrolyte (models whose electrolyte must not run out)."""
        y, _ = state
        I = current(t, y)
        V = model_voltage(model, p, y, I)
        sn, sp = model.surface_stoichiometries(y, p)
        return jnp.stack([
            jnp.where(has_v, sign * (V - row.until_voltage), BIG),
            jnp.where(has_i, i_sign * I - I_lim, BIG),
            jnp.where(is_hold, BIG, V - V_min),
            jnp.where(is_hold, BIG, V_max - V),
            jnp.min(jnp.stack([sn, 1 - sn, sp, 1 - sp])) - STO_LIMIT,
            jnp.asarray(BIG if depletion is None else depletion(y, p), V.dtype),
        ])

    is_step_cond = jnp.array([True, True, False, False, False, False])
    step_codes = jnp.array([StepEnd.VOLTAGE, StepEnd.CURRENT, 0, 0, 0, 0])
    stop_codes = jnp.array([0, 0, Status.LOWER_CUTOFF, Status.UPPER_CUTOFF, Status.STOICHIOMETRY_LIMIT,
                            Status.ELECTROLYTE_DEPLETED])

    # The voltage cut-offs get a slack of 1 uV: the previous step may have ended on the cut-off
    # itself, and the event must still be able to fire from there. It also makes the step's own
    # limit win a tie with a cut-off at the same voltage. (The stoichiometry limit has its own
    # margin, STO_LIMIT.)
    slack = jnp.array([0.0, 0.0, 1e-6, 1e-6, 0.0, 0.0])

    def first_crossing(t, state, current=current):
        return conditions(t, state, current) + slack

    c0 = first_crossing(t0, (y0, q0))
    bad_start = ~jnp.all(jnp.isfinite(c0))
    # the step's own end holds at its start (to within STEP_END_TOL, so that a step after one
    # that ended on the same limit is skipped whichever side of it the event's root landed): skip it
    already = jnp.any(is_step_cond & (c0 <= STEP_END_TOL))
    # a stop condition already passed at the start. A voltage cut-off passed under the step's own
    # current yields to a step limit that holds too (the step is skipped, as PyBaMM does: a
    # charge to 4.2 V of a full cell); a state outside the stoichiometry range or with its
    # electrolyte run out cannot run any step, whatever its limit
    state_only = jnp.array([False, False, False, False, True, True])
    start_violation = ~is_step_cond & (c0 < 0) & (state_only | ~already)
    start_stop = jnp.where(jnp.any(start_violation), stop_codes[jnp.argmax(start_violation)], Status.COMPLETED)

    start_stop = jnp.where(bad_start, Status.SOLVER_FAILURE, start_stop)
    # no current realises the step's power, voltage or resistance (`_solve_current`)
    start_stop = jnp.where(~realised(t0, y0) & ~stopped, Status.INFEASIBLE_CONTROL, start_stop)
    skip = stopped | already | (start_stop != Status.COMPLETED)
    t1 = t0 + jnp.where(skip, 0.0, _max_duration(row, p))


    def controller_from(t_start):
        controller = diffrax.PIDController(rtol=opts.rtol, atol=opts.atol, pcoeff=0.3, icoeff=0.4)
        if MODES["drive"] not in modes:
            return controller
        # Drive cycles: steps land on the cycle's breakpoints. The current is interpolated
        # linearly, so the field is continuous there: `step_ts`, not `jump_ts`. Jumps
        # (a step to just before the breakpoint, the next from just after it) made reverse mode
        # further off: the checkpointed adjoint's recomputed steps did not retrace the forward
        # solve's around them. Fewer such errors remain, not none (docs/inference.md, "Several
        # records of one cell").
        breakpoints = jnp.where(row.mode == MODES["drive"], t_start + row.drive_time, 1e15)
        return diffrax.ClipStepSizeController(controller, step_ts=breakpoints)

    start = model.output_start
    if isinstance(opts.solver, ModalSolve):
        # exact in time (`_modal`): no solver loop, and no adjoint to choose
        (saved_ts, outs), t_end, (y_end, q_end), result = modal_solve(
            model, p, _segments(row, p, t1 - t0, modes), t0, t1, (y0, q0), jnp.clip(ts, t0, t1), start,
            lambda t, state: jnp.min(first_crossing(t, state)),
        )
        outs = _outputs_at(out_fn, saved_ts, *outs, t0, y0, start)
    elif isinstance(opts.adjoint, ScanAdjoint):
        # The step solved in time that carries no derivative (its start held), the start's
        # derivative added back to its times (`scan_solve`'s shift): a later start moves the whole
        # solution, and the step sizes' derivatives stay exact zeros. With the start's derivative
        # inside, a field that reads time (a drive cycle) got the step sizes' derivatives as large
        # opposite cotangents whose sum was rounding (docs/dfn.md, "Gradients").
        t0_held = jax.lax.stop_gradient(t0)
        current_held = _control(model, row, p, t0_held, modes)[0]
        (saved_ts, outs), t_end, (y_end, q_end), result = scan_solve(
            diffrax.ODETerm(CellField(model, p, current_held, state_dependent, time_dependent)), opts.solver,
            controller_from(t0_held), t0_held, jax.lax.stop_gradient(t1), FIRST_STEP, (y0, q0),
            jnp.clip(ts, t0, t1), start, lambda t, y: jnp.min(first_crossing(t, y, current_held)),
            min(opts.max_steps, opts.adjoint.max_steps), shift=t0 - t0_held,
        )
        # a step that ran to its end ends there with that end's own derivative (a duration's is
        # the start's; a maximum duration's also the parameters', which the end state lacks)
        t_end = jnp.where(result == diffrax.RESULTS.successful, t1, t_end)
        outs = _outputs_at(out_fn, saved_ts, *outs, t0, y0, start)
    else:
        # the minimum of the conditions crosses zero at the first of them: one continuous function,
        # located by bisection on the solver's dense output
        forward_mode = isinstance(opts.adjoint, diffrax.ForwardMode)  # `_finite_tangent` is for it alone

        def event_fn(t, y, args, **kwargs):
            g = jnp.min(first_crossing(t, y))
            return _finite_tangent(g) if forward_mode else g

        event = diffrax.Event(event_fn, root_finder=optx.Bisection(rtol=1e-14, atol=1e-9, flip=True), direction=False)
        save_fn = out_fn if opts.outputs_in_loop else (lambda t, state, args: (state[0][start:], state[1]))
        saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=jnp.clip(ts, t0, t1), fn=save_fn),
                                      diffrax.SubSaveAt(t1=True)])
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(CellField(model, p, current, state_dependent, time_dependent)), opts.solver, t0, t1,
            FIRST_STEP, (y0, q0), saveat=saveat,
            stepsize_controller=controller_from(t0), event=event, max_steps=opts.max_steps, throw=False,
            adjoint=opts.adjoint,
        )
        outs, result = sol.ys[0], sol.result
        y_end, q_end, t_end = sol.ys[1][0][-1], sol.ys[1][1][-1], sol.ts[1][-1]
        if not opts.outputs_in_loop:
            outs = _outputs_at(out_fn, sol.ts[0], *outs, t0, y0, start)
    final = out_fn(t_end, (y_end, q_end), None)

    # which condition fired: the one at zero at the end
    fired = jnp.argmin(first_crossing(t_end, (y_end, q_end)))
    event_fired = result == diffrax.RESULTS.event_occurred
    end = jnp.where(jnp.isfinite(row.duration), StepEnd.DURATION, StepEnd.MAX_DURATION)
    end = jnp.where(event_fired, jnp.where(is_step_cond[fired], step_codes[fired], StepEnd.STOPPED), end)
    status = jnp.where(event_fired & ~is_step_cond[fired], stop_codes[fired], Status.COMPLETED)
    failed = (~event_fired & (result != diffrax.RESULTS.successful)) | ~jnp.all(jnp.isfinite(final))
    fail_code = jnp.where(result == diffrax.RESULTS.max_steps_reached, Status.MAX_STEPS, Status.SOLVER_FAILURE)
    status = jnp.where(failed, fail_code, status)
    end = jnp.where(failed, StepEnd.STOPPED, end)
    # a power, voltage or resistance that no current realises any more at the step's end: the step ran on
    # Newton's meaningless iterate from some point on
    lost = ~failed & ~realised(t_end, y_end)
    status = jnp.where(lost, Status.INFEASIBLE_CONTROL, status)
    end = jnp.where(lost, StepEnd.STOPPED, end)
    status = jnp.where(start_stop != Status.COMPLETED, start_stop, status)
    end = jnp.where(start_stop != Status.COMPLETED, StepEnd.STOPPED, end)
    end = jnp.where(already & (start_stop == Status.COMPLETED), StepEnd.ALREADY_MET, end)
    status = jnp.where(stopped, Status.COMPLETED, status)
    end = jnp.where(stopped, StepEnd.NOT_RUN, end)
    return t_end, y_end, q_end, outs, final, end, status


def _simulate(model, params, table, modes, t_eval, opts):
    n_eval = opts.n_out_per_step if t_eval is None else t_eval.shape[0]
    modal = isinstance(opts.solver, ModalSolve)
    # `_prepare` refuses a bad concrete t_eval; a traced one (under jit) gets a status and NaN
    # outputs, cell by cell, instead of a run-time error: no host callback in the compiled solve
    # (which would also keep it out of JAX's persistent compilation cache)
    bad_t_eval = False if t_eval is None else (
        ~jnp.all(jnp.isfinite(t_eval)) | jnp.any(jnp.diff(t_eval) < 0) | (t_eval[0] < 0)
    )

    def one_step(carry, row_k):
        row, k = row_k
        t, y, q, stopped, status, out, step_of, last = carry
        if t_eval is None:
            ts = t + jnp.linspace(0.0, 1.0, n_eval) * _max_duration(row, params)
        else:
            ts = t_eval
        t_new, y_new, q_new, outs, final, end, st = _run_step(
            model, row, params, t, y, q, stopped, ts, opts, modes
        )
        ran = t_new > t
        final = jnp.where(ran, final, last)  # a step that did not run shows the last output
        if t_eval is None:
            # times after the step's end repeat its final point: fixed shapes, exact end point
            valid = ts < t_new
            per_step = (jnp.where(valid, ts, t_new), jnp.where(valid[:, None], outs, final),
                        jnp.full(n_eval, jnp.where(ran, k, -1), jnp.int32))
        else:
            # a step that did not run (skipped, or stopped at its start) writes the last output
            # at its start time, not its own: its control never acted (a skipped 2C step showed
            # 10 A and the voltage under it at the experiment's end)
            valid = (t_eval >= t) & (t_eval <= t_new) & ~stopped
            out = jnp.where(valid[:, None], jnp.where(ran, outs, final), out)
            step_of = jnp.where(valid & ran, k, step_of)  # a time on a step change is the new step's
            per_step = ()
        status = jnp.where(stopped, status, st)
        stopped = stopped | (st != Status.COMPLETED)
        starts = (t, y) if modal else ()  # each step's start, for `modal_energy`
        return (t_new, y_new, q_new, stopped, status, out, step_of, final), (per_step, end, t_new, q_new - q, starts)

    y0 = model.initial_state(params)
    at_rest = jnp.stack([model.voltage(y0, 0.0, params), 0.0, 0.0, model.temperature(y0)])
    init = (
        jnp.asarray(0.0), y0, jnp.zeros(N_TOTALS), jnp.asarray(False),
        jnp.asarray(Status.COMPLETED), jnp.full((n_eval, 4), jnp.nan), jnp.full(n_eval, -1, jnp.int32), at_rest,
    )
    n_steps = table.mode.shape[0]
    (_, y, totals, _, status, out, step_of, _), (per_step, ends, end_times, step_totals, starts) = jax.lax.scan(
        one_step, init, (table, jnp.arange(n_steps, dtype=jnp.int32))
    )
    if modal:
        # the steps' energies, outside the loop: a program that reads none leaves them out
        energy = jax.vmap(lambda row, t0, y0, t1: modal_energy(model, params, _segments(row, params, t1 - t0, modes), t0,
                                                               t1, y0))(table, *starts, end_times)
        step_totals = step_totals.at[:, 2:].add(energy)
        totals = totals.at[2:].add(jnp.sum(energy, axis=0))
    status = _check_conservation(model, params, y0, y, totals, status)
    if t_eval is None:
        t_out, out, step_of = per_step[0].reshape(-1), per_step[1].reshape(-1, 4), per_step[2].reshape(-1)
    else:
        t_out = t_eval
    # values `update` could not check (traced: under vmap, jit or grad) are checked here
    bad_params = _out_of_range(params)
    status = jnp.where(bad_t_eval, Status.BAD_T_EVAL, status)
    status = jnp.where(bad_params, Status.BAD_PARAMETERS, status)
    out = jnp.where(bad_t_eval | bad_params, jnp.nan, out)
    step_of = jnp.where(bad_t_eval | bad_params, -1, step_of)
    totals = jnp.where(bad_params, jnp.nan, totals)
    step_totals = jnp.where(bad_params, jnp.nan, step_totals)
    return Solution(
        t=t_out, voltage=out[:, 0], current=out[:, 1], discharge_capacity=out[:, 2], temperature=out[:, 3],
        step=step_of, status=status, step_end=ends, step_end_time=end_times, final_state=y,
        discharged_capacity=totals[0], charged_capacity=totals[1],
        discharged_energy=totals[2], charged_energy=totals[3], step_totals=step_totals,
    )


def _out_of_range(p: ParameterSet):
    """Whether any number of the set is not finite or breaks its own range rule
    (`ParameterSet.update`'s), as a traced boolean: one cell's set. A negative diffusivity
    under `jax.vmap` ran to COMPLETED with more than the cell's capacity. (The volume fractions'
    sum is left to `update`: no model reads it, and a fit or a finite difference of one fraction
    of a set that fills its electrode, as Chen2020's positive one, would fail on it.)"""
    bad = jnp.asarray(False)
    for name, v in p.values.items():
        bad = bad | ~jnp.all(jnp.isfinite(v))
        rule = _value_rule(name)
        if rule is not None:
            bad = bad | ~jnp.all(rule[1](v))
    return bad


# Lithium the particles gain or lose must match the charge passed; a solve that breaks this by
# more than this share of (charge throughput + nominal capacity) gets Status.NOT_CONSERVED. A
# sound solve holds it to about 1e-9 (the DFN's double layers hold about 1e-5 of it).
CONSERVATION_TOLERANCE = 1e-3


def _check_conservation(model, params, y0, y, totals, status):
    """`status`, or NOT_CONSERVED where the particles' lithium does not follow the charge passed
    (seen at extreme parameters, e.g. particle diffusion times below a picosecond, where the
    linear solves lose all precision and an electrode stops taking in lithium)."""
    (n0, p0), (n1, p1) = model.particle_charge(y0, params), model.particle_charge(y, params)
    net = totals[0] - totals[1]
    scale = totals[0] + totals[1] + params["Nominal cell capacity [A.h]"]
    off = jnp.maximum(jnp.abs((n0 - n1) - net), jnp.abs((p1 - p0) - net))
    bad = ~(off <= CONSERVATION_TOLERANCE * scale) & solved(status)
    return jnp.where(bad, Status.NOT_CONSERVED, status)


_simulate_jit = eqx.filter_jit(_simulate)  # modes (a tuple of ints) is static


def _check_step_limits(experiment, v_lo, v_hi):
    """Refuse a voltage hold outside the set's voltage cut-offs (the current that holds it is
    far outside anything the cell was parametrised for: a 5 V hold on a 4.2 V set starts at
    thousands of amperes), and warn about a step limit outside them (the cut-off stops the
    experiment first). Traced cut-offs are not checked."""
    if isinstance(v_lo, jax.core.Tracer) or isinstance(v_hi, jax.core.Tracer):
        return
    lo, hi = float(np.min(np.asarray(v_lo))), float(np.max(np.asarray(v_hi)))
    table = experiment.table
    modes, values, until = (np.asarray(x) for x in (table.mode, table.value, table.until_voltage))
    for i, text in enumerate(experiment.descriptions):
        if modes[i] == MODES["voltage"] and not lo <= values[i] <= hi:
            raise ValueError(
                f"step {i + 1} ({text!r}) holds {values[i]:g} V, outside the parameter set's voltage cut-offs "
                f"[{lo:g}, {hi:g}] V ('Lower voltage cut-off [V]', 'Upper voltage cut-off [V]'): "
                "hold within them, or change the cut-offs."
            )
        if np.isfinite(until[i]) and not lo <= until[i] <= hi:
            warnings.warn(
                f"step {i + 1} ({text!r}) ends at {until[i]:g} V, outside the parameter set's voltage cut-offs "
                f"[{lo:g}, {hi:g}] V: it cannot end there (a cut-off stops the experiment first, or the step is "
                "skipped if its limit already holds at its start).",
                stacklevel=4,
            )


def _prepare(model, params, experiment, t_eval, rtol, atol, max_steps, solver, adjoint, outputs_in_loop=False,
             initial_soc=None):
    """Check and convert `simulate`'s inputs into the arguments of the compiled `_simulate`."""
    if not isinstance(model, AbstractCellModel):
        raise TypeError(f"model must be a jaxcell model (SPM(), SPMe(), ...), got {type(model).__name__}.")
    if not isinstance(params, ParameterSet):
        raise TypeError(f"params must be a ParameterSet (jaxcell.load_parameters(...)), got {type(params).__name__}.")
    if initial_soc is not None:
        params = with_initial_soc(params, initial_soc)
    if not isinstance(experiment, Experiment):
        experiment = Experiment(experiment if isinstance(experiment, (list, tuple)) else [experiment])
    if t_eval is not None:
        t_eval = jnp.asarray(t_eval, dtype=jnp.float64)
        if t_eval.ndim != 1 or t_eval.size == 0:
            raise ValueError(f"t_eval must be a non-empty 1D array of times [s], got shape {t_eval.shape}.")
        if not isinstance(t_eval, jax.core.Tracer):
            te = np.asarray(t_eval)
            if not np.all(np.isfinite(te)):
                i = int(np.flatnonzero(~np.isfinite(te))[0])
                raise ValueError(f"t_eval must be finite times [s], got {te[i]:g} at index {i}.")
            if np.any(np.diff(te) < 0) or te[0] < 0:
                i = int(np.flatnonzero(np.diff(te) < 0)[0]) + 1 if np.any(np.diff(te) < 0) else 0
                raise ValueError(f"t_eval must be non-negative and non-decreasing, got {te[i]:g} at index {i}.")
    v_lo, v_hi = params["Lower voltage cut-off [V]"], params["Upper voltage cut-off [V]"]
    if not isinstance(v_lo, jax.core.Tracer) and not isinstance(v_hi, jax.core.Tracer):
        lo, hi = np.broadcast_arrays(np.asarray(v_lo), np.asarray(v_hi))
        if np.any(lo >= hi):
            at = tuple(int(i) for i in np.argwhere(lo >= hi)[0])
            where = f" in cell {list(at)} ({int(np.sum(lo >= hi))} of {lo.size} cells)" if at else ""
            raise ValueError(
                f"'Lower voltage cut-off [V]' ({lo[at]:g}) must be below 'Upper voltage cut-off [V]' ({hi[at]:g}){where}."
            )
    _check_step_limits(experiment, v_lo, v_hi)
    if solver is None:
        # the exact solve where it applies (the isothermal SPM under current or a drive cycle), else Rodas4
        solver = ModalSolve() if modal_why_not(model, params, experiment.modes) is None else default_solver(model)
    elif isinstance(solver, ModalSolve) and (reason := modal_why_not(model, params, experiment.modes)):
        raise ValueError(f"ModalSolve does not apply here: {reason}. Leave solver=None to let simulate choose.")
    adjoint = adjoint if adjoint is not None else default_adjoint()
    if isinstance(adjoint, ScanAdjoint) and not isinstance(solver, (Rodas4, ModalSolve)):
        raise ValueError(f"ScanAdjoint steps with Rodas4 (the default solver), got solver {type(solver).__name__}.")
    solver = solver_for_adjoint(solver, adjoint)
    opts = Options(
        rtol=rtol, atol=atol, max_steps=max_steps, solver=solver, adjoint=adjoint, outputs_in_loop=outputs_in_loop,
    )
    # only the step table enters the compiled function (the step texts would make it recompile)
    return model, params, experiment.table, experiment.modes, t_eval, opts


def simulate(
    model: AbstractCellModel,
    params: ParameterSet,
    experiment: Experiment | str | list,
    *,
    t_eval=None,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    max_steps: int = MAX_STEPS,
    solver: diffrax.AbstractSolver | None = None,
    adjoint: diffrax.AbstractAdjoint | None = None,
    outputs_in_loop: bool = False,
    initial_soc=None,
) -> Solution:
    """Simulate `model` with parameters `params` under `experiment`.

    Returns a `Solution` with time [s], voltage [V], current [A] (positive on discharge), net
    discharged charge [A.h] and temperature [K] at the output times; the charge and energy
    delivered on discharge and taken in on charge over the whole experiment (`sol.capacity`,
    `sol.energy`, `sol.charged_capacity`, ...), integrated by the solver with the state, so
    exact whatever the output times; and a `status` saying whether every step finished or what
    stopped the experiment (`sol.delivered`: whether it ran as asked; a power, voltage or
    resistance that no current realises is `Status.INFEASIBLE_CONTROL`); each output's step
    (`sol.step`) and each step's own charge and energy (`sol.step_totals`, `sol.steps()`). Steps end exactly at their events
    (bisection on the solver's dense output), not at the next sample. Where the concrete
    outputs' current passes `EXTREME_C_RATE` (100C), a warning says the result is far outside
    what the set describes (not under `jit`/`vmap`, nor in `simulate_batch`).

    With `t_eval=None` each step is sampled at 400 evenly spaced times over its maximum
    duration; times after the step ended repeat the step's final point, so arrays have a fixed
    length (needed under `jit`/`vmap`). With
    `t_eval` (global times [s], non-decreasing) outputs are at those times, and NaN at times the
    experiment never reached (it stopped first; see `status`). A time exactly on a step change
    gives the new step's first point (the current already switched; PyBaMM's solution holds
    both). A `t_eval` that is not finite, non-negative and non-decreasing is refused with a
    ValueError; under `jit` or `vmap`, where its values are not known, that cell gets
    `Status.BAD_T_EVAL` and NaN outputs instead. In the same way a parameter outside its range
    (`ParameterSet.update`'s rules) or not finite is refused by `update` when concrete, and gives
    its cell `Status.BAD_PARAMETERS` with NaN outputs and totals when traced.

    By default the outputs are evaluated after each step's solve, at all output times at once,
    from the part of the state they depend on: fastest for one cell and its gradient.
    `outputs_in_loop=True` evaluates them inside the solver's loop, one output time after
    another, as `jaxcell.simulate_batch` does. That is faster under `jax.vmap` over many cells,
    and reverse mode through a long protocol with many output times then keeps 4 numbers per output time instead of
    the saved part of the state. For populations prefer `simulate_batch`.

    `initial_soc` starts the cell at a state of charge in [0, 1], or at the state whose
    open-circuit voltage is a rest voltage given as a string ("3.9 V"), as PyBaMM's
    `initial_soc` does (`jaxcell.with_initial_soc`); by default the set's initial
    concentrations are used.

    Works under `jax.jit`, `jax.vmap` over a batched `ParameterSet` (one status per cell) and
    `jax.grad` (reverse mode with checkpointing, diffrax's `RecursiveCheckpointAdjoint` with
    `CHECKPOINTS` = 128 saved states per step of the experiment: memory does not grow with the
    number of solver steps). `adjoint=jaxcell.ScanAdjoint(max_steps)` solves each step of the
    experiment as a `lax.scan` of at most `max_steps` solver attempts instead (the same steps and
    gradient, no recomputation on the way back, a shorter compile, drive cycles included;
    `jaxcell._scan`). For forward mode (`jax.jvp`, `jax.jacfwd`) pass
    ``adjoint=diffrax.ForwardMode()``; second derivatives are forward over forward with it,
    ``jax.jacfwd(jax.jacfwd(f))`` (`jax.hessian`, forward over reverse, fails in diffrax's
    reverse pass). Through a drive cycle solved by Rodas4, unless `adjoint` is given, every
    derivative (`jax.grad` included) is taken in forward mode for the values that carry a
    tangent: reverse mode's recomputed steps do not retrace steps clipped to the cycle's
    breakpoints, and its gradient was percents off. That costs about one solve's tangent per
    differentiated value, so differentiate with respect to a few parameters there, not the
    whole set or the cycle's currents. The solve is compiled once per (model, experiment
    structure, options); new parameter values reuse it.

    `solver=None` chooses: the isothermal SPM with constant particle diffusivities under current,
    C-rate, rest and drive-cycle steps is solved exactly in time (`jaxcell.ModalSolve`: no time steps, so
    `rtol`, `atol`, `max_steps` and `adjoint` do not apply, and every kind of derivative is
    JAX's own); everything else with Rodas4 (`default_solver`). Name a solver to have it.

    Example:
        >>> p = jaxcell.load_parameters("Chen2020")
        >>> sol = jaxcell.simulate(jaxcell.SPMe(), p, "Discharge at 1C until 2.5 V")
        >>> float(sol.capacity), float(sol.energy), sol.message
    """
    if isinstance(params, ParameterSet) and params.batch_shape and not any(
        isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(params)
    ):
        raise ValueError(
            f"simulate runs one cell, but params has batch shape {params.batch_shape}: use "
            "jax.vmap(lambda q: jaxcell.simulate(model, q, experiment))(params) or jaxcell.simulate_batch."
        )
    args = _prepare(model, params, experiment, t_eval, rtol, atol, max_steps, solver, adjoint, outputs_in_loop,
                    initial_soc)
    if adjoint is None and MODES["drive"] in args[3] and not isinstance(args[5].solver, ModalSolve):
        sol = _drive_cycle_solve(*args)
    else:
        sol = _simulate_jit(*args)
    _warn_extreme_current(sol, args[1])
    return sol


# a current above this many C (|I| / nominal capacity [A.h], per hour) is far outside anything a
# cell's parameters describe: `simulate` warns (a hold below the rest voltage in the SPM, which has
# no electrolyte resistance, drew 3.7e7 A and completed)
EXTREME_C_RATE = 100.0


def _warn_extreme_current(sol: Solution, params: ParameterSet) -> None:
    """Warn where a concrete solution's current exceeds EXTREME_C_RATE."""
    cap = params["Nominal cell capacity [A.h]"]
    if any(isinstance(x, jax.core.Tracer) for x in (sol.current, cap)):
        return
    peak = float(np.nanmax(np.abs(np.asarray(sol.current)), initial=0.0))
    rate = peak / float(np.asarray(cap))
    if rate > EXTREME_C_RATE:
        warnings.warn(f"the current reached {peak:.4g} A ({rate:.3g}C), above {EXTREME_C_RATE:g}C: far outside what "
                      "the parameter set describes (a voltage hold far from the cell's voltage, or a power or current "
                      "beyond the cell's); the result is the model's, not a cell's.", stacklevel=3)


def _drive_cycle_solve(model, params, table, modes, t_eval, opts):
    """`_simulate` through a drive cycle, differentiated in forward mode (`_forward`): the
    checkpointed reverse mode's recomputed steps do not retrace steps clipped to the cycle's
    breakpoints, and its gradient was percents off (the DFN). Only what carries a tangent is
    pushed forward: `jax.grad` with respect to a few parameters costs a few solves' tangents."""
    vals, rest = eqx.partition((model, params, table, t_eval), eqx.is_inexact_array)

    def solve(opts_, vals_, rest_):
        model_, params_, table_, t_ = eqx.combine(vals_, rest_)
        return _simulate_jit(model_, params_, table_, modes, t_, opts_)

    return in_forward_mode(solve, opts, vals, rest)


