"""Multi-step protocols: CC, rest, CC-CV, power, drive cycles, cut-off stops."""

import warnings

import jax
import numpy as np
import pytest
from scipy import integrate

import jaxcell
from conftest import load_reference, padded_times
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
    # the totals integrated by the solver, against closed forms where the protocol gives one:
    # 5 A for 20 minutes; 5 W for 10 minutes is 5/6 W.h whatever the voltage; the CC charge
    # passes 5 A for its duration and the hold's energy is 4.2 V times its charge. The
    # voltage integrals are Simpson's rule on the 400 output points of a step (its error:
    # 4e-8 W.h on the discharge, about 1e-5 W.h on the charge's steep end at 4.2 V)
    simpson = lambda k: integrate.simpson(_step_rows(sol, k)[1], x=_step_rows(sol, k)[0]) / 3600  # noqa: E731
    t4, _, i4, _ = _step_rows(sol, 4)
    q_power = integrate.simpson(i4, x=t4) / 3600
    np.testing.assert_allclose(float(sol.discharged_capacity), 5.0 * 1200 / 3600 + q_power, rtol=1e-7)
    np.testing.assert_allclose(float(sol.discharged_energy), 5.0 * simpson(0) + 5.0 * 600 / 3600, rtol=1e-7)
    q_hold = float(sol.charged_capacity) - 5.0 * (ends[2] - ends[1]) / 3600
    assert 0.5 < q_hold < 1.5
    np.testing.assert_allclose(float(sol.charged_energy), 5.0 * simpson(2) + 4.2 * q_hold, rtol=1e-5)
    np.testing.assert_allclose(float(sol.net_charge), float(sol.discharge_capacity[-1]), rtol=1e-12)
    assert float(sol.capacity) == float(sol.discharged_capacity) and float(sol.energy) == float(sol.discharged_energy)
    np.testing.assert_allclose(float(sol.charge_throughput), float(sol.discharged_capacity + sol.charged_capacity))
    assert bool(sol.delivered) and sol.message.startswith("completed: every step ended on its own condition")
    # the same totals step by step, against the same closed forms; they add up to the experiment's
    steps = sol.steps()
    assert list(steps.ended) == ["DURATION", "DURATION", "VOLTAGE", "CURRENT", "DURATION"]
    np.testing.assert_allclose(steps.end_s, ends)
    np.testing.assert_allclose(steps.duration_s[1], 600.0, rtol=1e-12)
    np.testing.assert_allclose(steps.discharged_Ah[0], 5.0 * 1200 / 3600, rtol=1e-12)
    np.testing.assert_allclose(steps.discharged_Wh[4], 5.0 * 600 / 3600, rtol=1e-9)
    np.testing.assert_allclose(steps.charged_Ah[2], 5.0 * (ends[2] - ends[1]) / 3600, rtol=1e-12)
    np.testing.assert_allclose(steps.charged_Wh[3], 4.2 * steps.charged_Ah[3], rtol=1e-9)
    assert np.all(np.asarray(sol.step_totals)[1] == 0.0)  # the rest
    assert steps.charged_Ah[[0, 4]].eq(0).all() and steps.discharged_Ah[[2, 3]].eq(0).all()
    np.testing.assert_allclose(np.asarray(sol.step_totals).sum(axis=0),
                               [float(x) for x in (sol.discharged_capacity, sol.charged_capacity,
                                                   sol.discharged_energy, sol.charged_energy)], rtol=1e-12)
    np.testing.assert_array_equal(sol.step_capacity, sol.step_totals[:, 0])
    np.testing.assert_array_equal(sol.step_energy, sol.step_totals[:, 2])


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
    assert "lower voltage cut-off" in sol.message and sol.message.endswith(f"(in step 1, at t = {float(sol.step_end_time[0]):.6g} s)")
    # a cut-off passed at once: the message says so (the output shows only the state at rest)
    start = jaxcell.simulate(spm, chen, "Charge at 1C for 10 minutes")
    assert start.message == "stopped: the voltage reached the upper voltage cut-off (at the start of step 1)"
    assert not np.any(np.isnan(np.asarray(sol.voltage)))


