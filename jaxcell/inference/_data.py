"""Measured data: tables of time, current and voltage read into records that `jaxcell.simulate`
runs as drive cycles, checked row by row, and stacked to a common length for batches.

Conventions: time in s, current in A **positive on discharge** (jaxcell's and PyBaMM's sign),
voltage in V. Rows are named as the user sees them: a CSV file's line number (1-based, the
header is line 1, blank lines counted) or a DataFrame's 0-based position.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from collections.abc import Sequence

import jax
import numpy as np
import pandas as pd

from ..experiment import DriveCycle, Experiment

#: Spacing [s] of the padding points that `stack_records` appends after a record's last time.
PAD_DT = 1e-6
_LIST = 8  # how many rows an error or note lists before "and N more"


class MeasurementError(ValueError):
    """A measurement table or one of its records cannot be used as it is; the message names the
    source, the record, the column and the row."""


class MeasurementWarning(UserWarning):
    """Something in a measurement table was changed or left out (duplicated time stamps merged
    or separated, records skipped with ``on_error="skip"``); the details are in the message and
    in each `Record`'s ``notes``."""


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Record:
    """One measured record: a current drive and the voltage it produced.

    Attributes:
        key: the record columns' values, e.g. ``{"ambient_degC": 25, "soc_percent": 50,
            "cell": 3}``; ``{}`` when the table is one record.
        t: times [s], shape (n,), starting at 0 and strictly increasing.
        current: current [A], shape (n,), positive on discharge.
        voltage: terminal voltage [V], shape (n,).
        rows: where each point came from, shape (n,): line numbers of a CSV file (the header
            is line 1) or 0-based positions in a DataFrame (by default 0, 1, ..., n - 1).
        source: the file's name, or ``"DataFrame"``.
        t_start: the first time stamp in the source [s] (``t`` is the source's time minus it).
        rest_current: |current| [A] at or below which a point counts as rest (`at_rest`).
        notes: what was changed while reading (merged or separated duplicated time stamps).
        temperature: the cell's measured temperature [K], shape (n,), or None (not read;
            `read_measurements`'s ``temperature``). A thermal model's fit can use its rise
            (`records_model`'s ``temperature=True``).

    `read_measurements` builds records from tables; built directly from arrays, a record is
    checked (finite values, ``t`` from 0 strictly increasing, at least 2 points).

    Example:
        >>> rec = jaxcell.inference.read_measurements("pulses.csv", ["ambient_degC", "soc_percent", "cell"])[0]
        >>> sol = jaxcell.simulate(jaxcell.SPMe(), p, rec.experiment(), t_eval=rec.t_eval,
        ...                        initial_soc=rec.rest_voltage)
        >>> residual = sol.voltage - rec.voltage
    """

    key: dict
    t: np.ndarray
    current: np.ndarray
    voltage: np.ndarray
    rows: np.ndarray | None = None
    source: str = "DataFrame"
    t_start: float = 0.0
    rest_current: float = 0.01
    notes: tuple[str, ...] = ()
    temperature: np.ndarray | None = None

    def __post_init__(self):
        t, i, v = (np.asarray(x, dtype=np.float64) for x in (self.t, self.current, self.voltage))
        rows = np.arange(t.size) if self.rows is None else np.asarray(self.rows, dtype=np.int64)
        if not (t.ndim == 1 and t.shape == i.shape == v.shape == rows.shape and t.size >= 2):
            raise MeasurementError(
                f"{self.name}: t, current, voltage and rows must be 1D arrays of one length >= 2, got shapes "
                f"{t.shape}, {i.shape}, {v.shape} and {rows.shape}."
            )
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(i)) and np.all(np.isfinite(v))):
            raise MeasurementError(f"{self.name}: t, current and voltage must be finite.")
        if t[0] != 0 or np.any(np.diff(t) <= 0):
            raise MeasurementError(f"{self.name}: t must start at 0 and increase strictly.")
        arrays = [("t", t), ("current", i), ("voltage", v), ("rows", rows)]
        if self.temperature is not None:
            temp = np.asarray(self.temperature, dtype=np.float64)
            if temp.shape != t.shape or not np.all(np.isfinite(temp)) or not np.all(temp > 0):
                raise MeasurementError(f"{self.name}: temperature must be finite, positive (kelvin) and of t's shape "
                                       f"{t.shape}, got shape {temp.shape}.")
            arrays.append(("temperature", temp))
        for name, x in arrays:
            x.setflags(write=False)
            object.__setattr__(self, name, x)
        object.__setattr__(self, "key", dict(self.key))
        object.__setattr__(self, "notes", tuple(self.notes))

    @property
    def name(self) -> str:
        """The record as error messages name it: ``"pulses.csv, record ambient_degC=0, cell=19"``."""
        if not self.key:
            return self.source
        return f"{self.source}, record " + ", ".join(f"{k}={v!r}" for k, v in self.key.items())

    def __len__(self) -> int:
        return int(self.t.size)

    def __repr__(self) -> str:
        return (
            f"Record({self.name}: {len(self)} points over {self.duration:g} s, "
            f"{_row_word(self.source)}s {self.rows[0]}-{self.rows[-1]}"
            + (f", {len(self.notes)} note(s))" if self.notes else ")")
        )

    @property
    def duration(self) -> float:
        """The time [s] from the first point to the last."""
        return float(self.t[-1])

    @property
    def t_eval(self) -> np.ndarray:
        """The measured times [s], shape (n,): `simulate`'s ``t_eval`` for voltages to compare
        with `voltage` point by point."""
        return self.t

    @property
    def at_rest(self) -> bool:
        """Whether the record starts at rest: |current| at its first point is at most
        `rest_current` (A; `read_measurements`'s ``rest_current``, 0.01 A by default)."""
        return bool(abs(self.current[0]) <= self.rest_current)

    @property
    def rest_voltage(self) -> str:
        """The first voltage as a rest voltage for ``simulate(..., initial_soc=...)`` or
        `jaxcell.with_initial_soc`, e.g. ``"4.08078 V"`` (the measured number, exactly).

        Raises `MeasurementError` when the record does not start at rest (`at_rest`): its first
        voltage then includes overpotentials, and the initial state must be given otherwise.
        """
        if not self.at_rest:
            raise MeasurementError(
                f"{self.name} does not start at rest (|I| = {abs(self.current[0]):g} A at {_row_word(self.source)} "
                f"{self.rows[0]}, above rest_current = {self.rest_current:g} A): its first voltage is not an "
                "open-circuit voltage; give the initial state of charge yourself."
            )
        return f"{float(self.voltage[0])!r} V"

    def experiment(self) -> Experiment:
        """The measured current as a protocol: an `Experiment` of one `DriveCycle` through the
        points (t, current), interpolated linearly in time, lasting `duration`.

        Example:
            >>> sol = jaxcell.simulate(jaxcell.SPM(), p, rec.experiment(), t_eval=rec.t_eval)
        """
        return Experiment([DriveCycle(self.t, self.current, description=f"measured current ({self.name})")])


