"""The BPX reader against PyBaMM's own BPX import (``pybamm.ParameterValues.create_from_bpx``,
PyBaMM 26.10) of tests/data/bpx_example.json: every scalar parameter, every function on a grid
of stoichiometry, concentration and temperature, and an SPMe discharge of the cell
(tests/data/make_references.py, group ``bpx``)."""

import json
import warnings

import numpy as np
import pytest

import jaxcell
from conftest import DATA, load_reference, padded_times
from jaxcell.physics import cell

# PyBaMM's names for what jaxcell calls otherwise (activation energies)
RENAMED = {
    "Electrolyte diffusivity activation energy [J.mol-1]": "Electrolyte diffusion activation energy [J.mol-1]",
    "Negative particle diffusivity activation energy [J.mol-1]": "Negative particle diffusion activation energy [J.mol-1]",
    "Positive particle diffusivity activation energy [J.mol-1]": "Positive particle diffusion activation energy [J.mol-1]",
    "Negative electrode reaction rate constant activation energy [J.mol-1]": "Negative electrode reaction activation energy [J.mol-1]",
    "Positive electrode reaction rate constant activation energy [J.mol-1]": "Positive electrode reaction activation energy [J.mol-1]",
}
# PyBaMM keeps these numbers but no model reads them: the BPX fields as the file names them (their
# content is in the derived parameters), and current collectors of zero thickness
NOT_READ = {
    "Density [kg.m-3]", "Specific heat capacity [J.K-1.kg-1]", "Electrode area [m2]", "External surface area [m2]",
    "Volume [m3]", "Number of electrode pairs connected in parallel to make a cell", "Thickness [m]", "Porosity",
    "Transport efficiency", "Negative electrode transport efficiency", "Separator transport efficiency",
    "Positive electrode transport efficiency", "Negative electrode surface area per unit volume [m-1]",
    "Positive electrode surface area per unit volume [m-1]", "Negative electrode reaction rate constant [mol.m-2.s-1]",
    "Positive electrode reaction rate constant [mol.m-2.s-1]", "Negative current collector thickness [m]",
    "Positive current collector thickness [m]", "Negative current collector conductivity [S.m-1]",
    "Positive current collector conductivity [S.m-1]",
}
# jaxcell's numbers that PyBaMM holds inside its functions instead (checked through the functions)
FUNCTION_CONSTANTS = {
    "Negative electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]",
    "Positive electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]",
    "Negative particle diffusivity reference [m2.s-1]",
}


@pytest.fixture(scope="module")
def bpx_cell():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return jaxcell.ParameterSet.from_bpx(str(DATA / "bpx_example.json"))


@pytest.fixture(scope="module")
def ref():
    return json.loads((DATA / "pybamm" / "bpx_example.json").read_text())


def _numbers(p):
    return {k for k in p.keys() if not callable(p[k])}


def test_scalars_match_pybamm(bpx_cell, ref):
    """Every number PyBaMM's import gives, jaxcell's gives too (to 1e-12), under the same name or
    an activation energy's jaxcell name, unless no model reads it; and jaxcell adds only the
    constants that PyBaMM keeps inside its functions. Includes the initial concentrations at the
    file's initial state of charge 0.8 (PyBaMM's ``set_initial_state``: between the stoichiometries
    where the open-circuit voltage is at the cut-offs, not linear in the file's stoichiometry
    limits, which puts the positive electrode 3% of its capacity elsewhere)."""
    pybamm = ref["scalars"]
    assert "Initial concentration in positive electrode [mol.m-3]" in pybamm and len(pybamm) > 70
    compared = set()
    for name, value in pybamm.items():
        if name in NOT_READ:
            assert name not in bpx_cell, name
            continue
        ours = RENAMED.get(name, name)
        assert ours in bpx_cell and not callable(bpx_cell[ours]), f"jaxcell lacks {ours!r}"
        np.testing.assert_allclose(float(bpx_cell[ours]), value, rtol=1e-12, atol=0, err_msg=name)
        compared.add(ours)
    assert _numbers(bpx_cell) - compared == FUNCTION_CONSTANTS


def _grid(ref, entry):
    return np.meshgrid(*(np.asarray(ref[a], dtype=float) for a in entry["args"]), indexing="ij")


def test_functions_match_pybamm(bpx_cell, ref):
    """The OCPs (a table, extended linearly beyond its range as PyBaMM's interpolant does, and
    an expression), the entropic changes, the model-level OCP near the stoichiometry limits, the
    particle and electrolyte diffusivities and the conductivity with their Arrhenius factors
    (0 to 45 C) and the exchange-current densities, against PyBaMM's values on the same grid."""
    p = bpx_cell
    checked = []
    for key, entry in ref.items():
        if not (isinstance(entry, dict) and "args" in entry):
            continue
        mesh = _grid(ref, entry)
        if key.startswith("model: "):
            domain = key.split()[1].lower()
            got = cell.open_circuit_potential(domain, *mesh, p)
        elif "exchange-current" in key:
            domain = key.split()[0].lower()
            c_max = float(p[f"Maximum concentration in {domain} electrode [mol.m-3]"])
            got = p.evaluate(key, mesh[0], mesh[1] * c_max, c_max, mesh[2])
        else:
            got = p.evaluate(key, *mesh)
        want = np.asarray(entry["values"], dtype=float)
        np.testing.assert_allclose(np.broadcast_to(got, want.shape), want, rtol=1e-12, atol=0, err_msg=key)
        checked.append(key)
    assert len(checked) == 14, checked
    # the positive OCP table starts at 0.2; the grid goes below it, where PyBaMM extrapolates
    assert min(ref["sto"]) < 0.2


