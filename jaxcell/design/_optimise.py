"""Gradient-based design: one jitted value-and-gradient of the design objective, driven by
scipy's L-BFGS-B on the unit box, by BFGS on the unbounded (logit) coordinates, or by optax's
Adam; a constraint ``g(u) <= 0`` by an augmented Lagrangian."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_int
from ..experiment import MODES, Experiment

METHODS = ("L-BFGS-B", "BFGS", "adam")
# Up to this many design variables the objective is differentiated in forward mode (one tangent
# per variable through the solve) where no `adjoint` is given: at two variables it traces,
# compiles and runs faster than reverse mode (docs/design.md); beyond, reverse mode, as it was
# not measured there.
FORWARD_MAX_VARIABLES = 2


def derivative_mode(n_variables: int, simulate_kwargs: dict) -> tuple[bool, dict]:
    """(forward, simulate keywords): forward mode for at most `FORWARD_MAX_VARIABLES` design
    variables unless the caller chose an `adjoint`; an explicit `diffrax.ForwardMode()` is
    forward mode too."""
    if "adjoint" in simulate_kwargs:
        return isinstance(simulate_kwargs["adjoint"], diffrax.ForwardMode), simulate_kwargs
    if n_variables <= FORWARD_MAX_VARIABLES:
        return True, {**simulate_kwargs, "adjoint": diffrax.ForwardMode()}
    return False, simulate_kwargs


def jit_value_and_grad(loss: Callable, forward: bool) -> Callable:
    """`jax.jit(jax.value_and_grad(loss, has_aux=True))` in the first argument, by
    `jax.jacfwd` in forward mode."""
    if not forward:
        return jax.jit(jax.value_and_grad(loss, has_aux=True))

    def value_and_grad(u, *args):
        def with_value(u_):
            value, aux = loss(u_, *args)
            return value, (value, aux)

        grad, (value, aux) = jax.jacfwd(with_value, has_aux=True)(u)
        return (value, aux), grad

    return jax.jit(value_and_grad)


class UndeliveredStart(ValueError):
    """The starting design does not deliver the experiment (bad input to the optimiser)."""


def check_discharges(experiment) -> None:
    """Refuse a protocol none of whose steps can discharge the cell (rests and charges only):
    it delivers no energy on discharge whatever the design, so there is nothing to maximise.
    Checked on the steps, before anything is compiled; `no_energy` checks the start's value."""
    exp = experiment if isinstance(experiment, Experiment) else Experiment(experiment)
    mode, value = np.asarray(exp.table.mode), np.asarray(exp.table.value)
    drive = mode == MODES["drive"]
    can = (mode == MODES["voltage"]) | (~drive & (value > 0)) | (drive & np.any(np.asarray(exp.table.drive_current) > 0, axis=1))
    if not can.any():
        raise UndeliveredStart(
            f"the protocol {list(exp.descriptions)} has no step that discharges the cell (only rests and charges), "
            "so it delivers no energy on discharge: nothing to maximise. Give one that discharges the cell "
            "(e.g. 'Discharge at 1C until 2.5 V')."
        )


def no_energy(f0: float) -> None:
    """Refuse a start whose objective (an energy density, the mean over the cells for a robust
    design) is zero or negative: a protocol that discharges nothing (a rest, a charge) has no
    energy to maximise, and the loss, scaled by the start's objective, would be 0 / 0."""
    if np.isfinite(f0) and f0 <= 0:
        raise UndeliveredStart(
            f"the starting design's objective is {f0:g}: the protocol delivers no energy on discharge, so there is "
            "nothing to maximise; give a protocol that discharges the cell (e.g. 'Discharge at 1C until 2.5 V')."
        )


@dataclasses.dataclass
class DesignResult:
    """The outcome of a design optimisation.

    Attributes:
        design: name -> value at the optimum (the parameter's units).
        objective, initial_objective: the objective (energy density, or its mean over a
            population) at the optimum and at the start.
        capacity: the design's capacity [A.h] (nominal cell, or the population's mean).
        evaluations: gradient evaluations used (each a value and its gradient).
        constraint: the constraint's value g at the optimum (g <= 0 meets the optimised form),
            None without one.
        feasible: whether the optimum meets the constraint (True without one). For a robust
            design also the sample's counted failures must meet alpha (`optimise_robust_design`).
        converged: whether the optimiser stopped on its own tolerance (not the budget).
        message: the optimiser's message, or why the result is infeasible.
        path: one entry per evaluation: the design, objective, capacity, constraint.
        seconds: wall time, compilation included.
    """

    design: dict
    objective: float
    initial_objective: float
    capacity: float
    evaluations: int
    constraint: float | None
    feasible: bool
    converged: bool
    message: str
    path: list
    seconds: float
    method: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def augmented_lagrangian(value, g, lam, mu):
    """``-value + sum((max(0, lam + mu g)^2 - lam^2) / (2 mu))``: the augmented Lagrangian (to
    minimise) of maximising `value` subject to ``g <= 0`` (a scalar or a vector of constraints
    with one multiplier each in `lam`), penalty `mu`."""
    return -value + jnp.sum((jnp.square(jnp.maximum(0.0, lam + mu * g)) - jnp.square(lam)) / (2.0 * mu))


def _as_np(x):
    return np.asarray(jax.device_get(x), dtype=np.float64)


def check_budget(max_evaluations) -> None:
    """Refuse a gradient budget below 2 (the start and one step): with 1 the optimiser had no
    step to take and ended in a bare StopIteration after compiling."""
    check_int(max_evaluations, "max_evaluations", 2, "(the start and at least one step)")