def test_capacity_and_energy_do_not_depend_on_output_times(spm, chen):
    """With output times that run past the cut-off (the last one before it at 1200 s), the
    capacity is still the charge to the cut-off, 10 A times the stop time (it used to be read
    from the last finite sample: 0.0 or 4.44 of 4.96 A.h), and the energy the same as with the
    default output times."""
    exp = ["Discharge at 2C for 2 hours", "Rest for 1 hour"]
    ref = jaxcell.simulate(spm, chen, exp)
    sol = jaxcell.simulate(spm, chen, exp, t_eval=np.array([0.0, 600.0, 1200.0, 5000.0, 7000.0]))
    t_stop = float(sol.step_end_time[0])
    assert 1200.0 < t_stop < 5000.0 and int(sol.status) == jaxcell.Status.LOWER_CUTOFF
    np.testing.assert_allclose(float(sol.capacity), 10.0 * t_stop / 3600, rtol=1e-9)
    np.testing.assert_allclose(float(sol.energy), float(ref.energy), rtol=1e-9)
    # the energy of the dense default output, as a check of the integral itself
    df = ref.to_pandas()
    np.testing.assert_allclose(float(ref.energy), np.trapezoid(df.V_V * df.I_A, df.t_s) / 3600, rtol=1e-4)
    assert float(sol.charged_capacity) == 0.0 and not bool(sol.delivered)


def test_an_output_time_on_a_step_change_is_the_new_steps_first_point(spm, chen):
    """t_eval at the end of a discharge and the start of a rest: the output is the rest's
    (current 0, the voltage continuous with a millisecond later, above the discharge's by the
    ohmic and kinetic drop)."""
    sol = jaxcell.simulate(spm, chen, ["Discharge at 1C for 10 minutes", "Rest for 5 minutes"],
                           t_eval=np.array([0.0, 599.999, 600.0, 600.001, 900.0]))
    v, i = np.asarray(sol.voltage), np.asarray(sol.current)
    assert i[1] == pytest.approx(5.0) and i[2] == 0.0 and i[3] == 0.0
    assert abs(v[2] - v[3]) < 1e-4 and v[2] - v[1] > 0.01
    assert list(np.asarray(sol.step)) == [0, 0, 1, 1, 1]  # each output's step, the rest's from 600 s


