"""The `Solution` pytree returned by `simulate`, its status codes, table and plot."""

from __future__ import annotations

import enum

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


class Status(enum.IntEnum):
    """How an experiment ended (one code per cell)."""

    COMPLETED = 0
    LOWER_CUTOFF = 1
    UPPER_CUTOFF = 2
    STOICHIOMETRY_LIMIT = 3
    MAX_STEPS = 4
    SOLVER_FAILURE = 5
    NOT_CONSERVED = 6
    ELECTROLYTE_DEPLETED = 7
    BAD_T_EVAL = 8
    BAD_PARAMETERS = 9
    INFEASIBLE_CONTROL = 10


# the experiment stopped at a physical limit: a valid solve up to there
PHYSICAL_STOPS = (Status.LOWER_CUTOFF, Status.UPPER_CUTOFF, Status.STOICHIOMETRY_LIMIT, Status.ELECTROLYTE_DEPLETED)


def solved(status):
    """True where `status` (codes, any shape) is a valid solve: the experiment ran to its end or
    stopped at a physical limit, not a solver failure."""
    status = jnp.asarray(status)
    return (status == Status.COMPLETED) | jnp.isin(status, jnp.asarray(PHYSICAL_STOPS))


STATUS_MESSAGES = {
    Status.COMPLETED: "completed: every step ended on its own condition",
    Status.LOWER_CUTOFF: "stopped: the voltage reached the lower voltage cut-off",
    Status.UPPER_CUTOFF: "stopped: the voltage reached the upper voltage cut-off",
    Status.STOICHIOMETRY_LIMIT: "stopped: a particle surface stoichiometry reached 0 or 1",
    Status.MAX_STEPS: "failed: the solver reached its maximum number of steps",
    Status.SOLVER_FAILURE: "failed: the solver could not continue (step size collapsed or a non-finite state)",
    Status.NOT_CONSERVED: (
        "failed: the particles' lithium does not match the charge passed (the solve lost accuracy, "
        "e.g. at extreme parameter values)"
    ),
    Status.ELECTROLYTE_DEPLETED: (
        "stopped: the electrolyte ran out somewhere in the cell, where this model does not hold "
        "(the DFN does: its reaction moves away from the depleted region)"
    ),
    Status.BAD_T_EVAL: (
        "failed: t_eval was not finite, non-negative and non-decreasing (a traced t_eval, e.g. under jax.jit; "
        "a concrete one is refused with an error)"
    ),
    Status.INFEASIBLE_CONTROL: (
        "failed: Newton's iteration found no current that realises the step's power, voltage or resistance, at "
        "the step's start or end (a power above the cell's maximum at its state, a voltage out of reach, or a "
        "charge through less than the cell's own resistance)"
    ),
    Status.BAD_PARAMETERS: (
        "failed: a parameter was outside its physical range or not finite (a traced value, e.g. under jax.vmap or "
        "jax.grad, which ParameterSet.update cannot check; a concrete one is refused with an error)"
    ),
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


# how a step may end when the experiment was delivered as asked: on its own end condition
_DELIVERED_ENDS = (StepEnd.DURATION, StepEnd.VOLTAGE, StepEnd.CURRENT)


def _describe(status: int, step_end: np.ndarray, step_end_time: np.ndarray) -> str:
    """The message of one cell: its status (with the step and time of a stop), and for a
    completed experiment the steps that did not end on their own condition."""
    status = Status(int(status))
    if status in (Status.BAD_T_EVAL, Status.BAD_PARAMETERS):  # the whole run is void: no step to name
        return STATUS_MESSAGES[status]
    if status != Status.COMPLETED:
        stopped = np.flatnonzero(step_end == StepEnd.STOPPED)
        if stopped.size == 0:
            return STATUS_MESSAGES[status]
        k = int(stopped[0])
        start = float(step_end_time[k - 1]) if k else 0.0
        end = float(step_end_time[k])
        when = f"at the start of step {k + 1}" if end <= start else f"in step {k + 1}, at t = {end:.6g} s"
        return f"{STATUS_MESSAGES[status]} ({when})"
    skipped = [i + 1 for i, e in enumerate(step_end) if e == StepEnd.ALREADY_MET]
    unmet = [i + 1 for i, e in enumerate(step_end) if e == StepEnd.MAX_DURATION]
    if not skipped and not unmet:
        return "completed: every step ended on its own condition"
    parts = []
    if skipped:
        parts.append(f"step{'s' if len(skipped) > 1 else ''} {', '.join(map(str, skipped))} skipped (end condition held at the start)")
    if unmet:
        parts.append(
            f"step{'s' if len(unmet) > 1 else ''} {', '.join(map(str, unmet))} stopped at the maximum duration "
            "without reaching its limit"
        )
    return "completed, but " + "; ".join(parts)


class Solution(eqx.Module):
    """Result of `jaxcell.simulate`: arrays of equal length, leading batch axes under `vmap`.

    Attributes:
        t: time [s].
        voltage: terminal voltage [V].
        current: current [A], positive on discharge (PyBaMM's convention).
        discharge_capacity: net charge passed since the start at each time [A.h], positive on
            discharge (PyBaMM's "Discharge capacity [A.h]").
        temperature: cell temperature [K].
        step: index of the experiment's step each output belongs to (0 for the first; an
            output time on a step change belongs to the new step; -1 where no step ran: times
            the experiment did not reach, and the repeated points of a step that was skipped).
        status: `Status` code of the experiment.
        step_end: `StepEnd` code of each step; step_end_time: its end time [s].
        final_state: model state at the end.
        discharged_capacity, charged_capacity: charge delivered while discharging and taken in
            while charging over the whole experiment [A.h], one per cell.
        discharged_energy, charged_energy: energy delivered while discharging and taken in
            while charging [W.h], one per cell.
        step_totals: the same four for each step on its own, (n_steps, 4): discharged and
            charged A.h, discharged and charged W.h (`step_capacity`, `step_energy`, `steps`).

    The four totals are integrated by the solver with the cell's state, so they are exact to
    the solver's tolerance whatever the output times, and differentiable; see `capacity`,
    `energy`, `net_charge`, `charge_throughput`.
    """

    t: jax.Array
    voltage: jax.Array
    current: jax.Array
    discharge_capacity: jax.Array
    temperature: jax.Array
    step: jax.Array
    status: jax.Array
    step_end: jax.Array
    step_end_time: jax.Array
    final_state: jax.Array
    discharged_capacity: jax.Array
    charged_capacity: jax.Array
    discharged_energy: jax.Array
    charged_energy: jax.Array
    step_totals: jax.Array

    @property
    def message(self) -> str | list[str]:
        """Human-readable status (a list for a batch): what stopped the experiment, or for a
        completed one, which steps were skipped or ran to their maximum duration."""
        codes = np.asarray(self.status)
        ends = np.asarray(self.step_end).reshape(codes.size, -1)
        times = np.asarray(self.step_end_time).reshape(codes.size, -1)
        msgs = [_describe(c, e, t) for c, e, t in zip(codes.ravel(), ends, times)]
        return msgs[0] if codes.ndim == 0 else msgs

    @property
    def success(self):
        """True where the experiment ran to its end or stopped at a physical limit (not a
        solver failure). See `delivered` for whether the experiment ran as asked."""
        return solved(self.status)

    @property
    def delivered(self):
        """True where the cell delivered the experiment as asked: status COMPLETED and every
        step ended on its own condition (its duration, voltage or current limit). False for an
        experiment stopped early (a cut-off, a stoichiometry limit, a solver failure), a step
        skipped because its end condition held at its start, or a step that ran to its maximum
        duration without reaching its limit. Population summaries average delivered cells only."""
        ends = jnp.asarray(self.step_end)
        ok = jnp.isin(ends, jnp.asarray(_DELIVERED_ENDS))
        return (jnp.asarray(self.status) == Status.COMPLETED) & jnp.all(ok, axis=-1)

    # -- totals over the experiment (integrated by the solver; one per cell) --------------------
    @property
    def capacity(self) -> jax.Array:
        """Discharge capacity [A.h]: the charge delivered while discharging, over the whole
        experiment (charging does not subtract from it). One per cell; differentiable."""
        return self.discharged_capacity

    @property
    def energy(self) -> jax.Array:
        """Discharge energy [W.h]: the energy delivered while discharging, the integral of
        voltage x current over the discharge. One per cell; differentiable."""
        return self.discharged_energy

    @property
    def net_charge(self) -> jax.Array:
        """Net charge discharged by the end [A.h] (discharged minus charged; PyBaMM's final
        "Discharge capacity [A.h]")."""
        return self.discharged_capacity - self.charged_capacity

    @property
    def net_energy(self) -> jax.Array:
        """Net energy delivered by the end [W.h] (discharged minus charged)."""
        return self.discharged_energy - self.charged_energy

    @property
    def charge_throughput(self) -> jax.Array:
        """Charge passed in either direction [A.h] (PyBaMM's "Throughput capacity [A.h]")."""
        return self.discharged_capacity + self.charged_capacity

    @property
    def energy_throughput(self) -> jax.Array:
        """Energy passed in either direction [W.h]."""
        return self.discharged_energy + self.charged_energy

    # -- the same per step (integrated by the solver; one row per step of the experiment) ------
    @property
    def step_capacity(self) -> jax.Array:
        """Charge delivered while discharging in each step [A.h], (..., n_steps): e.g. the
        capacity of one discharge of a cycling protocol. Differentiable."""
        return self.step_totals[..., 0]

    @property
    def step_energy(self) -> jax.Array:
        """Energy delivered while discharging in each step [W.h], (..., n_steps). Differentiable."""
        return self.step_totals[..., 2]

    def steps(self):
        """One row per step of the experiment (pandas): its index (from 0, as `Solution.step`;
        `message` counts steps from 1, as the experiment reads), how it ended (a `StepEnd`
        name), start and end time and duration [s], and the charge [A.h] and energy [W.h] it
        delivered on discharge and took in on charge."""
        import pandas as pd

        self._single("steps")
        end = np.asarray(self.step_end_time)
        start = np.concatenate([[0.0], end[:-1]])
        q = np.asarray(self.step_totals)
        return pd.DataFrame({
            "step": np.arange(end.size), "ended": [StepEnd(int(e)).name for e in np.asarray(self.step_end)],
            "start_s": start, "end_s": end, "duration_s": end - start,
            "discharged_Ah": q[:, 0], "charged_Ah": q[:, 1], "discharged_Wh": q[:, 2], "charged_Wh": q[:, 3],
        })

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

    def to_pandas(self):
        """A tidy table: columns t_s, V_V, I_A, Q_Ah, T_K and step (the step's index, as
        `step_end`'s), with repeated end points and unreached times dropped."""
        import pandas as pd

        self._single("to_pandas")
        keep = self._finite()
        return pd.DataFrame({
            "t_s": np.asarray(self.t)[keep],
            "V_V": np.asarray(self.voltage)[keep],
            "I_A": np.asarray(self.current)[keep],
            "Q_Ah": np.asarray(self.discharge_capacity)[keep],
            "T_K": np.asarray(self.temperature)[keep],
            "step": np.asarray(self.step)[keep],
        })

    def plot(self, axes=None, label=None):
        """Voltage, current and temperature against time (matplotlib), with the step changes of
        a multi-step experiment as thin vertical lines. Returns the figure."""
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
        changes = np.unique(np.asarray(self.step_end_time)[:-1]) / 3600.0  # between steps that ran
        for ax in axes[:3]:
            for x in changes[(changes > th.min()) & (changes < th.max())] if len(th) else []:
                ax.axvline(x, color="0.85", lw=0.6, zorder=0)
        axes[0].set_title(self.message)
        if label is not None:
            axes[0].legend()
        fig.tight_layout()
        return fig
