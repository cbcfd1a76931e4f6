"""A solve's derivative in forward mode, for every transformation that asks (`jax.grad`
included): the Jacobian with respect to the few values that carry a tangent, pushed forward
through the same steps as the solve (diffrax's `ForwardMode`), then applied to the tangents.

Why not reverse mode everywhere: diffrax's checkpointed adjoint recomputes the steps between its
checkpoints on the way back, and where the steps are clipped to a drive cycle's breakpoints the
recomputed steps do not retrace the solve's. The gradient is then wrong by percents (the DFN on
a drive cycle: 2 % and 17 % in two parameters; on measured records up to 2.4 %), and records of
different lengths solved in lockstep (`vmap`) gave NaN. Forward mode recomputes nothing, so it is
exact for the discrete solution (the step sizes held, as diffrax does). Its cost grows with the
number of values that carry a tangent (about one solve's tangent each), not with the number of
outputs: for the few values of a fit (2-10) about what reverse mode costs (docs/inference.md,
"Several records of one cell")."""

from __future__ import annotations

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from ._scan import ScanAdjoint
from .solvers import Rodas4


def solver_for_adjoint(solver, adjoint):
    """`solver` as `adjoint` can use it: Rodas4's reverse-mode rule for its stages is a
    custom_vjp, which has no forward mode (diffrax.ForwardMode, and DirectAdjoint under jax.jvp),
    so any adjoint but the checkpointed one and `ScanAdjoint` gets Rodas4 without it."""
    if not isinstance(adjoint, (diffrax.RecursiveCheckpointAdjoint, ScanAdjoint)) and isinstance(solver, Rodas4) and solver.reverse_rule:
        return dataclasses.replace(solver, reverse_rule=False)
    return solver


def forward_mode(opts):
    """`simulate`'s options `opts` with diffrax's ForwardMode (and the solver it can use)."""
    adjoint = diffrax.ForwardMode()
    return dataclasses.replace(opts, adjoint=adjoint, solver=solver_for_adjoint(opts.solver, adjoint))


def in_forward_mode(solve, opts, vals, others):
    """`solve(opts, vals, others)` (a solve with `simulate`'s options `opts`, returning a pytree
    of arrays), differentiated with respect to `vals` (a pytree of float arrays) in forward mode
    (`solve` run with `forward_mode(opts)`), whatever transformation asks. `others`: everything
    else the solve reads, not differentiable; its arrays are passed to the custom derivative,
    not closed over (a custom derivative may not close over traced values)."""
    arrays, static = eqx.partition(others, eqx.is_array)
    forward = forward_mode(opts)
    return _forward_derivative(lambda v, a: solve(opts, v, eqx.combine(a, static)),
                               lambda v, a: solve(forward, v, eqx.combine(a, static)))(vals, arrays)


_zero = jax.custom_derivatives.SymbolicZero


def _is_zero(x):
    return isinstance(x, _zero)


def _forward_derivative(one, one_forward):
    """`one(vals, arrays) -> outputs` (a pytree of arrays), with its derivative with respect to
    `vals` (a pytree of float arrays) from `one_forward` (the same solve with diffrax's
    ForwardMode): the Jacobian's columns for the leaves of `vals` whose
    tangent is not a symbolic zero, pushed through the solve at once (`jax.jacfwd`'s way), then
    J @ dvals. Integer and boolean outputs get no tangent. `arrays`: every other array the solve
    reads (passed, not closed over: a custom derivative may not close over traced values), not
    differentiable. The rule is linear in dvals, so reverse mode transposes it and `jax.grad`
    gets the same derivative."""

    @jax.custom_jvp
    def solve(vals, arrays):
        return one(vals, arrays)

    def rule(primals, tangents):
        vals, arrays = primals
        if not all(_is_zero(d) for d in jax.tree.leaves(tangents[1], is_leaf=_is_zero)):
            raise NotImplementedError("only the parameter values are differentiable here, not the data, the "
                                      "protocol or the times.")
        leaves, treedef = jax.tree.flatten(vals)
        dleaves = treedef.flatten_up_to(tangents[0])
        live = [i for i, d in enumerate(dleaves) if not _is_zero(d)]
        if not live:
            out = one(vals, arrays)
            return out, jax.tree.map(lambda o: jnp.zeros_like(o) if jnp.issubdtype(o.dtype, jnp.inexact)
                                     else np.zeros(o.shape, dtype=jax.dtypes.float0), out)
        x, unravel = jax.flatten_util.ravel_pytree([leaves[i] for i in live])
        dx, _ = jax.flatten_util.ravel_pytree([dleaves[i] for i in live])
        out_tree = {}

        def floats(x_):
            new = list(leaves)
            for i, v in zip(live, unravel(x_)):
                new[i] = v
            outs, out_tree["def"] = jax.tree.flatten(one_forward(treedef.unflatten(new), arrays))
            out_tree["dtypes"] = [o.dtype for o in outs]
            return [o if jnp.issubdtype(o.dtype, jnp.inexact) else o.astype(x_.dtype) for o in outs]

        push = lambda e: jax.jvp(floats, (x,), (e,))
        outs, jac = jax.vmap(push, out_axes=(None, -1))(jnp.eye(x.size, dtype=x.dtype))
        primal, tangent = [], []
        for o, J, dtype in zip(outs, jac, out_tree["dtypes"]):
            if jnp.issubdtype(dtype, jnp.inexact):
                primal.append(o)
                tangent.append(J @ dx)
            else:
                primal.append(o.astype(dtype))
                tangent.append(np.zeros(o.shape, dtype=jax.dtypes.float0))
        return out_tree["def"].unflatten(primal), out_tree["def"].unflatten(tangent)

    solve.defjvp(rule, symbolic_zeros=True)
    return solve
