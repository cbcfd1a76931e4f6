"""`ModalSolve`: the isothermal SPM under a constant current, solved exactly in time.

In the SPM the state is the two particles' concentrations on spherical finite volumes (and a
temperature, constant when isothermal). With a diffusivity that does not depend on the
concentration and a current that does not depend on the state, each particle's equations are
linear with constant coefficients over a step of the experiment:

    dc/dt = (D / R^2) A c + (N / R) s,

with A and s fixed by the mesh (`mesh.spherical_diffusion` at D = R = 1) and N = j / F the
surface flux. A = W^-1 K with W the shells' volumes and K symmetric, so W^1/2 A W^-1/2 = Q L Q^T
(numpy's `eigh`, once per mesh) and the modal coordinates z = Q^T W^1/2 c evolve independently:

    z_i(tau) = exp(k l_i tau) z_i(0) + tau phi1(k l_i tau) b_i N / R,   k = D / R^2,

phi1(x) = (e^x - 1) / x. That is the exact solution of the same discrete equations Rodas4
integrates (no time step, no tolerance), at any time, in a few vector operations: outputs at
any number of times, and derivatives of every kind (forward, reverse, under `vmap`) by JAX's own
rules, with no solver loop to differentiate. The totals' charge is I tau exactly; the energy,
the integral of I V, by Gauss-Legendre quadrature (`_QUAD_T`), within 2e-10 of its converged
value.

`simulate` uses it by default where it applies (`why_not`): the SPM (not the SPMe, whose
electrolyte diffusivity depends on concentration in most sets), isothermal, both particle
diffusivities constants (an Arrhenius factor at the fixed temperature is a constant), and an
experiment of current, C-rate and rest steps only. Anything else goes to Rodas4, as does any
solve given an explicit `solver`; the `adjoint` has nothing to do here.

Events (`_first_crossing`): the end conditions on a grid of the step, the first interval where
they cross refined on a finer grid, then bisection on the closed form to the last bit; the
time's first and second derivatives by two Newton steps at the root. Under a constant current the
conditions (voltage, stoichiometries) move monotonically, so the grid finds the first
crossing; a condition that dipped below zero and back inside one grid interval would be
missed, as the adaptive solver's event, checked at each step's end, could miss it inside a step.
The search and the quadrature read the SPM's voltage on a state whose particles are uniform at
their surface values (`_trajectory`): the same voltage, for a twentieth of the arithmetic.
"""

from __future__ import annotations

import functools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import mesh
from ._roots import bisect, nonzero
from .experiment import MODES
from .models import SPM
from .models._spm import particle_diffusivity, uniform_interfacial_current
from .physics import cell
from .physics.constants import F
from .solvers import model_voltage, totals_rate

_sg = jax.lax.stop_gradient

# The event's search: the end conditions on a grid of the step (32 equal intervals, the first cut
# geometrically towards the start, 2^-16 .. 2^-6 of the step), the first interval where they cross
# refined `REFINE` times on 32 equal parts, then halved `BISECTIONS` times (to the last bit of t)
_GRID = np.unique(np.concatenate([np.linspace(0.0, 1.0, 33), 2.0 ** -np.arange(6.0, 17.0)]))
REFINE, BISECTIONS = 1, 48
# The energy's quadrature: 8 Gauss-Legendre nodes on each of the 14 inner sixteenths of the step
# (the open-circuit potentials' stages), 4 on each of the outer sixteenths' panels, cut
# geometrically towards the ends (2^-12 .. 2^-4 of the step: the fast modes' decay after the
# start, a discharge's knee before the end). On 1C, C/10 and 3C Chen2020 discharges the energy is
# within 2e-10 relative of the same with 8 nodes on 32 panels cut to 2^-24 (converged to round-off).
def _panels(edges, n):
    x, w = np.polynomial.legendre.leggauss(n)
    mid, half = 0.5 * (edges[:-1, None] + edges[1:, None]), 0.5 * np.diff(edges)[:, None]
    return (mid + half * x).ravel(), (half * w).ravel()


_END = np.concatenate([[0.0], 2.0 ** -np.arange(12.0, 3.0, -1.0)])
_QUAD_T, _QUAD_W = (np.concatenate(a) for a in zip(
    _panels(np.linspace(1.0 / 16, 15.0 / 16, 15), 8), _panels(_END, 4), _panels(1.0 - _END[::-1], 4)))


class ModalSolve(eqx.Module):
    """The exact solve of the isothermal SPM's particles under constant-current steps (module
    docstring). `simulate` picks it where it applies when no `solver` is given; passing it for
    a problem where it does not apply raises a ValueError saying why."""