@pytest.mark.parametrize("thermal, name, tol_mv", [
    ("isothermal", "SPMe_bpx_example_1.0C.csv", 0.3),  # measured 0.089 mV
    ("lumped", "SPMe_lumped_bpx_example_1.0C.csv", 0.3),  # measured 0.035 mV
])
def test_bpx_cell_matches_pybamm(bpx_cell, thermal, name, tol_mv):
    """The BPX cell's SPMe at 1C from the file's state (SOC 0.8, 25 C, cooled at 10 W.m-2.K-1
    when lumped) to the 2.5 V cut-off, against PyBaMM's SPMe on the same (default) mesh: RMS
    voltage, end time (measured 7e-6 and 3e-6 apart), and the temperature within 0.2% of its
    10.7 K rise (measured 0.0068 K), which takes every Arrhenius factor away from the reference
    temperature."""
    ref = load_reference(name)
    sol = jaxcell.simulate(jaxcell.SPMe(thermal=thermal), bpx_cell, "Discharge at 1C until 2.5 V",
                           t_eval=padded_times(ref[:, 0]))
    assert int(sol.status) == jaxcell.Status.COMPLETED
    t_end = float(sol.step_end_time[0])
    reached = ref[:, 0] <= t_end
    assert reached.sum() >= len(ref) - 2
    v = np.asarray(sol.voltage)[: len(ref)][reached]
    rms = 1e3 * np.sqrt(np.mean((v - ref[reached, 1]) ** 2))
    assert rms < tol_mv, f"RMS {rms:.3f} mV"
    assert abs(t_end / ref[-1, 0] - 1) < 1e-4, f"end {t_end} s vs {ref[-1, 0]} s"
    if thermal == "lumped":
        T = np.asarray(sol.temperature)[: len(ref)][reached]
        rise = ref[reached, 3] - ref[0, 3]
        assert rise.max() > 5.0
        assert np.max(np.abs(T - ref[reached, 3])) < 0.002 * rise.max()


def test_initial_stoichiometries_reach_the_cutoffs(bpx_cell):
    """Ground truth for the SOC placement: at SOC 1 and 0 the open-circuit voltage (reference
    temperature) is at the upper and lower cut-off, every SOC holds the same cyclable lithium,
    and SOC 0.8 (the file's) gives the set's initial concentrations."""
    from jaxcell.parameters._bpx import initial_stoichiometries

    p = bpx_cell
    T_ref = p["Reference temperature [K]"]
    c_max = {d: float(p[f"Maximum concentration in {d} electrode [mol.m-3]"]) for d in ("negative", "positive")}
    Q = {d: float(p[f"{d.capitalize()} electrode active material volume fraction"]
                  * p[f"{d.capitalize()} electrode thickness [m]"]) * c_max[d] for d in c_max}
    lithium = []
    for soc, V in ((1.0, p["Upper voltage cut-off [V]"]), (0.0, p["Lower voltage cut-off [V]"]), (0.8, None)):
        x, y = initial_stoichiometries(p, soc)
        assert 0 < x < 1 and 0 < y < 1
        lithium.append(Q["negative"] * x + Q["positive"] * y)
        if V is not None:
            ocv = cell.open_circuit_potential("positive", y, T_ref, p) - cell.open_circuit_potential("negative", x, T_ref, p)
            np.testing.assert_allclose(ocv, V, rtol=0, atol=1e-12)
    np.testing.assert_allclose(lithium, lithium[0], rtol=1e-14)
    np.testing.assert_allclose([x * c_max["negative"], y * c_max["positive"]],
                               [p["Initial concentration in negative electrode [mol.m-3]"],
                                p["Initial concentration in positive electrode [mol.m-3]"]], rtol=1e-14)


def test_malformed_expression_names_the_field(tmp_path, capsys):
    """An OCP expression with an unclosed bracket (which bpx lets through as pyparsing's
    ParseSyntaxException) is reported naming the BPX field and the expression, and the CLI exits
    with status 2 and no traceback."""
    from jaxcell.cli import main

    data = json.loads((DATA / "bpx_example.json").read_text())
    data["Parameterisation"]["Negative electrode"]["OCP [V]"] = "1.9793 * exp(-39.3631 * x"
    path = tmp_path / "cell.json"
    path.write_text(json.dumps(data))
    message = ("is not a valid BPX file: BPX field 'Parameterisation.Negative electrode.OCP [V]': cannot parse the "
               "expression '1.9793 * exp(-39.3631 * x': Expected ')' (at character 26)")
    with pytest.raises(ValueError) as info:
        jaxcell.ParameterSet.from_bpx(str(path))
    assert message in str(info.value)
    assert main(["simulate", "--parameters", str(path), "--output", str(tmp_path / "out.csv")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_a_bad_porosity_names_the_porosity_field(tmp_path):
    """A porosity out of (0, 1] (NaN here) was reported at the neighbouring field, "The porosity
    next to BPX field '...Transport efficiency'", which reads the porosity to derive the
    Bruggeman coefficient."""
    data = json.loads((DATA / "bpx_example.json").read_text())
    for bad in (float("nan"), 1.5, 0.0):
        data["Parameterisation"]["Negative electrode"]["Porosity"] = bad
        path = tmp_path / "cell.json"
        path.write_text(json.dumps(data))
        with pytest.raises(ValueError, match=r"BPX field 'Parameterisation\.Negative electrode\.Porosity' must be in \(0, 1\]"):
            jaxcell.ParameterSet.from_bpx(str(path))
