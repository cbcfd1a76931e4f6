import numpy as np
import pytest

import jaxcell
from jaxcell.experiment import MODES, parse_step


@pytest.mark.parametrize(
    "text, mode, value, c_rate, duration, until_v, until_i",
    [
        ("Discharge at 1C until 2.5 V", "current", 1.0, True, np.inf, 2.5, np.nan),
        ("Charge at 0.5 A until 4.2 V", "current", -0.5, False, np.inf, 4.2, np.nan),
        ("Charge at C/2 until 4.2 V", "current", -0.5, True, np.inf, 4.2, np.nan),
        ("Discharge at 2 W for 10 minutes", "power", 2.0, False, 600.0, np.nan, np.nan),
        ("Discharge at 2 Ohm until 3 V", "resistance", 2.0, False, np.inf, 3.0, np.nan),
        ("Charge at 500 mOhm for 1 minute", "resistance", -0.5, False, 60.0, np.nan, np.nan),
        ("Hold at 4.2 V until C/50", "voltage", 4.2, False, np.inf, np.nan, 0.02),
        ("Hold at 4.1 V until 50 mA", "voltage", 4.1, False, np.inf, np.nan, 0.05),
        ("Rest for 1 hour", "current", 0.0, False, 3600.0, np.nan, np.nan),
        ("Discharge at 500 mA for 2 hours or until 3 V", "current", 0.5, False, 7200.0, 3.0, np.nan),
        ("  discharge  at 1 C until 2500 mV ", "current", 1.0, True, np.inf, 2.5, np.nan),
        # "or": both ends, whichever comes first, in either order
        ("Discharge at 1C for 1 hour or until 2.5 V", "current", 1.0, True, 3600.0, 2.5, np.nan),
        ("Charge at 1 A until 4.1 V or 30 minutes", "current", -1.0, False, 1800.0, 4.1, np.nan),
        ("Hold at 4.2 V until C/50 or 2 hours", "voltage", 4.2, False, 7200.0, np.nan, 0.02),
        # PyBaMM's output period: accepted, not part of the step
        ("Discharge at 1C for 1 hour (1 second period)", "current", 1.0, True, 3600.0, np.nan, np.nan),
        ("Rest for 1 hour (1 minute period)", "current", 0.0, False, 3600.0, np.nan, np.nan),
        ("Discharge at 1C for 1 hour or until 2.5 V (10 seconds period)", "current", 1.0, True, 3600.0, 2.5, np.nan),
    ],
)
def test_parse(text, mode, value, c_rate, duration, until_v, until_i):
    s = parse_step(text)
    assert s.mode == mode and s.c_rate == c_rate
    np.testing.assert_allclose([s.value, s.duration], [value, duration])
    np.testing.assert_equal(float(s.until_voltage), until_v)
    np.testing.assert_allclose(float(s.until_current), until_i, equal_nan=True)


@pytest.mark.parametrize(
    "text",
    ["Discharge at 1C", "Dance at 1C until 2.5 V", "Discharge at fast until 2.5 V", "Rest for ever",
     "Hold at 1C until 4.2 V", "Hold at 4.2 V until 4.1 V", "Discharge at 1C until 3 A", "Rest for -1 hour",
     "Discharge at 1C for 10 fortnights", "Discharge at 0 A until 3 V",
     "Discharge at 1C for 1 hour or", "Discharge at 1C for 1 hour or 2 hours", "Discharge at 1C until 2.5 V or 3 V",
     "Discharge at 1C until 2.5 V or until 1 hour", "Discharge at 1C for 1 hour (fast period)",
     "Discharge at 1C until 2.5 V (1 second period) and more"],
)
def test_unparsable_step_shows_string_and_forms(text):
    with pytest.raises(jaxcell.ExperimentError) as info:
        jaxcell.Experiment([text])
    msg = str(info.value)
    assert repr(text) in msg and "Accepted step forms" in msg and "Hold at 4.2 V until C/50" in msg


@pytest.mark.parametrize(
    "text, why",
    [
        ("Discharge at C/0 for 1 hour", "'c/0' divides by zero: C/N needs N > 0"),
        ("Hold at 4.2 V until C/0", "'c/0' divides by zero"),
        ("Discharge at C/1e-400 for 1 hour", "'c/1e-400' divides by zero"),  # underflows to 0
        ("Discharge at C/1e-310 for 1 hour", "'c/1e-310' overflows"),
        ("Discharge at 1e400 C for 1 s", "'1e400 c' overflows: values must be finite, below 1.8e+308"),
        ("Discharge at 1e400 mW for 1 s", "'1e400 mw' overflows"),
        ("Discharge at 1C until 1e400 V", "'1e400 v' overflows"),
        ("Discharge at 1C for 1e400 s", "'1e400 s' overflows"),
        ("Discharge at 1C for 1e305 days", "'1e305 days' overflows"),  # finite number, infinite seconds
        ("Rest for 1 hour (1e400 s period)", "'1e400 s' overflows"),
        ("Discharge at 0 Ohm for 1 minute", "the resistance must be positive: 0 Ohm is a short circuit"),
        ("Discharge at 1e-400 Ohm for 1 minute", "the resistance must be positive"),
        ("Hold at 2 Ohm for 1 minute", "'Hold at' takes a voltage"),
    ],
)
def test_zero_divisor_and_overflow_refused(text, why):
    """C/0 and numbers beyond float64 are refused with the step and the value, not turned into a
    ZeroDivisionError or an infinite rate, limit or duration."""
    with pytest.raises(jaxcell.ExperimentError) as info:
        parse_step(text)
    assert f"Cannot parse experiment step {text!r}: {why}" in str(info.value)


