"""Ageing a population: SEI paths, their fade and resistance bounded by the lithium inventory,
end of life, electrochemical check-ups."""

from __future__ import annotations

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from .._checks import check_int
from ..batch import simulate_batch
from ..parameters import ParameterSet
from ..solution import solved
from ..physics.constants import F
from ._film import (
    SEIFilm,
    aged_parameters,
    capacity_fade,
    film_resistance,
    lithium_inventory,
    max_thickness,
)
from ._laws import AbstractSEILaw
from ._sde import MAX_OUTPUT_BYTES, _checkpoints, require_memory, simulate_sei
from ._variance import VarianceSplit, variance_split

DEFAULT_CHECKUP = "Discharge at 1C until 2.5 V"

DEPLETED = -2
"""`AgeingResult.checkup_status` of a check-up not run because the cell's lithium inventory
is exhausted (its capacity and energy are 0)."""

# memory per (cell, replicate, checkpoint) in `age_population`: thickness, fade and
# resistance, and two temporaries of the same size, float64 each [bytes]
_BYTES_PER_VALUE = 40


class AgeingResult(eqx.Module):
    """A population aged by `age_population`.

    Attributes:
        cycles: checkpoint times [cycles], shape (T,).
        rates: each cell's rate constants, shape (M, P), named by `rate_names`.
        thickness: SEI thickness [m], shape (M, K, T): cells x noise replicates x checkpoints.
        fade: capacity lost to SEI [A.h], shape (M, K, T) (`capacity_fade`).
        resistance: SEI film resistance [Ohm], shape (M, K, T) (`film_resistance`).
        checkup_cycles: cycles of the electrochemical check-ups, shape (C,) (empty if none).
        checkup_capacity: discharge capacity [A.h] of replicate 0 of each cell at each
            check-up, shape (M, C); NaN where the solve failed.
        checkup_energy: discharge energy [W.h], shape (M, C); NaN where the solve failed.
        checkup_status: `jaxcell.Status` codes, shape (M, C); `DEPLETED` (-2) where the
            cell's lithium inventory was exhausted (capacity and energy 0, no solve).
        checkup_delivered: whether each check-up ran as asked (`Solution.delivered`: every
            step ended on its own limit), shape (M, C). A check-up whose step was skipped
            (its limit held at the start) or that stopped at a cut-off completes with a
            capacity that is not the cell's; summaries count the delivered ones only.
        inventory_capacity: the lithium inventory of each cell as charge, F n_inv / 3600
            [A.h], shape (M,) (`lithium_inventory`): the most the fade can reach.
        end_of_life_fade: the fade at which a cell reaches end of life [A.h], shape (M,):
            (1 - `end_of_life`) x nominal capacity.
        end_of_life_cycle: first checkpoint [cycles] at which each path's fade reached
            `end_of_life_fade`, shape (M, K); NaN if it did not.
        depleted_cycle: first checkpoint [cycles] at which each path's film held the whole
            lithium inventory (film growth stopped, fade = inventory, no capacity left), shape
            (M, K); NaN if it did not.
        law: name of the growth law's class; rate_names, rate_units: names and units of the
            rate constants.

    Fade trajectories of the population as realised (one path per cell) are ``fade[:, 0]``
    (cells x checkpoints); the other replicates serve `variance_split`. Every path is
    non-decreasing and 0 <= fade <= inventory_capacity.
    """

    cycles: Float[Array, " checkpoints"]
    rates: Float[Array, "cells rates"]
    thickness: Float[Array, "cells replicates checkpoints"]
    fade: Float[Array, "cells replicates checkpoints"]
    resistance: Float[Array, "cells replicates checkpoints"]
    checkup_cycles: Float[Array, " checkups"]
    checkup_capacity: Float[Array, "cells checkups"]
    checkup_energy: Float[Array, "cells checkups"]
    checkup_status: Int[Array, "cells checkups"]
    checkup_delivered: Bool[Array, "cells checkups"]
    inventory_capacity: Float[Array, " cells"]
    end_of_life_fade: Float[Array, " cells"]
    end_of_life_cycle: Float[Array, "cells replicates"]
    depleted_cycle: Float[Array, "cells replicates"]
    law: str = eqx.field(static=True)
    rate_names: tuple[str, ...] = eqx.field(static=True)
    rate_units: tuple[str, ...] = eqx.field(static=True)

    @property
    def n_cells(self) -> int:
        return self.thickness.shape[0]

    @property
    def n_replicates(self) -> int:
        return self.thickness.shape[1]

    def variance_split(self, quantity: str = "fade") -> VarianceSplit:
        """Heterogeneity / intrinsic split of `quantity` ("fade", "thickness" or "resistance")
        at every checkpoint (needs at least 2 cells and 2 replicates)."""
        if quantity not in ("fade", "thickness", "resistance"):
            raise ValueError(
                f"quantity must be 'fade', 'thickness' or 'resistance', got {quantity!r}."
            )
        return variance_split(getattr(self, quantity))

    def to_pandas(self, *, all_replicates: bool = True):
        """A tidy table, one row per (cell, replicate, checkpoint).

        Columns: cell, replicate, cycle, the cell's rate constants (named by `rate_names`
        and units, e.g. reaction_rate_m_per_cycle), thickness_m, fade_Ah, resistance_Ohm,
        end_of_life (fade at or above `end_of_life_fade`), depleted (lithium inventory
        exhausted); with check-ups also capacity_Ah, energy_Wh, status and delivered, filled
        on replicate 0 at the check-up cycles (NaN / -1 / empty elsewhere).
        ``all_replicates=False`` keeps replicate 0 only.
        """
        import pandas as pd

        M, K, T = self.thickness.shape
        keep = K if all_replicates else 1
        cell, rep, step = np.meshgrid(
            np.arange(M), np.arange(keep), np.arange(T), indexing="ij"
        )
        cell, rep, step = cell.ravel(), rep.ravel(), step.ravel()
        cycles = np.asarray(self.cycles)
        table = {"cell": cell, "replicate": rep, "cycle": cycles[step]}
        rates = np.asarray(self.rates)
        for j, (name, unit) in enumerate(zip(self.rate_names, self.rate_units)):
            table[f"{name}_{unit.replace('/', '_per_')}"] = rates[cell, j]
        for col, arr in (
            ("thickness_m", self.thickness),
            ("fade_Ah", self.fade),
            ("resistance_Ohm", self.resistance),
        ):
            table[col] = np.asarray(arr)[:, :keep].ravel()
        for col, at in (
            ("end_of_life", self.end_of_life_cycle),
            ("depleted", self.depleted_cycle),
        ):
            # NaN (never reached) compares False
            table[col] = cycles[step] >= np.asarray(at)[cell, rep]
        df = pd.DataFrame(table)
        if self.checkup_cycles.size:
            cap = np.full(df.shape[0], np.nan)
            energy = np.full(df.shape[0], np.nan)
            status = np.full(df.shape[0], -1)
            delivered = pd.array([pd.NA] * df.shape[0], dtype="boolean")
            for c, cyc in enumerate(np.asarray(self.checkup_cycles)):
                rows = np.flatnonzero((rep == 0) & (cycles[step] == cyc))
                cap[rows] = np.asarray(self.checkup_capacity)[cell[rows], c]
                energy[rows] = np.asarray(self.checkup_energy)[cell[rows], c]
                status[rows] = np.asarray(self.checkup_status)[cell[rows], c]
                delivered[rows] = np.asarray(self.checkup_delivered)[cell[rows], c]
            df["capacity_Ah"], df["energy_Wh"], df["status"], df["delivered"] = cap, energy, status, delivered
        return df

    def plot(self, *, quantiles=(0.05, 0.25, 0.75, 0.95), n_paths: int = 5, axes=None):
        """Fan plot of capacity fade (matplotlib); returns the figure.

        Panels: the fade fan over all cells and replicates (median, bands between symmetric
        `quantiles`, `n_paths` single cells, replicate 0); the variance split over cycles
        (with 2 or more replicates); the check-up capacities (with check-ups). `axes`, if
        given, must hold one matplotlib Axes per panel.
        """
        import matplotlib.pyplot as plt

        q = np.sort(np.asarray(quantiles, dtype=float))
        if (
            q.size % 2
            or np.any((q <= 0) | (q >= 1))
            or not np.allclose(q + q[::-1], 1.0)
        ):
            raise ValueError(
                f"quantiles must be symmetric pairs in (0, 1), e.g. (0.05, 0.95), got {quantiles}."
            )
        panels = (
            1
            + (self.n_replicates >= 2 and self.n_cells >= 2)
            + bool(self.checkup_cycles.size)
        )
        if axes is None:
            fig, axes = plt.subplots(
                1, panels, figsize=(5.2 * panels, 4.0), squeeze=False
            )
            axes = axes[0]
        else:
            axes = np.atleast_1d(axes)
            fig = axes[0].figure
        cyc = np.asarray(self.cycles)
        fade_mAh = 1e3 * np.asarray(self.fade).reshape(-1, cyc.size)
        ax = axes[0]
        for j in range(q.size // 2):
            lo, hi = np.quantile(fade_mAh, [q[j], q[-1 - j]], axis=0)
            ax.fill_between(
                cyc,
                lo,
                hi,
                color="C0",
                alpha=0.2 + 0.15 * j,
                lw=0,
                label=f"{100 * q[j]:g}-{100 * q[-1 - j]:g}%",
            )
        ax.plot(cyc, np.median(fade_mAh, axis=0), color="C0", lw=2, label="median")
        for i in range(min(n_paths, self.n_cells)):
            ax.plot(
                cyc,
                1e3 * np.asarray(self.fade)[i, 0],
                color="0.3",
                lw=0.7,
                alpha=0.8,
                label="single cells" if i == 0 else None,
            )
        ax.set_xlabel("Cycle")
        ax.set_ylabel("Capacity fade from SEI [mA.h]")
        ax.set_title(
            f"{self.law}: {self.n_cells} cells x {self.n_replicates} replicates"
        )
        ax.legend(loc="upper left", fontsize=8)
        k = 1
        if self.n_replicates >= 2 and self.n_cells >= 2:
            split = self.variance_split()
            het = 1e6 * np.asarray(split.heterogeneity)
            intr = 1e6 * np.asarray(split.intrinsic)
            ax = axes[k]
            ax.fill_between(
                cyc,
                0,
                intr,
                color="C1",
                alpha=0.6,
                lw=0,
                label="intrinsic E[Var(Q|theta)]",
            )
            ax.fill_between(
                cyc,
                intr,
                intr + het,
                color="C0",
                alpha=0.6,
                lw=0,
                label="heterogeneity Var(E[Q|theta])",
            )
            ax.set_xlabel("Cycle")
            ax.set_ylabel("Variance of fade [(mA.h)$^2$]")
            ax.set_title(
                f"Variance split (heterogeneity {100 * float(split.heterogeneity_fraction[-1]):.0f}% at the end)"
            )
            ax.legend(loc="upper left", fontsize=8)
            k += 1
        if self.checkup_cycles.size:
            ax = axes[k]
            cap = np.asarray(self.checkup_capacity)
            for c, cyc_c in enumerate(np.asarray(self.checkup_cycles)):
                jitter = (
                    (np.linspace(-0.5, 0.5, cap.shape[0]) if cap.shape[0] > 1 else 0.0)
                    * 0.02
                    * cyc[-1]
                )
                ax.plot(cyc_c + jitter, cap[:, c], ".", color="C2", ms=3, alpha=0.6)
            ax.plot(
                np.asarray(self.checkup_cycles),
                np.nanmedian(cap, axis=0),
                "o-",
                color="k",
                label="median",
            )
            ax.set_xlabel("Cycle")
            ax.set_ylabel("Check-up capacity [A.h]")
            ax.set_title("Electrochemical check-ups")
            ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        return fig


def _broadcast(params: ParameterSet, n: int) -> ParameterSet:
    return jax.tree.map(
        lambda x: jnp.broadcast_to(x, (n,) + x.shape[1:] if x.ndim else (n,)), params
    )


def _first_reached(reached, cycles):
    """First checkpoint [cycles] at which `reached` (..., T) holds, NaN where it never does."""
    first = np.argmax(reached, axis=-1)
    return np.where(reached.any(axis=-1), cycles[first], np.nan)


def age_population(
    params: ParameterSet,
    law: AbstractSEILaw,
    *,
    cycles: float,
    key,
    n_cells: int | None = None,
    replicates: int = 1,
    checkpoints=None,
    checkups=None,
    model=None,
    experiment=DEFAULT_CHECKUP,
    film: SEIFilm | None = None,
    end_of_life: float = 0.8,
    batch_size: int | None = None,
    progress: bool | None = None,
    max_output_bytes: float = MAX_OUTPUT_BYTES,
) -> AgeingResult:
    """Age a population of cells through `cycles` cycles of SEI growth, with optional
    electrochemical check-ups.

    The SEI thickness of every cell follows the stochastic growth law `law` (`simulate_sei`:
    per-cell rate constants on a gamma-process ageing clock, so every path is
    non-decreasing), from which follow the capacity lost to SEI (`capacity_fade`) and the
    film resistance (`film_resistance`).

    The film cannot consume more lithium than the cell has: once it holds the whole lithium
    inventory (`max_thickness`) it stops growing, the fade stays at the inventory's charge
    (`inventory_capacity`) and the path is recorded in `depleted_cycle`. A path whose fade
    reaches (1 - `end_of_life`) of the nominal capacity is recorded in `end_of_life_cycle`.
    A `RuntimeWarning` says how many paths exhausted the inventory or lost the whole nominal
    capacity, so a fade at that bound is never silent.

    At each cycle in `checkups`, replicate 0 of every cell is fed back into the
    electrochemical model (`aged_parameters`: less lithium, more resistance) and
    `experiment` is simulated with `jaxcell.simulate_batch` (all check-ups in one batch) to
    give its capacity and energy; a cell with no lithium left gets capacity and energy 0
    and status `DEPLETED`.

    Args:
        params: fresh cell parameters, one cell (shared by all) or a batch of cells (e.g. from
            a manufacturing-variation sample; then `n_cells` is the batch size).
        law: SEI growth law, e.g. `DiffusionLimited()`.
        cycles: horizon [cycles].
        key: a JAX PRNG key (same key, same result).
        n_cells: number of cells M (needed when `params` is a single cell).
        replicates: noise replicates K per cell (K >= 2 for the variance split).
        checkpoints: cycles at which to record the state (default 101 evenly spaced);
            check-up cycles are added.
        checkups: cycles of electrochemical check-ups (needs `model`), e.g. [0, 500, 1000].
        model: jaxcell cell model for the check-ups, e.g. `jaxcell.SPM()`.
        experiment: check-up protocol (default "Discharge at 1C until 2.5 V").
        film: SEI film properties (default `SEIFilm()`); its `initial_thickness` is L0.
        end_of_life: remaining fraction of the nominal capacity ("Nominal cell capacity
            [A.h]", or the inventory's charge where the set has none) that marks end of
            life, in (0, 1) (default 0.8).
        batch_size, progress: passed to `simulate_batch`.
        max_output_bytes: refuse (`ValueError`, before any compute) a population whose
            arrays, 40 bytes per (cell, replicate, checkpoint), would need more memory than
            this [bytes] (default 2 GiB). The number of cycles costs no memory.

    Example:
        >>> p = jaxcell.load_parameters("Chen2020")
        >>> res = age_population(p, DiffusionLimited(), n_cells=200, cycles=1000, replicates=4,
        ...                      key=jax.random.key(0), checkups=[0, 500, 1000], model=jaxcell.SPM())
        >>> res.variance_split().heterogeneity_fraction[-1], res.checkup_capacity.mean(axis=0)
        >>> res.plot()
    """
    film = SEIFilm() if film is None else film
    if not isinstance(params, ParameterSet):
        raise TypeError(
            f"params must be a ParameterSet (jaxcell.load_parameters(...)), got {type(params).__name__}."
        )
    batch = params.batch_shape
    if len(batch) > 1:
        raise ValueError(
            f"params must be one cell or a batch with one leading axis, got batch shape {batch}."
        )
    if batch:
        if n_cells is not None and n_cells != batch[0]:
            raise ValueError(
                f"n_cells={n_cells} does not match the {batch[0]} cells of the batched params."
            )
        n_cells = batch[0]
    elif n_cells is None:
        raise ValueError("n_cells is required when params is a single cell.")
    eol = float(end_of_life)
    if not 0.0 < eol < 1.0:
        raise ValueError(
            f"end_of_life must be a fraction of the nominal capacity in (0, 1), got {end_of_life!r}."
        )
    cycles = float(cycles)
    if not (np.isfinite(cycles) and cycles > 0):
        raise ValueError(f"cycles must be a positive finite number, got {cycles!r}.")
    check = np.unique(
        np.asarray([] if checkups is None else checkups, dtype=float).ravel()
    )
    if check.size:
        if model is None:
            raise ValueError("checkups need a cell model, e.g. model=jaxcell.SPM().")
        if not (check[0] >= 0 and check[-1] <= cycles):
            raise ValueError(
                f"checkups must be cycles in [0, cycles={cycles:g}], got {check}."
            )
    save = np.union1d(_checkpoints(cycles, checkpoints), check)
    check_int(n_cells, "n_cells")
    check_int(replicates, "replicates")
    require_memory(
        float(_BYTES_PER_VALUE) * n_cells * replicates * save.size,
        max_output_bytes,
        f"n_cells x replicates x checkpoints = {n_cells} x {replicates} x {save.size} "
        f"values of {_BYTES_PER_VALUE} bytes",
        "max_output_bytes",
    )
    paths = simulate_sei(
        law,
        n_cells=n_cells,
        cycles=cycles,
        key=key,
        replicates=replicates,
        checkpoints=save,
        initial_thickness=film.initial_thickness,
        max_output_bytes=max_output_bytes,
    )
    M, C = n_cells, check.size
    cyc = np.asarray(paths.cycles)
    geometry = jax.tree.map(lambda x: x[:, None, None] if x.ndim else x, params)
    top = np.asarray(max_thickness(geometry, film))
    raw = np.asarray(paths.thickness)
    depleted = raw >= top
    # the film stops growing when it holds the whole lithium inventory
    L = jnp.asarray(np.minimum(raw, top))
    fade = capacity_fade(L, geometry, film)
    resistance = film_resistance(L, geometry, film)

    inventory = np.broadcast_to(
        np.asarray(F * lithium_inventory(params) / 3600.0), (M,)
    )
    nominal = (
        np.broadcast_to(np.asarray(params["Nominal cell capacity [A.h]"]), (M,))
        if "Nominal cell capacity [A.h]" in params
        else inventory
    )
    eol_fade = (1.0 - eol) * nominal
    fade_np = np.asarray(fade)
    eol_cycle = _first_reached(fade_np >= eol_fade[:, None, None], cyc)
    depleted_cycle = _first_reached(depleted, cyc)
    n_dead = int(np.sum(depleted[..., -1]))
    n_over = int(np.sum(fade_np[..., -1] >= nominal[:, None]))
    if n_dead or n_over:
        warnings.warn(
            f"by cycle {cyc[-1]:g}, {n_over} of {M * replicates} SEI paths lost at least the "
            f"nominal capacity ({float(np.max(nominal)):.4g} A.h) and {n_dead} consumed the "
            f"whole lithium inventory ({float(np.max(inventory)):.4g} A.h): those films stop "
            f"growing at the inventory and their fade stays there; see "
            f"AgeingResult.depleted_cycle and end_of_life_cycle.",
            RuntimeWarning,
            stacklevel=2,
        )

    cap = np.full((M, C), np.nan)
    energy = np.full((M, C), np.nan)
    status = np.full((M, C), -1, dtype=np.int64)
    delivered = np.zeros((M, C), dtype=bool)
    idx = [int(np.searchsorted(cyc, c)) for c in check]
    if C:
        cells = _broadcast(params, M)
        # a cell with no lithium left has no capacity: its solve is replaced by the fresh
        # cell's (one batch shape, one compile) and its result by zeros
        gone = depleted[:, 0, idx]
        safe = np.where(gone, film.initial_thickness, np.asarray(L)[:, 0, idx])
        aged = [aged_parameters(cells, jnp.asarray(safe[:, c]), film) for c in range(C)]
        stacked = jax.tree.map(
            lambda *xs: jnp.concatenate(xs), *[_broadcast(a, M) for a in aged]
        )
        sols = simulate_batch(model, stacked, experiment, batch_size=batch_size, progress=progress)
        # cells are ordered check-up by check-up: entry j is check-up j // M of cell j % M
        per_cell = lambda x: np.asarray(x).reshape(C, M).T  # noqa: E731
        status = per_cell(sols.status).astype(np.int64)
        ok = np.asarray(solved(status))
        cap = np.where(ok, per_cell(sols.capacity), np.nan)
        energy = np.where(ok, per_cell(sols.energy), np.nan)
        delivered = per_cell(sols.delivered).astype(bool) & ~gone
        status, cap, energy = np.where(gone, DEPLETED, status), np.where(gone, 0.0, cap), np.where(gone, 0.0, energy)
    return AgeingResult(
        cycles=paths.cycles,
        rates=paths.rates,
        thickness=L,
        fade=fade,
        resistance=resistance,
        checkup_cycles=jnp.asarray(cyc[idx]),
        checkup_capacity=jnp.asarray(cap),
        checkup_energy=jnp.asarray(energy),
        checkup_status=jnp.asarray(status),
        checkup_delivered=jnp.asarray(delivered),
        inventory_capacity=jnp.asarray(inventory),
        end_of_life_fade=jnp.asarray(eol_fade),
        end_of_life_cycle=jnp.asarray(eol_cycle),
        depleted_cycle=jnp.asarray(depleted_cycle),
        law=type(law).__name__,
        rate_names=paths.rate_names,
        rate_units=type(law).rate_units,
    )


def fade_variance_split(
    params: ParameterSet,
    law: AbstractSEILaw,
    *,
    replicates: int,
    cycles: float,
    key,
    n_cells: int | None = None,
    checkpoints=None,
    film: SEIFilm | None = None,
) -> tuple[jax.Array, VarianceSplit]:
    """Sample `n_cells` x `replicates` SEI paths and split the variance of the capacity fade
    [A.h] at each checkpoint into heterogeneity and intrinsic parts.

    Returns ``(cycles, split)``: the checkpoint cycles (T,) and a `VarianceSplit` whose arrays
    have shape (T,) [A.h^2].

    Example:
        >>> cycles, split = fade_variance_split(p, DiffusionLimited(), n_cells=256, replicates=8,
        ...                                     cycles=1000, key=jax.random.key(0))
        >>> split.heterogeneity_fraction[-1]
    """
    film = SEIFilm() if film is None else film
    n = params.batch_shape[0] if params.batch_shape else n_cells
    if (
        not isinstance(replicates, int)
        or replicates < 2
        or not isinstance(n, int)
        or n < 2
    ):
        raise ValueError(
            f"the variance split needs n_cells >= 2 and replicates >= 2, got n_cells={n!r} "
            f"and replicates={replicates!r}."
        )
    res = age_population(
        params,
        law,
        n_cells=n_cells,
        replicates=replicates,
        cycles=cycles,
        key=key,
        checkpoints=checkpoints,
        film=film,
    )
    return res.cycles, res.variance_split("fade")
