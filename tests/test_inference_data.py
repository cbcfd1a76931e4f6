"""Measured data (jaxcell.inference): reading tables into records, the checks and their messages,
duplicated time stamps, batching by padding; the real LG M50 files; one SPM round trip."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jaxcell
import jaxcell.inference as inf

DATA = Path("/work/shared/data")
PULSES = DATA / "lgm50" / "pulses.csv"
RATES = DATA / "lgm50" / "rate_tests.csv"
ECKER = DATA / "ecker2015" / "Ecker_1C.csv"
needs_data = pytest.mark.skipif(not PULSES.exists(), reason="the shared LG M50 data are not on this machine")

# lines 2-6: cell A (irregular times, NaN temperature); 7-9: cell B; 10-11: cell A again
GOOD = """cell,soc,t_s,I_A,V_V,T_degC
A,50,10.0,0.0,3.90,25.0
A,50,10.5,1.0,3.85,nan
A,50,11.7,1.0,3.84,25.1
A,50,15.0,1.0,3.83,nan
A,50,15.1,0.0,3.86,25.2
B,50,0.0,0.5,3.80,25.0
B,50,0.2,0.5,3.79,25.0
B,50,0.3,0.5,3.78,
A,50,20.0,0.0,3.87,25.3
A,50,30.0,0.0,3.88,25.3
"""


def write(tmp_path, text, name="m.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_records_in_order_of_appearance(tmp_path):
    recs = inf.read_measurements(write(tmp_path, GOOD), ["cell", "soc"])
    assert [r.key for r in recs] == [{"cell": "A", "soc": 50}, {"cell": "B", "soc": 50}]
    a, b = recs
    np.testing.assert_array_equal(a.t, np.array([10.0, 10.5, 11.7, 15.0, 15.1, 20.0, 30.0]) - 10.0)  # from the first stamp
    assert a.t_start == 10.0 and b.t_start == 0.0
    np.testing.assert_array_equal(a.current, [0, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(a.voltage, [3.90, 3.85, 3.84, 3.83, 3.86, 3.87, 3.88])
    np.testing.assert_array_equal(a.rows, [2, 3, 4, 5, 6, 10, 11])  # file lines, header = line 1
    np.testing.assert_array_equal(b.rows, [7, 8, 9])
    assert len(a) == 7 and a.duration == 20.0 and a.notes == () and a.source == "m.csv"
    assert a.at_rest and a.rest_voltage == "3.9 V" and not b.at_rest
    with pytest.raises(inf.MeasurementError, match=r"m.csv, record cell='B', soc=50 does not start at rest"):
        b.rest_voltage
    np.testing.assert_array_equal(a.t_eval, a.t)
    step = a.experiment().table
    np.testing.assert_array_equal(step.drive_time[0], a.t)
    np.testing.assert_array_equal(step.drive_current[0], a.current)


def test_blank_lines_are_passed_over_and_counted(tmp_path):
    lines = GOOD.splitlines()
    text = "\n".join(lines[:4] + [""] + lines[4:]) + "\n\n"  # a blank line 5 and one at the end
    a, b = inf.read_measurements(write(tmp_path, text), ["cell", "soc"])
    np.testing.assert_array_equal(a.rows, [2, 3, 4, 6, 7, 11, 12])
    np.testing.assert_array_equal(b.rows, [8, 9, 10])


def test_record_from_arrays_is_checked():
    r = inf.Record(key={"cell": 1}, t=[0.0, 1.0], current=[0.0, 1.0], voltage=[4.0, 3.9])
    np.testing.assert_array_equal(r.rows, [0, 1])
    with pytest.raises(inf.MeasurementError, match="t must start at 0 and increase strictly"):
        inf.Record(key={}, t=[0.0, 0.0], current=[0.0, 1.0], voltage=[4.0, 3.9])


def test_dataframe_one_record_and_other_column_names():
    df = pd.DataFrame({"time": [5.0, 6.0, 8.0], "amps": [0.0, 2.0, 2.0], "volts": [4.0, 3.9, 3.8], "x": np.nan})
    (r,) = inf.read_measurements(df, time="time", current="amps", voltage="volts")
    assert r.key == {} and r.source == "DataFrame"
    np.testing.assert_array_equal(r.t, [0.0, 1.0, 3.0])
    np.testing.assert_array_equal(r.rows, [0, 1, 2])  # positions
    with pytest.raises(inf.MeasurementError, match=r"DataFrame: column 'volts' is NaN \(empty\) at row 1;"):
        inf.read_measurements(df.assign(volts=[4.0, np.nan, 3.8]), time="time", current="amps", voltage="volts")


@pytest.mark.parametrize("edit, message", [
    # (line to change, new text) -> the error's text
    ((3, "A,50,10.5,1.0,abc,nan"), r"m.csv, record cell='A', soc=50: column 'V_V' has a value that is not a number at line 3\."),
    ((4, "A,50,11.7,,3.84,25.1"), r"record cell='A', soc=50: column 'I_A' is NaN \(empty\) at line 4;"),
    ((8, "B,50,0.2,inf,3.79,25.0"), r"record cell='B', soc=50: column 'I_A' is infinite at line 8;"),
    ((5, "A,50,11.0,1.0,3.83,nan"), r"record cell='A', soc=50: column 't_s' goes backwards at line 5 \(11 s after 11.7 s at line 4\)"),
    ((9, "B,50,0.2,0.6,3.78,"), r"record cell='B', soc=50: line 9 has the time stamp of line 8 \(0.2 s\) but a different I_A or V_V"),
    ((7, ",50,0.0,0.5,3.80,25.0"), r"m.csv: record column 'cell' is empty at line 7: every row needs"),
])
def test_refusals_name_record_column_and_line(tmp_path, edit, message):
    lines = GOOD.splitlines()
    lines[edit[0] - 1] = edit[1]
    with pytest.raises(inf.MeasurementError, match=message):
        inf.read_measurements(write(tmp_path, "\n".join(lines) + "\n"), ["cell", "soc"], duplicates="refuse")


def test_missing_columns_are_named_with_those_there(tmp_path):
    with pytest.raises(inf.MeasurementError, match=r"m.csv: no column 'V_V'; the columns are 'cell', 'soc', 't_s', 'I_A', 'V', 'T_degC'\."):
        inf.read_measurements(write(tmp_path, GOOD.replace("V_V", "V")), ["cell", "soc"])
    with pytest.raises(inf.MeasurementError, match=r"no columns 'pack', 'V_V'"):
        inf.read_measurements(write(tmp_path, GOOD.replace("V_V", "V")), ["pack"])
    with pytest.raises(inf.MeasurementError, match="empty"):
        inf.read_measurements(write(tmp_path, ""))
    with pytest.raises(ValueError, match="duplicates must be"):
        inf.read_measurements(write(tmp_path, GOOD), duplicates="drop")


def test_unreadable_files_and_repeated_columns_are_named(tmp_path):
    """A binary file (a spreadsheet saved under .csv) named no file ("'utf-8' codec can't
    decode byte 0xce"); a column named twice was read as one of the two, the other renamed
    't_s.1' by pandas and ignored."""
    binary = tmp_path / "cells.csv"
    binary.write_bytes(b"PK\x03\x04\xce\xfa\x00\x01" * 50)
    with pytest.raises(inf.MeasurementError, match=r"cells.csv: not a text CSV table \(byte \d+ is not UTF-8"):
        inf.read_measurements(binary)
    twice = GOOD.replace("T_degC", "t_s", 1)
    with pytest.raises(inf.MeasurementError, match=r"m.csv: the column 't_s' appears more than once in the header"):
        inf.read_measurements(write(tmp_path, twice), ["cell", "soc"])


def test_a_header_that_is_data_is_named_also_when_it_repeats_a_value(tmp_path):
    """A file without a header whose first line repeats a value (t = 0 and I = 0, the usual
    start) was refused as a header naming the column '0.0' twice; the hint that the first line
    looks like data came only where its values differed."""
    for first in ("0.0,0.0,4.08675", "0.5,1.25,4.01"):
        text = f"{first}\n1.0,5.0,3.9\n2.0,5.0,3.85\n"
        with pytest.raises(inf.MeasurementError, match="(?i)the first line looks like data"):
            inf.read_measurements(write(tmp_path, text))


def test_a_time_column_coarser_than_the_sampling_is_refused(tmp_path):
    """Rows that share a time stamp are a step logged before and after it, separated by 1 ms;
    a record whose rows all share one stamp (a constant time column) was squeezed into 1 ms and
    fitted (exit status 0), and so would be a logger's 10 samples a second stamped to the
    second. Up to 3 rows at a stamp are still separated."""
    rows = "".join(f"5.0,{i},{4.0 - 0.01 * i}\n" for i in range(6))
    with pytest.raises(inf.MeasurementError, match=r"all 6 rows have the time stamp 5 s \(lines 2-7\): no duration"):
        inf.read_measurements(write(tmp_path, "t_s,I_A,V_V\n" + rows))
    coarse = "t_s,I_A,V_V\n0,0,4.1\n" + "".join(f"1,{i},{4.0 - 0.01 * i}\n" for i in range(1, 5)) + "2,5,3.9\n"
    with pytest.raises(inf.MeasurementError, match=r"4 rows with different I_A or V_V share the time stamp 1 s \(lines 3-6\)"):
        inf.read_measurements(write(tmp_path, coarse))
    three = "t_s,I_A,V_V\n0,0,4.1\n1,1,4.0\n1,2,3.99\n1,3,3.98\n2,5,3.9\n"
    with pytest.warns(inf.MeasurementWarning, match="separated 2 row"):
        (r,) = inf.read_measurements(write(tmp_path, three))
    np.testing.assert_allclose(r.t, [0.0, 1.0, 1.0005, 1.001, 2.0], rtol=0, atol=1e-12)


def test_records_not_at_rest_are_named_plainly():
    """Without initial_soc every record must start at rest; the message names the first that
    does not, without an empty "({})" or "and 0 more" for a record read without record columns."""
    from jaxcell.inference._hierarchy import _initial_socs

    p = jaxcell.load_parameters("Chen2020")
    moving = inf.stack_records(inf.read_measurements(pd.DataFrame({"t_s": [0.0, 1.0, 2.0], "I_A": 1.0, "V_V": 3.9})))
    with pytest.raises(inf.MeasurementError, match=r"^record 0 does not start at rest, so the first voltage is not a rest"):
        _initial_socs(moving, None, p)
    frame = pd.DataFrame({"cell": ["a"] * 3 + ["b"] * 3, "t_s": [0.0, 1.0, 2.0] * 2, "I_A": 1.0, "V_V": 3.9})
    two = inf.stack_records(inf.read_measurements(frame, "cell"))
    with pytest.raises(inf.MeasurementError, match=r"^record 0 \(\{'cell': 'a'\}\) and 1 more do not start at rest"):
        _initial_socs(two, None, p)


def test_short_records_refused_or_skipped_with_a_warning(tmp_path):
    path = write(tmp_path, GOOD)
    with pytest.raises(inf.MeasurementError, match=r"record cell='B', soc=50: too short, 3 point\(s\) over 0.3 s \(lines 7-9\); min_points=4"):
        inf.read_measurements(path, ["cell", "soc"], min_points=4)
    # every failing record in one error
    with pytest.raises(inf.MeasurementError, match=r"2 records fail the checks:\n.*cell='A'.*\n.*cell='B'"):
        inf.read_measurements(path, ["cell", "soc"], min_duration=30.0)
    with pytest.warns(inf.MeasurementWarning, match=r"1 record\(s\) left out .*\n  m.csv, record cell='B', soc=50: too short"):
        recs = inf.read_measurements(path, ["cell", "soc"], min_duration=1.0, on_error="skip")
    assert [r.key["cell"] for r in recs] == ["A"]


def test_duplicated_time_stamps_merged_or_separated(tmp_path):
    text = """t_s,I_A,V_V,T
0.0,0.0,4.1,1
0.0,5.0,3.9,1
0.5,5.0,3.8,1
0.5,5.0,3.8,2
0.5,5.0,3.8,3
0.501,5.0,3.7,3
0.501,0.0,3.9,3
0.501,0.0,3.95,3
"""
    with pytest.warns(inf.MeasurementWarning, match="1 of 1 record"):
        (r,) = inf.read_measurements(write(tmp_path, text))
    # lines 5 and 6 equal line 4 in t, I and V (only the ignored column differs): merged
    np.testing.assert_array_equal(r.rows, [2, 3, 4, 7, 8, 9])
    # line 3 is a step at t = 0: moved by the separation (1 ms); lines 7-9 share 0.501 s, the
    # last stamp, and are spread over 1 ms
    np.testing.assert_allclose(r.t, [0.0, 1e-3, 0.5, 0.501, 0.5015, 0.502], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(r.current, [0, 5, 5, 5, 0, 0])
    np.testing.assert_array_equal(r.voltage, [4.1, 3.9, 3.8, 3.7, 3.9, 3.95])
    assert r.notes[0] == "merged 2 row(s) equal in t_s, I_A and V_V to the row before: lines 5, 6"
    assert r.notes[1].startswith("separated 3 row(s)") and r.notes[1].endswith("lines 3, 8, 9")
    assert r.at_rest and r.rest_voltage == "4.1 V"
    # a gap shorter than two separations: the step moves half-way to the next stamp
    with pytest.warns(inf.MeasurementWarning, match="separated 1 row"):
        (r,) = inf.read_measurements(write(tmp_path, "t_s,I_A,V_V\n0,0,4.1\n0,5,3.9\n0.0004,5,3.8\n"), separation=1e-3)
    np.testing.assert_allclose(r.t, [0.0, 2e-4, 4e-4], rtol=0, atol=1e-15)


def test_stack_records_pads_and_round_trips(tmp_path):
    recs = inf.read_measurements(write(tmp_path, GOOD), ["cell", "soc"])
    s = inf.stack_records(recs, n_points=10)
    assert s.t.shape == s.current.shape == s.voltage.shape == s.mask.shape == s.rows.shape == (2, 10) and len(s) == 2
    for k, r in enumerate(recs):
        m = s.mask[k]
        np.testing.assert_array_equal(s.t[k][m], r.t)
        np.testing.assert_array_equal(s.current[k][m], r.current)
        np.testing.assert_array_equal(s.voltage[k][m], r.voltage)
        np.testing.assert_array_equal(s.rows[k][m], r.rows)
        assert m[: len(r)].all() and not m[len(r):].any() and s.lengths[k] == len(r)
        n_pad = 10 - len(r)
        np.testing.assert_allclose(s.t[k][~m], r.t[-1] + inf.PAD_DT * np.arange(1, n_pad + 1), rtol=0, atol=1e-12)
        assert (s.current[k][~m] == r.current[-1]).all() and (s.voltage[k][~m] == r.voltage[-1]).all()
        assert (s.rows[k][~m] == -1).all()
    np.testing.assert_array_equal(s.first_voltage, [3.90, 3.80])
    np.testing.assert_array_equal(s.at_rest, [True, False])
    tables = [e.table for e in s.experiments()]  # one drive-cycle shape: one compile for the batch
    assert tables[0].drive_time.shape == tables[1].drive_time.shape == (1, 10)
    assert inf.stack_records(recs).t.shape == (2, 7)
    with pytest.raises(ValueError, match=r"record cell='A', soc=50 has 7 points, more than n_points=5"):
        inf.stack_records(recs, n_points=5)
    # a record ending at 6e11 s, where 1e-6 s is below float64's spacing: the padding still increases
    (long,) = inf.read_measurements(pd.DataFrame({"t_s": [0, 1, 2, 6e11], "I_A": [0, 1, 1, 1], "V_V": [4, 3.9, 3.8, 3.7]}))
    s = inf.stack_records([long], n_points=8)
    assert (np.diff(s.t[0]) > 0).all() and s.experiments()[0].table.drive_time.shape == (1, 8)


def test_records_are_a_pytree_and_solve_traced(tmp_path, chen):
    """StackedRecords flattens to its arrays (keys compared by value in its static part, and
    dropped by `without_labels` for a fit's shared program); `RecordSolver` builds the same step
    tables, times and initial states from traced records as from concrete ones, and its tables
    are the stacked tables of each record's `DriveCycle` experiment, dtypes included."""
    import jax

    from jaxcell.inference import RecordSolver
    from jaxcell.inference._data import without_labels

    recs = inf.read_measurements(write(tmp_path, GOOD), ["cell", "soc"])
    s = inf.stack_records(recs, n_points=10)
    leaves, treedef = jax.tree.flatten(s)
    back = jax.tree.unflatten(treedef, leaves)
    assert back.keys == s.keys and all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(back), leaves))
    other = inf.stack_records(recs[::-1], n_points=10)
    assert jax.tree.structure(other) != treedef  # other labels: another structure
    assert jax.tree.structure(without_labels(other)) == jax.tree.structure(without_labels(s))
    identity = jax.jit(lambda r: r)
    assert identity(s).keys == s.keys and identity(other).keys == other.keys  # not the first call's labels
    stacked = jax.tree.map(lambda *xs: np.stack(xs), *[e.table for e in s.experiments()])
    at_rest = inf.stack_records(recs[:1], n_points=10)  # starts at rest: its initial state from its first voltage
    for records in (s, at_rest):
        soc = None if records is at_rest else 0.9
        concrete = RecordSolver(jaxcell.SPM(), chen, records, initial_soc=soc)
        traced = jax.jit(lambda r: (lambda x: (x.tables, x.t, x.soc))(RecordSolver(jaxcell.SPM(), chen, r,
                                                                                   initial_soc=soc)))(records)
        for a, b in zip(jax.tree.leaves((concrete.tables, concrete.t, concrete.soc)), jax.tree.leaves(traced)):
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
    for a, b in zip(jax.tree.leaves(RecordSolver(jaxcell.SPM(), chen, s, initial_soc=0.9).tables),
                    jax.tree.leaves(stacked)):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


