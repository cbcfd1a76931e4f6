import pandas as pd
import pytest

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
    ],
)
def test_cli_errors(tmp_path, capsys, args, message):
    assert main(["simulate", "--output", str(tmp_path / "x.csv"), *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_help(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    assert "t_s,V_V,I_A,Q_Ah,T_K" in capsys.readouterr().out
