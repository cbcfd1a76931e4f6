"""Ageing a population: SEI paths, their fade and resistance, electrochemical check-ups."""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ..batch import simulate_batch
from ..parameters import ParameterSet
from ..solution import Status
from ._film import SEIFilm, aged_parameters, capacity_fade, film_resistance
from ._laws import AbstractSEILaw
from ._sde import simulate_sei
from ._variance import VarianceSplit, variance_split

DEFAULT_CHECKUP = "Discharge at 1C until 2.5 V"


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
        checkup_status: `jaxcell.Status` codes, shape (M, C).
        law: name of the growth law's class; rate_names, rate_units: names and units of the
            rate constants.

    Fade trajectories of the population as realised (one path per cell) are ``fade[:, 0]``
    (cells x checkpoints); the other replicates serve `variance_split`.
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
        and units, e.g. reaction_rate_m_per_cycle), thickness_m, fade_Ah, resistance_Ohm;
        with check-ups also capacity_Ah, energy_Wh and status, filled on replicate 0 at the
        check-up cycles (NaN / -1 elsewhere). ``all_replicates=False`` keeps replicate 0 only.
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
        df = pd.DataFrame(table)
        if self.checkup_cycles.size:
            cap = np.full(df.shape[0], np.nan)
            energy = np.full(df.shape[0], np.nan)
            status = np.full(df.shape[0], -1)
            for c, cyc in enumerate(np.asarray(self.checkup_cycles)):
                rows = np.flatnonzero((rep == 0) & (cycles[step] == cyc))
                cap[rows] = np.asarray(self.checkup_capacity)[cell[rows], c]
                energy[rows] = np.asarray(self.checkup_energy)[cell[rows], c]
                status[rows] = np.asarray(self.checkup_status)[cell[rows], c]
            df["capacity_Ah"], df["energy_Wh"], df["status"] = cap, energy, status
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
    dt: float = 1.0,
    solver: diffrax.AbstractSolver | None = None,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> AgeingResult:
    """Age a population of cells through `cycles` cycles of SEI growth, with optional
    electrochemical check-ups.

    The SEI thickness of every cell follows the stochastic growth law `law` (`simulate_sei`:
    per-cell rate constants plus an intrinsic Wiener term), from which follow the capacity
    lost to SEI (`capacity_fade`) and the film resistance (`film_resistance`). At each cycle
    in `checkups`, replicate 0 of every cell is fed back into the electrochemical model
    (`aged_parameters`: less lithium, more resistance) and `experiment` is simulated with
    `jaxcell.simulate_batch` (all check-ups in one batch) to give its capacity and energy.

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
        dt: largest SDE step [cycles].
        solver: fixed-step diffrax SDE solver (default `diffrax.Euler()`).
        batch_size, progress: passed to `simulate_batch`.

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
    cycles = float(cycles)
    check = np.unique(
        np.asarray([] if checkups is None else checkups, dtype=float).ravel()
    )
    if check.size:
        if model is None:
            raise ValueError("checkups need a cell model, e.g. model=jaxcell.SPM().")
        if check[0] < 0 or check[-1] > cycles:
            raise ValueError(
                f"checkups must be cycles in [0, cycles={cycles:g}], got {check}."
            )
    base = (
        np.linspace(0.0, cycles, 101)
        if checkpoints is None
        else np.asarray(checkpoints, dtype=float).ravel()
    )
    paths = simulate_sei(
        law,
        n_cells=n_cells,
        cycles=cycles,
        key=key,
        replicates=replicates,
        checkpoints=np.union1d(base, check),
        initial_thickness=film.initial_thickness,
        dt=dt,
        solver=solver,
    )
    L = paths.thickness
    geometry = jax.tree.map(lambda x: x[:, None, None] if x.ndim else x, params)
    fade = capacity_fade(L, geometry, film)
    resistance = film_resistance(L, geometry, film)

    M, C = n_cells, check.size
    cap = np.full((M, C), np.nan)
    energy = np.full((M, C), np.nan)
    status = np.full((M, C), -1, dtype=np.int64)
    # check-up cycles as recorded (a checkpoint within a millionth of a step of the step grid
    # is moved onto it)
    idx = [int(np.argmin(np.abs(np.asarray(paths.cycles) - c))) for c in check]
    if C:
        cells = _broadcast(params, M)
        aged = [aged_parameters(cells, L[:, 0, i], film) for i in idx]
        stacked = jax.tree.map(
            lambda *xs: jnp.concatenate(xs), *[_broadcast(a, M) for a in aged]
        )
        sols = jax.tree.map(
            np.asarray,
            simulate_batch(
                model, stacked, experiment, batch_size=batch_size, progress=progress
            ),
        )
        for j in range(M * C):
            c, i = divmod(j, M)
            sol = jax.tree.map(lambda x, j=j: x[j], sols)
            status[i, c] = int(sol.status)
            if int(sol.status) < Status.MAX_STEPS:
                cap[i, c] = sol.capacity
                energy[i, c] = sol.energy
    return AgeingResult(
        cycles=paths.cycles,
        rates=paths.rates,
        thickness=L,
        fade=fade,
        resistance=resistance,
        checkup_cycles=jnp.asarray(np.asarray(paths.cycles)[idx]),
        checkup_capacity=jnp.asarray(cap),
        checkup_energy=jnp.asarray(energy),
        checkup_status=jnp.asarray(status),
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
    dt: float = 1.0,
) -> tuple[jax.Array, VarianceSplit]:
    """Run the SEI SDE with `n_cells` x `replicates` paths and split the variance of the
    capacity fade [A.h] at each checkpoint into heterogeneity and intrinsic parts.

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
        dt=dt,
    )
    return res.cycles, res.variance_split("fade")
