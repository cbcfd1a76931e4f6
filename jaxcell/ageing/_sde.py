"""The SEI growth SDE, solved with diffrax under `vmap`: one path per (cell, replicate)."""

from __future__ import annotations

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._laws import AbstractSEILaw


class Reflected(diffrax.AbstractWrappedSolver):
    """Wraps a fixed-step SDE solver so that the state never falls below `floor`.

    After every step the state is projected back, y_{n+1} = max(y_{n+1}, floor) (the projected
    Euler scheme). For additive noise this is the discrete Skorokhod map: it converges (strong
    order 1/2) to the SDE reflected at the floor, and it is a no-op on any path that stays
    above the floor. Output between steps is linear interpolation of the projected states.

    Example:
        >>> solver = Reflected(diffrax.Euler(), floor=0.0)
    """

    solver: diffrax.AbstractSolver
    floor: float = 0.0

    @property
    def term_structure(self):
        return self.solver.term_structure

    interpolation_cls = diffrax.LocalLinearInterpolation

    def order(self, terms):
        return self.solver.order(terms)

    def strong_order(self, terms):
        return self.solver.strong_order(terms)

    def init(self, terms, t0, t1, y0, args):
        return self.solver.init(terms, t0, t1, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        y1, y_error, _, solver_state, result = self.solver.step(
            terms, t0, t1, y0, args, solver_state, made_jump
        )
        y1 = jnp.maximum(y1, self.floor)
        return y1, y_error, {"y0": y0, "y1": y1}, solver_state, result

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)


class SEIPaths(eqx.Module):
    """SEI thickness paths from `simulate_sei`.

    Attributes:
        cycles: checkpoint times [cycles], shape (T,).
        rates: each cell's rate constants, shape (M, P), columns named by `rate_names`.
        thickness: SEI thickness [m], shape (M, K, T): cells x noise replicates x checkpoints.
        rate_names: names of the rate constants (the law's `rate_names`).
    """

    cycles: Float[Array, " checkpoints"]
    rates: Float[Array, "cells rates"]
    thickness: Float[Array, "cells replicates checkpoints"]
    rate_names: tuple[str, ...] = eqx.field(static=True)


def _time_grid(cycles: float, dt: float, checkpoints) -> tuple[np.ndarray, np.ndarray]:
    """Solver steps: a uniform grid of step <= dt with every checkpoint added as a step end,
    so that outputs are step values, never interpolated between steps."""
    n = max(1, math.ceil(cycles / dt - 1e-9))
    grid = np.linspace(0.0, cycles, n + 1)
    ts = np.asarray(checkpoints, dtype=float)
    # checkpoints within a millionth of a step of a grid point are that grid point
    near = np.abs(ts[:, None] - grid[None, :]) <= 1e-6 * (cycles / n)
    snapped = np.where(near.any(axis=1), grid[np.argmax(near, axis=1)], ts)
    return np.union1d(grid, snapped), snapped


def _paths(law_type, solver, rates, y0, sigma, keys, grid, save, tol):
    def one(theta, key):
        bm = diffrax.VirtualBrownianTree(grid[0], grid[-1], tol=tol, shape=(), key=key)
        terms = diffrax.MultiTerm(
            diffrax.ODETerm(lambda t, y, th: law_type.drift(y, th)),
            diffrax.ControlTerm(lambda t, y, th: sigma, bm),
        )
        sol = diffrax.diffeqsolve(
            terms,
            Reflected(solver, floor=0.0),
            grid[0],
            grid[-1],
            None,
            y0,
            args=theta,
            saveat=diffrax.SaveAt(ts=save),
            stepsize_controller=diffrax.StepTo(ts=grid),
            max_steps=grid.shape[0],
        )
        return law_type.thickness(sol.ys)

    return jax.vmap(one)(rates, keys)


# compiled once per (law type, solver, number of paths, number of steps, number of outputs)
_paths_jit = eqx.filter_jit(_paths)


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _checkpoints(cycles, checkpoints):
    if checkpoints is None:
        return np.linspace(0.0, cycles, 101)
    ts = np.unique(np.asarray(checkpoints, dtype=float).ravel())
    if ts.size == 0 or not np.all(np.isfinite(ts)) or ts[0] < 0 or ts[-1] > cycles:
        raise ValueError(
            f"checkpoints must be cycles in [0, cycles={cycles:g}], got {np.asarray(checkpoints)}."
        )
    return ts


