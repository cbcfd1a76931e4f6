"""Cycling protocols in PyBaMM's step language, compiled to a static sequence of steps."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

ACCEPTED_FORMS = """Accepted step forms (PyBaMM's language):
  "Discharge at 1C until 2.5 V"        "Charge at C/2 until 4.2 V"
  "Discharge at 0.5 A for 30 minutes"  "Charge at 500 mA until 4.1 V"
  "Discharge at 2 W for 10 minutes"    "Hold at 4.2 V until C/50"  (also "until 50 mA")
  "Discharge at 2 Ohm until 3 V"       (a constant resistance: the current is V / R; also "mOhm")
  "Rest for 1 hour"                    "Discharge at 1C for 2 hours or until 3 V"
  "Hold at 4.2 V until C/50 or 2 hours"  (with "or", the step ends at whichever comes first)
  a DriveCycle(time_s, current_A), and tuples of steps (one cycle each).
Time units: s, second(s), min, minute(s), h, hour(s), day(s). A trailing "(1 second period)"
is accepted and ignored (outputs are sampled as `simulate`'s t_eval says)."""


_TIME_UNITS = {
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "day": 86400.0, "days": 86400.0,
}
_NUM = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"


class ExperimentError(ValueError):
    """An experiment step could not be understood."""


@dataclasses.dataclass(frozen=True)
class Step:
    """One parsed protocol step (plain numbers; `Experiment` turns steps into a `StepTable`).

    `mode` is "current" (value in A, or a C-rate when `c_rate`), "voltage" [V], "power" [W],
    "resistance" [Ohm] (the current is the voltage over it, PyBaMM's "Discharge at 2 Ohm") or
    "drive" (current [A] interpolated in `drive_time`/`drive_current`). Currents, powers and
    resistances are positive on discharge. The step ends at `duration` [s] (inf for none), when the voltage
    crosses `until_voltage` [V] (nan for none), or when the current, in the direction it flows
    at the step's start, falls to `until_current` (A, or a C-rate when `until_c_rate`; nan for
    none).
    """

    mode: str
    value: float
    duration: float
    until_voltage: float
    until_current: float
    description: str
    c_rate: bool = False
    until_c_rate: bool = False
    drive_time: np.ndarray | None = None
    drive_current: np.ndarray | None = None


def make_step(**kw) -> Step:
    """A `Step` with its numbers as float64 (numpy, so parsing works inside a jitted function)."""
    for k in ("value", "duration", "until_voltage", "until_current"):
        kw[k] = float(kw[k])
    for k in ("drive_time", "drive_current"):
        if kw.get(k) is not None:
            kw[k] = np.asarray(kw[k], dtype=np.float64)
    return Step(**kw)


def DriveCycle(time, current, description: str = "drive cycle") -> Step:
    """A drive-cycle step: current [A] (positive = discharge) linearly interpolated in time [s],
    from time[0] = 0 to time[-1]."""
    t = np.asarray(time, dtype=np.float64)
    i = np.asarray(current, dtype=np.float64)
    if t.ndim != 1 or t.shape != i.shape or t.size < 2:
        raise ExperimentError(
            f"DriveCycle needs 1D time and current arrays of equal length >= 2, got shapes {t.shape} and {i.shape}."
        )
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(i))):
        raise ExperimentError("DriveCycle time and current must be finite.")
    if t[0] != 0 or np.any(np.diff(t) <= 0):
        raise ExperimentError("DriveCycle time must start at 0 and increase strictly.")
    return make_step(
        mode="drive", value=0.0, duration=t[-1], until_voltage=np.nan, until_current=np.nan,
        description=description, drive_time=t, drive_current=i,
    )


def _fail(text: str, why: str) -> ExperimentError:
    return ExperimentError(f"Cannot parse experiment step {text!r}: {why}.\n{ACCEPTED_FORMS}")


def _number(text: str, spec: str, digits: str, scale: float = 1.0) -> float:
    """`float(digits) * scale`, refused unless finite: a number beyond float64's range (1e400)
    would make an infinite rate, limit or duration."""
    return _finite(text, spec, float(digits) * scale)


def _finite(text: str, spec: str, value: float) -> float:
    if not np.isfinite(value):
        raise _fail(text, f"{spec!r} overflows: values must be finite, below {np.finfo(np.float64).max:.3g} (float64)")
    return value


def _parse_duration(text: str, spec: str, what: str = "duration") -> float:
    m = re.fullmatch(rf"({_NUM})\s*([a-z]+)", spec.strip())
    if not m or m.group(2) not in _TIME_UNITS:
        raise _fail(text, f"{spec!r} is not a {what}")
    value = _number(text, spec, m.group(1), _TIME_UNITS[m.group(2)])
    if value <= 0:
        raise _fail(text, f"the {what} must be positive, got {spec!r}")
    return value


