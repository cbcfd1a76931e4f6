"""The `Solution` pytree returned by `simulate`, its status codes, table and plot."""

from __future__ import annotations

import enum

import equinox as eqx
import jax
import numpy as np


class Status(enum.IntEnum):
    """How an experiment ended (one code per cell)."""

    COMPLETED = 0
    LOWER_CUTOFF = 1
    UPPER_CUTOFF = 2
    STOICHIOMETRY_LIMIT = 3
    MAX_STEPS = 4
    SOLVER_FAILURE = 5


STATUS_MESSAGES = {
    Status.COMPLETED: "completed: every step ran to its end (see step_end for how each ended)",
    Status.LOWER_CUTOFF: "stopped: the voltage reached the lower voltage cut-off",
    Status.UPPER_CUTOFF: "stopped: the voltage reached the upper voltage cut-off",
    Status.STOICHIOMETRY_LIMIT: "stopped: a particle surface stoichiometry reached 0 or 1",
    Status.MAX_STEPS: "failed: the solver reached its maximum number of steps",
    Status.SOLVER_FAILURE: "failed: the solver could not continue (step size collapsed or a non-finite state)",
}


class StepEnd(enum.IntEnum):
    """How one step ended."""

    DURATION = 0  # its 'for ...' duration elapsed
    VOLTAGE = 1  # it reached its 'until ... V'
    CURRENT = 2  # its current fell to 'until ... A / C/x'
    MAX_DURATION = 3  # no limit reached within the default maximum duration
    ALREADY_MET = 4  # its end condition held at its start: skipped
    STOPPED = 5  # the experiment stopped in this step (see Solution.status)
    NOT_RUN = 6  # an earlier step stopped the experiment


class Solution(eqx.Module):
    """Result of `jaxcell.simulate`: arrays of equal length, leading batch axes under `vmap`.

    Attributes:
        t: time [s].
        voltage: terminal voltage [V].
        current: current [A], positive on discharge (PyBaMM's convention).
        discharge_capacity: charge passed since the start [A.h], positive on discharge.
        temperature: cell temperature [K].
        status: `Status` code of the experiment.
        step_end: `StepEnd` code of each step; step_end_time: its end time [s].
        final_state: model state at the end.
    """

    t: jax.Array
    voltage: jax.Array
    current: jax.Array
    discharge_capacity: jax.Array
    temperature: jax.Array
    status: jax.Array
    step_end: jax.Array
    step_end_time: jax.Array
    final_state: jax.Array

    @property
    def message(self) -> str | list[str]:
        """Human-readable status (a list for a batch)."""
        codes = np.asarray(self.status)
        if codes.ndim == 0:
            return STATUS_MESSAGES[Status(int(codes))]
        return [STATUS_MESSAGES[Status(int(c))] for c in codes.ravel()]

    @property
    def success(self):
        """True where the experiment ran to its end or stopped at a physical limit (not a
        solver failure)."""
        return self.status < Status.MAX_STEPS

    def _single(self, name: str):
        if np.ndim(self.status) != 0:
            raise ValueError(f"{name} works on one cell; index the batch first, e.g. jax.tree.map(lambda x: x[0], sol).")

    def _finite(self):
        t = np.asarray(self.t)
        v = np.stack([np.asarray(x) for x in (self.voltage, self.current, self.discharge_capacity, self.temperature)])
        keep = np.isfinite(v[0])
        # drop the repeated end points of fixed-length output (same time, same values); keep
        # the jump at a step change (same time, new current)
        dup = np.zeros_like(keep)
        dup[1:] = (np.diff(t) == 0) & np.all(v[:, 1:] == v[:, :-1], axis=0) & keep[1:] & keep[:-1]
        return keep & ~dup

    @property
    def capacity(self) -> float:
        """Net charge discharged by the end [A.h]."""
        self._single("capacity")
        keep = self._finite()
        return float(np.asarray(self.discharge_capacity)[keep][-1])

    @property
    def energy(self) -> float:
        """Net energy delivered [W.h] (trapezoid rule on the output points)."""
        self._single("energy")
        keep = self._finite()
        t = np.asarray(self.t)[keep]
        pw = np.asarray(self.voltage)[keep] * np.asarray(self.current)[keep]
        return float(np.sum(0.5 * (pw[1:] + pw[:-1]) * np.diff(t)) / 3600.0)

    def to_pandas(self):
        """A tidy table: columns t_s, V_V, I_A, Q_Ah, T_K (repeated end points and unreached
        times dropped)."""
        import pandas as pd

        self._single("to_pandas")
        keep = self._finite()
        return pd.DataFrame({
            "t_s": np.asarray(self.t)[keep],
            "V_V": np.asarray(self.voltage)[keep],
            "I_A": np.asarray(self.current)[keep],
            "Q_Ah": np.asarray(self.discharge_capacity)[keep],
            "T_K": np.asarray(self.temperature)[keep],
        })

    def plot(self, axes=None, label=None):
        """Voltage, current and temperature against time (matplotlib). Returns the figure."""
        import matplotlib.pyplot as plt

        df = self.to_pandas()
        if axes is None:
            fig, axes = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
        else:
            fig = axes[0].figure
        th = df.t_s / 3600.0
        axes[0].plot(th, df.V_V, label=label)
        axes[0].set_ylabel("Voltage [V]")
        axes[1].plot(th, df.I_A, label=label)
        axes[1].set_ylabel("Current [A]")
        axes[2].plot(th, df.T_K, label=label)
        axes[2].set_ylabel("Temperature [K]")
        axes[2].set_xlabel("Time [h]")
        axes[0].set_title(self.message)
        if label is not None:
            axes[0].legend()
        fig.tight_layout()
        return fig