def test_traced_parameters_outside_their_range_get_a_status(spm, chen):
    """Under `jax.vmap` the values reach `simulate` traced, where `update` cannot check them: a
    negative diffusivity ran to COMPLETED with more than the cell's capacity (4.47 A.h), and a
    porosity of 1.5 completed too (each parameter's own range; the volume fractions' sum is
    `update`'s alone). Such a cell now gets BAD_PARAMETERS and NaN outputs and
    totals; its neighbours run as alone."""
    D, EPS = "Positive particle diffusivity [m2.s-1]", "Negative electrode porosity"
    run = jax.jit(jax.vmap(lambda d, e: jaxcell.simulate(spm, chen.update({D: d, EPS: e}), "Discharge at 1C until 2.5 V",
                                                         t_eval=np.array([0.0, 10.0, 20.0]))))
    sols = run(np.array([float(chen[D]), -1.0, float(chen[D]), np.nan]), np.array([float(chen[EPS]), 0.25, 1.5, 0.25]))
    assert list(np.asarray(sols.status)) == [jaxcell.Status.COMPLETED] + [jaxcell.Status.BAD_PARAMETERS] * 3
    alone = jaxcell.simulate(spm, chen, "Discharge at 1C until 2.5 V", t_eval=np.array([0.0, 10.0, 20.0]))
    np.testing.assert_allclose(sols.voltage[0], alone.voltage, rtol=1e-12)
    assert float(sols.capacity[0]) == pytest.approx(float(alone.capacity), rel=1e-12)
    assert np.all(np.isnan(np.asarray(sols.voltage[1:]))) and np.all(np.isnan(np.asarray(sols.capacity[1:])))
    assert not np.any(np.asarray(sols.delivered[1:])) and "outside its physical range" in sols.message[1]
    assert sols.message[1] == jaxcell.solution.STATUS_MESSAGES[jaxcell.Status.BAD_PARAMETERS]
    # at the default output times too (each step's own; they were filled after the masking)
    default = jax.vmap(lambda d: jaxcell.simulate(spm, chen.update({D: d}), "Discharge at 1C until 2.5 V"))(
        np.array([float(chen[D]), -1.0]))
    assert list(np.asarray(default.status)) == [jaxcell.Status.COMPLETED, jaxcell.Status.BAD_PARAMETERS]
    assert np.all(np.isfinite(np.asarray(default.voltage[0])))
    for series in (default.voltage, default.current, default.discharge_capacity, default.temperature):
        assert np.all(np.isnan(np.asarray(series[1])))
    # a negative capacity or lower cut-off made a step's duration bound negative (t1 < t0), which
    # diffrax raises on: the whole batch was lost, not one cell (a resistance step's bound reads
    # the cut-off, a current step's the capacity)
    V_MIN, Q = "Lower voltage cut-off [V]", "Nominal cell capacity [A.h]"
    bounds = jax.vmap(lambda v, q: jaxcell.simulate(spm, chen.update({V_MIN: v, Q: q}), ["Discharge at 1 Ohm until 3.9 V",
                                                                                      "Discharge at 1C until 3.8 V"]))
    sols = bounds(np.array([2.5, -1.0, 2.5]), np.array([5.0, 5.0, -5.0]))
    assert list(np.asarray(sols.status)) == [jaxcell.Status.COMPLETED] + [jaxcell.Status.BAD_PARAMETERS] * 2
    assert float(sols.step_capacity[0, 0]) > 0.3 and np.all(np.isnan(np.asarray(sols.step_totals[1:])))


def test_t_eval_must_be_finite(spm, chen):
    for bad in ([0.0, np.nan, 10.0], [0.0, np.inf]):
        with pytest.raises(ValueError, match="t_eval must be finite"):
            jaxcell.simulate(spm, chen, "Discharge at 1C until 2.5 V", t_eval=np.array(bad))
    with pytest.raises(ValueError, match="non-decreasing, got 5 at index 2"):
        jaxcell.simulate(spm, chen, "Discharge at 1C until 2.5 V", t_eval=np.array([0.0, 10.0, 5.0]))
    # traced (under jit and vmap): the bad cell gets a status and NaN outputs, its neighbour runs
    sols = jax.jit(jax.vmap(lambda te: jaxcell.simulate(spm, chen, "Discharge at 1C until 2.5 V", t_eval=te)))(
        np.array([[0.0, 10.0, 20.0], [0.0, np.nan, 20.0]]))
    assert list(np.asarray(sols.status)) == [jaxcell.Status.COMPLETED, jaxcell.Status.BAD_T_EVAL]
    assert np.all(np.isfinite(sols.voltage[0])) and np.all(np.isnan(sols.voltage[1]))
    # a batched set is one cell per entry: simulate says how to run it (it failed in jnp.stack)
    batch = chen.update({"Negative electrode thickness [m]": np.full((2, 2), 85e-6)})
    with pytest.raises(ValueError, match=r"batch shape \(2, 2\): use jax.vmap"):
        jaxcell.simulate(spm, batch, "Discharge at 1C until 2.5 V")
    # inverted cut-offs in a population name the first cell
    cut = chen.update({"Lower voltage cut-off [V]": np.array([2.5, 4.3, 2.5])})
    with pytest.raises(ValueError, match=r"\(4.3\) must be below 'Upper voltage cut-off \[V\]' \(4.2\) in cell \[1\]"):
        jaxcell.simulate_batch(spm, cut, "Discharge at 1C until 2.5 V")


