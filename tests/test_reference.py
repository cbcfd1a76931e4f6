"""SPM and SPMe against PyBaMM 26.10 (IDAKLU, rtol 1e-8) at the same (default) mesh."""

import numpy as np
import pytest

import jaxcell
from conftest import load_reference, padded_times

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