@dataclasses.dataclass(frozen=True, eq=False)
class StackedRecords:
    """Records padded to a common number of points, so that a batch of them compiles once.

    Arrays have shape (n_records, n_points). Row r holds record r's points where ``mask[r]`` is
    True (its first ``lengths[r]`` entries); after them come padding points: times
    ``t_last + k * dt`` (k = 1, 2, ..., dt = PAD_DT = 1e-6 s, or 8 float spacings of ``t_last``
    where that is more, so times still increase strictly and a row is itself a valid drive
    cycle), current and voltage equal to the record's last values, ``rows`` -1 and ``mask``
    False. Nothing is resampled: the real points are the records' own.

    Attributes: t [s], current [A], voltage [V], rows, mask (bool), lengths (n_records,),
    keys (one dict per record), first_voltage [V] and at_rest (bool), both (n_records,);
    temperature [K] (padded like the voltage) where every record has one, else None.

    A JAX pytree whose leaves are the arrays (the keys its static part): passed to a model that
    a fit compiles, the records are the program's inputs, and the fit drops their keys there
    (`without_labels`), so other records of the same shapes (the next cell, the next left-out
    rate) run through the same compiled program.
    """

    t: np.ndarray
    current: np.ndarray
    voltage: np.ndarray
    rows: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    keys: tuple[dict, ...]
    first_voltage: np.ndarray
    at_rest: np.ndarray
    temperature: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def experiments(self) -> list[Experiment]:
        """One `Experiment` per record, a `DriveCycle` through its padded row: every experiment
        has the same step-table shapes, so simulating them one after another (or stacked under
        `jax.vmap`) compiles once. The padding holds the last current (`StackedRecords`)."""
        return [Experiment([DriveCycle(t, i, description="measured current (stacked)")])
                for t, i in zip(self.t, self.current)]