def check_capacity_floor(min_capacity) -> None:
    """A capacity floor [A.h] must be a positive number (not a bool, which Python counts as 1)."""
    if isinstance(min_capacity, bool) or not (np.isfinite(min_capacity) and min_capacity > 0):
        raise ValueError(f"min_capacity must be a positive capacity [A.h], got {min_capacity!r}.")


def maximise(
    value_and_grad: Callable,
    u0,
    *,
    method: str = "L-BFGS-B",
    max_evaluations: int = 25,
    constraint: bool | int = False,
    tol: float = 1e-7,
    learning_rate: float = 0.3,
    outer_iterations: int = 6,
    constraint_tol: float = 0.0,
    record: Callable | None = None,
    spent: int = 0,
):
    """Maximise over the unit box. `value_and_grad(u, lam, mu) -> ((loss, aux), grad)` where
    loss is the (augmented) quantity to minimise; `record(u, aux)` turns an evaluation into a
    dict for the path and must hold the constraint under "constraint" when `constraint` is set;
    `constraint` an integer m > 1: m constraints, `lam` a vector, and `record` gives them under
    "constraints" (and their largest under "constraint").

    `tol`: L-BFGS-B's relative reduction of the loss at which it stops; the solves' own error
    (a change of the adaptive step sequence moves the loss by about the solver's rtol) makes
    smaller values spend evaluations on noise.

    `spent`: evaluations the caller made before (counted in its budget, which is `max_evaluations`
    + `spent`); only the message names that budget.

    Returns (u_best, path, evaluations, converged, message). Without a constraint one inner
    solve runs; with one, an augmented Lagrangian: inner solves with the multiplier `lam` and
    penalty `mu` fixed, then ``lam <- max(0, lam + mu g)`` and ``mu x 10`` where g did not fall
    by a factor 4, until g <= `constraint_tol` and the multiplier settles, or the budget ends."""
    import scipy.optimize as so

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    path = []
    state = {"n": 0, "best": None}

    class _Budget(Exception):
        pass

    def evaluate(u, lam, mu):
        if state["n"] >= max_evaluations:
            raise _Budget
        (loss, aux), grad = value_and_grad(jnp.asarray(u), lam, mu)
        loss, grad = float(loss), _as_np(grad)
        state["n"] += 1
        entry = record(np.asarray(u), aux) if record else {}
        entry.update(loss=loss, evaluation=state["n"])
        path.append(entry)
        if not np.isfinite(loss) or not np.all(np.isfinite(grad)):
            # a failed solve: a wall the line search backs off from
            return 1e6, np.zeros_like(grad)
        if state["best"] is None or loss < state["best"][0]:
            state["best"] = (loss, np.array(u, dtype=np.float64), entry)
        return loss, grad

    def inner(u, lam, mu, budget):
        """One solve at fixed (lam, mu); returns the best point it evaluated (the budget may stop
        it inside a line search)."""
        state["best"] = None
        try:
            _, ok, msg = _inner(u, lam, mu, budget)
        except _Budget:
            ok, msg = False, f"stopped at the budget of {max_evaluations + spent} gradient evaluations"
        if state["best"] is None:
            return np.asarray(u), ok, msg, None
        return state["best"][1], ok, msg, state["best"][2]

    def _inner(u, lam, mu, budget):
        n = len(u)
        if method == "L-BFGS-B":
            res = so.minimize(lambda x: evaluate(x, lam, mu), u, jac=True, method="L-BFGS-B",
                              bounds=[(0.0, 1.0)] * n, options=dict(maxfun=budget, maxiter=budget, ftol=tol, gtol=1e-6))
            return np.clip(res.x, 0.0, 1.0), res.success, str(res.message)
        from ._variables import DesignSpace

        z0 = _as_np(DesignSpace.unit_to_unbounded(u, 1e-6))

        def fz(z):
            s = 1.0 / (1.0 + np.exp(-z))
            loss, g = evaluate(s, lam, mu)
            return loss, g * s * (1 - s)

        if method == "BFGS":
            res = so.minimize(fz, z0, jac=True, method="BFGS", options=dict(maxiter=budget, gtol=1e-6))
            return 1.0 / (1.0 + np.exp(-res.x)), res.success, str(res.message)
        import optax

        opt = optax.adam(learning_rate)
        z, st = jnp.asarray(z0), opt.init(jnp.asarray(z0))
        for _ in range(budget):
            _, g = fz(_as_np(z))
            upd, st = opt.update(jnp.asarray(g), st)
            z = optax.apply_updates(z, upd)
        return 1.0 / (1.0 + np.exp(-_as_np(z))), False, f"adam: {budget} steps (fixed budget)"

    u = np.asarray(u0, dtype=np.float64)
    if not constraint:
        u, ok, msg, _ = inner(u, 0.0, 1.0, max_evaluations)
        return u, path, state["n"], ok, msg
    m = 1 if constraint is True else int(constraint)
    lam, mu, g_prev, ok, msg = (0.0 if m == 1 else np.zeros(m)), 100.0, np.inf, False, ""
    for _ in range(outer_iterations):
        budget = max_evaluations - state["n"]
        if budget <= 0:
            break
        u, ok, msg, entry = inner(u, lam, mu, budget)
        if entry is None:
            break
        gv = float(entry["constraint"]) if m == 1 else np.asarray(entry["constraints"], dtype=np.float64)
        g = float(np.max(gv))
        lam_new = np.maximum(0.0, lam + mu * gv)
        if g <= constraint_tol and np.max(np.abs(lam_new - lam)) <= 1e-3 * max(1.0, float(np.max(lam))):
            lam = lam_new
            break
        if g > 0.25 * g_prev and g > constraint_tol:
            mu *= 10.0
        lam, g_prev = (float(lam_new) if m == 1 else lam_new), g
    return u, path, state["n"], ok, msg


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0
