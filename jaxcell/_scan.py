"""`ScanAdjoint`: a step of an experiment solved as a `lax.scan` of a fixed number of attempts,
for reverse mode without diffrax's checkpointed loop.

diffrax's `RecursiveCheckpointAdjoint` differentiates its `while` loop by checkpointing: on the
way back it runs the steps between checkpoints again, and the program holds the derivative of
the loop's step-size control, event and saving machinery. Here the same adaptive solve is a
scan over `max_steps` attempts, accepted and rejected, each under a `lax.cond` that skips the
attempts after the end. It is diffrax's loop written out: the solver's `step`, the step-size
controller's `init` and `adapt_step_size`, diffrax's clipping of the last step to the end
(100 ULP) and its event rule (the condition's sign goes from positive to at most zero at an
accepted step's end). So the steps and the solution are the same, and JAX's reverse mode of
the scan is the same gradient (diffrax holds the step sizes fixed too), but it keeps each
attempt's residuals instead of running it again. On the gradient benchmark's loss to the 2.5 V
cut-off that is about 4.4-4.6 forward solves against the default's 6.3-6.4, and a first call
a third shorter (benchmarks/README.md, "`ScanAdjoint` in the library").

The event's time: bisection on the crossing step's dense output, without derivative; its
derivative by the implicit function theorem, as diffrax's root find has it (`_crossing`).

Each step is solved in time held without derivative, its start's derivative added back to its
times (`shift`): with the start's derivative inside, a field that reads time (a drive cycle
after a step that ended on an event) got the step sizes' derivatives, exact zeros, as large
opposite cotangents whose sum was rounding (docs/dfn.md, "Gradients").

The price: a static bound. Every attempt's residuals are kept (memory grows with
`max_steps`, used or not: attempts run in chunks of `CHUNK`, a chunk after the end skipped by
one `cond`, but its slots are still written), and under `vmap` the `cond` becomes a `select`,
so every cell pays every attempt. A step of an experiment that needs more attempts ends as
diffrax's loop does at its `max_steps` (`Status.MAX_STEPS`)."""

from __future__ import annotations

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp

from ._roots import bisect, nonzero
from .solvers import Rodas4, RodasInterpolation

_tree = jax.tree.map
# attempts per chunk of the scan (`scan_solve`)
CHUNK = 16
_sg = jax.lax.stop_gradient


class ScanAdjoint(eqx.Module):
    """Reverse mode for `jaxcell.simulate` through a `lax.scan` of at most `max_steps` solver
    attempts (accepted and rejected) per step of the experiment, instead of diffrax's
    checkpointed loop: the same solution and the same gradient, cheaper to run and to compile
    for one cell (module docstring). Pass it as ``simulate(..., adjoint=jaxcell.ScanAdjoint())``.

    `max_steps` is static: memory for reverse mode grows with it (each attempt's residuals are
    kept), and under `jax.vmap` every cell pays every attempt. A step of an experiment that
    needs more attempts (or more than `simulate`'s own `max_steps`) ends with
    `Status.MAX_STEPS`. Reverse mode only (`jax.grad`, `jax.vjp`); for forward mode use
    ``diffrax.ForwardMode()``."""

    max_steps: int = eqx.field(static=True, default=256)

    def __check_init__(self):
        if not isinstance(self.max_steps, int) or isinstance(self.max_steps, bool) or self.max_steps < 1:
            raise ValueError(f"ScanAdjoint's max_steps must be a positive integer, got {self.max_steps!r}.")