@needs_data
def test_lgm50_pulses():
    keys = ["ambient_degC", "soc_percent", "cell"]
    recs = inf.read_measurements(PULSES, keys)
    assert len(recs) == 180  # 20 cells x 9 states of charge, all there
    assert {r.key["ambient_degC"] for r in recs} == {0, 10, 25, 45}
    assert len({r.key["cell"] for r in recs}) == 20
    assert sum(len(r) for r in recs) == len(pd.read_csv(PULSES))  # no row lost
    assert all(r.at_rest and not r.notes for r in recs)
    first = recs[0]
    assert first.key == {"ambient_degC": 0, "soc_percent": 90, "cell": 19} and first.rest_voltage == "4.08078 V"
    np.testing.assert_array_equal(first.t[:3], [0.0, 0.018, 0.121])
    short = [r for r in recs if r.duration < 1.0]
    assert [(r.key["cell"], len(r)) for r in short] == [(13, 12), (14, 15), (15, 14), (16, 14), (17, 13)]
    assert min(r.duration for r in recs) == pytest.approx(0.688)
    with pytest.raises(inf.MeasurementError, match=r"5 records fail.*\n  pulses.csv, record ambient_degC=10, soc_percent=10, cell=13: too short, 12 point\(s\) over 0.688 s"):
        inf.read_measurements(PULSES, keys, min_duration=5.0)
    with pytest.warns(inf.MeasurementWarning, match="5 record"):
        assert len(inf.read_measurements(PULSES, keys, min_duration=5.0, on_error="skip")) == 175
    s = inf.stack_records(recs)
    assert s.t.shape == (180, 131) and s.mask.sum() == 20225


