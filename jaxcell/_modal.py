"""`ModalSolve`: the isothermal SPM under current, C-rate, rest and drive-cycle steps, solved
exactly in time.

In the SPM the state is the two particles' concentrations on spherical finite volumes (and a
temperature, constant when isothermal). With a diffusivity that does not depend on the
concentration and a current that does not depend on the state, each particle's equations are
linear with constant coefficients:

    dc/dt = (D / R^2) A c + (N / R) s,

with A and s fixed by the mesh (`mesh.spherical_diffusion` at D = R = 1) and N = j / F the
surface flux, proportional to the current. A = W^-1 K with W the shells' volumes and K
symmetric, so W^1/2 A W^-1/2 = Q L Q^T (numpy's `eigh`, once per mesh) and the modal
coordinates z = Q^T W^1/2 c evolve independently. Under a current linear in time over a
segment, I(tau) = I0 + I1 tau (a constant current is one segment with I1 = 0; a drive cycle,
interpolated linearly between its breakpoints, one segment per interval),

    z_i(tau) = exp(x) z_i(0) + (I0 tau phi1(x) + I1 tau^2 phi2(x)) b_i n / R,   x = k l_i tau,

with k = D / R^2, n the flux per ampere, phi1(x) = (e^x - 1) / x and phi2(x) = (e^x - 1 - x) / x^2;
each segment starts where the last ended (`Segments`). That is the exact solution of the same
discrete equations Rodas4 integrates (no time step, no tolerance), at any time, in a few vector
operations: outputs at any number of times, and derivatives of every kind (forward, reverse,
under `vmap`) by JAX's own rules, with no solver loop to differentiate. The totals' charges are
exact integrals of the linear current; the energy, the integral of I V, is Gauss-Legendre
quadrature (`_QUAD_T` over a constant-current step, within 2e-10 of its converged value;
`_PIECE_T` over each piece of a drive cycle's segments between sign changes of the current).

`simulate` uses it by default where it applies (`why_not`): the SPM (not the SPMe, whose
electrolyte diffusivity depends on concentration in most sets), isothermal, both particle
diffusivities constants (an Arrhenius factor at the fixed temperature is a constant), and an
experiment of current, C-rate, rest and drive-cycle steps only. Anything else goes to Rodas4, as
does any solve given an explicit `solver`; the `adjoint` has nothing to do here.

Events (`_first_crossing`): the end conditions on a grid of each segment, the first interval
where they cross refined on a finer grid, then bisection on the closed form to the last bit;
the time's first and second derivatives by two Newton steps at the root. Under a constant
current the conditions (voltage, stoichiometries) move monotonically, so the grid finds the
first crossing; a condition that dipped below zero and back inside one grid interval would be
missed, as the adaptive solver's event, checked at each step's end, could miss it inside a
step. The search and the quadrature read the SPM's voltage on a state whose particles are
uniform at their surface values (`_trajectory`): the same voltage, for a twentieth of the
arithmetic.
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
# the same on each of a drive cycle's segments, coarser (there are many, each short, and an
# adaptive solver's event looks only at its step ends): quarters (docs/dfn.md has the cost)
_SEGMENT_GRID = np.linspace(0.0, 1.0, 5)
REFINE, BISECTIONS = 1, 48
# A drive cycle's segments and output times are evaluated this many at a time (`jax.lax.map`)
_CHUNK = 64
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
# On each piece of a drive cycle's segments (between breakpoints and where the current changes
# sign): 6 nodes on each of 4 inner quarters' panels and on panels cut geometrically towards
# both ends (2^-12 .. 2^-3 of the piece)
_PIECE_END = np.concatenate([[0.0], 2.0 ** -np.arange(12.0, 2.0, -3.0)])
_PIECE_T, _PIECE_W = (np.concatenate(a) for a in zip(
    _panels(np.linspace(1.0 / 8, 7.0 / 8, 4), 6), _panels(_PIECE_END, 6), _panels(1.0 - _PIECE_END[::-1], 6)))


class ModalSolve(eqx.Module):
    """The exact solve of the isothermal SPM's particles under current, C-rate, rest and
    drive-cycle steps (module docstring). `simulate` picks it where it applies when no `solver`
    is given; passing it for a problem where it does not apply raises a ValueError saying why."""


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
    other = sorted(m for m, code in MODES.items() if code in modes and m not in ("current", "drive"))
    if other:
        return f"it solves current, C-rate, rest and drive-cycle steps, and the experiment has {', '.join(other)} steps"
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


def _phi2(x):
    """(e^x - 1 - x) / x^2, 1/2 at 0, with derivatives finite everywhere: its Taylor series
    where |x| < 1e-2 (to 2e-14), where the difference would lose digits."""
    small = jnp.abs(x) < 1e-2
    safe = jnp.where(small, 1.0, x)
    series = 0.5 + x * (1.0 / 6 + x * (1.0 / 24 + x * (1.0 / 120 + x / 720)))
    return jnp.where(small, series, (jnp.expm1(safe) - safe) / safe**2)


class Segments(eqx.Module):
    """A step's current as a piecewise-linear function of the time since the step's start:
    I(t) = amps[i] + slopes[i] (t - starts[i]) on segment i, [starts[i], starts[i] + lengths[i]].
    A constant current is one segment with `slopes` None; a drive cycle one segment per interval
    of its breakpoints (zero lengths past the step's end)."""

    starts: jax.Array
    lengths: jax.Array
    amps: jax.Array
    slopes: jax.Array | None = None

    def current(self, i, tau):
        """The current tau after the start of segment i."""
        return self.amps[i] if self.slopes is None else self.amps[i] + self.slopes[i] * tau

    def index(self, t):
        """The segment of time t (since the step's start): the last that starts at or before t."""
        if self.starts.shape[0] == 1:
            return jnp.zeros(jnp.shape(t), jnp.int32)
        return jnp.clip(jnp.searchsorted(_sg(self.starts), _sg(t), side="right") - 1, 0, self.starts.shape[0] - 1)


def _particle(p, domain, c0, edges, T, seg: Segments):
    """(i, tau -> the particle's modal coordinates tau after the start of segment i, the
    coordinates -> concentrations, the coordinates -> surface value), from a start at c0 at the
    first segment's start."""
    D_ = domain.capitalize()
    to_modes, from_modes, rates, inp = _modes(tuple(edges))
    surface = _surface_row(tuple(edges)) @ from_modes
    R = p[f"{D_} particle radius [m]"]
    c_max = p[f"Maximum concentration in {domain} electrode [mol.m-3]"]
    k = particle_diffusivity(domain, c0 / c_max, T, p) / R**2  # a constant (`why_not`)
    per_amp = inp * (uniform_interfacial_current(domain, cell.current_density(1.0, p), p) / (F * R))

    def advance(z, tau, I, dI):
        x = k * rates * tau
        z = jnp.exp(x) * z + (I * tau) * _phi1(x) * per_amp
        return z if dI is None else z + (dI * tau**2) * _phi2(x) * per_amp

    z0 = to_modes @ c0
    if seg.slopes is None:
        Z = z0[None]
    else:  # the coordinates at each segment's start
        Z = jax.lax.scan(lambda z, s: (advance(z, *s), z), z0, (seg.lengths, seg.amps, seg.slopes))[1]
    slopes = (lambda i: None) if seg.slopes is None else (lambda i: seg.slopes[i])

    def modes_at(i, tau):
        return advance(Z[i], tau, seg.amps[i], slopes(i))

    return modes_at, (lambda z: from_modes @ z), (lambda z: surface @ z)


@functools.cache
def _surface_row(edges: tuple) -> np.ndarray:
    """u with u . c = `mesh.surface_value(c, edges)`."""
    with jax.ensure_compile_time_eval():
        return np.asarray(jax.jacfwd(lambda c: mesh.surface_value(c, np.asarray(edges)))(np.zeros(len(edges) - 1)))


def _trajectory(model, p, seg: Segments, y0):
    """(i, tau -> the state tau after the start of segment i, from y0 at the step's start under
    the current `seg`; i, tau -> the state whose particles are uniform at that state's surface
    values). The SPM's voltage and end conditions read the particles only at their surfaces
    (`mesh.surface_value`), so they take the same values on the second as on the first
    (tests/test_modal.py), for a twentieth of the arithmetic: the event's search and the
    energy's quadrature evaluate them there."""
    c_n0, c_p0, T = model.split(y0)
    n_at, n_full, n_surface = _particle(p, "negative", c_n0, model.edges[0], T, seg)
    p_at, p_full, p_surface = _particle(p, "positive", c_p0, model.edges[1], T, seg)
    T = jnp.reshape(T, (1,))

    def y_at(i, tau):
        return jnp.concatenate([n_full(n_at(i, tau)), p_full(p_at(i, tau)), T])

    def surface_y_at(i, tau):
        return jnp.concatenate([jnp.full(c_n0.shape, n_surface(n_at(i, tau))),
                                jnp.full(c_p0.shape, p_surface(p_at(i, tau))), T])

    return y_at, surface_y_at


def _positive_part(a, b, h):
    """The integral of max(I, 0) over an interval of length h where I goes linearly from a to b."""
    same = a * b >= 0
    gap = jnp.where(same, 1.0, jnp.abs(a - b))
    a_, b_ = jnp.maximum(a, 0.0), jnp.maximum(b, 0.0)
    return h * jnp.where(same, 0.5 * (a_ + b_), 0.5 * (a_**2 + b_**2) / gap)


def _charges(seg: Segments):
    """(i, tau -> the charges [A.h] delivered on discharge and taken in on charge from the step's
    start to tau after the start of segment i), exactly."""
    def within(i, tau):
        a, b = seg.amps[i], seg.current(i, tau)
        return jnp.stack([_positive_part(a, b, tau), _positive_part(-a, -b, tau)]) / 3600.0

    if seg.slopes is None:
        return within
    before = jnp.cumsum(jax.vmap(within)(jnp.arange(seg.starts.shape[0]), seg.lengths), axis=0)
    before = jnp.concatenate([jnp.zeros((1, 2), before.dtype), before[:-1]])
    return lambda i, tau: before[i] + within(i, tau)


def modal_energy(model, p, seg: Segments, t0, t_end, y0):
    """The energy [W.h] delivered (I > 0) and taken in (I < 0) by a step from (t0, y0) to t_end
    under the current `seg`: I V integrated by Gauss-Legendre quadrature (`_QUAD_T`) on each
    segment, split where the current changes sign, as (discharge, charge). Apart from
    `modal_solve`, so that a program that reads no energy does not compute it (`simulate` adds it
    to the totals after the experiment's loop)."""
    surface_y_at = _trajectory(model, p, seg, y0)[1]
    nodes, weights = (jnp.asarray(_QUAD_T), jnp.asarray(_QUAD_W)) if seg.slopes is None else (
        jnp.asarray(_PIECE_T), jnp.asarray(_PIECE_W))

    def piece(i, a, b):  # from a to b after the start of segment i, where the current keeps its sign
        def rate(s):
            tau = a + s * (b - a)
            I = seg.current(i, tau)
            return totals_rate(I, model_voltage(model, p, surface_y_at(i, tau), I))[2:]

        return jnp.sum(weights[:, None] * jax.vmap(rate)(nodes), axis=0) * (b - a)

    if seg.slopes is None:
        return piece(0, 0.0, t_end - t0)
    lengths = jnp.clip(t_end - t0 - seg.starts, 0.0, seg.lengths)  # each segment's part before t_end
    # where the current changes sign inside a segment (else at its end)
    flat = seg.slopes == 0
    zero = jnp.where(flat, 0.0, -seg.amps / jnp.where(flat, 1.0, seg.slopes))
    cut = jnp.where((zero > 0) & (zero < lengths), zero, lengths)
    both = lambda a: piece(a[0], 0.0, a[1]) + piece(*a)
    return jnp.sum(jax.lax.map(both, (jnp.arange(seg.starts.shape[0]), cut, lengths), batch_size=_CHUNK), axis=0)


def modal_solve(model, p, seg: Segments, t0, t1, state0, ts, start, event_fn):
    """The step from (t0, state0) = (t0, (y, q)) to t1 or to the event (`event_fn(t, state)`, a
    scalar that ends the step where it goes from positive to at most zero) under the current
    `seg`, exactly (module docstring). Returns what `_scan.scan_solve` returns: (saved, t_end,
    state_end, result), `saved` = (ts', (y[start:], q)) at `ts` (in [t0, t1]), inf where the step
    did not reach them, its states those whose particles are uniform at their surface values
    (`_trajectory`; what the outputs read of them is exact). The totals' charges are exact;
    their energies are left at the step's start (`modal_energy` computes them; the outputs and
    conditions read the charges only)."""
    y0, q0 = state0
    y_at, surface_y_at = _trajectory(model, p, seg, y0)
    charges = _charges(seg)
    energies = q0[2:]

    def state_at(y_at, t, i=None):
        i = seg.index(t - t0) if i is None else i
        tau = t - t0 - seg.starts[i]
        return y_at(i, tau), jnp.concatenate([q0[:2] + charges(i, tau), energies])

    event, t_event = _first_crossing(lambda t, i: event_fn(t, state_at(surface_y_at, t, i)), t0, t1, seg)
    t_end = jnp.where(event, t_event, t1)
    y_end, q_end = state_at(y_at, t_end)

    # the outputs read the voltage, current, charge and temperature: the surface state serves
    reached = ts <= t_end
    at = lambda t: state_at(surface_y_at, t)
    ys, qs = (jax.vmap(at) if seg.slopes is None else functools.partial(jax.lax.map, at, batch_size=_CHUNK))(
        jnp.where(reached, ts, t_end))
    R = diffrax.RESULTS
    result = R.where(event, R.event_occurred, R.successful)
    return (jnp.where(reached, ts, jnp.inf), (ys[:, start:], qs)), t_end, (y_end, q_end), result


def _first_crossing(G, t0, t1, seg: Segments):
    """(whether, where) G(t, i) (the condition at time t in segment i of `seg`, t0 its start),
    positive at t0, first goes to at most zero in (t0, t1]: on `_GRID` in each segment, refined,
    then bisection (`REFINE`, `BISECTIONS`), all without derivative; then the root's first and
    second derivatives with respect to whatever G closes over (the implicit function theorem's,
    as diffrax's root find gives them) from two Newton steps. Bisection, not Newton's method
    (nor regula falsi, even with the Illinois rule, which stalled at the same kink): where the
    surface stoichiometry reaches its clip the voltage's slope grows 15-80 times within 0.01-0.1 s
    of the cut-off, and Newton's steps across that kink landed 0.2-0.5 s off (tests/test_modal.py)."""
    grid = _GRID if seg.slopes is None else _SEGMENT_GRID
    n, n_seg = grid.size, seg.starts.shape[0]
    Gs = jax.vmap(lambda t, i: _sg(G(t, i)))
    t0_, span = _sg(t0), _sg(t1 - t0)
    lengths = jnp.clip(span - _sg(seg.starts), 0.0, _sg(seg.lengths))
    ts = t0_ + _sg(seg.starts)[:, None] + jnp.asarray(grid) * lengths[:, None]
    segment = jnp.arange(n_seg)
    # a drive cycle's segments a chunk at a time: all at once, a vmapped batch of cells held every
    # grid point's modal coordinates (cells x segments x points x modes)
    values = Gs(ts[0], jnp.zeros(n, jnp.int32))[None] if n_seg == 1 else jax.lax.map(
        lambda a: Gs(a[0], jnp.full(n, a[1])), (ts, segment), batch_size=_CHUNK)
    ts, segment = ts.ravel(), jnp.repeat(segment, n)
    past = (values.ravel() <= 0) & (jnp.arange(ts.size) > 0) & (span > 0)
    event, k = jnp.any(past), jnp.maximum(jnp.argmax(past), 1)
    i = segment[k]

    def locate():
        lo, hi = ts[k - 1], ts[k]
        g = lambda t: G(t, i)
        for _ in range(REFINE):
            s = lo + (hi - lo) * jnp.linspace(0.0, 1.0, 33)
            j = jnp.clip(jnp.argmax(jax.vmap(lambda t: _sg(g(t)))(s) <= 0), 1, 32)
            lo, hi = s[j - 1], s[j]

        t = bisect(lambda m: _sg(g(m)) <= 0, lo, hi, BISECTIONS)[1]
        # its derivatives: two Newton steps from the root, each adding its step's derivative but not
        # its value (the bisection's root stays, to the last bit, whatever G's shape there). Newton's
        # map has zero slope at a root, so two steps give its first and second derivatives exactly
        for _ in range(2):
            value, slope = jax.jvp(g, (t,), (jnp.ones_like(t),))
            step = value / nonzero(slope)
            t = t - (step - _sg(step))
        return t

    return event, jax.lax.cond(event, locate, lambda: jnp.asarray(t1, ts.dtype))