def scan_solve(term, solver: Rodas4, controller, t0, t1, dt0, y0, ts, start, event_fn, max_steps, shift=0.0):
    """The adaptive solve of `term` from (t0, y0) = (t0, (y, q)) to t1 or to the event
    (`event_fn(t, state)`, a scalar that ends the solve where it goes from positive to at most
    zero; None: no event), as a scan of `max_steps` attempts. Returns (saved, t_end, state_end,
    result): `saved` is (ts', (y[start:], q)) at the times `ts` (in [t0, t1]), the part of the
    state `simulate`'s outputs read (only it is interpolated: for the DFN a fifth of the state),
    with ts' inf where the solve did not reach them (their states finite but meaningless), as
    diffrax's `SaveAt(ts=...)`; `result` a `diffrax.RESULTS` (successful, event_occurred or
    max_steps_reached). `shift` (value 0) carries the derivative of the solve's start when t0
    and t1 are given without it: added to the steps' times for the outputs and to t_end."""
    order = solver.error_order(term)
    floor = t1
    for _ in range(100):  # diffrax rounds a step that ends within 100 ULP of t1 to t1
        floor = eqxi.prevbefore(floor)
    tnext, cstate = controller.init(term, t0, t1, y0, dt0, None, solver.func, order)
    tnext = jnp.minimum(tnext, t1)
    f0 = solver.init(term, t0, tnext, y0, None)
    # the event's value at each accepted step, only to see where it changes sign: no derivative
    g = (lambda t, y: jnp.asarray(1.0)) if event_fn is None else (lambda t, y: event_fn(_sg(t), _sg(y)))

    def attempt(carry):
        tprev, tnext, y, f, cstate, g_prev, _, n = carry
        # `simulate`'s controllers never jump (drive cycles' breakpoints are `step_ts`): made_jump
        # stays a static False, so the step has no `cond` on it
        y1, err, dense, f1, _ = solver.step(term, tprev, tnext, y, None, f, False)
        err = _tree(lambda e: jnp.where(jnp.isnan(e), jnp.inf, e), err)
        # the error's part of the next step size carries no derivative (diffrax's controller stops
        # it); giving it none keeps the error norm out of the linearisation, where a rejected
        # step's infinite error gave NaN tangents (0 x inf) that only XLA's optimiser removed
        keep, tp, tn, jump, cs, _ = controller.adapt_step_size(tprev, tnext, _sg(y), _sg(y1), None, _sg(err), order,
                                                               cstate)
        if jump is not False:
            raise NotImplementedError("ScanAdjoint takes step-size controllers that do not jump (no jump_ts).")
        tp = jnp.minimum(tp, t1)
        tn = jnp.where(tn > floor, jnp.where(keep, t1, tp + 0.5 * (t1 - tp)), tn)
        pick = lambda a, b: jnp.where(keep, a, b)  # noqa: E731
        y_new = _tree(pick, y1, y)
        g_new = jnp.where(keep, g(tp, y_new), g_prev)
        crossed = keep & (g_prev > 0) & (g_new <= 0)
        carry = (tp, tn, y_new, _tree(pick, f1, f), cs, g_new, crossed, n + 1)
        return carry, (tprev, tnext, keep, crossed, dense)

    def finished(carry):
        tprev, _, y = carry[:3]
        zero = _tree(jnp.zeros_like, y)
        no = jnp.asarray(False)
        return carry, (tprev, tprev, no, no, {"y0": y, "y1": y, "d1": zero, "d2": zero})

    def running(carry):
        return (carry[0] < t1) & ~carry[6] & (carry[7] < max_steps)

    def chunk(carry):
        return jax.lax.scan(lambda c, _: jax.lax.cond(running(c), attempt, finished, c), carry, None, length=CHUNK)

    def skip(carry):
        return jax.lax.scan(lambda c, _: finished(c), carry, None, length=CHUNK)

    # attempts in chunks of CHUNK, a chunk after the end skipped whole: a skipped attempt is not
    # free (its slot of the residuals is still written), and a skipped chunk costs one `cond`
    init = (t0, tnext, y0, f0, cstate, g(t0, y0), jnp.asarray(False), jnp.asarray(0))
    n_chunks = -(-max_steps // CHUNK)
    (t_last, _, y_last, *_), per_attempt = jax.lax.scan(
        lambda c, _: jax.lax.cond(running(c), chunk, skip, c), init, None, length=n_chunks
    )
    slots = n_chunks * CHUNK
    a0, a1, kept, crossed, dense = _tree(lambda x: x.reshape((slots,) + x.shape[2:]), per_attempt)
    event = jnp.any(crossed)
    R = diffrax.RESULTS
    result = R.where(event, R.event_occurred, R.where(t_last < t1, R.max_steps_reached, R.successful))

    def at_event():
        k = jnp.argmax(crossed)
        last = RodasInterpolation(a0[k], a1[k], **_tree(lambda d: d[k], dense))
        t = _crossing(lambda t_: event_fn(t_, last.evaluate(t_)), last.t0, last.t1)
        return t, last.evaluate(t)

    # (a `cond`, not both and a `where`: without an event the crossing's arithmetic on a step
    # that did not cross gave NaN derivatives in programs compiled at XLA's lowest optimisation)
    t_end, y_end = (t_last, y_last) if event_fn is None else jax.lax.cond(event, at_event, lambda: (t_last, y_last))
    a0, a1, t_end = a0 + shift, a1 + shift, t_end + shift

    # saved times: each in the accepted step that ends first at or after it (cumulative maximum
    # of the accepted steps' ends: non-decreasing, so a binary search finds it)
    ends = jax.lax.cummax(jnp.where(kept, a1, -jnp.inf))
    k = jnp.minimum(jnp.searchsorted(ends, ts, side="left"), slots - 1)
    reached = ts <= t_end
    inside = reached & kept[k] & (a0[k] <= ts)

    # where a time is not inside an accepted step (not reached; or t0 == t1, no step), the last
    # accepted step (or the first slot, an attempt never made: a constant at y0) at its end,
    # then the end state: nothing from a rejected attempt's dense output enters the arithmetic
    last_kept = jnp.where(jnp.any(kept), slots - 1 - jnp.argmax(kept[::-1]), 0)

    part = lambda state: (state[0][..., start:], state[1])  # noqa: E731
    dense_part = {key: part(v) for key, v in dense.items()}
    end_part = part(y_end)

    def save_one(t, k_, ok):
        k_ = jnp.where(ok, k_, last_kept)
        step = RodasInterpolation(a0[k_], a1[k_], **_tree(lambda d: d[k_], dense_part))
        return _tree(lambda a, b: jnp.where(ok, a, b), step.evaluate(jnp.where(ok, t, a1[k_])), end_part)

    return (jnp.where(reached, ts, jnp.inf), jax.vmap(save_one)(ts, k, inside)), t_end, y_end, result


# bisection steps for an event's time: the bracket (one solver step) shrinks by 2**-64
BISECTION_STEPS = 64


def _crossing(G, lo, hi):
    """The time in [lo, hi] where G (positive at lo, at most zero at hi) crosses zero, by
    bisection on G without derivative, with the implicit function theorem's first derivative
    t = t* - (G(t*) - G(t*) held) / G'(t*) held: value t*, derivative -dG / G'(t*) with respect
    to whatever G closes over (the step's dense output, the parameters). Written out rather than
    through `_roots.implicit_root`, whose custom rule cannot close over the step's integer and
    boolean values (the control's mode); reverse mode needs only this first derivative."""
    a, b = bisect(lambda m: _sg(G(m)) <= 0, lo, hi, BISECTION_STEPS)
    t = 0.5 * (a + b)
    value, slope = jax.jvp(G, (t,), (jnp.ones_like(t),))
    return t - (value - _sg(value)) / _sg(nonzero(slope))
