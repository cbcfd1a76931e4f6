"""Initial state of charge: the stoichiometry window and initial concentrations against
PyBaMM's ``ParameterValues.set_initial_state`` (tests/data/make_references.py, group
``initial_soc``), their derivatives against finite differences, batches and bad input. The DFN
discharged from 50 % against PyBaMM is in tests/test_dfn.py."""

import json

import jax
import numpy as np
import pytest
from conftest import DATA

import jaxcell

NEG, POS = "Initial concentration in negative electrode [mol.m-3]", "Initial concentration in positive electrode [mol.m-3]"


@pytest.mark.parametrize("pset", ["Chen2020", "Marquis2019", "Ecker2015"])
def test_initial_concentrations_match_pybamm(pset):
    ref = json.loads((DATA / "pybamm" / f"initial_soc_{pset}.json").read_text())
    p = jaxcell.load_parameters(pset)
    values = [k for k in ref if not k.startswith("_")]
    assert len(values) >= 8
    for key in values:
        value = key if key.endswith("V") else float(key)
        q = jaxcell.with_initial_soc(p, value)
        np.testing.assert_allclose([float(q[NEG]), float(q[POS])], ref[key], rtol=1e-10, err_msg=f"{pset} {key}")
    # the window's ends are where the open-circuit voltage equals the set's 0 % and 100 % voltages
    x_0, x_100, y_0, y_100 = jaxcell.stoichiometry_window(p)
    T = p["Reference temperature [K]"]
    for x, y, name in ((x_0, y_0, "0%"), (x_100, y_100, "100%")):
        ocv = jaxcell.soc.open_circuit_voltage(p, x, y)
        np.testing.assert_allclose(float(ocv), float(p[f"Open-circuit voltage at {name} SOC [V]"]), atol=1e-9)
    del T


def test_rest_voltage_round_trip_and_derivative(chen):
    """A rest voltage gives the state whose open-circuit voltage it is; derivatives of the
    initial stoichiometries (implicit, through the root finds) against central differences."""
    for v in (3.3, 3.7, 4.1):
        s = jaxcell.soc_at_voltage(chen, v)
        x, y = jaxcell.initial_stoichiometries(chen, s)
        np.testing.assert_allclose(float(jaxcell.soc.open_circuit_voltage(chen, x, y)), v, atol=1e-10)
    name = "Positive electrode thickness [m]"

    def x_at(L, soc):
        return jaxcell.initial_stoichiometries(chen.update({name: L}), soc)[0]

    L = float(chen[name])
    for soc in (0.2, 0.8):
        ad = float(jax.grad(x_at)(chen[name], soc))
        h = 1e-4 * L
        fd = (float(x_at(L + h, soc)) - float(x_at(L - h, soc))) / (2 * h)
        np.testing.assert_allclose(ad, fd, rtol=1e-6)
        assert abs(ad) > 0


def test_second_derivatives_of_the_root_finds(chen):
    """Second derivatives through the root finds (the window's ends and a rest voltage's state of
    charge), `jax.hessian` against central differences of `jax.grad`, relative 1e-5: the
    initial negative concentration as a function of a positive thickness and a rest voltage.
    A root found by one Newton step from a gradient-stopped root had the first derivative
    right and a second derivative without the root's own dependence (zero in the voltage)."""
    name = "Positive electrode thickness [m]"

    def conc(z):
        q = jaxcell.soc.initial_concentrations(chen.update({name: z[0] * 1e-6}), "voltage", z[1])
        return q[NEG] / 1e4

    z = np.array([float(chen[name]) * 1e6, 3.7])
    H = np.asarray(jax.jit(jax.hessian(conc))(z))
    grad = jax.jit(jax.grad(conc))
    h = np.array([1e-4 * z[0], 1e-4])
    fd = np.stack([(np.asarray(grad(z + h[i] * np.eye(2)[i])) - np.asarray(grad(z - h[i] * np.eye(2)[i]))) / (2 * h[i])
                   for i in range(2)], axis=1)
    np.testing.assert_allclose(H, fd, rtol=1e-5, atol=1e-9 * np.abs(fd).max())
    assert np.all(np.abs(np.diag(fd)) > 1e-6 * np.abs(fd).max())  # both curvatures matter


def test_batched_set_and_bad_input(chen):
    thick = np.array([70e-6, 85.2e-6, 95e-6])
    batch = chen.update({"Negative electrode thickness [m]": thick})
    q = jaxcell.with_initial_soc(batch, np.array([0.2, 0.5, 0.9]))
    for i, (L, s) in enumerate(zip(thick, (0.2, 0.5, 0.9))):
        one = jaxcell.with_initial_soc(chen.update({"Negative electrode thickness [m]": L}), s)
        np.testing.assert_allclose(float(q[NEG][i]), float(one[NEG]), rtol=1e-12)
    for bad, message in ((1.5, r"in \[0, 1\]"), (50, "not a percentage"), ("4.5 V", r"outside .*\[2.5, 4.2\] V"),
                         ("four volts", "rest voltage such as"), (None, "rest voltage such as"),
                         # one value per cell of a batch: two values for one cell were a broadcasting error
                         (np.array([0.5, 0.6]), r"shape \(2,\), which does not match the parameter set's batch shape \(\)")):
        with pytest.raises(ValueError, match=message):
            jaxcell.with_initial_soc(chen, bad)
    with pytest.raises(ValueError, match=r"shape \(2,\), .* batch shape \(3,\)"):
        jaxcell.with_initial_soc(batch, np.array([0.5, 0.6]))
    # rest voltages as experiment strings write them: V, v or mV
    for text in ("3.9 V", "3.9 v", "3900 mV"):
        assert jaxcell.soc.parse_soc(text) == ("voltage", pytest.approx(3.9, rel=1e-15))
    with pytest.raises(ValueError, match="does not reach 'Open-circuit voltage at 100% SOC"):
        # so little cyclable lithium that no stoichiometries reach 4.2 V
        jaxcell.stoichiometry_window(chen.update({NEG: 100.0, POS: 100.0}))
    with pytest.raises(ValueError, match="no state of charge has the open-circuit voltage 4.5 V"):
        jaxcell.soc_at_voltage(chen, 4.5)
