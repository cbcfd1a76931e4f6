import json

import numpy as np
import pandas as pd
import pytest
from conftest import DATA, load_reference

from jaxcell.cli import main


def test_cli_simulate_writes_csv_and_plot(tmp_path, capsys):
    out, png = tmp_path / "out.csv", tmp_path / "out.png"
    code = main(["simulate", "--model", "SPMe", "--parameters", "Chen2020", "--experiment", "Rest for 1 hour",
                 "--set", "Negative electrode porosity=0.3", "--output", str(out), "--plot", str(png)])
    assert code == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["t_s", "V_V", "I_A", "Q_Ah", "T_K"]
    assert df.t_s.iloc[-1] == pytest.approx(3600.0) and (df.I_A == 0).all()
    assert png.stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "capacity" in text and "energy" in text and "completed" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "Negative electrode porosity=1.5"], "must be in the open interval (0, 1)"),
        (["--set", "Negative electrod porosity=0.3"], "Did you mean"),
        (["--experiment", "Discharge at 1C"], "Accepted step forms"),
        (["--parameters", "Nope2000"], "available: Chen2020"),
        (["--model", "SPM", "--transport-efficiency", "tortuosity factor"], "the SPM has no electrolyte"),
        (["--model", "DFN", "--transport-efficiency", "tortuosity factor"], "add them with --set"),
        (["--set", "Separator tortuosity factor (electrolyte)=2"], "read only with --transport-efficiency"),
        (["--transport-efficiency", "tortuosity factor", "--set", "Separator tortuosity factr (electrolyte)=2"],
         "Unknown parameter"),
    ],
)
def test_cli_errors(tmp_path, capsys, args, message):
    assert main(["simulate", "--output", str(tmp_path / "x.csv"), *args]) == 2
    assert message in capsys.readouterr().err


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
    assert "t_s,V_V,I_A,Q_Ah,T_K" in capsys.readouterr().out


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
        "sol = jaxcell.simulate(jaxcell.SPM(), jaxcell.load_parameters('Chen2020'), 'Discharge at 1C for 10 minutes')\n"
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
