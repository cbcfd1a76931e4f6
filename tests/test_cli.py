import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import DATA, load_reference

import jaxcell
import jaxcell.population
from jaxcell import cli
from jaxcell.cli import main


def test_cli_simulate_writes_csv_and_plot(tmp_path, capsys):
    out, png = tmp_path / "out.csv", tmp_path / "out.png"
    code = main(["simulate", "--model", "SPMe", "--parameters", "Chen2020", "--experiment", "Rest for 1 hour",
                 "--experiment", "Discharge at 500 mA for 36 minutes",
                 "--set", "Negative electrode porosity=0.2", "--output", str(out), "--plot", str(png)])
    assert code == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["t_s", "V_V", "I_A", "Q_Ah", "T_K", "step"]
    assert df.t_s.iloc[-1] == pytest.approx(5760.0) and (df.I_A[df.step == 0] == 0).all()
    assert (df.I_A[df.step == 1] == 0.5).all() and df.step.min() == 0 and df.t_s[df.step == 1].min() == 3600.0
    assert png.stat().st_size > 10_000
    assert sorted(os.listdir(tmp_path)) == ["out.csv", "out.png"]  # no temporary files left
    captured = capsys.readouterr()
    text = captured.out
    assert "capacity" in text and "energy" in text and "completed" in text
    # each step: how it ended, its duration and the net charge it discharged (0.5 A for 0.6 h)
    assert re.search(r"1  Rest for 1 hour +duration +3600\.0 s +\+0\.0000 A\.h", text), text
    assert re.search(r"2  Discharge at 500 mA for 36 minutes +duration +2160\.0 s +\+0\.3000 A\.h", text), text
    assert "warning" not in captured.err
    # a step that ends (at the cut-off) long before its stated duration: its output times were
    # spread over 1e9 hours, and the file held 2 rows of it without a word (the same program)
    assert main(["simulate", "--model", "SPMe", "--parameters", "Chen2020", "--experiment", "Rest for 1 hour",
                 "--experiment", "Discharge at 500 mA for 1e9 hours", "--set", "Negative electrode porosity=0.2",
                 "--output", str(out)]) == 0  # the cut-off ends it: a normal end
    err = capsys.readouterr().err
    assert re.search(r"warning: step 2 \('Discharge at 500 mA for 1e9 hours'\) ran [\d.]+ s but has [0-2] output row", err), err
    assert (pd.read_csv(out).step == 1).sum() <= 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "Negative electrode porosity=1.5"], "must be in the open interval (0, 1)"),
        (["--set", "Negative electrod porosity=0.3"], "Did you mean"),
        (["--experiment", "Discharge at 1C"], "Accepted step forms"),
        (["--experiment", "Discharge at C/0 for 1 hour"], "'Discharge at C/0 for 1 hour': 'c/0' divides by zero"),
        (["--experiment", "Discharge at 1e400 C for 1 s"], "'1e400 c' overflows"),
        (["--experiment", "Discharge at 1C until 1e400 V"], "'1e400 v' overflows"),
        (["--parameters", "Nope2000"], "available: Chen2020"),
        (["--model", "SPM", "--transport-efficiency", "tortuosity factor"], "the SPM has no electrolyte"),
        (["--model", "DFN", "--transport-efficiency", "tortuosity factor"], "add them with --set"),
        (["--set", "Separator tortuosity factor (electrolyte)=2"], "read only with --transport-efficiency"),
        (["--transport-efficiency", "tortuosity factor", "--set", "Separator tortuosity factr (electrolyte)=2"],
         "Unknown parameter"),
        (["--set", "Negative electrode porosity"], "--set expects NAME=VALUE"),
        (["--set", "Negative electrode porosity=thirty"], "value 'thirty' is not a number"),
        (["--set", "Lower voltage cut-off [V]=4.3", "--set", "Upper voltage cut-off [V]=3.0"],
         "'Lower voltage cut-off [V]' (4.3) must be below 'Upper voltage cut-off [V]' (3)"),
        # 1e5 K ran to the set's capacity, "completed"; 1 K failed at the start
        (["--set", "Ambient temperature [K]=100000"], "'Ambient temperature [K]' must be between 150 and 500 K"),
        (["--set", "Initial temperature [K]=1"], "'Initial temperature [K]' must be between 150 and 500 K"),
    ],
)
def test_cli_errors(tmp_path, capsys, monkeypatch, args, message):
    """Bad input: exit status 2 and a message, found before anything is compiled."""
    monkeypatch.setattr(jaxcell, "simulate", _must_not_run)
    assert main(["simulate", "--output", str(tmp_path / "x.csv"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def _must_not_run(*args, **kwargs):
    raise AssertionError("the command went on to simulate")


def test_cli_simulate_that_fails_at_the_start_says_so(tmp_path, capsys, monkeypatch):
    """A solve that fails at its start has no output row: the command reports the failure with
    exit status 1 and writes the CSV's header (it used to end in an IndexError). The failure
    is made from the SPMe rest of the test above, its outputs NaN and its status a solver
    failure at the start of step 1, as such a solve returns."""
    import equinox as eqx
    import jax.numpy as jnp

    real = jaxcell.simulate

    def failed_at_start(*args, **kwargs):
        sol = real(*args, **kwargs)
        return eqx.tree_at(lambda s: (s.voltage, s.status, s.step_end, s.step_end_time), sol,
                           (jnp.full_like(sol.voltage, jnp.nan), jnp.asarray(jaxcell.Status.SOLVER_FAILURE),
                            jnp.full_like(sol.step_end, jaxcell.StepEnd.STOPPED), jnp.zeros_like(sol.step_end_time)))

    monkeypatch.setattr(jaxcell, "simulate", failed_at_start)
    out = tmp_path / "out.csv"
    assert main(["simulate", "--model", "SPMe", "--experiment", "Rest for 1 hour", "--output", str(out)]) == 1
    printed = capsys.readouterr()
    assert "Traceback" not in printed.err and "no output: the solve stopped at the start" in printed.out
    assert "at the start of step 1" in printed.out
    assert len(pd.read_csv(out)) == 0


def test_cli_warning_printed_once_on_one_line(tmp_path, capsys, monkeypatch):
    """A warning about the inputs (e.g. a step limit outside the cut-offs) comes from the check
    before the run and again from `simulate` itself: the user sees it once, as one line."""
    def warn(*args, **kwargs):
        warnings.warn("step 1 ends outside the cut-offs", stacklevel=2)

    def warn_then_stop(*args, **kwargs):
        warnings.warn("step 1 ends outside the cut-offs", stacklevel=2)
        raise AssertionError("stop before compiling")

    monkeypatch.setattr(cli, "_check_simulation", warn)
    monkeypatch.setattr(jaxcell, "simulate", warn_then_stop)
    with pytest.raises(AssertionError, match="stop before compiling"):
        main(["simulate", "--model", "SPM", "--output", str(tmp_path / "x.csv")])
    assert capsys.readouterr().err.splitlines() == ["jaxcell: warning: step 1 ends outside the cut-offs"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["simulate", "--output", "{tmp}/missing/out.csv"], "--output '{tmp}/missing/out.csv': directory '{tmp}/missing' does not exist"),
        (["simulate", "--output", "{tmp}/out.txt"], "--output '{tmp}/out.txt': the file name must end in .csv"),
        (["simulate", "--output", "{tmp}/folder.csv"], "--output '{tmp}/folder.csv' is a directory"),
        (["simulate", "--output", "{tmp}/out.csv", "--plot", "{tmp}/missing/out.png"],
         "--plot '{tmp}/missing/out.png': directory '{tmp}/missing' does not exist"),
        (["simulate", "--output", "{tmp}/out.csv", "--plot", "{tmp}/out.docx"], "--plot '{tmp}/out.docx': the file name must end in"),
        (["population", "--output", "{tmp}/missing/cells.csv"], "--output '{tmp}/missing/cells.csv': directory '{tmp}/missing' does not exist"),
        (["population", "--plot", "{tmp}/missing/cells.png", "--output", "{tmp}/cells.csv"],
         "--plot '{tmp}/missing/cells.png': directory '{tmp}/missing' does not exist"),
    ],
)
def test_cli_output_paths_checked_before_computing(tmp_path, capsys, monkeypatch, args, message):
    """An output path that cannot be written ends the command before anything is computed, with
    exit status 2 and a message naming the option; nothing is written."""
    (tmp_path / "folder.csv").mkdir()
    monkeypatch.setattr(jaxcell, "simulate", _must_not_run)
    monkeypatch.setattr(jaxcell, "simulate_batch", _must_not_run)
    monkeypatch.setattr(jaxcell.population, "sample_population", _must_not_run)
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and "Traceback" not in err
    assert os.listdir(tmp_path) == ["folder.csv"]


def test_atomic_path_replaces_whole_files_only(tmp_path):
    """A write that fails leaves the previous file as it was and no temporary file; one that
    succeeds replaces it, keeping its permissions."""
    path = tmp_path / "out.csv"
    path.write_text("previous")
    path.chmod(0o640)
    with pytest.raises(RuntimeError), cli.atomic_path(str(path)) as tmp:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("interrupted while writing")
    assert path.read_text() == "previous" and os.listdir(tmp_path) == ["out.csv"]
    with cli.atomic_path(str(path)) as tmp:
        with open(tmp, "w") as f:
            f.write("new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["out.csv"]
    assert path.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("seed", ["-1", str(2**63), "99999999999999999999999", "1.5"])
def test_cli_population_seed_range(tmp_path, capsys, seed):
    with pytest.raises(SystemExit) as info:
        main(["population", "--seed", seed, "--output", str(tmp_path / "x.csv")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --seed: expected an integer in [0, 2**63 - 1]" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n", "1000000000"], "needs 1.84e+04 GiB (--n 1000000000 cells x 400 output points x 6 fields x 8 bytes, and "),
        (["--n", "200000", "--experiment", "Rest for 1 hour", "--experiment", "Rest for 1 hour"],
         "(--n 200000 cells x 800 output points x 6 fields"),
        (["--n", "1000", "--max-memory", "0.001"], "above the limit --max-memory = 0.001 GiB"),
        (["--experiment", "Discharge at C/0 for 1 hour"], "'c/0' divides by zero"),
    ],
)
def test_cli_population_refused_before_sampling(tmp_path, capsys, monkeypatch, args, message):
    """A population whose outputs exceed --max-memory (2 GiB by default; 10^9 cells tried to
    allocate 64 GB) and a bad step are refused before any cell is sampled: exit 2, one line."""
    monkeypatch.setattr(jaxcell.population, "sample_population", _must_not_run)
    assert main(["population", *args, "--output", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "two"])
