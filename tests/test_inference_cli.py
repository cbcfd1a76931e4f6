"""`jaxcell fit` and `jaxcell predict`: bad input refused with exit status 2 before anything is
compiled, and one synthetic round trip (SPM, the positive diffusivity 0.6 x Chen2020's, fitted
to 1C and 2C records, a 1.5C record predicted)."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import compiled_names

import jaxcell
from jaxcell.cli import main
from jaxcell.inference._fit import _loss_converged

D_POS = "Positive particle diffusivity [m2.s-1]"
T = np.linspace(0.0, 900.0, 16)


def _table(chen, rates, noise=0.002, seed=0):
    rng = np.random.default_rng(seed)
    model, rows = jaxcell.SPM(), []
    p = chen.update({D_POS: 0.6 * float(chen[D_POS])})
    for rate in rates:
        current = np.where(T <= 600.0, 5.0 * rate, 0.0)
        exp = jaxcell.Experiment([jaxcell.experiment.DriveCycle(T, current)])
        v = np.asarray(jaxcell.simulate(model, p, exp, t_eval=T, initial_soc=0.9).voltage)
        rows.append(pd.DataFrame({"rate": rate, "t_s": T, "I_A": current, "V_V": v + noise * rng.standard_normal(T.size)}))
    return pd.concat(rows, ignore_index=True)


def _error(capsys, argv):
    assert main(argv) == 2
    return capsys.readouterr().err


def test_bad_input_is_refused_before_fitting(tmp_path, capsys):
    good = tmp_path / "d.csv"
    pd.DataFrame({"rate": 1, "t_s": T, "I_A": 5.0, "V_V": 3.9}).to_csv(good, index=False)
    out = str(tmp_path / "fit.json")
    no_v = tmp_path / "nov.csv"
    pd.DataFrame({"t_s": T, "I_A": 5.0}).to_csv(no_v, index=False)
    assert "V_V" in _error(capsys, ["fit", str(no_v), "--output", out])
    err = _error(capsys, ["fit", str(good), "--fit", "Positive particle diffusivity", "--output", out])
    assert "Positive particle diffusivity" in err and "[m2.s-1]" in err  # the close match is named
    err = _error(capsys, ["fit", str(good), "--fit", D_POS, "--prior", f"{D_POS}=-1e-14", "--output", out])
    assert "positive" in err and D_POS in err
    err = _error(capsys, ["fit", str(good), "--fit", "Positive electrode porosity", "--prior",
                          "Positive electrode porosity=1.5", "--output", out])
    assert "(0, 1)" in err
    short = tmp_path / "short.csv"
    pd.DataFrame({"t_s": T[:3], "I_A": 5.0, "V_V": 3.9}).to_csv(short, index=False)
    assert "3 point" in _error(capsys, ["fit", str(short), "--output", out])
    assert "--method svi or nuts" in _error(capsys, ["fit", str(good), "--records", "rate", "--group", "rate",
                                                     "--method", "map", "--output", out])
    assert "fraction" in _error(capsys, ["fit", str(good), "--initial-soc", "90", "--output", out])
    assert "--warmup must be a non-negative integer" in _error(capsys, ["fit", str(good), "--warmup", "-1", "--output", out])
    assert ".json" in _error(capsys, ["fit", str(good), "--output", str(tmp_path / "fit.txt")])
    with pytest.raises(SystemExit) as info:  # argparse's exit for bad input, as `population --seed -1`
        main(["fit", str(good), "--seed", "-1", "--output", out])
    assert info.value.code == 2 and "argument --seed: expected an integer in [0, 2**63 - 1]" in capsys.readouterr().err
    curve = tmp_path / "ocv.csv"
    pd.DataFrame({"soc": [0.0, 0.5, 1.0], "ocv_V": [3.0, 3.7, 4.1]}).to_csv(curve, index=False)
    assert "--group" in _error(capsys, ["fit", str(good), "--records", "rate", "--group", "rate", "--ocv", str(curve),
                                        "--output", out])
    for frame, says in [({"soc": [0.0, 0.5, 1.0], "V": [3.0, 3.7, 4.1]}, "no column ocv_V"),
                        ({"soc": [0.0, 0.5, 0.9], "ocv_V": [3.0, 3.7, 4.1]}, "no row at soc 1"),
                        ({"soc": [0.0, 0.5, 1.0], "ocv_V": [3.0, None, 4.1]}, "line 3"),
                        ({"soc": [0.0, 1.5, 1.0], "ocv_V": [3.0, 3.7, 4.1]}, "line 3: soc 1.5 is outside [0, 1]"),
                        ({"soc": [0.0, 0.5, 0.7, 1.0], "ocv_V": [3.0, 3.7, 3.9, 10.0]}, "does not reach")]:
        pd.DataFrame(frame).to_csv(curve, index=False)
        assert says in _error(capsys, ["fit", str(good), "--ocv", str(curve), "--output", out])
    assert "--thermal lumped" in _error(capsys, ["fit", str(good), "--temperature", "T_degC", "--output", out])
    assert "no column 'T_degC'" in _error(capsys, ["fit", str(good), "--temperature", "T_degC", "--thermal", "lumped",
                                                   "--output", out])
    assert "'degC' or '_K'" in _error(capsys, ["fit", str(good), "--temperature", "T", "--thermal", "lumped",
                                               "--output", out])
    assert not (tmp_path / "fit.json").exists()


def test_loss_convergence_rule():
    rng = np.random.default_rng(0)
    assert _loss_converged(100 + rng.standard_normal(1000))  # flat, noisy
    assert not _loss_converged(np.linspace(1000, 100, 1000) + rng.standard_normal(1000))  # still falling
    assert not _loss_converged(np.r_[np.ones(999), np.nan])


def test_fit_and_predict_round_trip(chen, tmp_path, capsys):
    data, other = tmp_path / "fit_data.csv", tmp_path / "other.csv"
    _table(chen, [1.0, 2.0]).to_csv(data, index=False)
    _table(chen, [1.5], seed=1).to_csv(other, index=False)
    fit_json, pred_csv = tmp_path / "fit.json", tmp_path / "pred.csv"
    # with the set's own open-circuit voltage (3 mV noise) as further evidence: independent of the
    # diffusivity, so it must leave that estimate alone and find its own noise scale
    from jaxcell.inference import ocv_curve_voltage

    soc = np.linspace(0.0, 1.0, 41)
    ends = (3.0, 4.1)
    v_ocv = np.asarray(ocv_curve_voltage(chen, soc, ends)) + 0.003 * np.random.default_rng(2).standard_normal(soc.size)
    v_ocv[[0, -1]] = ends
    pd.DataFrame({"soc": soc, "ocv_V": v_ocv}).to_csv(tmp_path / "ocv.csv", index=False)
    code = main(["fit", str(data), "--model", "SPM", "--fit", D_POS, "--records", "rate", "--initial-soc", "0.9",
                 "--ocv", str(tmp_path / "ocv.csv"), "--output", str(fit_json)])
    assert code == 0, capsys.readouterr().err
    fit = json.loads(fit_json.read_text())
    assert fit["ocv"]["points"] == 39 and fit["ocv"]["ends_V"] == [3.0, 4.1]  # the ends are no evidence
    assert 0.002 < fit["ocv"]["noise_scale"]["mean"] < 0.004
    s = fit["parameters"][D_POS]
    truth = 0.6 * float(chen[D_POS])
    assert set(s) == {"mean", "sd", "q05", "q95"} and s["q05"] < truth < s["q95"]
    assert abs(s["mean"] / truth - 1) < 0.1
    assert fit["method"] == "map" and fit["diagnostics"]["converged"] is True
    assert fit["diagnostics"]["unreached_points"] == 0
    assert 0.0014 < fit["noise_scale"]["mean"] < 0.0026
    capsys.readouterr()
    assert main(["predict", str(fit_json), "--data", str(other), "--output", str(pred_csv)]) == 0
    printed = capsys.readouterr().out
    pred = pd.read_csv(pred_csv)
    assert list(pred.columns) == ["rate", "t_s", "I_A", "V_V", "V_pred_V", "V_lo_V", "V_hi_V"]
    assert len(pred) == T.size
    rms = np.sqrt(np.mean((pred["V_pred_V"] - pred["V_V"]) ** 2))
    assert rms < 0.004  # noise 2 mV
    inside = np.mean((pred["V_lo_V"] <= pred["V_V"]) & (pred["V_V"] <= pred["V_hi_V"]))
    assert inside >= 0.75
    assert f"RMS error {1e3 * rms:.2f} mV" in printed
    assert main(["predict", str(fit_json), "--data", str(other), "--new-cell", "--output", str(pred_csv)]) == 2
    assert "--new-cell needs a group fit" in capsys.readouterr().err

    # a record the model cannot follow (1000 times the current: every draw stops at the lower
    # cut-off as the discharge starts, so only the first point is reached): its points are not
    # averaged away. predict printed an RMS over the reached points alone with exit status 0
    # (15.8 mV where a rest followed), and the fit's check finds them too
    kilo = tmp_path / "kilo.csv"
    table = pd.read_csv(other).assign(I_A=lambda d: 1000 * d.I_A)
    table.to_csv(kilo, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's empty-slice warnings leaked here
        assert main(["predict", str(fit_json), "--data", str(kilo), "--output", str(pred_csv)]) == 1
    printed = capsys.readouterr()
    unreached = T.size - 1
    assert f"the model stopped before {unreached} of {T.size} measured points ({unreached} reached by no draw" in printed.err
    assert f"over the {T.size - unreached} of {T.size} points every draw reached" in printed.out
    pred = pd.read_csv(pred_csv)
    assert pred.V_pred_V.isna().sum() == unreached and np.isfinite(pred.V_pred_V[0])
    from jaxcell.inference import read_measurements, stack_records
    from jaxcell.inference._cli import _unreached_points

    recs = stack_records(read_measurements(table))
    values = {D_POS: np.full(1, fit["parameters"][D_POS]["mean"])}
    sigma = fit["noise_scale"]["mean"]
    assert _unreached_points(jaxcell.SPM(), chen, recs, 0.9, values, False, sigma) == unreached
    # the same points measured at the lower cut-off (within 3 noise scales) are not missed: a model
    # that stops a point early on a discharge measured down to its cut-off has not failed there
    at_cutoff = stack_records(read_measurements(table.assign(V_V=np.r_[table.V_V[0], np.full(unreached, 2.5 + sigma)])))
    assert _unreached_points(jaxcell.SPM(), chen, at_cutoff, 0.9, values, False, sigma) == 0


def test_nuts_starts_from_the_map_fit(chen, tmp_path, capsys):
    """`fit --method nuts` on one cell fits the MAP point first; its Laplace approximation starts
    two vectorised chains and is their mass matrix, so 100 warm-up draws (the step size alone)
    do: the chains converge (R-hat < 1.01, no divergence) and their 90 % interval holds the true
    diffusivity, from records made with it."""
    data, fit_json = tmp_path / "fit_data.csv", tmp_path / "fit.json"
    _table(chen, [1.0, 2.0]).to_csv(data, index=False)
    code = main(["fit", str(data), "--model", "SPM", "--fit", D_POS, "--records", "rate", "--initial-soc", "0.9",
                 "--method", "nuts", "--samples", "300", "--warmup", "100", "--chains", "2", "--output", str(fit_json)])
    assert code == 0, capsys.readouterr().err
    fit = json.loads(fit_json.read_text())
    d = fit["diagnostics"]
    assert d["start"] == "map" and d["map"]["converged"] is True and (d["warmup"], d["chains"]) == (100, 2)
    assert d["converged"] is True and d["r_hat_max"] < 1.01 and d["divergences"] == 0
    s, truth = fit["parameters"][D_POS], 0.6 * float(chen[D_POS])
    assert s["q05"] < truth < s["q95"] and abs(s["mean"] / truth - 1) < 0.1
    assert 0.0014 < fit["noise_scale"]["mean"] < 0.0026
    assert len(fit["samples"][D_POS]) == 400  # the kept draws, from both chains' 600


def test_imh_samples_around_the_map_fit(chen, tmp_path, capsys):
    """`fit --method imh` on one cell: the MAP fit, then independence Metropolis-Hastings around
    its Laplace approximation; the chains converge (R-hat, Pareto k) and their 90 % interval
    holds the true diffusivity; fit.json keeps draws for `predict` as NUTS's does. A group fit
    refuses imh."""
    data, fit_json = tmp_path / "fit_data.csv", tmp_path / "fit.json"
    _table(chen, [1.0, 2.0]).to_csv(data, index=False)
    code = main(["fit", str(data), "--model", "SPM", "--fit", D_POS, "--records", "rate", "--initial-soc", "0.9",
                 "--method", "imh", "--samples", "300", "--output", str(fit_json)])
    assert code == 0, capsys.readouterr().err
    fit = json.loads(fit_json.read_text())
    d = fit["diagnostics"]
    assert fit["method"] == "imh" and d["map"]["converged"] is True and (d["chains"], d["warmup"]) == (4, 100)
    assert d["converged"] is True and d["r_hat_max"] < 1.01 and d["pareto_k"] < 0.7 and d["failed_proposals"] == 0
    assert all(0.3 < a < 1.0 for a in d["acceptance"]) and d["ess_min"] > 300
    s, truth = fit["parameters"][D_POS], 0.6 * float(chen[D_POS])
    assert s["q05"] < truth < s["q95"] and abs(s["mean"] / truth - 1) < 0.1
    assert 0.0014 < fit["noise_scale"]["mean"] < 0.0026
    assert len(fit["samples"][D_POS]) == 400  # the kept draws, from the chains' 1200
    capsys.readouterr()
    assert "--method svi or nuts" in _error(capsys, ["fit", str(data), "--records", "rate", "--group", "rate",
                                                     "--method", "imh", "--output", str(fit_json)])


def test_group_fit_that_stops_early_says_so_and_predicts_cells(chen, tmp_path, capsys):
    """A hierarchical fit cut to 30 SVI steps: the loss is still falling, so fit.json is written
    with converged false and the exit status is 1; predict then runs the fitted cells (matched
    by the group column) and a new cell, and refuses a cell that was not fitted."""
    table = _table(chen, [1.0, 1.5, 2.0]).assign(cell=lambda d: d["rate"].map({1.0: "a", 1.5: "b", 2.0: "c"}))
    data = tmp_path / "cells.csv"
    table[table.cell != "c"].to_csv(data, index=False)
    fit_json, pred_csv = tmp_path / "fit.json", tmp_path / "pred.csv"
    code = main(["fit", str(data), "--model", "SPM", "--fit", D_POS, "--group", "cell", "--initial-soc", "0.9",
                 "--steps", "30", "--output", str(fit_json)])
    err = capsys.readouterr().err
    assert code == 1 and "did not converge" in err
    fit = json.loads(fit_json.read_text())
    assert fit["method"] == "svi" and fit["diagnostics"]["converged"] is False and fit["diagnostics"]["steps"] == 30
    assert set(fit["cells"]) == {"a", "b"} and set(fit["cells"]["a"][D_POS]) == {"mean", "sd", "q05", "q95"}
    assert set(fit["parameters"][D_POS]) == {"mean", "sd", "q05", "q95"} and D_POS in fit["population_spread"]
    known = tmp_path / "known.csv"
    table[table.cell == "b"].to_csv(known, index=False)
    assert main(["predict", str(fit_json), "--data", str(known), "--output", str(pred_csv)]) == 0
    pred = pd.read_csv(pred_csv)
    assert list(pred.columns) == ["cell", "t_s", "I_A", "V_V", "V_pred_V", "V_lo_V", "V_hi_V"]
    assert np.all(pred["V_lo_V"] <= pred["V_pred_V"]) and np.all(pred["V_pred_V"] <= pred["V_hi_V"])
    new = tmp_path / "new.csv"
    table[table.cell == "c"].to_csv(new, index=False)
    capsys.readouterr()
    assert main(["predict", str(fit_json), "--data", str(new), "--output", str(pred_csv)]) == 2
    assert "'c'" in capsys.readouterr().err
    assert main(["predict", str(fit_json), "--data", str(new), "--new-cell", "--output", str(pred_csv)]) == 0
    assert len(pd.read_csv(pred_csv)) == T.size


def test_a_group_of_one_cell_is_warned_about(tmp_path, capsys, monkeypatch):
    """`--group` over records that hold one cell was fitted without a word, its population
    spread the prior's alone. The warning comes before the fit (replaced here by one that
    stops, so nothing is compiled)."""
    from jaxcell.inference import _fit

    good = tmp_path / "d.csv"
    pd.DataFrame({"cell": 7, "t_s": T, "I_A": 5.0, "V_V": 3.9}).to_csv(good, index=False)

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(_fit, "fit_svi", stop)
    with pytest.raises(Stop):
        main(["fit", str(good), "--model", "SPM", "--records", "cell", "--group", "cell", "--method", "svi",
              "--initial-soc", "0.9", "--output", str(tmp_path / "fit.json")])
    assert "--group cell: the records hold one cell (7)" in capsys.readouterr().err


def _no_nan(constant):
    raise AssertionError(f"fit.json holds {constant}, which JSON has no literal for")


def test_a_map_fit_ending_next_to_a_failed_solve_writes_no_posterior(tmp_path, capsys, monkeypatch):
    """A MAP result whose Hessian is not finite (a solve failed one finite-difference step from
    the end point; `fit_map` says so) gives fit.json with converged false, no eigenvalues, the
    point without a spread, and exit status 1: no traceback from the eigensolver, no posterior.
    `fit_map` is replaced by one that returns such a result, so nothing is compiled (a fit that
    did not converge is not checked for unreached points)."""
    from jaxcell.inference import _fit

    good = tmp_path / "d.csv"
    pd.DataFrame({"t_s": T, "I_A": 5.0, "V_V": 3.9}).to_csv(good, index=False)

    def failed(*args, **kwargs):
        nan = np.full((2, 2), np.nan)
        return _fit.MAPResult(params={D_POS: np.asarray(4e-15), "sigma": np.asarray(0.01)}, unconstrained=np.zeros(2),
                              hessian=nan, converged=False, steps=3, potential=1.0, decrement=np.inf,
                              message="The potential's Hessian at the end point is not finite", names=(D_POS, "sigma"),
                              _unravel=None, _postprocess=None)

    monkeypatch.setattr(_fit, "fit_map", failed)
    out = tmp_path / "fit.json"
    assert main(["fit", str(good), "--model", "SPM", "--fit", D_POS, "--initial-soc", "0.9", "--output", str(out)]) == 1
    assert "did not converge" in capsys.readouterr().err
    fit = json.loads(out.read_text(), parse_constant=_no_nan)  # strict JSON: NaN and infinities as null
    assert fit["diagnostics"]["converged"] is False and fit["diagnostics"]["hessian_eigenvalues"] == [None, None]
    assert fit["diagnostics"]["unreached_points"] is None
    assert fit["parameters"][D_POS] == {"mean": 4e-15, "sd": None, "q05": None, "q95": None}


def test_a_fit_file_edited_by_hand_is_refused_before_predicting(chen, tmp_path, capsys, monkeypatch):
    """`predict` checks what it reads from fit.json: a wrong model, a parameter the set does not
    have, draws that are not numbers, NaN, negative for a positive parameter or of unequal
    lengths end with exit status 2 and a line naming the field. They ended in tracebacks (NaN
    draws in a run of minutes). Nothing is compiled: the check comes first."""
    import copy

    from jaxcell.inference import _hierarchy
    from jaxcell.inference._cli import _checked_fit_file

    data = tmp_path / "d.csv"
    pd.DataFrame({"t_s": T, "I_A": 5.0, "V_V": 3.9}).to_csv(data, index=False)
    good = {"format": "jaxcell-fit/1", "model": "SPM", "thermal": "isothermal", "parameter_set": "Chen2020",
            "noise": "gaussian", "records": [], "group": None, "initial_soc": 0.9, "fit": [D_POS],
            "samples": {D_POS: [4e-15, 4.1e-15, 3.9e-15], "sigma": [0.002, 0.0021, 0.0019]}}
    assert _checked_fit_file(good, "fit.json").name == "Chen2020"  # the check passes a file fit wrote
    # a porosity fit of Chen2020, whose positive electrode is full (0.335 + 0.665): draws above
    # 0.335 break the volume sum that `update` checks, but are the posterior's own
    eps = "Positive electrode porosity"
    porous = {**good, "fit": [eps], "samples": {eps: [0.33, 0.335, 0.34], "sigma": [0.002] * 3}}
    assert _checked_fit_file(porous, "fit.json").name == "Chen2020"
    monkeypatch.setattr(_hierarchy, "predict_voltage", _must_not_predict)
    cases = [
        ({"model": "XYZ"}, '"model" must be one of SPM, SPMe, DFN'),
        ({"thermal": "hot"}, '"thermal" must be'),
        ({"noise": "cauchy"}, '"noise" must be'),
        ({"records": None}, '"records" must be a list of column names'),
        ({"fit": []}, '"fit" must be a non-empty list'),
        ({"fit": D_POS}, '"fit" must be a non-empty list'),
        ({"fit": ["Bogus [m]"]}, "\"fit\" names 'Bogus [m]', which parameter set 'Chen2020' does not have"),
        ({"samples": None}, '"samples" must map each sampled site'),
        ({"samples": {D_POS: [4e-15]}}, '"samples" must map each sampled site, "sigma" among them'),
        ({"samples": {"sigma": [0.002]}}, f"\"samples\" has no draws of '{D_POS}'"),
        ({"samples": {D_POS: ["abc"], "sigma": [0.002]}}, f"\"samples\" of '{D_POS}' must be numbers"),
        ({"samples": {D_POS: [], "sigma": []}}, "must be a non-empty list of draws"),
        ({"samples": {D_POS: [4e-15], "sigma": 0.002}}, "\"samples\" of 'sigma' must be a non-empty list"),
        ({"samples": {D_POS: [float("nan")], "sigma": [0.002]}}, "must be finite numbers, got nan"),
        ({"samples": {D_POS: [4e-15, 4e-15], "sigma": [0.002]}}, "has 1 draws where the other sites have 2"),
        ({"samples": {D_POS: [4e-15], "sigma": [-0.002]}}, "(the noise scale [V]) must be positive"),
        ({"samples": {D_POS: [-4e-15], "sigma": [0.002]}}, f"\"samples\" of '{D_POS}' must be positive, got -4e-15"),
    ]
    for change, message in cases:
        fit = {**copy.deepcopy(good), **change}
        path = tmp_path / "fit.json"
        path.write_text(json.dumps(fit))
        err = _error(capsys, ["predict", str(path), "--data", str(data), "--output", str(tmp_path / "p.csv")])
        assert message in err and "Traceback" not in err, (change, err)
    # a file without draws: "the fit did not converge" only where its diagnostics say so (it was
    # said of a converged fit whose draws had been deleted)
    for diagnostics, message in [
        ({"converged": False}, "holds no posterior draws: the fit did not converge"),
        ({"converged": True, "hessian_eigenvalues": [-1.0, 2.0]}, "the MAP fit's Hessian is not positive definite"),
        ({"converged": True}, '"samples" is missing (the posterior draws that predict uses) (a file written by'),
        (None, '"samples" is missing'),
    ]:
        fit = {k: v for k, v in copy.deepcopy(good).items() if k != "samples"}
        if diagnostics is not None:
            fit["diagnostics"] = diagnostics
        path.write_text(json.dumps(fit))
        err = _error(capsys, ["predict", str(path), "--data", str(data), "--output", str(tmp_path / "p.csv")])
        assert message in err and "Traceback" not in err, (diagnostics, err)
        assert ("did not converge" in err) == (diagnostics == {"converged": False}), err


def _must_not_predict(*args, **kwargs):
    raise AssertionError("predict went on to solve")


def test_unreached_points_are_not_excused_by_a_misfit_noise_scale(chen):
    """A point the model does not reach is missed unless it was measured within 3 noise scales
    of a cut-off, the noise scale taken as at most 20 mV: a fit to a current logged in mA
    learned 379 mV, which excused every point (exit status 0 with 119 of 127 points unreached)."""
    from jaxcell.inference._cli import _beyond_cutoffs

    measured = np.array([3.8, 2.52, 4.19, 2.45])
    assert list(_beyond_cutoffs(chen, measured, 0.379)) == [True, False, False, False]
    assert list(_beyond_cutoffs(chen, measured, 0.002)) == [True, True, True, True]


def test_records_of_the_same_shapes_share_one_compiled_fit(chen):
    """Records are the inputs of a fit's compiled program, not its constants: the next records
    of the same shapes (another cell, the next left-out rate; here other rates with other keys)
    fit without compiling the potential and its gradient again, and each fit finds its own
    records' diffusivity. (Records were compared by identity, so every fit compiled anew.)"""
    from jaxcell.inference import default_prior, fit_map, read_measurements, records_model, stack_records

    recs = read_measurements(_table(chen, [1.0, 2.0, 1.5]), ["rate"])
    priors, truth = {D_POS: default_prior(D_POS, chen[D_POS])}, 0.6 * float(chen[D_POS])
    for pair in ([0, 1], [1, 2]):
        with compiled_names() as names:
            res = fit_map(records_model, jaxcell.SPM(), chen, stack_records([recs[k] for k in pair]), priors=priors,
                          noise="gaussian", initial_soc=0.9)
        assert res.converged and abs(res.params[D_POS] / truth - 1) < 0.1, pair
    assert "jit(_shared_value_and_grad)" not in names and "jit(<lambda>)" not in names, names
