"""Run the notebooks' code cells (headless, in the notebook's folder as Jupyter does), so the
documentation cannot rot, and check what each one shows."""

import json
from pathlib import Path

import matplotlib
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def _simulated(ns):
    assert (ns["sols"].status == 0).all()


def _identified(ns):
    """The synthetic fit recovers its known diffusivities (inside the importance-corrected 90 %
    intervals); the SBC does not reject its Laplace approximation; the LG M50 fit predicts the
    rate it never saw (C/2) better than Chen2020 as published and within 30 mV RMS."""
    assert ns["fit"].converged and ns["real"].converged
    for name, value in ns["truth"].items():
        assert ns["corrected"].loc[name, "q05"] < value < ns["corrected"].loc[name, "q95"], name
    assert (ns["sbc"].table()["rank p-value"] > 0.01).all()
    assert ns["rms"](ns["mean"]) < min(30.0, ns["rms"](ns["v0"][0, 0][ns["m"]]))  # mV


CHECKS = {"identification.ipynb": _identified}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(path.parent)
    cells = json.loads(path.read_text())["cells"]
    namespace = {}
    for cell in cells:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{path.name}", "exec"), namespace)
    CHECKS.get(path.name, _simulated)(namespace)