def simulate_sei(
    law: AbstractSEILaw,
    *,
    n_cells: int,
    cycles: float,
    key,
    replicates: int = 1,
    checkpoints=None,
    initial_thickness: float = 5e-9,
    dt: float = 1.0,
    solver: diffrax.AbstractSolver | None = None,
) -> SEIPaths:
    """Sample SEI thickness paths of a population: `n_cells` cells x `replicates` noise paths.

    Each cell draws its rate constants theta once (quenched disorder, `law.sample_rates`);
    each (cell, replicate) pair then follows the SDE dy = b(y; theta) dt + sigma dW in the
    law's growth variable y (L, or L^2 for the sqrt(t) law), from L(0) = L0, on a fixed grid
    of steps <= `dt` cycles that includes every checkpoint. The Brownian motion is a
    `diffrax.VirtualBrownianTree`; y is reflected at 0 (`Reflected`), so L >= 0. The default
    solver is `diffrax.Euler` (Euler-Maruyama), which is exact in distribution at the step
    ends for the reaction- and diffusion-limited laws (constant drift in y, additive noise).

    Reproducible: the rate constants of cell i come from ``fold_in(key, 0)`` (then rate and
    cell), the Brownian path of (i, k) from ``fold_in(fold_in(fold_in(key, 1), i), k)``; the
    same key gives bit-identical paths, and a cell's path does not depend on `n_cells`.

    Args:
        law: the growth law with its rate constants and noise (e.g. `DiffusionLimited()`).
        n_cells: number of cells M (rate-constant draws).
        cycles: horizon [cycles].
        key: a JAX PRNG key.
        replicates: noise paths per cell K (K >= 2 for `variance_split`).
        checkpoints: cycles at which to record the thickness (default 101 evenly spaced,
            0 and `cycles` included).
        initial_thickness: L0 [m].
        dt: largest step [cycles].
        solver: a fixed-step diffrax SDE solver (default `diffrax.Euler()`).

    Returns:
        `SEIPaths` with `thickness` of shape (n_cells, replicates, checkpoints).

    Example:
        >>> paths = simulate_sei(DiffusionLimited(), n_cells=100, cycles=1000,
        ...                      key=jax.random.key(0), replicates=4)
        >>> paths.thickness.shape  # (100, 4, 101)
    """
    if not isinstance(law, AbstractSEILaw):
        raise TypeError(
            f"law must be an SEI growth law (ReactionLimited(), DiffusionLimited(), "
            f"MixedLimited()), got {type(law).__name__}."
        )
    n_cells = _positive_int("n_cells", n_cells)
    replicates = _positive_int("replicates", replicates)
    cycles = float(cycles)
    if not (math.isfinite(cycles) and cycles > 0):
        raise ValueError(f"cycles must be a positive number, got {cycles!r}.")
    dt = float(dt)
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive number of cycles, got {dt!r}.")
    if not (math.isfinite(float(initial_thickness)) and float(initial_thickness) >= 0):
        raise ValueError(
            f"initial_thickness must be a non-negative length [m], got {initial_thickness!r}."
        )
    grid, save = _time_grid(cycles, min(dt, cycles), _checkpoints(cycles, checkpoints))

    rates = law.sample_rates(jax.random.fold_in(key, 0), n_cells)
    noise_key = jax.random.fold_in(key, 1)
    cells, reps = np.meshgrid(np.arange(n_cells), np.arange(replicates), indexing="ij")
    keys = jax.vmap(
        lambda i, k: jax.random.fold_in(jax.random.fold_in(noise_key, i), k)
    )(jnp.asarray(cells.ravel()), jnp.asarray(reps.ravel()))
    # leaves of a VirtualBrownianTree finer than the finest step: each step's increment is an
    # exact Brownian increment, independent of the others
    tol = 0.5 * float(np.min(np.diff(grid)))
    thickness = _paths_jit(
        type(law),
        diffrax.Euler() if solver is None else solver,
        jnp.repeat(rates, replicates, axis=0),
        jnp.asarray(type(law).growth(float(initial_thickness)), dtype=jnp.float64),
        jnp.asarray(law.noise, dtype=jnp.float64),
        keys,
        jnp.asarray(grid),
        jnp.asarray(save),
        jnp.asarray(tol),
    )
    return SEIPaths(
        cycles=jnp.asarray(save),
        rates=rates,
        thickness=thickness.reshape(n_cells, replicates, -1),
        rate_names=type(law).rate_names,
    )