def test_a_current_logged_positive_on_charge_is_announced():
    """A record whose current has the wrong sign was fitted without a word (a "converged" MAP fit
    of negated LG M50 pulses, exit 0, noise scale 153 against 80 mV). The voltage of a cell
    steps against its current (the ohmic drop): where it steps with it, the current looks
    reversed, and reading says so. The measured records as logged are not flagged."""
    import warnings

    repo = Path(__file__).parents[1] / "benchmarks" / "data"
    for file, keys, n in (("lgm50_25degC_pulses.csv", ["soc_percent", "cell"], 45),
                          ("lgm50_25degC_discharges.csv", ["c_rate"], 3)):
        df = pd.read_csv(repo / file)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert len(inf.read_measurements(df, keys)) == n
        assert not [w for w in caught if "reversed" in str(w.message)], file
        with pytest.warns(inf.MeasurementWarning, match=f"current of {n} of {n} record.*looks reversed.*'I_A' must be "
                                                         "positive on discharge"):
            inf.read_measurements(df.assign(I_A=-df["I_A"]), keys)


@needs_data
def test_lgm50_rate_tests_have_duplicated_stamps_reported():
    with pytest.warns(inf.MeasurementWarning, match="12 of 12 record"):
        recs = inf.read_measurements(RATES, ["ambient_degC", "c_rate"])
    assert [tuple(r.key.values()) for r in recs][:3] == [(0, 0.1), (0, 0.5), (0, 1.0)] and len(recs) == 12
    one_c = recs[2]
    # line 2010 logs the start of the 1C discharge at the stamp of the rest before it (line 2009)
    assert one_c.rows[0] == 2009 and one_c.rest_voltage == "4.13297 V"
    assert one_c.t[1] == pytest.approx(1e-3) and one_c.current[1] == 4.99325
    assert any("line 2010" in n for n in one_c.notes)
    merged = sum(int(n.split()[1]) for r in recs for n in r.notes if n.startswith("merged"))
    assert sum(len(r) for r in recs) + merged == len(pd.read_csv(RATES))  # rows kept + rows merged = all