def test_voltage_limits_of_steps(spm, chen):
    """A hold outside the set's cut-offs is refused before any solve (a 5 V hold on a 4.2 V set
    started at -7151 A); a step limit outside them is warned about."""
    for text in ("Hold at 5 V until C/50", "Hold at 2.0 V for 1 hour"):
        with pytest.raises(ValueError, match=r"outside the parameter set's voltage cut-offs \[2.5, 4.2\] V"):
            jaxcell.simulate(spm, chen, ["Discharge at 1C for 1 minute", text])
    with pytest.warns(UserWarning, match="ends at 2 V, outside"):
        sol = jaxcell.simulate(spm, chen, "Discharge at 1C until 2.0 V")
    assert int(sol.status) == jaxcell.Status.LOWER_CUTOFF and not bool(sol.delivered)


def test_skipped_step_is_not_delivered(spm, chen):
    """A step whose end condition holds at its start is skipped: the experiment goes on, but
    the solution says so instead of 'every step ran to its end'."""
    sol = jaxcell.simulate(spm, chen, ["Charge at 1C until 3.0 V", "Discharge at 3 A for 1 minute"])
    assert list(np.asarray(sol.step_end)) == [StepEnd.ALREADY_MET, StepEnd.DURATION]
    assert int(sol.status) == jaxcell.Status.COMPLETED and not bool(sol.delivered)
    assert sol.message == "completed, but step 1 skipped (end condition held at the start)"
    np.testing.assert_allclose(float(sol.capacity), 3.0 * 60 / 3600, rtol=1e-9)


def test_a_state_outside_the_stoichiometry_range_stops_even_where_the_step_is_met(spm, chen):
    """A cell with no lithium in its negative electrode rests at 0.89 V: its discharge to 2.5 V
    is met at the start, but no step can run from a state outside the stoichiometry range, so
    the experiment stops there. It used to skip the step and end COMPLETED with 0 A.h (the
    voltage cut-offs, which depend on the step's current, still yield to a met step: a charge
    to 4.2 V of a full cell is skipped, tests/test_population.py's open weld too)."""
    empty = chen.update({"Initial concentration in negative electrode [mol.m-3]": 0.0})
    sol = jaxcell.simulate(spm, empty, "Discharge at 1C until 2.5 V")
    assert int(sol.status) == jaxcell.Status.STOICHIOMETRY_LIMIT and not bool(sol.delivered)
    assert list(np.asarray(sol.step_end)) == [StepEnd.STOPPED]
    assert sol.message == ("stopped: a particle surface stoichiometry reached 0 or 1 (at the start of step 1)")
    assert float(sol.capacity) == 0.0


def test_step_after_one_that_ended_on_the_same_limit_is_skipped(spm, chen):
    """A second discharge to the voltage the first ended on is skipped, as a third to a higher
    one is. It used to run for zero seconds and count as ended on its limit, or be skipped,
    depending on which side of 2.5 V the first step's event root landed."""
    sol = jaxcell.simulate(spm, chen, ["Discharge at 1C until 2.5 V"] * 2 + ["Discharge at 1C until 3.0 V"])
    assert list(np.asarray(sol.step_end)) == [StepEnd.VOLTAGE, StepEnd.ALREADY_MET, StepEnd.ALREADY_MET]
    assert int(sol.status) == jaxcell.Status.COMPLETED and not bool(sol.delivered)
    assert sol.message == "completed, but steps 2, 3 skipped (end condition held at the start)"
    t = np.asarray(sol.step_end_time)
    assert t[0] > 3000 and t[1] == t[0] == t[2]


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
    assert np.all(np.asarray(sol.step)[:400] == 0) and np.all(np.asarray(sol.step)[400:] == -1)
    np.testing.assert_allclose(np.asarray(sol.current)[-1], 10.0)
    np.testing.assert_allclose(np.asarray(sol.voltage)[-1], 2.5, atol=2e-6)


