"""Roots of scalar functions found by any fixed iteration, differentiated by the implicit
function theorem: a voltage or power step's current (`simulate._solve_current`, Newton) and
the state of charge's root finds (`soc._bisect`, bisection; `bisect` is the loop, shared with
the events of `_scan` and `_modal`).

`frozen(fn, x)` closure-converts fn(x) into g(x, *consts) and gives the consts without their
derivatives, for the iteration; `implicit_root(g, root, *consts)` then attaches the derivative
-(dg/dconsts . dconsts) / g'(root) to the root the iteration found. Its rule evaluates at the
function's own output, so differentiating the rule again differentiates the root implicitly
too: second and higher orders are exact (`jax.hessian`; Rodas4's reverse rule takes second
derivatives of a held voltage's current). The iterations are never differentiated and never
run again by the rule (`jax.lax.custom_root`'s rule reruns its solve at every JVP)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def frozen(fn, x):
    """(g, consts, frozen_consts): g(x, *consts) == fn(x), with the traced values fn closes
    over as explicit arguments; frozen_consts are those values without derivatives."""
    g, consts = jax.closure_convert(fn, x)
    return g, consts, [jax.lax.stop_gradient(c) for c in consts]


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def implicit_root(g, root, *consts):
    """`root` (a root of g(., *consts)), with the implicit function theorem's derivative with
    respect to `consts` (the module docstring). A zero slope g'(root) counts as 1."""
    return root


@implicit_root.defjvp
def _implicit_root_jvp(g, primals, tangents):
    root, *consts = primals
    _, *dconsts = tangents
    x = implicit_root(g, root, *consts)
    dg = jax.jvp(lambda *c: g(x, *c), consts, dconsts)[1]
    slope = jax.jvp(lambda x_: g(x_, *consts), (x,), (jnp.ones_like(x),))[1]
    return x, -dg / nonzero(slope)


def bisect(past, lo, hi, steps):
    """The bracket (a, b) after `steps` halvings of [lo, hi], with past(b) True and past(a) False
    where they were at the ends: the first x at which the boolean `past` turns True, to
    (hi - lo) 2^-steps. No derivative (the ends are held); the callers attach their own."""
    def halve(_, ab):
        a, b = ab
        m = 0.5 * (a + b)
        now = past(m)
        return jnp.where(now, a, m), jnp.where(now, m, b)

    return jax.lax.fori_loop(0, steps, halve, (jax.lax.stop_gradient(lo), jax.lax.stop_gradient(hi)))


def nonzero(d):
    """d, with 1 where it is 0 (a divisor)."""
    return jnp.where(d == 0, 1.0, d)