@pytest.mark.parametrize(
    "text, why",
    [
        # each was refused naming the wrong thing ("'-1 v' is not a current"), or accepted
        ("Discharge at 1C until -1 V", "'-1 v' is not a voltage limit: a positive number of volts"),
        ("Discharge at 1C until nan V", "'nan v' is not a voltage limit"),
        ("Charge at 1C until 4.2 V at 30oC", "'4.2 v at 30oc': a step at a temperature ('at 30oC') is not supported"),
        ("Discharge at 1C at 25oC until 2.5 V", "'1c at 25oc': a step at a temperature ('at 30oC') is not supported"),
        ("Discharge at 1C until 0 V", "'0 v' is not a voltage limit: a positive number of volts"),
        ("Discharge at 1C for 1 hour (0 second period)", "the period must be positive, got '0 second'"),
        ("Rest for 0 minutes", "the duration must be positive, got '0 minutes'"),
        ("Hold at 4.2 V until 0 mA", "the current limit '0 ma' must be positive"),  # ran its 8 hours
        ("Hold at 4.2 V until 0C", "the current limit '0c' must be positive"),
        ("Discharge at 1C until 2.5 V.", "'2.5 v.' is not a voltage or current limit (e.g. '2.5 V'"),  # "not a current"
        ("Hold at 4.2 V until C/50 A", "'c/50 a' is not a voltage or current limit"),
    ],
)
def test_bad_limits_and_periods_named(text, why):
    with pytest.raises(jaxcell.ExperimentError) as info:
        parse_step(text)
    assert f"Cannot parse experiment step {text!r}: {why}" in str(info.value)


def test_an_experiment_that_is_not_a_list_of_steps_is_named():
    """`Experiment(None)` ended in a bare "'NoneType' object is not iterable"; a number or a set
    (whose steps have no order) are refused the same way, and so is a step that is not a string."""
    for steps in (None, 5, {"Rest for 1 hour"}):
        with pytest.raises(jaxcell.ExperimentError, match=f"An experiment is a list of steps .*got {type(steps).__name__}"):
            jaxcell.Experiment(steps)
    with pytest.raises(jaxcell.ExperimentError, match="An experiment step must be a string or DriveCycle, got int"):
        jaxcell.Experiment(["Rest for 1 hour", 5])
    with pytest.raises(jaxcell.ExperimentError, match="at least one step"):
        jaxcell.Experiment([])


def test_cycles_and_table():
    exp = jaxcell.Experiment([("Discharge at 1C until 3 V", "Rest for 1 hour")] * 3 + ["Charge at 1 A until 4.1 V"])
    assert len(exp) == 7 and exp.cycle_index == (0, 0, 1, 1, 2, 2, 3)
    assert list(np.asarray(exp.table.mode)) == [MODES["current"]] * 7


def test_drive_cycle_validation():
    with pytest.raises(jaxcell.ExperimentError, match="start at 0"):
        jaxcell.DriveCycle([1.0, 2.0], [1.0, 1.0])
    with pytest.raises(jaxcell.ExperimentError, match="equal length"):
        jaxcell.DriveCycle([0.0, 2.0, 3.0], [1.0, 1.0])


def test_or_and_period_give_the_same_table():
    """Ends written in either order, with or without a period, make the same compiled step table."""
    reference = jaxcell.Experiment(["Discharge at 1C for 1 hour or until 2.5 V", "Hold at 4.2 V for 2 hours or until C/50"])
    for steps in (["Discharge at 1C until 2.5 V or 1 hour", "Hold at 4.2 V until C/50 or 2 hours"],
                  ["Discharge at 1C for 1 hour or until 2.5 V (1 second period)", "Hold at 4.2 V until C/50 or 2 hours (1 minute period)"]):
        exp = jaxcell.Experiment(steps)
        for name in ("mode", "value", "c_rate", "duration", "until_voltage", "until_current", "until_c_rate"):
            np.testing.assert_array_equal(getattr(exp.table, name), getattr(reference.table, name), err_msg=name)


def test_or_ends_at_whichever_comes_first():
    """'for ... or until ...' ends on the duration when it comes first, and on the limit when
    that comes first, whichever order the two are written in."""
    from jaxcell.solution import StepEnd

    p = jaxcell.load_parameters("Chen2020")
    exp = jaxcell.Experiment(["Discharge at 1C for 10 minutes or until 2.6 V", "Rest for 1 minute (1 second period)",
                              "Discharge at 2C until 3.6 V or 1 hour"])
    sol = jaxcell.simulate(jaxcell.SPM(), p, exp)
    assert list(np.asarray(sol.step_end)) == [StepEnd.DURATION, StepEnd.DURATION, StepEnd.VOLTAGE]
    ends = np.asarray(sol.step_end_time)
    np.testing.assert_allclose(ends[:2], [600.0, 660.0], rtol=1e-9)
    assert ends[2] - ends[1] < 3600.0
    v = np.asarray(sol.voltage)
    assert v[np.isfinite(v)].min() == pytest.approx(3.6, abs=1e-6)