# a C-rate ("1c"), a fraction of C ("c/2"), amperes ("0.5a", "500ma"); lower case, no spaces
_CURRENT_FORMS = (rf"({_NUM})c", rf"c/({_NUM})", rf"({_NUM})(ma|a)")


def _parse_current(text: str, spec: str) -> tuple[float, bool]:
    """('1C' | 'C/2' | '0.5 A' | '500 mA') -> (value, is_c_rate)."""
    s = spec.replace(" ", "")
    if m := re.fullmatch(_CURRENT_FORMS[0], s):
        return _number(text, spec, m.group(1)), True
    if m := re.fullmatch(_CURRENT_FORMS[1], s):
        divisor = _number(text, spec, m.group(1))
        if divisor == 0:  # also a divisor that underflows to 0 (C/1e-400)
            raise _fail(text, f"{spec!r} divides by zero: C/N needs N > 0")
        return _finite(text, spec, 1.0 / divisor), True
    if m := re.fullmatch(_CURRENT_FORMS[2], s):
        return _number(text, spec, m.group(1), 1e-3 if m.group(2) == "ma" else 1.0), False
    raise _fail(text, f"{spec!r} is not a current (e.g. '1C', 'C/2', '0.5 A', '500 mA')")


# a step's value other than a current: its unit (lower case, an optional "m" for milli) and mode
_VALUE_UNITS = {"ohm": "resistance", "ohms": "resistance", "w": "power", "v": "voltage"}


def _parse_value(text: str, spec: str) -> tuple[str, float, bool]:
    s = spec.replace(" ", "")
    if (m := re.fullmatch(rf"({_NUM})(m?)([a-z]+)", s)) and m.group(3) in _VALUE_UNITS:
        return _VALUE_UNITS[m.group(3)], _number(text, spec, m.group(1), 1e-3 if m.group(2) else 1.0), False
    value, c_rate = _parse_current(text, spec)
    return "current", value, c_rate


def _refuse_temperature(text: str, spec: str) -> None:
    """PyBaMM's step temperature ('at 30oC'), anywhere after the verb's 'at', is not supported."""
    if " at " in f" {spec} ":
        raise _fail(text, f"{spec!r}: a step at a temperature ('at 30oC') is not supported; set the ambient "
                          "temperature with the parameter 'Ambient temperature [K]'")


def _parse_ends(text: str, tail: str) -> tuple[float, float, float, bool]:
    """The end conditions after a step's value: clauses 'for <duration>' and 'until <limit>',
    joined by 'or' (PyBaMM's "for 1 hour or until 2.5 V"); after 'or' alone, a duration or a
    limit ("until 2.5 V or 1 hour"). Returns (duration, until_voltage, until_current,
    until_c_rate) with inf/nan for the conditions not given."""
    duration, until_v, until_i, until_c = np.inf, np.nan, np.nan, False
    words = re.split(r"(?:^| )(for|until|or)(?= |$)", tail)
    if words[0].strip():
        raise _fail(text, f"{words[0].strip()!r} is not 'for <duration>' or 'until <limit>'")
    clauses = [(k, v.strip()) for k, v in zip(words[1::2], words[2::2])]
    for i, (keyword, spec) in enumerate(clauses):
        if keyword == "or" and not spec:
            if i + 1 < len(clauses) and clauses[i + 1][0] != "or":
                continue  # "or until ...", "or for ..."
            raise _fail(text, "'or' must be followed by a duration or a limit")
        if not spec:
            raise _fail(text, f"'{keyword}' must be followed by a {'duration' if keyword == 'for' else 'limit'}")
        t = spec.replace(" ", "")
        _refuse_temperature(text, spec)
        is_duration = (m := re.fullmatch(rf"({_NUM})\s*([a-z]+)", spec)) is not None and m.group(2) in _TIME_UNITS
        if keyword == "until" and is_duration:
            raise _fail(text, f"'until' takes a voltage or current limit; a duration such as {spec!r} follows 'for'")
        if is_duration:
            if np.isfinite(duration):
                raise _fail(text, "the step has two durations")
            duration = _parse_duration(text, spec)
        elif keyword == "for":
            raise _fail(text, f"{spec!r} is not a duration")
        elif t.endswith("v"):
            m2 = re.fullmatch(rf"({_NUM})(mv|v)", t)
            if not np.isnan(until_v):
                raise _fail(text, "the step has two voltage limits")
            until_v = _number(text, spec, m2.group(1), 1e-3 if m2.group(2) == "mv" else 1.0) if m2 else 0.0
            if until_v <= 0:  # also '-1 V' and 'nan V', which the number pattern does not take
                raise _fail(text, f"{spec!r} is not a voltage limit: a positive number of volts, e.g. '2.5 V' or '2500 mV'")
        else:
            if not np.isnan(until_i):
                raise _fail(text, "the step has two current limits")
            if not any(re.fullmatch(form, t) for form in _CURRENT_FORMS):  # "2.5 V." said "is not a current"
                raise _fail(text, f"{spec!r} is not a voltage or current limit (e.g. '2.5 V', '2500 mV', 'C/50', "
                                  "'50 mA')")
            until_i, until_c = _parse_current(text, spec)
            if until_i <= 0:  # |current| never falls below zero: the step could not end on it
                raise _fail(text, f"the current limit {spec!r} must be positive (e.g. 'until C/50' or 'until 50 mA')")
    return duration, until_v, until_i, until_c


