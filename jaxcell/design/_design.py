"""`optimise_design`: the deterministic design optimum by gradient, optionally with a capacity
floor on the nominal cell."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from ..parameters import ParameterSet
from ._objective import design_objective
from ..solution import Status
from ._optimise import (
    DesignResult,
    UndeliveredStart,
    augmented_lagrangian,
    check_budget,
    check_capacity_floor,
    check_discharges,
    derivative_mode,
    jit_value_and_grad,
    maximise,
    no_energy,
)
from ._variables import DesignSpace


def _space(params, variables) -> DesignSpace:
    return variables if isinstance(variables, DesignSpace) else DesignSpace.create(params, variables)


def optimise_design(
    model,
    params: ParameterSet,
    experiment,
    variables: DesignSpace | Sequence,
    *,
    objective: str = "gravimetric",
    min_capacity: float | None = None,
    method: str = "L-BFGS-B",
    max_evaluations: int = 25,
    initial_soc=1.0,
    lithium: str = "set",
    densities: Mapping[str, float] | None = None,
    start: Mapping[str, float] | None = None,
    **simulate_kwargs,
) -> DesignResult:
    """Maximise the energy density of `model` under `experiment` over the design `variables`
    (``"NAME=LO:HI"`` strings, `DesignVariable`s or a `DesignSpace`) by gradient: one jitted
    value-and-gradient through `simulate` (events included), driven by `method`: "L-BFGS-B"
    (scipy, on the unit box: reaches an optimum on the bounds exactly), "BFGS" (scipy, on the
    unbounded logit coordinates) or "adam" (optax, same coordinates, `max_evaluations` steps).

    `min_capacity` [A.h]: the nominal cell's discharge capacity must be at least this, by an
    augmented Lagrangian on ``g = (min_capacity - capacity) / min_capacity <= 0``; a result that
    misses it has ``feasible=False`` and says so in `message` (never a silent optimum).
    `start`: the first design (name -> value), default the set's values clipped into the bounds.
    Other keywords go to `design_objective` and `simulate`.

    Example:
        >>> res = optimise_design(jaxcell.SPMe(), p, ["Discharge at 1C until 2.5 V"],
        ...                       ["Positive electrode thickness [m]=65e-6:100e-6",
        ...                        "Positive particle radius [m]=2e-6:9e-6"])
        >>> res.design, res.objective, res.evaluations
    """
    t0 = time.perf_counter()
    space = _space(params, variables)
    check_budget(max_evaluations)
    check_discharges(experiment)
    if min_capacity is not None:
        check_capacity_floor(min_capacity)
    forward, simulate_kwargs = derivative_mode(len(space.variables), simulate_kwargs)
    f = design_objective(model, params, experiment, space, objective=objective, initial_soc=initial_soc,
                         lithium=lithium, densities=densities, **simulate_kwargs)
    u0 = np.asarray(space.to_unit(start if start is not None else space.initial(params)))

    def loss(u, lam, mu, f0):
        out = f(u)
        g = (min_capacity - out.capacity) / min_capacity if min_capacity is not None else jnp.asarray(0.0)
        return augmented_lagrangian(out.objective / f0, g, lam, mu), (out, g)

    vg = jit_value_and_grad(loss, forward)
    # the start's objective scales the loss to about 1 (one compiled function: f0 is an argument)
    (_, (first, _)), _ = vg(jnp.asarray(u0), 0.0, 1.0, 1.0)
    f0 = float(first.objective)
    no_energy(f0)
    if not np.isfinite(f0) or not bool(first.delivered):
        status = Status(int(first.status))
        if status != Status.COMPLETED:
            why = f"it ends with status {status.name}"
        elif not bool(first.delivered):
            why = "a step is skipped (its end condition holds at its start) or runs to its maximum duration"
        else:
            why = "its objective is not finite"
        raise UndeliveredStart(
            f"the starting design does not deliver the experiment: {why}; objective {f0:g}. `jaxcell simulate` with "
            "the same protocol shows which step; choose another start or protocol."
        )

    def record(u, aux):
        out, g = aux
        return {
            "design": {k: float(v) for k, v in space.from_unit(u).items()},
            "objective": float(out.objective), "capacity": float(out.capacity),
            "delivered": bool(out.delivered), "status": int(out.status), "constraint": float(g),
        }

    u, path, n, ok, msg = maximise(  # the first gradient (for f0) counts against the budget
        lambda u, lam, mu: vg(u, lam, mu, f0), u0, method=method, max_evaluations=max_evaluations - 1,
        constraint=min_capacity is not None, record=record, spent=1,
    )
    final = next(e for e in reversed(path) if np.allclose(np.asarray(space.to_unit(e["design"])), u, rtol=0, atol=1e-12))
    if min_capacity is not None and final["constraint"] > 1e-9:
        ok_entries = [e for e in path if e["constraint"] <= 1e-9 and e["delivered"]]
        if ok_entries:  # the budget ended outside the constraint: the best feasible design evaluated
            final = max(ok_entries, key=lambda e: e["objective"])
            msg = f"the best feasible design evaluated (the last point was below the capacity floor); {msg}"
    g = None if min_capacity is None else final["constraint"]
    feasible = g is None or g <= 1e-9
    if not feasible:
        msg = (f"infeasible: no design evaluated within the bounds has a capacity of {min_capacity:g} A.h "
               f"(the last {final['capacity']:.5g} A.h); {msg}")
    return DesignResult(
        design=dict(final["design"]),
        objective=final["objective"], initial_objective=f0, capacity=final["capacity"],
        evaluations=n + 1, constraint=g, feasible=bool(feasible and final["delivered"]), converged=bool(ok),
        message=msg if final["delivered"] else f"the optimum does not deliver the experiment (status {final['status']}); {msg}",
        path=path, seconds=time.perf_counter() - t0, method=method,
    )