# the arrays are the pytree's leaves; the keys its static part, as (column, value) pairs (a dict
# is not hashable)
_ARRAYS = ("t", "current", "voltage", "rows", "mask", "lengths", "first_voltage", "at_rest", "temperature")
jax.tree_util.register_pytree_node(
    StackedRecords,
    lambda s: (tuple(getattr(s, k) for k in _ARRAYS), tuple(tuple(key.items()) for key in s.keys)),
    lambda keys, arrays: StackedRecords(**dict(zip(_ARRAYS, arrays)), keys=tuple(dict(key) for key in keys)),
)


def without_labels(tree):
    """`tree` with the keys of every `StackedRecords` in it dropped, for the arguments of a
    compiled fit: the keys name records in messages, and as the pytree's static part they would
    make records that differ only in them compile again. Nothing a compiled model computes reads
    them."""
    return jax.tree.map(lambda x: dataclasses.replace(x, keys=()) if isinstance(x, StackedRecords) else x, tree,
                        is_leaf=lambda x: isinstance(x, StackedRecords))


def _row_word(source: str) -> str:
    return "row" if source == "DataFrame" else "line"


def _at(where: str, rows: np.ndarray) -> str:
    """'line 17', 'lines 17, 19' or 'lines 17, 19, ... and 3 more'."""
    shown = ", ".join(str(int(r)) for r in rows[:_LIST])
    more = f" and {rows.size - _LIST} more" if rows.size > _LIST else ""
    return f"{where}{'s' if rows.size > 1 else ''} {shown}{more}"