@needs_data
def test_constant_current_record_from_capacity_voltage_table():
    # docs/inference.md: a capacity-voltage record at constant current, as t_s = 3600 Q / I
    q, v = np.loadtxt(ECKER, delimiter=",", unpack=True)
    with pytest.raises(inf.MeasurementError, match="needs a header row"):
        inf.read_measurements(ECKER)
    current = 7.5  # 1C of the 7.5 A.h cell
    df = pd.DataFrame({"t_s": 3600 * q / current, "I_A": current, "V_V": v})
    (r,) = inf.read_measurements(df)
    assert not r.at_rest and r.t_start == pytest.approx(3600 * q[0] / current)
    np.testing.assert_allclose(r.t, 3600 * (q - q[0]) / current, rtol=1e-12)


def test_spm_round_trip_through_csv(tmp_path):
    """A record written from a jaxcell simulation and read back runs to the same voltages."""
    p = jaxcell.load_parameters("Chen2020")
    t = np.arange(0.0, 66.0 + 1e-9, 0.5)  # rest 5 s, ramp to 1C (5 A) in 1 s, 60 s at 1C
    current = np.interp(t, [0.0, 5.0, 6.0, 66.0], [0.0, 0.0, 5.0, 5.0])
    sol = jaxcell.simulate(jaxcell.SPM(), p, [jaxcell.DriveCycle(t, current)], t_eval=t, initial_soc=0.9)
    assert sol.delivered
    df = pd.DataFrame({"cell": 1, "t_s": t, "I_A": current, "V_V": np.asarray(sol.voltage)})
    df.to_csv(tmp_path / "sim.csv", index=False)
    (r,) = inf.read_measurements(tmp_path / "sim.csv", "cell")
    np.testing.assert_array_equal(r.t, t)
    np.testing.assert_array_equal(r.current, current)
    assert r.at_rest
    again = jaxcell.simulate(jaxcell.SPM(), p, r.experiment(), t_eval=r.t_eval, initial_soc=r.rest_voltage)
    V = np.asarray(again.voltage)
    assert np.all(np.isfinite(V))
    assert abs(V[0] - r.voltage[0]) < 1e-6  # the rest voltage gives back the open-circuit start
    assert np.max(np.abs(V - r.voltage)) < 1e-4