def parse_step(text: str) -> Step:
    """Parse one PyBaMM-style step string into a `Step` (see `ACCEPTED_FORMS`).

    A step may end on a duration and a limit together ("for 1 hour or until 2.5 V", also written
    "until 2.5 V or 1 hour"): it ends at whichever comes first. PyBaMM's output period suffix,
    "(1 second period)", is checked to be a duration and otherwise ignored: jaxcell samples each
    step at a fixed number of points, or at `simulate`'s `t_eval`, whatever the step says.
    """
    if not isinstance(text, str):
        raise ExperimentError(f"An experiment step must be a string or DriveCycle, got {type(text).__name__}.\n{ACCEPTED_FORMS}")
    s = " ".join(text.strip().lower().split())
    if m := re.fullmatch(r"(.+?) ?\((.*) period\)", s):
        s, period = m.groups()
        _parse_duration(text, period, "period")
    if m := re.fullmatch(r"rest for (.+)", s):
        return make_step(mode="current", value=0.0, duration=_parse_duration(text, m.group(1)),
                         until_voltage=np.nan, until_current=np.nan, description=text)
    m = re.fullmatch(r"(discharge|charge|hold) at (.+?)((?: (?:for|until|or)(?: .*)?)?)", s)
    if not m:
        raise _fail(text, "it does not start with 'Discharge at', 'Charge at', 'Hold at' or 'Rest for'")
    verb, value_spec, tail = m.groups()
    _refuse_temperature(text, value_spec)
    mode, value, c_rate = _parse_value(text, value_spec)
    if verb == "hold" and mode != "voltage":
        raise _fail(text, "'Hold at' takes a voltage, e.g. 'Hold at 4.2 V until C/50'")
    if verb != "hold" and mode == "voltage":
        raise _fail(text, "a voltage is held with 'Hold at ... V'")
    if value < 0:
        raise _fail(text, "the value must be non-negative (use Charge or Discharge for the sign)")
    if mode == "resistance" and value == 0:  # also a resistance that underflows to 0 (1e-400 Ohm)
        raise _fail(text, "the resistance must be positive: 0 Ohm is a short circuit")
    if verb == "charge":
        value = -value
    duration, until_v, until_i, until_c = _parse_ends(text, tail)
    if mode == "voltage" and not np.isnan(until_v):
        raise _fail(text, "a voltage hold ends on a current ('until C/50') or a duration, not a voltage")
    if mode != "voltage" and not np.isnan(until_i):
        raise _fail(text, "only a voltage hold can end on a current threshold")
    if np.isinf(duration) and np.isnan(until_v) and np.isnan(until_i):
        raise _fail(text, "the step needs an end: 'for <duration>' and/or 'until <limit>'")
    if value == 0 and mode != "voltage" and np.isinf(duration):
        raise _fail(text, "a step at zero current or power never reaches a limit: give it a duration ('Rest for ...')")
    return make_step(
        mode=mode, value=value, duration=duration, until_voltage=until_v, until_current=until_i,
        description=text, c_rate=c_rate, until_c_rate=until_c,
    )


MODES = {"current": 0, "drive": 1, "voltage": 2, "power": 3, "resistance": 4}


