"""SPM and SPMe against PyBaMM 26.10 (IDAKLU, rtol 1e-8) at the same (default) mesh; the
tortuosity-factor option of the SPMe and the DFN (the DFN against PyBaMM's fine mesh)."""

import json

import numpy as np
import pytest

import jaxcell
from conftest import DATA, load_reference, padded_times, rms_after_first_second

# RMS voltage difference allowed (the issue asks for 1 and 2 mV; measured <= 0.03 and 0.65 mV,
# so these catch regressions well before the limits)
TOL_MV = {"SPM": 0.1, "SPMe": 1.0}


@pytest.mark.parametrize("pset", ["Chen2020", "Marquis2019", "Ecker2015"])
@pytest.mark.parametrize("model_name", ["SPM", "SPMe"])
def test_discharge_matches_pybamm(model_name, pset):
    p = jaxcell.load_parameters(pset)
    model = getattr(jaxcell, model_name)()
    v_cut = float(p["Lower voltage cut-off [V]"])
    for rate in (0.5, 1.0, 2.0):
        ref = load_reference(f"{model_name}_{pset}_{rate}C.csv")
        sol = jaxcell.simulate(model, p, f"Discharge at {rate}C until {v_cut} V", t_eval=padded_times(ref[:, 0]))
        v = np.asarray(sol.voltage)[: len(ref)]
        assert int(sol.status) == jaxcell.Status.COMPLETED
        assert int(sol.step_end[0]) == jaxcell.StepEnd.VOLTAGE
        t_end = float(sol.step_end_time[0])
        reached = ref[:, 0] <= t_end
        assert np.all(np.isfinite(v[reached])) and np.all(np.isnan(v[~reached]))
        assert reached.sum() >= len(ref) - 2, "all but the cut-off point itself are compared"
        err_mv = 1e3 * (v[reached] - ref[reached, 1])
        rms = np.sqrt(np.mean(err_mv**2))
        assert rms < TOL_MV[model_name], f"{rate}C: RMS {rms:.3f} mV"
        assert abs(t_end / ref[-1, 0] - 1) < 0.005, f"{rate}C: end {t_end} s vs {ref[-1, 0]} s"
        # discharge capacity is current x time
        np.testing.assert_allclose(np.asarray(sol.discharge_capacity)[: len(ref)][reached], ref[reached, 2], rtol=1e-6, atol=1e-9)


def test_spme_stops_where_the_electrolyte_runs_out():
    """At 3C the Chen2020 SPMe's electrolyte concentration reaches zero at the positive current
    collector after ~50 s; its uniform reactions would drive it negative without bound. The solve
    stops there with Status.ELECTROLYTE_DEPLETED (it ran into max_steps before), at PyBaMM's
    zero crossing of the same SPMe within 0.1 s (measured 0.012 s)."""
    p = jaxcell.load_parameters("Chen2020")
    ref = json.loads((DATA / "pybamm" / "SPMe_Chen2020_3.0C_depletion.json").read_text())
    sol = jaxcell.simulate(jaxcell.SPMe(), p, "Discharge at 3C until 2.5 V",
                           t_eval=padded_times(np.linspace(0.0, 60.0, 61)))
    assert int(sol.status) == jaxcell.Status.ELECTROLYTE_DEPLETED, sol.message
    assert "electrolyte ran out" in sol.message and not sol.delivered
    assert abs(float(sol.step_end_time[0]) - ref["t_zero_s"]) < 0.1


@pytest.mark.parametrize("pset", ["Chen2020", "Marquis2019"])
@pytest.mark.parametrize("model_name", ["SPM", "SPMe"])
def test_lumped_thermal_matches_pybamm(model_name, pset):
    """Lumped heat balance (reaction, ohmic, reversible heat; Newton cooling) against PyBaMM's
    lumped thermal model: the temperature within 2% of the rise, the voltage within tolerance.
    Marquis2019 has entropic terms: without the reversible heat its temperature is off by 60%
    of the rise."""
    p = jaxcell.load_parameters(pset)
    ref = load_reference(f"{model_name}_lumped_{pset}_1.0C.csv")
    model = getattr(jaxcell, model_name)(thermal="lumped")
    v_cut = float(p["Lower voltage cut-off [V]"])
    sol = jaxcell.simulate(model, p, f"Discharge at 1C until {v_cut} V", t_eval=padded_times(ref[:, 0]))
    reached = ref[:, 0] <= float(sol.step_end_time[0])
    assert reached.sum() >= len(ref) - 2
    T = np.asarray(sol.temperature)[: len(ref)][reached]
    rise = ref[reached, 3] - ref[0, 3]
    assert rise.max() > 0.3  # the check below is not trivially met
    assert np.max(np.abs(T - ref[reached, 3])) < 0.02 * rise.max()
    v = np.asarray(sol.voltage)[: len(ref)][reached]
    assert np.sqrt(np.mean((v - ref[reached, 1]) ** 2)) * 1e3 < TOL_MV[model_name]


