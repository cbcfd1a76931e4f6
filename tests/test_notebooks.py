"""Run the notebooks' code cells (headless, in the notebook's folder as Jupyter does), so the
documentation cannot rot, and check what each one shows."""

import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def _simulated(ns):
    assert (ns["sols"].status == 0).all()


def _identified(ns):
    """The synthetic fit recovers its known diffusivities (inside the importance-corrected 90 %
    intervals, and those of the independence Metropolis-Hastings chains, which converged); the SBC does not reject its Laplace approximation; the LG M50 fit predicts the
    rate it never saw (C/2) better than Chen2020 as published and within 30 mV RMS."""
    assert ns["fit"].converged and ns["real"].converged
    for name, value in ns["truth"].items():
        assert ns["corrected"].loc[name, "q05"] < value < ns["corrected"].loc[name, "q95"], name
        assert ns["imh"].loc[name, "q05"] < value < ns["imh"].loc[name, "q95"], name
    assert (ns["imh"].r_hat < 1.01).all() and ns["chains"].pareto_k < 0.7
    assert (ns["sbc"].table()["rank p-value"] > 0.01).all()
    assert ns["rms"](ns["mean"]) < min(30.0, ns["rms"](ns["v0"][0, 0][ns["m"]]))  # mV


def _designed(ns):
    """The nominal optimum is the corner of the box, PyBOP's grid best (thinnest electrode,
    smallest particles); on 2000 fresh cells it breaks P(capacity < C_MIN) <= ALPHA by more than
    three standard errors, the robust optimum meets it within three, and costs mean energy."""
    det, rob, c_det, c_rob = ns["det"], ns["rob"], ns["check_det"], ns["check_rob"]
    assert np.allclose([det.design[ns["L_P"]], det.design[ns["R_P"]]], [65e-6, 2e-6], rtol=1e-9, atol=0)
    assert rob.feasible, rob.message
    assert c_det.failure_probability - 3 * c_det.stderr > ns["ALPHA"]
    assert c_rob.failure_probability - 3 * c_rob.stderr <= ns["ALPHA"]
    assert c_rob.mean_objective < c_det.mean_objective


CHECKS = {"identification.ipynb": _identified, "design.ipynb": _designed}


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