def test_skipped_steps_at_output_times_show_the_last_real_output(spm, chen):
    """At an output time on the start of a step that does not run (skipped, or stopped at its
    start), the output is the cell's real state, as without t_eval: a skipped 2C discharge put
    its own 10 A, and the voltage under it, at the experiment's end; a charge of a full cell
    showed -5 A at 4.32 V, above the 4.2 V cut-off it stopped on."""
    exp = ["Discharge at 1C for 10 minutes", "Discharge at 2C until 4.1 V"]  # the second is met at its start
    on_grid = jaxcell.simulate(spm, chen, exp, t_eval=np.array([0.0, 300.0, 600.0]))
    default = jaxcell.simulate(spm, chen, exp)
    assert list(np.asarray(on_grid.step_end)) == [StepEnd.DURATION, StepEnd.ALREADY_MET]
    assert float(on_grid.current[-1]) == pytest.approx(5.0)
    assert list(np.asarray(on_grid.step)) == [0, 0, 0]  # the skipped step has no output of its own
    assert list(default.to_pandas().step.unique()) == [0]
    assert np.all(np.asarray(default.step)[400:] == -1)  # its fixed-length rows repeat the last point
    np.testing.assert_allclose(float(on_grid.voltage[-1]), float(default.voltage[-1]), atol=1e-6)
    full = jaxcell.simulate(spm, chen, ["Charge at 1C for 1 hour"], t_eval=np.array([0.0]), initial_soc=1.0)
    assert int(full.status) == jaxcell.Status.UPPER_CUTOFF
    assert float(full.current[0]) == 0.0 and float(full.voltage[0]) <= 4.2 + 1e-6
    assert int(full.step[0]) == -1  # at rest before a step that never ran


def test_a_hold_whose_current_changes_sign_ends_on_its_limit(spm, chen):
    """A hold between the rest voltage and the voltage a charge left: its current starts as a
    discharge, falls through zero and turns to charge. Its limit, |I| < 1 mA, holds only for
    about 0.1 s around the sign change; the solver stepped over it and the hold ran on for
    another 6000 s, reported as ended on its current limit. The limit now counts in the
    direction the current flows at the start, so the hold ends as it falls through 1 mA."""
    sol = jaxcell.simulate(spm, chen, ["Charge at 2C for 10 minutes", "Hold at 3.8709 V until 1 mA or 2 hours"],
                           initial_soc=0.3)
    assert list(np.asarray(sol.step_end)) == [StepEnd.DURATION, StepEnd.CURRENT]
    assert float(sol.step_end_time[-1]) < 1000.0
    t, _, i, _ = _step_rows(sol, 1)
    assert (i[:-1] > 1e-3).all()  # a discharge current throughout, ending at its limit
    np.testing.assert_allclose(i[-1], 1e-3, rtol=1e-6)


def test_a_charge_at_zero_current_rests_until_its_limit_or_duration(spm, chen):
    """'Charge at 0 A' (a sweep of currents through 0) rests: its voltage limit is a charge's,
    above the cell's voltage. Its value is -0.0, which the step's direction read as a discharge,
    whose limit held at the start: the step was skipped."""
    for current in ("0 A", "0.1 A"):
        sol = jaxcell.simulate(spm, chen, f"Charge at {current} for 10 minutes or until 4.2 V", initial_soc=0.5)
        assert list(np.asarray(sol.step_end)) == [StepEnd.DURATION], current
        assert float(sol.step_end_time[-1]) == pytest.approx(600.0), current