def _load(source) -> tuple[pd.DataFrame, str, np.ndarray]:
    """(table, source name, row numbers) from a path or a DataFrame."""
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True), "DataFrame", np.arange(len(source), dtype=np.int64)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path to a CSV file or a pandas DataFrame, got {type(source).__name__}.")
    name = os.path.basename(os.fspath(source))
    try:
        # blank lines are kept (as empty rows) so that row i is line i + 2 of the file
        df = pd.read_csv(source, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise MeasurementError(f"{name}: the file is empty.") from None
    except pd.errors.ParserError as e:
        raise MeasurementError(f"{name}: not a readable CSV table ({e}).") from None
    except UnicodeDecodeError as e:
        raise MeasurementError(f"{name}: not a text CSV table (byte {e.start} is not UTF-8: a binary or "
                               "spreadsheet file? Export it as CSV).") from None
    # pandas renames a repeated column name ("t_s", then "t_s.1"): refuse it rather than read one of two
    repeated = [c for c in df.columns if isinstance(c, str) and c.endswith(".1") and c[:-2] in df.columns]
    if repeated and _header_is_data(df.columns):
        raise MeasurementError(f"{name}: the first line looks like data ({', '.join(map(str, df.columns[:4]))}, ...): "
                               "the table needs a header row of column names.")
    if repeated:
        raise MeasurementError(f"{name}: the column {repeated[0][:-2]!r} appears more than once in the header; "
                               "which one is meant is not clear.")
    lines = np.arange(2, len(df) + 2, dtype=np.int64)
    blank = df.isna().all(axis=1).to_numpy()  # an empty line holds no data
    return df[~blank].reset_index(drop=True), name, lines[~blank]


def _numeric(df: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """The column as float64 and a mask of entries that are not numbers (text such as 'abc')."""
    raw = df[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = (values.isna() & raw.notna()).to_numpy()
    return values.to_numpy(dtype=np.float64), bad


def read_measurements(
    source,
    records: str | Sequence[str] | None = None,
    *,
    time: str = "t_s",
    current: str = "I_A",
    voltage: str = "V_V",
    temperature: str | None = None,
    min_points: int = 2,
    min_duration: float = 0.0,
    duplicates: str = "separate",
    separation: float = 1e-3,
    rest_current: float = 0.01,
    on_error: str = "raise",
) -> list[Record]:
    """Read a measurement table (a CSV file or a pandas DataFrame) into `Record`s.

    Columns ``time`` [s], ``current`` [A, positive on discharge] and ``voltage`` [V] are
    read, and ``temperature``, the cell's measured temperature, where named: its unit from the
    name's ending, ``degC`` (e.g. ``"T_cell_degC"``) or ``_K``, stored in kelvin
    (`Record.temperature`); other columns are ignored (NaN there is fine). ``records`` names the columns whose
    values tell records apart (e.g. ``["ambient_degC", "soc_percent", "cell"]``); records come
    in the order of their first row and their rows need not be contiguous. Without
    ``records`` the table is one record. Each record's time is shifted to start at 0
    (``Record.t_start`` keeps the first stamp); irregular sampling is fine.

    Checks, each refused with a `MeasurementError` that names the source, record, column and
    row (line of the file, or DataFrame position):

    - a missing column (the message lists the columns there are), an empty record column;
    - a value that is not a number, NaN or infinite in time, current or voltage;
    - time going backwards;
    - fewer than ``min_points`` points or a duration under ``min_duration`` [s] (after merging);
    - every row at one time stamp, or more than `MAX_ROWS_PER_STAMP` (3) different rows at one
      (a time column coarser than the sampling: separating them would squeeze them together).

    A record whose voltage steps the same way as its current at most steps of current (a
    current logged positive on charge: a discharge's ohmic drop moves the voltage against the
    current) is read but announced by a `MeasurementWarning`.

    Duplicated time stamps: a row equal to the row before it in time, current and voltage is
    merged into it (its other columns are not compared). Rows that share a time stamp but differ
    in current or voltage are an instantaneous step logged before and after it: with
    ``duplicates="separate"`` (default) the m rows of the stamp t keep their order and move to
    t + j * d / (m - 1), j = 0..m-1, with d = min(``separation``, half the gap to the next
    stamp) (so the first keeps t); ``duplicates="refuse"`` refuses them. Every merge and
    separation is listed in ``Record.notes`` and announced by one `MeasurementWarning`.

    With ``on_error="raise"`` (default) one error lists every record that fails a check;
    ``on_error="skip"`` leaves those records out instead, with a `MeasurementWarning` that names
    each and why (problems with the table as a whole, such as a missing column, always raise).
    A blank line of a CSV file holds no data and is passed over; line numbers count it.

    Returns a list of `Record`s.

    Example:
        >>> recs = read_measurements("pulses.csv", ["ambient_degC", "soc_percent", "cell"], min_duration=5.0,
        ...                          on_error="skip")
        >>> recs[0].key, len(recs[0]), recs[0].rest_voltage
        ({'ambient_degC': 0, 'soc_percent': 90, 'cell': 19}, 114, '4.08078 V')
    """
    if duplicates not in ("separate", "refuse"):
        raise ValueError(f"duplicates must be 'separate' or 'refuse', got {duplicates!r}.")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
    if not (isinstance(min_points, (int, np.integer)) and min_points >= 2):
        raise ValueError(f"min_points must be an integer >= 2 (a drive cycle needs two points), got {min_points!r}.")
    for arg, value in (("min_duration", min_duration), ("separation", separation), ("rest_current", rest_current)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{arg} must be a finite number >= 0, got {value!r}.")
    if separation <= 0:
        raise ValueError(f"separation must be positive, got {separation!r}.")
    records = [records] if isinstance(records, str) else list(records or [])
    if temperature is not None and not (temperature.endswith("degC") or temperature.endswith("_K")):
        raise ValueError(f"temperature: the column's name must end in its unit, 'degC' or '_K' (e.g. 'T_cell_degC'), "
                         f"got {temperature!r}.")

    df, name, rows = _load(source)
    where = _row_word(name)
    read = [time, current, voltage] + ([temperature] if temperature is not None else [])
    wanted = list(dict.fromkeys([*records, *read]))
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        hint = ""
        if _header_is_data(df.columns):
            hint = " The first line looks like data: the table needs a header row of column names."
        raise MeasurementError(
            f"{name}: no column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}; the columns are "
            f"{', '.join(map(repr, map(str, df.columns)))}.{hint}"
        )
    if len(df) == 0:
        raise MeasurementError(f"{name}: the table has no rows.")
    for c in records:
        empty = df[c].isna().to_numpy()
        if empty.any():
            raise MeasurementError(
                f"{name}: record column {c!r} is empty at {_at(where, rows[empty])}: every row needs its record's key."
            )
    columns = {c: _numeric(df, c) for c in read}

    if records:
        codes = df.groupby(records, sort=False).ngroup().to_numpy()
        order = np.argsort(codes, kind="stable")
        groups = np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)
    else:
        groups = [np.arange(len(df))]

    out, problems = [], []
    for idx in groups:
        key = {c: _python(df[c].iloc[idx[0]]) for c in records}
        label = name if not key else f"{name}, record " + ", ".join(f"{k}={v!r}" for k, v in key.items())
        try:
            out.append(_record(
                key, name, label, where, rows[idx], {c: (x[idx], bad[idx]) for c, (x, bad) in columns.items()},
                time, current, voltage, min_points, min_duration, duplicates, separation, rest_current, temperature,
            ))
        except MeasurementError as e:
            problems.append(str(e))
    if problems and on_error == "raise":
        shown = problems[:_LIST] + ([f"and {len(problems) - _LIST} more"] if len(problems) > _LIST else [])
        raise MeasurementError("\n".join(shown) if len(problems) == 1 else
                               f"{name}: {len(problems)} records fail the checks:\n  " + "\n  ".join(shown))
    if problems:
        warnings.warn(
            f"{name}: {len(problems)} record(s) left out (on_error='skip'):\n  " + "\n  ".join(problems),
            MeasurementWarning, stacklevel=2,
        )
    flipped = [r for r in out if _current_looks_reversed(r.current, r.voltage, rest_current)]
    if flipped:
        warnings.warn(
            f"{name}: the current of {len(flipped)} of {len(out)} record(s) looks reversed: where it steps up the "
            f"voltage steps up too, where a cell's resistance makes it fall. {current!r} must be positive on "
            f"discharge (negate the column if it is logged positive on charge). First: {flipped[0].name}.",
            MeasurementWarning, stacklevel=2,
        )
    noted = [r for r in out if r.notes]
    if noted:
        warnings.warn(
            f"{name}: {len(noted)} of {len(out)} record(s) had duplicated time stamps (see Record.notes); "
            f"first: {noted[0].name}: {noted[0].notes[0]}",
            MeasurementWarning, stacklevel=2,
        )
    return out


def _header_is_data(columns) -> bool:
    """Whether every column name is a number, counting pandas' renaming of a repeated name
    ('0.0', '0.0.1'): a file without a header whose first line of data repeats a value."""
    names = [str(c) for c in columns]
    return all(_is_number(c) or (m := re.fullmatch(r"(.+)\.\d+", c)) is not None and _is_number(m.group(1))
               for c in names)


def _is_number(text) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _python(value):
    """A numpy scalar as the Python number or string it holds (for readable record keys)."""
    return value.item() if isinstance(value, np.generic) else value


def _current_looks_reversed(i: np.ndarray, v: np.ndarray, rest_current: float) -> bool:
    """Whether a record's current has the wrong sign for a discharge-positive convention: at
    most of its steps of current (changes above the rest current and a fifth of the largest
    current), the voltage moves the same way, where the cell's ohmic drop moves it the other
    way. Each step is read over the samples either side of it: loggers stamp the current a
    sample before or after the voltage (the LG M50 pulses: about 0.1 s after). A record with no
    such step is not judged. On the LG M50 rate tests and pulses (192 records) no record is
    flagged; with the current negated, 187 are (5 pulses have one step each way)."""
    if i.size < 2:
        return False
    k = np.flatnonzero(np.abs(np.diff(i)) > max(rest_current, 0.2 * float(np.max(np.abs(i)))))
    if k.size == 0:
        return False
    a, b = np.maximum(k - 1, 0), np.minimum(k + 2, i.size - 1)
    return bool(np.sum((v[b] - v[a]) * (i[b] - i[a]) > 0) > k.size / 2)


# rows that may share a time stamp (after identical rows are merged): a step's last point before
# and first after, and one more; more are a time column coarser than the sampling, which moving
# them apart by `separation` would squeeze (115 rows of a 20 s pulse into 1 ms)
MAX_ROWS_PER_STAMP = 3


def _record(key, name, label, where, rows, columns, time, current, voltage, min_points, min_duration,
            duplicates, separation, rest_current, temperature=None) -> Record:
    """Check one record's rows (in source order) and build its `Record`."""
    for c, (x, bad) in columns.items():
        if bad.any():
            raise MeasurementError(f"{label}: column {c!r} has a value that is not a number at {_at(where, rows[bad])}.")
        nonfinite = ~np.isfinite(x)
        if nonfinite.any():
            kind = "NaN (empty)" if np.isnan(x[nonfinite][0]) else "infinite"
            raise MeasurementError(
                f"{label}: column {c!r} is {kind} at {_at(where, rows[nonfinite])}; the columns read "
                "(time, current, voltage and a named temperature) must be numbers (NaN is fine only in the others)."
            )
    t, i, v = columns[time][0], columns[current][0], columns[voltage][0]
    temp = None if temperature is None else columns[temperature][0] + (273.15 if temperature.endswith("degC") else 0.0)
    back = np.flatnonzero(np.diff(t) < 0)
    if back.size:
        k = back[0]
        raise MeasurementError(
            f"{label}: column {time!r} goes backwards at {where} {rows[k + 1]} ({t[k + 1]:g} s after {t[k]:g} s at "
            f"{where} {rows[k]}); times must not decrease within a record."
        )
    notes = []
    same = np.diff(t) == 0
    identical = np.concatenate([[False], same & (np.diff(i) == 0) & (np.diff(v) == 0)])
    if identical.any():
        notes.append(
            f"merged {int(identical.sum())} row(s) equal in {time}, {current} and {voltage} to the row before: "
            f"{_at(where, rows[identical])}"
        )
        t, i, v, rows = t[~identical], i[~identical], v[~identical], rows[~identical]
        temp = None if temp is None else temp[~identical]
    if t.size > 1 and t[-1] == t[0]:
        raise MeasurementError(
            f"{label}: all {t.size} rows have the time stamp {t[0]:g} s ({where}s {rows[0]}-{rows[-1]}): no duration "
            f"to fit; is {time!r} the time column?"
        )
    same = np.concatenate([[False], np.diff(t) == 0])
    if same.any():
        starts = np.flatnonzero(~same)  # first row of each distinct stamp
        ends = np.append(starts[1:], t.size)
        k = int(np.argmax(ends - starts))
        if ends[k] - starts[k] > MAX_ROWS_PER_STAMP:
            a, b = starts[k], ends[k]
            raise MeasurementError(
                f"{label}: {b - a} rows with different {current} or {voltage} share the time stamp {t[a]:g} s "
                f"({where}s {rows[a]}-{rows[b - 1]}); a step logged before and after has {MAX_ROWS_PER_STAMP} at "
                f"most. The time column is coarser than the sampling: log {time!r} with more digits."
            )
        if duplicates == "refuse":
            k = int(np.flatnonzero(same)[0])
            raise MeasurementError(
                f"{label}: {where} {rows[k]} has the time stamp of {where} {rows[k - 1]} ({t[k]:g} s) but a different "
                f"{current} or {voltage} (duplicates='refuse'; 'separate' moves the later row just after)."
            )
        t = t.copy()
        for a, b in zip(starts, ends):
            if b - a > 1:
                gap = t[b] - t[a] if b < t.size else np.inf
                d = min(separation, gap / 2)
                t[a:b] = t[a] + np.arange(b - a) * d / (b - a - 1)
        notes.append(
            f"separated {int(same.sum())} row(s) sharing a time stamp with the row before but differing in "
            f"{current} or {voltage} (a step), moved by up to {separation:g} s: {_at(where, rows[same])}"
        )
    t_start = float(t[0])
    t = t - t_start
    if np.any(np.diff(t) <= 0):
        k = int(np.flatnonzero(np.diff(t) <= 0)[0]) + 1
        raise MeasurementError(
            f"{label}: time stamps too close to separate at {where} {rows[k]} ({t[k] + t_start!r} s)."
        )
    if t.size < min_points or t[-1] < min_duration:
        raise MeasurementError(
            f"{label}: too short, {t.size} point(s) over {t[-1]:g} s ({where}s {rows[0]}-{rows[-1]}); "
            f"min_points={min_points}, min_duration={min_duration:g} s."
        )
    if temp is not None and not np.all(temp > 0):
        k = int(np.flatnonzero(~(temp > 0))[0])
        raise MeasurementError(f"{label}: column {temperature!r} is below absolute zero at {where} {rows[k]}.")
    return Record(key=key, t=t, current=i, voltage=v, rows=rows, source=name, t_start=t_start,
                  rest_current=rest_current, notes=tuple(notes), temperature=temp)


def stack_records(records: Sequence[Record], n_points: int | None = None) -> StackedRecords:
    """Pad records to a common number of points: arrays of shape (n_records, n_points), so that
    simulations of the whole batch share one compile (a drive cycle's length is part of it).

    ``n_points`` defaults to the longest record's length; a record longer than ``n_points`` is
    refused (nothing is resampled or cut). The padding is described in `StackedRecords`:
    ``stacked.t[r][stacked.mask[r]]`` is record r's ``t`` exactly, and likewise for current,
    voltage and rows. Choosing a few fixed ``n_points`` (e.g. 128, 1024) for all data sets keeps
    the number of compiles small.

    Example:
        >>> s = stack_records(recs, n_points=128)
        >>> s.t.shape, s.mask.sum(axis=1)        # (n_records, 128), each record's length
    """
    records = list(records)
    if not records:
        raise ValueError("stack_records needs at least one Record.")
    for k, r in enumerate(records):
        if not isinstance(r, Record):
            raise TypeError(f"stack_records takes Records (read_measurements), got {type(r).__name__} at index {k}.")
    lengths = np.array([len(r) for r in records], dtype=np.int64)
    n = int(lengths.max()) if n_points is None else n_points
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n_points must be an integer >= 2, got {n_points!r}.")
    if lengths.max() > n:
        k = int(np.argmax(lengths))
        raise ValueError(
            f"{records[k].name} has {lengths[k]} points, more than n_points={n}: records are padded, never cut "
            "or resampled; choose n_points >= the longest record."
        )
    shape = (len(records), n)
    t, i, v = np.empty(shape), np.empty(shape), np.empty(shape)
    rows, mask = np.full(shape, -1, dtype=np.int64), np.zeros(shape, dtype=bool)
    temp = np.empty(shape) if all(r.temperature is not None for r in records) else None
    for k, r in enumerate(records):
        m = len(r)
        t[k, :m], i[k, :m], v[k, :m], rows[k, :m], mask[k, :m] = r.t, r.current, r.voltage, r.rows, True
        # beyond about 1e9 s, 1e-6 s is below float64's spacing and t_last + 1e-6 == t_last
        t[k, m:] = r.t[-1] + max(PAD_DT, 8 * np.spacing(r.t[-1])) * np.arange(1, n - m + 1)
        i[k, m:], v[k, m:] = r.current[-1], r.voltage[-1]
        if temp is not None:
            temp[k, :m], temp[k, m:] = r.temperature, r.temperature[-1]
    return StackedRecords(
        t=t, current=i, voltage=v, rows=rows, mask=mask, lengths=lengths, keys=tuple(r.key for r in records),
        first_voltage=v[:, 0].copy(), at_rest=np.array([r.at_rest for r in records]), temperature=temp,
    )
