"""Multi-step protocols: CC, rest, CC-CV, power, drive cycles, cut-off stops."""

import numpy as np

import jaxcell
from jaxcell import StepEnd


def _step_rows(sol, k):
    """Output rows strictly inside step k (fixed-length output: 400 rows per step)."""
    n = 400
    t = np.asarray(sol.t)[k * n:(k + 1) * n]
    keep = np.r_[True, np.diff(t) > 0]
    sl = lambda a: np.asarray(a)[k * n:(k + 1) * n][keep]  # noqa: E731
    return sl(sol.t), sl(sol.voltage), sl(sol.current), sl(sol.discharge_capacity)


def test_cccv_power_rest(spm, chen):
    exp = jaxcell.Experiment([
        "Discharge at 1C for 20 minutes", "Rest for 10 minutes", "Charge at 1C until 4.2 V",
        "Hold at 4.2 V until C/50", "Discharge at 5 W for 10 minutes",
    ])
    sol = jaxcell.simulate(spm, chen, exp)
    assert int(sol.status) == jaxcell.Status.COMPLETED
    assert list(np.asarray(sol.step_end)) == [StepEnd.DURATION, StepEnd.DURATION, StepEnd.VOLTAGE, StepEnd.CURRENT, StepEnd.DURATION]
    ends = np.asarray(sol.step_end_time)
    np.testing.assert_allclose(ends[:2], [1200.0, 1800.0], rtol=1e-12)
    # rest: no current, charge unchanged
    t, v, i, q = _step_rows(sol, 1)
    assert np.all(i == 0) and np.ptp(q) < 1e-12
    # CC charge ends exactly on 4.2 V
    t, v, i, q = _step_rows(sol, 2)
    np.testing.assert_allclose(v[-1], 4.2, atol=1e-7)
    np.testing.assert_allclose(i, -5.0)
    # CV: voltage held, current decays to C/50 = 0.1 A and ends there
    t, v, i, q = _step_rows(sol, 3)
    np.testing.assert_allclose(v, 4.2, atol=1e-9)
    assert np.all(np.diff(np.abs(i)) <= 1e-9)
    np.testing.assert_allclose(i[-1], -0.1, atol=1e-6)
    # power: I V = 5 W throughout
    t, v, i, q = _step_rows(sol, 4)
    np.testing.assert_allclose(v * i, 5.0, rtol=1e-9)
    np.testing.assert_allclose(ends[4] - ends[3], 600.0, rtol=1e-12)
    # discharge capacity is the integral of the current (trapezoid per step on the output grid)
    q = sum(np.trapezoid(_step_rows(sol, k)[2], _step_rows(sol, k)[0]) / 3600 for k in range(5))
    assert abs(q - float(sol.discharge_capacity[-1])) < 2e-3


def test_drive_cycle_follows_profile(spm, chen):
    t_prof = np.array([0.0, 60.0, 120.0, 180.0, 300.0])
    i_prof = np.array([5.0, -1.0, 10.0, 0.0, 2.0])
    sol = jaxcell.simulate(spm, chen, jaxcell.Experiment([jaxcell.DriveCycle(t_prof, i_prof)]), t_eval=np.linspace(0, 300, 61))
    np.testing.assert_allclose(np.asarray(sol.current), np.interp(np.linspace(0, 300, 61), t_prof, i_prof), atol=1e-12)
    q_exact = np.trapezoid(i_prof, t_prof) / 3600
    # the charge integral is part of the ODE state: exact up to the solver's tolerance (rtol 1e-6)
    np.testing.assert_allclose(float(sol.discharge_capacity[-1]), q_exact, rtol=1e-5)
    assert int(sol.step_end[0]) == StepEnd.DURATION


def test_cutoff_stops_experiment(spm, chen):
    """A 2C discharge for 2 hours cannot finish: it stops at the lower cut-off, exactly there,
    and the following step never runs."""
    sol = jaxcell.simulate(spm, chen, ["Discharge at 2C for 2 hours", "Rest for 1 hour"])
    assert int(sol.status) == jaxcell.Status.LOWER_CUTOFF
    assert list(np.asarray(sol.step_end)) == [StepEnd.STOPPED, StepEnd.NOT_RUN]
    np.testing.assert_allclose(sol.to_pandas().V_V.iloc[-1], 2.5 - 1e-6, atol=1e-7)  # 1 uV past, by design
    assert "lower voltage cut-off" in sol.message
    assert not np.any(np.isnan(np.asarray(sol.voltage)))


def test_cutoff_just_past_at_step_start_still_stops(spm, chen):
    """A cut-off crossed by less than the 1 uV start slack must still stop the step as soon as
    it is passed (it used to be missed: the event needs a sign change)."""
    v0 = float(jaxcell.simulate(spm, chen, "Discharge at 1C for 10 minutes").voltage[0])
    for offset in (5e-7, 5e-6, -1e-3):
        p = chen.update({"Lower voltage cut-off [V]": v0 + offset})
        sol = jaxcell.simulate(spm, p, "Discharge at 1C for 10 minutes")
        assert int(sol.status) == jaxcell.Status.LOWER_CUTOFF, offset
        assert float(sol.to_pandas().V_V.min()) > v0 + offset - 2e-6, offset


def test_skipped_steps_report_last_real_output(spm, chen):
    """After a stop, the remaining steps do not run; the output repeats the last real point
    (not the current of a step that never ran)."""
    sol = jaxcell.simulate(spm, chen, ["Discharge at 2C for 2 hours", "Charge at 3 A for 1 hour"])
    assert list(np.asarray(sol.step_end)) == [StepEnd.STOPPED, StepEnd.NOT_RUN]
    np.testing.assert_allclose(np.asarray(sol.current)[-1], 10.0)
    np.testing.assert_allclose(np.asarray(sol.voltage)[-1], 2.5, atol=2e-6)