def test_cli_population_max_memory_range(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as info:
        main(["population", "--max-memory", value, "--output", str(tmp_path / "x.csv")])
    assert info.value.code == 2
    assert f"argument --max-memory: expected a positive number of GiB, got {value!r}" in capsys.readouterr().err


def test_cli_population_set(tmp_path, capsys, monkeypatch):
    """--set on `jaxcell population` changes the parameters the cells are sampled around (the
    same parsing and checks as `jaxcell simulate`)."""
    seen = {}

    def sample(params, variation, n, key):
        seen["params"] = params
        raise AssertionError("stop before simulating")

    monkeypatch.setattr(jaxcell.population, "sample_population", sample)
    with pytest.raises(AssertionError, match="stop before simulating"):
        main(["population", "--n", "4", "--set", "Ambient temperature [K]=288.5", "--set", "Lower voltage cut-off [V]=2.7",
              "--output", str(tmp_path / "x.csv")])
    assert float(seen["params"]["Ambient temperature [K]"]) == 288.5
    assert float(seen["params"]["Lower voltage cut-off [V]"]) == 2.7
    assert main(["population", "--set", "Negative electrode porosity=1.5", "--output", str(tmp_path / "x.csv")]) == 2
    assert "'Negative electrode porosity' must be in the open interval (0, 1), got 1.5" in capsys.readouterr().err


def test_exit_on_interrupt_handler(monkeypatch, capfd):
    """Within `exit_on_interrupt`, SIGINT calls the exit with status 130 (here replaced, so that
    the test process lives on) and prints a message; afterwards Python's own handler is back."""
    calls = []
    monkeypatch.setattr(cli, "_exit", calls.append)
    # Python's own handler, as in an interactive session (a process started in the background by
    # a non-interactive shell inherits SIGINT ignored, and exit_on_interrupt then leaves it alone)
    started_with = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupt_once(calls)
    finally:
        signal.signal(signal.SIGINT, started_with)
    assert calls and set(calls) == {130}
    assert "jaxcell: interrupted" in capfd.readouterr().err
    assert signal.set_wakeup_fd(-1) == -1  # the wakeup descriptor was given back
    assert not any(t.name == "jaxcell-sigint" for t in threading.enumerate())


def _interrupt_once(calls):
    with cli.exit_on_interrupt():
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_compilation_exits_cleanly(tmp_path):
    """Ctrl-C while the DFN compiles (tens of seconds): the command stops within a few seconds
    with status 130 and a message, no traceback and no crash of the interpreter's teardown, and
    writes nothing."""
    out = tmp_path / "out.csv"
    # Python's own SIGINT handler, as in a terminal (a background job of a non-interactive shell
    # starts with SIGINT ignored, which the command then leaves alone)
    script = ("import signal, sys, jaxcell.cli\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "print('ready', flush=True)\n"
              f"sys.exit(jaxcell.cli.main(['simulate', '--model', 'DFN', '--output', {str(out)!r}]))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline() == "ready\n"
        time.sleep(1.5)  # parsing takes a fraction of this; then tracing and compiling
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert time.monotonic() - sent < 5
    assert "jaxcell: interrupted" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []


def test_cli_tortuosity_factors_added_by_set(tmp_path):
    """--transport-efficiency "tortuosity factor" with the factors added by --set: the discharge
    ends where PyBaMM's SPMe with the same factors ends (36-40 mV apart from Bruggeman's curve)."""
    taus = json.loads((DATA / "pybamm" / "tortuosity_Chen2020.json").read_text())
    out = tmp_path / "out.csv"
    sets = [a for k, v in taus.items() for a in ("--set", f"{k}={v}")]
    assert main(["simulate", "--model", "SPMe", "--transport-efficiency", "tortuosity factor", *sets, "--output", str(out)]) == 0
    ref = load_reference("SPMe_tortuosity_Chen2020_1.0C.csv")
    df = pd.read_csv(out)
    assert df.t_s.iloc[-1] == pytest.approx(ref[-1, 0], rel=1e-3)
    inside = (df.t_s > 1.0) & (df.t_s < ref[-1, 0])
    rms = 1e3 * np.sqrt(np.mean((df.V_V[inside] - np.interp(df.t_s[inside], ref[:, 0], ref[:, 1])) ** 2))
    assert rms < 1.0, f"{rms:.3f} mV RMS"


def test_cli_help(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    assert "t_s,V_V,I_A,Q_Ah,T_K,step" in capsys.readouterr().out


def test_compiled_solve_persists_with_the_readme_recipe(tmp_path):
    """The README's start-up recipe: with EQX_ON_ERROR=nan, a compiled `simulate` is written to
    JAX's persistent compilation cache (no host callbacks in it), and a second process reads it
    back and gets the same voltages; with equinox raising (its default) nothing is written,
    because diffrax's save-time checks are host callbacks."""
    import os
    import subprocess
    import sys

    script = (
        "import sys, numpy as np, jaxcell\n"
        # (a lumped SPM: the isothermal one at constant currents is solved without diffrax's loop, and
        # is cached whatever EQX_ON_ERROR says)
        "sol = jaxcell.simulate(jaxcell.SPM(thermal='lumped'), jaxcell.load_parameters('Chen2020'),"
        " 'Discharge at 1C for 10 minutes')\n"
        "np.save(sys.argv[1], np.asarray(sol.voltage))\n"
    )

    def run(on_error, cache, out):
        env = dict(os.environ, EQX_ON_ERROR=on_error, JAX_COMPILATION_CACHE_DIR=str(cache),
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PLATFORMS="cpu")
        subprocess.run([sys.executable, "-c", script, str(out)], env=env, check=True)

    def simulate_entries(cache):
        return sorted(p.name for p in cache.iterdir() if "_simulate" in p.name) if cache.exists() else []

    cache = tmp_path / "nan"
    run("nan", cache, tmp_path / "v1.npy")
    assert len(simulate_entries(cache)) == 1
    stamp = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    run("nan", cache, tmp_path / "v2.npy")
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == stamp  # read back, nothing recompiled or added
    np.testing.assert_array_equal(np.load(tmp_path / "v1.npy"), np.load(tmp_path / "v2.npy"))

    cache = tmp_path / "raise"
    run("raise", cache, tmp_path / "v3.npy")
    assert simulate_entries(cache) == []
    np.testing.assert_array_equal(np.load(tmp_path / "v1.npy"), np.load(tmp_path / "v3.npy"))


def test_cli_default_step_keeps_the_cut_off_exactly():
    """The default experiment ends at the set's lower cut-off as given: written with ':g' a
    cut-off of 2.500001 V became "until 2.5 V", below the cut-off, and every cell of a population
    stopped at the cut-off instead of on its step's limit (delivered 0 of 4)."""
    from argparse import Namespace

    p = jaxcell.load_parameters("Chen2020").update({"Lower voltage cut-off [V]": 2.500001})
    (step,) = cli._default_steps(Namespace(experiment=None), p)
    assert step == "Discharge at 1C until 2.500001 V"
    assert float(jaxcell.Experiment([step]).table.until_voltage[0]) == 2.500001


def test_cli_population_checks_the_sampled_cells(tmp_path, capsys, monkeypatch):
    """A variation that draws a cell with its lower cut-off above the upper one is refused before
    the cells are simulated, naming the cell (it ended in a traceback after the compile)."""
    spec = tmp_path / "cut.toml"
    spec.write_text('[[parameter]]\nname = "Lower voltage cut-off [V]"\ndistribution = "lognormal"\nstd = 1.0\n')
    monkeypatch.setattr(jaxcell, "simulate_batch", _must_not_run)
    assert main(["population", "--n", "40", "--variation", str(spec), "--output", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert "must be below 'Upper voltage cut-off [V]' (4.2) in cell [" in err and "Traceback" not in err