@pytest.mark.parametrize("model_name, ref_name, tol_mv", [
    ("SPMe", "SPMe_tortuosity_Chen2020_1.0C.csv", 1.0),  # same mesh; measured 0.30 mV
    ("DFN", "DFNfine_tortuosity_Chen2020_1.0C.csv", 1.0),  # default mesh vs converged; measured 0.37 mV (0.53 before the shell centroids)
])
def test_tortuosity_factor_matches_pybamm(chen, model_name, ref_name, tol_mv):
    """transport_efficiency="tortuosity factor" (B = eps / tau, PyBaMM's parameter names) against
    PyBaMM's option "transport efficiency": "tortuosity factor" with the same factors, Chen2020,
    1C. With Bruggeman's exponents instead the voltage is 36-40 mV RMS away from these curves."""
    model = getattr(jaxcell, model_name)(transport_efficiency="tortuosity factor")
    with pytest.raises(jaxcell.UnknownParameterError, match="tortuosity factor \\(electrolyte\\)'.*check_already_exists"):
        jaxcell.simulate(model, chen, "Discharge at 1C for 10 s")
    with pytest.raises(ValueError, match="transport_efficiency='tortuous' is not one of"):
        getattr(jaxcell, model_name)(transport_efficiency="tortuous")
    taus = json.loads((DATA / "pybamm" / "tortuosity_Chen2020.json").read_text())
    with pytest.raises(jaxcell.ParameterValueError, match="must be positive"):
        chen.update({k: 0.0 for k in taus}, check_already_exists=False)
    p = chen.update(taus, check_already_exists=False)
    ref = load_reference(ref_name)
    sol = jaxcell.simulate(model, p, "Discharge at 1C until 2.5 V", t_eval=padded_times(ref[:, 0]))
    assert int(sol.status) == jaxcell.Status.COMPLETED
    compared = (ref[:, 0] > 1.0) & (ref[:, 0] <= float(sol.step_end_time[0]))  # after the DFN's double layers charged
    assert compared.sum() >= len(ref) - 3 and np.all(np.isfinite(np.asarray(sol.voltage)[: len(ref)][compared]))
    rms, dt = rms_after_first_second(sol, ref)
    assert rms < tol_mv, f"RMS {rms:.3f} mV"
    assert abs(dt) < 0.005


@pytest.mark.parametrize("pset", ["Chen2020", "Marquis2019", "Ecker2015"])
def test_model_level_ocp_matches_pybamm(pset):
    """The OCP the models use against PyBaMM's model-level OCP (its clipping of the stoichiometry
    to [1e-10, 1 - 1e-10] and its barrier at either end, the entropic term at 318 K) on the
    functions grid and near the limits; then the SPM's open-circuit voltage with the particle
    surfaces at sto 0 and 1, where the barrier adds about 1 V to each electrode."""
    from jaxcell.physics import cell

    ref = json.loads((DATA / "pybamm" / f"functions_{pset}.json").read_text())
    p = jaxcell.load_parameters(pset)
    for domain in ("Negative", "Positive"):
        for suffix in ("", " near the limits"):
            entry = ref[f"model: {domain} electrode OCP [V]{suffix}"]
            sto, T = np.meshgrid(*(np.asarray(ref[a]) for a in entry["args"]), indexing="ij")
            got = cell.open_circuit_potential(domain.lower(), sto, T, p)
            np.testing.assert_allclose(got, entry["values"], rtol=1e-9, atol=1e-12, err_msg=f"{domain}{suffix}")

    # the SPM's state: particle concentrations (negative, positive), temperature; the negative
    # surface empty and the positive one full (the ends of a discharge driven too far)
    model = jaxcell.SPM()
    y = np.concatenate([np.zeros(model.n_r_n), np.full(model.n_r_p, ref["c_max_positive"]), [ref["T"][0]]])
    limits = np.asarray(ref["sto_limits"])
    U_n = ref["model: Negative electrode OCP [V] near the limits"]["values"][0][0]
    U_p = ref["model: Positive electrode OCP [V] near the limits"]["values"][-1][0]
    assert limits[0] == 0.0 and limits[-1] == 1.0 and ref["T"][0] == p["Ambient temperature [K]"]
    np.testing.assert_allclose(model.open_circuit_voltage(y, p), U_p - U_n, rtol=0, atol=1e-9)


def test_spme_stretched_shells_against_a_converged_spme():
    """Ten shells thinner towards the surface (`r_stretch=4`) against PyBaMM's SPMe on its fine
    mesh (60 shells): within 0.6 mV RMS at 0.5C and 1C and 1.5 mV at 2C (measured 0.24, 0.52,
    1.39; PyBaMM's default mesh of 20 uniform shells: 0.30, 0.64, 1.42), and at most 0.4 times
    the error of ten uniform shells (measured 0.23-0.31 of 1.00, 2.03, 4.50 mV). Bad stretches
    are refused with the accepted range."""
    p = jaxcell.load_parameters("Chen2020")
    errors = {}
    for stretch in (4.0, 1.0):
        model = jaxcell.SPMe(n_r_n=10, n_r_p=10, r_stretch=stretch)
        for rate in (0.5, 1.0, 2.0):
            ref = load_reference(f"SPMefine_Chen2020_{rate}C.csv")
            sol = jaxcell.simulate(model, p, f"Discharge at {rate}C until 2.5 V", t_eval=padded_times(ref[:, 0]))
            assert int(sol.status) == jaxcell.Status.COMPLETED
            rms, dt_end = rms_after_first_second(sol, ref)
            assert abs(dt_end) < 1e-3, (stretch, rate, dt_end)
            errors[stretch, rate] = rms
    for rate, tol in ((0.5, 0.6), (1.0, 0.6), (2.0, 1.5)):
        assert errors[4.0, rate] < tol, errors
        assert errors[4.0, rate] < 0.4 * errors[1.0, rate], errors
    for bad in (0.5, 101.0, "4", True):
        with pytest.raises(ValueError, match=r"r_stretch must be a number in \[1, 100\]"):
            jaxcell.SPMe(r_stretch=bad)
