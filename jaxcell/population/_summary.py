"""Per-cell tables, distribution statistics and plots of a simulated population."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..parameters import ParameterSet
from ..solution import Solution, Status, solved
from ._sample import varied_parameter_names
from ._spec import Variation

CAPACITY = "capacity [A.h]"
ENERGY = "energy [W.h]"
PERCENTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def _label(column: str) -> str:
    """An axis label from a column name: first letter upper case, units as written ("A.h")."""
    return column[:1].upper() + column[1:]


def population_table(
    params: ParameterSet,
    solution: Solution | None = None,
    variation: Variation | None = None,
):
    """A tidy pandas table with one row per cell.

    Columns: ``cell``; ``pack`` and ``module`` (when `variation` is given: its hierarchy's
    layout); the sampled parameters (the variation's, and those that follow them; without a
    variation, every parameter that differs between cells), each named as in the
    `ParameterSet`; and, with a batched `solution` (from `simulate_batch`), ``capacity [A.h]``
    and ``energy [W.h]`` (`Solution.capacity` and `Solution.energy` of each cell: charge and
    energy delivered while discharging, integrated by the solver), ``status`` (the `Status`
    name, e.g. ``COMPLETED`` or ``LOWER_CUTOFF``), ``success`` (False where the solver
    failed), ``delivered`` (`Solution.delivered`: the experiment ran as asked) and ``outcome``
    (`Solution.message`: what stopped the cell, or which steps were skipped). Capacity and
    energy of a cell that did not deliver are those it reached; summaries leave it out.

    Example:
        >>> cells = sample_population(p, variation, 100, jax.random.key(0))
        >>> sols = jaxcell.simulate_batch(jaxcell.SPMe(), cells, "Discharge at 1C until 2.5 V")
        >>> df = population_table(cells, sols, variation)
        >>> df[["capacity [A.h]", "energy [W.h]"]].describe()
    """
    import pandas as pd

    shape = params.batch_shape
    if len(shape) != 1:
        raise ValueError(
            f"population_table needs a ParameterSet with one leading batch axis, got batch shape {shape}."
        )
    n = shape[0]
    data: dict[str, np.ndarray] = {"cell": np.arange(n)}
    if variation is not None:
        data["pack"], data["module"] = variation.hierarchy.layout(n)
        names = varied_parameter_names(params, variation)
    else:
        names = [
            k
            for k, v in params.values.items()
            if np.ndim(v) and np.ptp(np.asarray(v)) > 0
        ]
    for name in names:
        data[name] = np.broadcast_to(np.asarray(params[name]), (n,))
    if solution is not None:
        status = np.asarray(solution.status)
        if status.shape != (n,):
            raise ValueError(
                f"solution has status shape {status.shape}; expected one status per cell, ({n},)."
            )
        data[CAPACITY] = np.asarray(solution.capacity, dtype=float)
        data[ENERGY] = np.asarray(solution.energy, dtype=float)
        data["status"] = np.array([Status(int(s)).name for s in status])
        data["success"] = np.asarray(solved(status))
        data["delivered"] = np.asarray(solution.delivered)
        data["outcome"] = np.asarray(solution.message)
    return pd.DataFrame(data)


def population_summary(
    table,
    columns: Sequence[str] = (CAPACITY, ENERGY),
    percentiles: Sequence[float] = PERCENTILES,
):
    """Distribution statistics of some columns of a `population_table`, over the cells that
    delivered the experiment (`Solution.delivered`).

    Rows: ``cells`` (delivered cells, the ones counted), ``not delivered`` (cells left out:
    stopped early at a cut-off or stoichiometry limit, a step skipped, or a solver failure;
    `not_delivered` says why), ``failed`` (of those, solver failures), ``mean``, ``std``,
    ``cv`` (std / mean), ``min``, the `percentiles` (``1%`` ... ``99%``) and ``max``.

    Example:
        >>> population_summary(df).loc[["mean", "std", "5%", "95%"]]
    """
    import pandas as pd

    n = len(table)
    failed = ~table["success"].to_numpy(bool) if "success" in table else np.zeros(n, bool)
    ok = table["delivered"].to_numpy(bool) if "delivered" in table else ~failed
    stats = table.loc[ok, list(columns)].describe(percentiles=list(percentiles))
    stats = stats.rename(index={"count": "cells"})
    extra = pd.DataFrame(
        [
            [float((~ok).sum())] * len(columns),
            [float(failed.sum())] * len(columns),
            list(stats.loc["std"] / stats.loc["mean"]),
        ],
        index=["not delivered", "failed", "cv"],
        columns=list(columns),
    )
    order = ["cells", "not delivered", "failed", "mean", "std", "cv"] + [
        i for i in stats.index if i not in ("cells", "mean", "std")
    ]
    return pd.concat([stats, extra]).loc[order]


def not_delivered(table) -> dict[str, int]:
    """How many cells of a `population_table` did not deliver the experiment, by reason (the
    cells' `outcome` without the time of a stop, so that cells stopped in the same step for the
    same reason count together), most frequent first; empty when every cell delivered."""
    if "delivered" not in table:
        return {}
    reasons = table.loc[~table["delivered"].to_numpy(bool), "outcome"].astype(str)
    counts = reasons.str.replace(r", at t = [^)]* s\)", ")", regex=True).value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def plot_population(table, parameter: str | None = None, bins: int = 30):
    """Histograms of capacity and energy and a scatter of one sampled parameter against
    capacity, from a `population_table` with outputs. Cells that did not deliver the
    experiment are left out of the histograms and drawn as red crosses in the scatter. By default the parameter is the one
    whose rank correlation with capacity is strongest. Returns the matplotlib Figure.

    Example:
        >>> fig = plot_population(df, "Negative electrode thickness [m]")
        >>> fig.savefig("spread.png")
    """
    import matplotlib.pyplot as plt

    for col in (CAPACITY, ENERGY):
        if col not in table:
            raise ValueError(
                f"plot_population needs a population_table with outputs (column {col!r} missing)."
            )
    ok = table["delivered"].to_numpy(bool) if "delivered" in table else table["success"].to_numpy(bool)
    skip = {"cell", "pack", "module", CAPACITY, ENERGY, "status", "success", "delivered", "outcome"}
    candidates = [c for c in table.columns if c not in skip and table[c].nunique() > 1]
    if parameter is None and candidates:
        rank = (
            table.loc[ok, candidates + [CAPACITY]]
            .rank()
            .corr()[CAPACITY]
            .drop(CAPACITY)
            .abs()
        )
        parameter = rank.idxmax() if rank.notna().any() else candidates[0]
    elif parameter is not None and parameter not in table:
        raise ValueError(
            f"{parameter!r} is not a column of the table (sampled: {candidates})."
        )

    fig, axes = plt.subplots(
        1, 3 if parameter else 2, figsize=(13 if parameter else 9, 3.8)
    )
    for ax, col in zip(axes, (CAPACITY, ENERGY)):
        values = table.loc[ok, col]
        ax.hist(values, bins=bins, color="C0", alpha=0.8)
        ax.axvline(values.mean(), color="k", lw=1, label=f"mean {values.mean():.4g}")
        ax.set_xlabel(_label(col))
        ax.set_ylabel("Cells")
        ax.set_title(f"{ok.sum()} cells, cv {values.std() / values.mean():.2%}")
        ax.legend(fontsize=8)
    if parameter:
        ax = axes[2]
        ax.scatter(
            table.loc[ok, parameter],
            table.loc[ok, CAPACITY],
            s=8,
            alpha=0.7,
            label="cells",
        )
        if (~ok).any():
            ax.scatter(
                table.loc[~ok, parameter],
                table.loc[~ok, CAPACITY],
                s=30,
                marker="x",
                color="red",
                label="not delivered",
            )
            ax.legend(fontsize=8)
        ax.set_xlabel(parameter)
        ax.set_ylabel(_label(CAPACITY))
    fig.tight_layout()
    return fig