class StepTable(eqx.Module):
    """The steps of an experiment as arrays (one row per step), so that one compiled step solver
    serves every step: a 100-step protocol compiles as fast as a 1-step one.

    Rows follow `Step`'s fields; `mode` holds the codes of `MODES`; drive cycles are padded to a
    common length (steps that are not drive cycles hold a dummy row)."""

    mode: jax.Array
    value: jax.Array
    c_rate: jax.Array
    duration: jax.Array
    until_voltage: jax.Array
    until_current: jax.Array
    until_c_rate: jax.Array
    drive_time: jax.Array
    drive_current: jax.Array

    @classmethod
    def from_steps(cls, steps: Sequence[Step]) -> "StepTable":
        m = max([2] + [int(s.drive_time.shape[0]) for s in steps if s.mode == "drive"])
        dt, di = [], []
        for s in steps:
            if s.mode == "drive":
                t, i = np.asarray(s.drive_time), np.asarray(s.drive_current)
            else:
                t, i = np.array([0.0, 1.0]), np.zeros(2)
            pad = m - t.size  # extend past the end, holding the last current
            dt.append(np.concatenate([t, t[-1] + 1e6 * np.arange(1, pad + 1)]))
            di.append(np.concatenate([i, np.full(pad, i[-1])]))
        f = lambda name: np.asarray([getattr(s, name) for s in steps], dtype=np.float64)  # noqa: E731
        return cls(
            mode=np.asarray([MODES[s.mode] for s in steps], dtype=np.int32),
            value=f("value"),
            c_rate=np.asarray([s.c_rate for s in steps]),
            duration=f("duration"),
            until_voltage=f("until_voltage"),
            until_current=f("until_current"),
            until_c_rate=np.asarray([s.until_c_rate for s in steps]),
            drive_time=np.stack(dt),
            drive_current=np.stack(di),
        )

    @classmethod
    def drive_cycles(cls, time, current) -> "StepTable":
        """The tables of one drive-cycle step per row of `time` and `current` (n, m), stacked
        along a leading axis: what stacking `Experiment([DriveCycle(time[r], current[r])]).table`
        gives, built with jax.numpy where the rows are traced (a compiled fit's records), so it
        checks nothing: every row must be a valid drive cycle (`DriveCycle`)."""
        xp = jnp if any(isinstance(x, jax.core.Tracer) for x in (time, current)) else np
        time, current = xp.asarray(time, dtype=np.float64), xp.asarray(current, dtype=np.float64)
        n = time.shape[0]
        full = lambda value, dtype=np.float64: xp.full((n, 1), value, dtype=dtype)  # noqa: E731
        return cls(
            mode=full(MODES["drive"], np.int32), value=full(0.0), c_rate=full(False, bool), duration=time[:, -1:],
            until_voltage=full(np.nan), until_current=full(np.nan), until_c_rate=full(False, bool),
            drive_time=time[:, None, :], drive_current=current[:, None, :],
        )


class Experiment(eqx.Module):
    """A protocol: a sequence of steps run in order, each ended by its own condition.

    Steps are PyBaMM strings or `DriveCycle`s; a tuple groups the steps of one cycle, so
    ``Experiment([("Discharge at 1C until 2.5 V", "Rest for 1 hour")] * 3)`` is three cycles.
    The experiment stops early (with a status) if the voltage leaves the parameter set's cut-offs
    or a particle surface reaches a stoichiometry limit.

    Example:
        >>> exp = jaxcell.Experiment(["Discharge at 1C until 2.5 V", "Rest for 30 minutes",
        ...                           "Charge at C/2 until 4.2 V", "Hold at 4.2 V until C/50"])
    """

    table: StepTable
    descriptions: tuple[str, ...] = eqx.field(static=True)
    cycle_index: tuple[int, ...] = eqx.field(static=True)
    modes: tuple[int, ...] = eqx.field(static=True)  # the control modes used (codes of MODES), sorted

    def __init__(self, steps: Sequence[str | Step | tuple]):
        if isinstance(steps, (str, Step)):
            steps = [steps]
        if not hasattr(steps, "__iter__") or isinstance(steps, (set, frozenset, dict)):  # None, a number, no order
            raise ExperimentError(f"An experiment is a list of steps (strings or DriveCycles), got "
                                  f"{type(steps).__name__}.\n{ACCEPTED_FORMS}")
        flat, cycles = [], []
        for k, item in enumerate(steps):
            group = item if isinstance(item, tuple) else (item,)
            for s in group:
                flat.append(s if isinstance(s, Step) else parse_step(s))
                cycles.append(k)
        if not flat:
            raise ExperimentError(f"An experiment needs at least one step.\n{ACCEPTED_FORMS}")
        self.table = StepTable.from_steps(flat)
        self.descriptions = tuple(s.description for s in flat)
        self.cycle_index = tuple(cycles)
        self.modes = tuple(sorted({MODES[s.mode] for s in flat}))

    @property
    def has_drive_cycle(self) -> bool:
        return MODES["drive"] in self.modes

    def __len__(self) -> int:
        return len(self.descriptions)

    def __repr__(self) -> str:
        return "Experiment([" + ", ".join(repr(d) for d in self.descriptions) + "])"
