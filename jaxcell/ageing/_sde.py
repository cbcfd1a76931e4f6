"""Sampling SEI thickness paths: per-cell rate constants and a gamma-process ageing clock."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import check_int
from ._laws import AbstractSEILaw

MAX_OUTPUT_BYTES = 2 * 2**30
"""Default limit on the memory of a sampled population's arrays [bytes] (2 GiB)."""


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


def ageing_clock(key, cycles, clock_variance):
    """One path of the ageing clock tau at the times `cycles`, a gamma process.

    tau(0) = 0, and its increment over an interval of dt cycles is Gamma(shape dt / nu,
    scale nu) [cycles], independent of the other intervals: E[tau(t)] = t, Var[tau(t)] =
    nu t, Cov(tau(s), tau(t)) = nu min(s, t), and tau never decreases. nu = 0 gives tau = t.

    Args:
        key: a JAX PRNG key.
        cycles: non-decreasing times t >= 0 [cycles], shape (T,).
        clock_variance: nu >= 0 [cycle].

    Returns:
        tau at each time [cycles], shape (T,).

    Example:
        >>> ageing_clock(jax.random.key(0), jnp.array([10.0, 100.0]), 2.0)
    """
    t = jnp.asarray(cycles, dtype=jnp.float64)
    dt = jnp.diff(t, prepend=0.0)
    nu = jnp.asarray(clock_variance, dtype=jnp.float64)
    noisy = nu > 0
    scale = jnp.where(noisy, nu, 1.0)
    shape = jnp.where(dt > 0, dt / scale, 1.0)
    draws = scale * jax.random.gamma(key, shape, dtype=jnp.float64)
    increments = jnp.where(dt > 0, jnp.where(noisy, draws, dt), 0.0)
    return jnp.cumsum(increments)


def _paths(law_type, rates, keys, cycles, initial_thickness, clock_variance):
    def one(theta, key):
        tau = ageing_clock(key, cycles, clock_variance)
        L = law_type.deterministic_thickness(tau, initial_thickness, theta)
        # L_det is increasing in tau; the running maximum only removes last-bit rounding
        # between nearly equal clock values
        return jax.lax.cummax(jnp.maximum(L, initial_thickness))

    return jax.vmap(one)(rates, keys)


# compiled once per (law type, number of paths, number of checkpoints)
_paths_jit = eqx.filter_jit(_paths)


def _checkpoints(cycles, checkpoints):
    if checkpoints is None:
        return np.linspace(0.0, cycles, 101)
    ts = np.unique(np.asarray(checkpoints, dtype=float).ravel())
    if ts.size == 0:
        raise ValueError(f"checkpoints is empty: give at least one cycle in [0, cycles={cycles:g}], or None for 101.")
    if not np.all(np.isfinite(ts)) or ts[0] < 0 or ts[-1] > cycles:
        raise ValueError(
            f"checkpoints must be cycles in [0, cycles={cycles:g}], got {np.asarray(checkpoints)}."
        )
    return ts


def require_memory(need: float, limit: float, what: str, option: str) -> None:
    """Raise `ValueError`, before any compute, if an output needs more than `limit` bytes.

    `need` is the estimate [bytes], `what` says what sets it (the sizes, by their option
    names) and `option` names the setting that holds the limit.
    """
    if need > limit:
        raise ValueError(
            f"the requested output needs {need / 2**30:.3g} GiB ({what}), above the limit "
            f"{option} = {limit / 2**30:.3g} GiB: lower one of the sizes, or raise {option} "
            f"if the memory is there."
        )


def simulate_sei(
    law: AbstractSEILaw,
    *,
    n_cells: int,
    cycles: float,
    key,
    replicates: int = 1,
    checkpoints=None,
    initial_thickness: float = 5e-9,
    max_output_bytes: float = MAX_OUTPUT_BYTES,
) -> SEIPaths:
    """Sample SEI thickness paths of a population: `n_cells` cells x `replicates` noise paths.

    Each cell draws its rate constants theta once (quenched disorder, `law.sample_rates`);
    each (cell, replicate) pair then draws its own ageing clock tau (`ageing_clock`, a gamma
    process with E[tau(t)] = t and Var[tau(t)] = nu t, nu = `law.clock_variance`), and its
    thickness is the law's closed form on that clock, L(t) = L_det(tau(t); theta).

    The scheme is exact, with no time step: the clock's increments between checkpoints are
    independent gamma variables, drawn directly, and L_det is the law's exact noise-free
    solution. The cost and memory are those of the output, (cells x replicates x
    checkpoints), whatever the number of cycles, and no discretisation error enters. Since
    tau and L_det never decrease, every path is non-decreasing, L(t) >= L0.

    Reproducible: the rate constants of cell i come from ``fold_in(key, 0)`` (then rate and
    cell), the clock of (i, k) from ``fold_in(fold_in(fold_in(key, 1), i), k)``; the same
    key and checkpoints give bit-identical paths, and a cell's path does not depend on
    `n_cells`.

    Args:
        law: the growth law with its rate constants and clock variance (e.g.
            `DiffusionLimited()`).
        n_cells: number of cells M (rate-constant draws).
        cycles: horizon [cycles], positive and finite.
        key: a JAX PRNG key.
        replicates: noise paths per cell K (K >= 2 for `variance_split`).
        checkpoints: cycles at which to record the thickness (default 101 evenly spaced,
            0 and `cycles` included).
        initial_thickness: L0 [m].
        max_output_bytes: refuse (`ValueError`, before any compute) a population whose
            arrays would need more memory than this [bytes] (default 2 GiB).

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
    n_cells, replicates = check_int(n_cells, "n_cells"), check_int(replicates, "replicates")
    cycles = float(cycles)
    if not (math.isfinite(cycles) and cycles > 0):
        raise ValueError(
            f"cycles must be a positive finite number, got {cycles!r}."
        )
    if not (math.isfinite(float(initial_thickness)) and float(initial_thickness) >= 0):
        raise ValueError(
            f"initial_thickness must be a non-negative length [m], got {initial_thickness!r}."
        )
    save = _checkpoints(cycles, checkpoints)
    # the clock draws, the clock and the thickness, float64 each
    require_memory(
        24.0 * n_cells * replicates * save.size,
        max_output_bytes,
        f"n_cells x replicates x checkpoints = {n_cells} x {replicates} x {save.size} "
        f"values of 24 bytes",
        "max_output_bytes",
    )

    rates = law.sample_rates(jax.random.fold_in(key, 0), n_cells)
    noise_key = jax.random.fold_in(key, 1)
    cells, reps = np.meshgrid(np.arange(n_cells), np.arange(replicates), indexing="ij")
    keys = jax.vmap(
        lambda i, k: jax.random.fold_in(jax.random.fold_in(noise_key, i), k)
    )(jnp.asarray(cells.ravel()), jnp.asarray(reps.ravel()))
    thickness = _paths_jit(
        type(law),
        jnp.repeat(rates, replicates, axis=0),
        keys,
        jnp.asarray(save),
        jnp.asarray(float(initial_thickness), dtype=jnp.float64),
        jnp.asarray(law.clock_variance, dtype=jnp.float64),
    )
    return SEIPaths(
        cycles=jnp.asarray(save),
        rates=rates,
        thickness=thickness.reshape(n_cells, replicates, -1),
        rate_names=type(law).rate_names,
    )