def why_not(model, params, modes) -> str | None:
    """Why `ModalSolve` does not apply to (model, params, experiment modes), or None if it does."""
    if type(model) is not SPM:
        return f"it solves the SPM, got {type(model).__name__}"
    if model.thermal != "isothermal":
        return f"it solves the isothermal SPM, got thermal={model.thermal!r}"
    for domain in ("Negative", "Positive"):
        name = f"{domain} particle diffusivity [m2.s-1]"
        if name not in params.values:
            return f"'{name}' is a function of concentration or temperature in this set, not a constant"
    other = sorted(m for m, code in MODES.items() if code in modes and m != "current")
    if other:
        return f"it solves current, C-rate and rest steps, and the experiment has {', '.join(other)} steps"
    return None


@functools.cache
def _modes(edges: tuple) -> tuple:
    """(to_modes, from_modes, rates, input) for shells with edges r / R `edges`: z = to_modes c,
    c = from_modes z, dz/dt = (D / R^2) rates z + (N / R) input."""
    e = np.asarray(edges)
    n = e.size - 1
    with jax.ensure_compile_time_eval():
        zero = np.zeros(n)
        A = np.asarray(jax.jacfwd(lambda c: mesh.spherical_diffusion(c, 1.0, 0.0, 1.0, e))(zero), np.float64)
        s = np.asarray(mesh.spherical_diffusion(zero, 1.0, 1.0, 1.0, e), np.float64)
    w = np.sqrt(np.diff(e**3))
    S = w[:, None] * A / w[None, :]
    if not np.allclose(S, S.T, rtol=1e-10, atol=1e-10 * np.abs(S).max()):
        raise AssertionError("the particle diffusion operator is not symmetric in the shells' volume weights")
    rates, Q = np.linalg.eigh(0.5 * (S + S.T))
    return Q.T * w[None, :], Q / w[:, None], np.minimum(rates, 0.0), Q.T @ (w * s)


def _phi1(x):
    """(e^x - 1) / x, 1 at 0, with derivatives finite everywhere."""
    small = jnp.abs(x) < 1e-8
    safe = jnp.where(small, 1.0, x)
    return jnp.where(small, 1.0 + 0.5 * x, jnp.expm1(safe) / safe)


def _particle(p, domain, c0, edges, T, I):
    """(tau -> the particle's concentrations, tau -> its surface value) tau after a start at c0
    under current I."""
    D_ = domain.capitalize()
    to_modes, from_modes, rates, inp = _modes(tuple(edges))
    surface = _surface_row(tuple(edges)) @ from_modes
    R = p[f"{D_} particle radius [m]"]
    c_max = p[f"Maximum concentration in {domain} electrode [mol.m-3]"]
    k = particle_diffusivity(domain, c0 / c_max, T, p) / R**2  # a constant (`why_not`)
    flux = uniform_interfacial_current(domain, cell.current_density(I, p), p) / F
    z0, b = to_modes @ c0, inp * (flux / R)

    def modes_at(tau):
        x = k * rates * tau
        return jnp.exp(x) * z0 + tau * _phi1(x) * b

    return (lambda tau: from_modes @ modes_at(tau)), (lambda tau: surface @ modes_at(tau))


@functools.cache
def _surface_row(edges: tuple) -> np.ndarray:
    """u with u . c = `mesh.surface_value(c, edges)`."""
    with jax.ensure_compile_time_eval():
        return np.asarray(jax.jacfwd(lambda c: mesh.surface_value(c, np.asarray(edges)))(np.zeros(len(edges) - 1)))


def _trajectory(model, p, I, y0):
    """(tau -> the state tau after a start at y0 under current I, tau -> the state whose particles
    are uniform at that state's surface values). The SPM's voltage and end conditions read the
    particles only at their surfaces (`mesh.surface_value`), so they take the same values on the
    second as on the first (tests/test_modal.py), for a twentieth of the arithmetic: the event's
    search and the energy's quadrature evaluate them there."""
    c_n0, c_p0, T = model.split(y0)
    n_at, n_surface = _particle(p, "negative", c_n0, model.edges[0], T, I)
    p_at, p_surface = _particle(p, "positive", c_p0, model.edges[1], T, I)
    T = jnp.reshape(T, (1,))

    def y_at(tau):
        return jnp.concatenate([n_at(tau), p_at(tau), T])

    def surface_y_at(tau):
        return jnp.concatenate([jnp.full(c_n0.shape, n_surface(tau)), jnp.full(c_p0.shape, p_surface(tau)), T])

    return y_at, surface_y_at