def test_a_power_the_cell_cannot_deliver_is_a_failure(chen):
    """A constant-power discharge above the cell's maximum power at its state has no current:
    I V(I) peaks below it. Newton's iterate was used anyway: a 3000 W discharge of the SPMe ran
    as a -210 A charge and stopped at the upper cut-off, a valid-looking stop. It is now a
    failure of its own; a power the cell can deliver runs with I V = P."""
    spme = jaxcell.SPMe()
    sol = jaxcell.simulate(spme, chen, ["Discharge at 3000 W until 2.5 V", "Discharge at 20 W for 1 minute"],
                           initial_soc=0.5)
    assert int(sol.status) == jaxcell.Status.INFEASIBLE_CONTROL and not bool(sol.delivered)
    assert sol.message.startswith("failed: Newton's iteration found no current that realises the step's power")
    assert "(at the start of step 1)" in sol.message and float(sol.capacity) == 0.0
    ok = jaxcell.simulate(spme, chen, ["Discharge at 20 W for 10 minutes", "Discharge at 20 W for 1 minute"],
                          initial_soc=0.5)
    assert int(ok.status) == jaxcell.Status.COMPLETED
    np.testing.assert_allclose(np.asarray(ok.current * ok.voltage)[:-1], 20.0, rtol=1e-6)
    # a charge through less than the SPMe's own resistance: I R = V(I) holds only where the
    # model's voltage is negative (a large discharge); that root was taken and the charge
    # reported as stopped at the lower cut-off
    short = jaxcell.simulate(spme, chen, ["Charge at 1 mOhm for 1 minute", "Discharge at 20 W for 1 minute"],
                             initial_soc=0.5)
    assert int(short.status) == jaxcell.Status.INFEASIBLE_CONTROL, short.message
    assert "(at the start of step 1)" in short.message and float(short.charged_capacity) == 0.0


def test_constant_resistance_steps_match_pybamm(spm, chen):
    """PyBaMM's "Discharge at 2 Ohm": the current is the terminal voltage over the resistance
    (a charge through one is negative). Discharges through 1 Ohm to 3.3 V and 500 mOhm for 5
    minutes, a rest, a CC charge and a charge "at 2 Ohm", against PyBaMM's SPM on the same mesh
    (`make_references.py resistance`): V = I R to round-off in those steps, the voltage within
    0.1 mV RMS (measured 0.001) and the step ends within 10 ms (measured 3 ms)."""
    ref = load_reference("SPM_resistance_Chen2020.csv")
    steps = ["Discharge at 1 Ohm until 3.3 V", "Rest for 10 minutes", "Discharge at 500 mOhm for 5 minutes",
             "Charge at 1C until 4.1 V", "Charge at 2 Ohm for 2 minutes"]
    sol = jaxcell.simulate(spm, chen, steps, t_eval=padded_times(ref[:, 0]), rtol=1e-8, atol=1e-10)
    assert int(sol.status) == jaxcell.Status.COMPLETED and bool(sol.delivered), sol.message
    assert list(np.asarray(sol.step_end)) == [StepEnd.VOLTAGE, StepEnd.DURATION, StepEnd.DURATION, StepEnd.VOLTAGE,
                                              StepEnd.DURATION]
    ref_ends = np.array([ref[ref[:, 3] == k, 0][-1] for k in range(5)])
    np.testing.assert_allclose(np.asarray(sol.step_end_time), ref_ends, atol=0.01)
    n = len(ref)
    t, v, i = ref[:, 0], np.asarray(sol.voltage)[:n], np.asarray(sol.current)[:n]
    inside = np.all(np.abs(t[:, None] - np.r_[0.0, ref_ends][None, :]) > 1.0, axis=1)  # not on a step change
    assert inside.sum() > 700
    assert 1e3 * np.sqrt(np.mean((v[inside] - ref[inside, 1]) ** 2)) < 0.1
    np.testing.assert_allclose(i[inside], ref[inside, 2], atol=1e-4)
    for k, ohm in ((0, 1.0), (2, 0.5), (4, -2.0)):
        rows = inside & (ref[:, 3] == k)
        assert rows.sum() > 10
        np.testing.assert_allclose(i[rows] * ohm, v[rows], rtol=1e-9)


def test_a_current_far_beyond_the_cell_is_warned_about(spm, chen):
    """The SPM has no electrolyte resistance: a hold at 2.5 V of a full cell draws 3.7e7 A and
    completes (a model's answer, not a cell's). `simulate` says so; a 1C step does not warn."""
    with pytest.warns(UserWarning, match=r"the current reached 3\.\d+e\+07 A .* above 100C"):
        sol = jaxcell.simulate(spm, chen, "Hold at 2.5 V for 10 s", initial_soc=1.0)
    assert float(np.max(np.asarray(sol.current))) > 1e7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jaxcell.simulate(spm, chen, "Discharge at 1C for 10 minutes")