def modal_energy(model, p, I, t0, t_end, y0):
    """The energy [W.h] delivered (I > 0) or taken in (I < 0) by a step from (t0, y0) to t_end under
    the constant current I: |I| V integrated by Gauss-Legendre quadrature (`_QUAD_T`), as
    (discharge, charge). Apart from `modal_solve`, so that a program that reads no energy does not
    compute it (`simulate` adds it to the totals after the experiment's loop)."""
    surface_y_at = _trajectory(model, p, I, y0)[1]
    length = t_end - t0
    V = jax.vmap(lambda s: model_voltage(model, p, surface_y_at(s * length), I))(jnp.asarray(_QUAD_T))
    return totals_rate(I, jnp.sum(jnp.asarray(_QUAD_W) * V))[2:] * length


def modal_solve(model, p, I, t0, t1, state0, ts, start, event_fn):
    """The step from (t0, state0) = (t0, (y, q)) to t1 or to the event (`event_fn(t, state)`, a
    scalar that ends the step where it goes from positive to at most zero) under the constant
    current I, exactly (module docstring). Returns what `_scan.scan_solve` returns: (saved, t_end,
    state_end, result), `saved` = (ts', (y[start:], q)) at `ts` (in [t0, t1]), inf where the step
    did not reach them, its states those whose particles are uniform at their surface values
    (`_trajectory`; what the outputs read of them is exact). The totals' charges are exact;
    their energies are left at the step's start (`modal_energy` computes them; the outputs and
    conditions read the charges only)."""
    y0, q0 = state0
    y_at, surface_y_at = _trajectory(model, p, I, y0)
    rate = totals_rate(I, 0.0)  # the charges' rates (the energies' are `modal_energy`'s)

    def surface_state_at(t):
        return surface_y_at(t - t0), q0 + rate * (t - t0)

    event, t_event = _first_crossing(lambda t: event_fn(t, surface_state_at(t)), t0, t1)
    t_end = jnp.where(event, t_event, t1)
    y_end, q_end = y_at(t_end - t0), q0 + rate * (t_end - t0)

    # the outputs read the voltage, current, charge and temperature: the surface state serves
    reached = ts <= t_end
    ys, qs = jax.vmap(surface_state_at)(jnp.where(reached, ts, t_end))
    R = diffrax.RESULTS
    result = R.where(event, R.event_occurred, R.successful)
    return (jnp.where(reached, ts, jnp.inf), (ys[:, start:], qs)), t_end, (y_end, q_end), result


def _first_crossing(G, t0, t1):
    """(whether, where) G, positive at t0, first goes to at most zero in (t0, t1]: on `_GRID`,
    refined, then bisection (`REFINE`, `BISECTIONS`), all without derivative; then the
    root's first and second derivatives with respect to whatever G closes over (the implicit
    function theorem's, as diffrax's root find gives them) from two Newton steps. Bisection,
    not Newton's method (nor regula falsi, even with the Illinois rule, which stalled at the
    same kink): where the surface stoichiometry reaches its clip the voltage's slope grows 15-80
    times within 0.01-0.1 s of the cut-off, and Newton's steps across that kink landed 0.2-0.5 s
    off (tests/test_modal.py)."""
    Gs = jax.vmap(lambda t: _sg(G(t)))
    t0_, span = _sg(t0), _sg(t1 - t0)
    ts = t0_ + jnp.asarray(_GRID) * span
    past = (Gs(ts) <= 0) & (jnp.arange(_GRID.size) > 0) & (span > 0)
    event, k = jnp.any(past), jnp.maximum(jnp.argmax(past), 1)

    def locate():
        lo, hi = ts[k - 1], ts[k]
        for _ in range(REFINE):
            s = lo + (hi - lo) * jnp.linspace(0.0, 1.0, 33)
            j = jnp.clip(jnp.argmax(Gs(s) <= 0), 1, 32)
            lo, hi = s[j - 1], s[j]

        t = bisect(lambda m: _sg(G(m)) <= 0, lo, hi, BISECTIONS)[1]
        # its derivatives: two Newton steps from the root, each adding its step's derivative but not
        # its value (the bisection's root stays, to the last bit, whatever G's shape there). Newton's
        # map has zero slope at a root, so two steps give its first and second derivatives exactly
        for _ in range(2):
            value, slope = jax.jvp(G, (t,), (jnp.ones_like(t),))
            step = value / nonzero(slope)
            t = t - (step - _sg(step))
        return t

    return event, jax.lax.cond(event, locate, lambda: jnp.asarray(t1, ts.dtype))
