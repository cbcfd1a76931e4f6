import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import DATA

import jaxcell


@pytest.mark.parametrize("name", ["Chen2020", "chen2020", "MARQUIS2019", "Ecker2015"])
def test_load_case_insensitive(name):
    p = jaxcell.load_parameters(name)
    assert p.name.lower() == name.lower()
    assert p["Negative electrode thickness [m]"].dtype == jnp.float64
    assert p.citation


def test_unknown_set():
    with pytest.raises(ValueError, match="Chen2020"):
        jaxcell.load_parameters("Chen2021")


def test_update_returns_new_set(chen):
    q = chen.update({"Negative electrode porosity": 0.2})
    assert float(q["Negative electrode porosity"]) == 0.2
    assert float(chen["Negative electrode porosity"]) == 0.25


def test_unknown_name_suggests(chen):
    with pytest.raises(KeyError, match="Did you mean 'Negative electrode porosity'"):
        chen["Negative electrode porsity"]
    with pytest.raises(KeyError, match="Unknown parameter"):
        chen.update({"Negative electrode porsity": 0.3})


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("Negative electrode porosity", 1.2, r"open interval \(0, 1\)"),
        ("Negative electrode porosity", 0.0, r"open interval \(0, 1\)"),
        ("Separator porosity", 1.2, r"in \(0, 1\]"),
        ("Positive electrode active material volume fraction", 1.0, r"open interval \(0, 1\)"),
        ("Negative electrode thickness [m]", -1e-6, "positive"),
        ("Positive particle radius [m]", 0.0, "positive"),
        ("Negative particle diffusivity [m2.s-1]", -3e-14, "positive"),
        ("Nominal cell capacity [A.h]", 0.0, "positive"),
        ("Separator thickness [m]", float("nan"), "finite"),
        ("Cation transference number", float("inf"), "finite"),
        ("Negative electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]", 0.0, "positive"),
        ("Initial concentration in electrolyte [mol.m-3]", 0.0, "positive"),
        ("Positive electrode conductivity [S.m-1]", 0.0, "positive"),
        ("Negative electrode porosity", 1.0, r"open interval \(0, 1\)"),
        # a solve at 1e5 K completed with the set's capacity; at 1 K it failed at the start
        ("Ambient temperature [K]", 1e5, "between 150 and 500 K"),
        ("Initial temperature [K]", 1.0, "between 150 and 500 K"),
        # a cut-off at 0 V made the CLI's default step "until 0 V", refused as a step the user never wrote
        ("Lower voltage cut-off [V]", 0.0, "positive"),
        ("Open-circuit voltage at 100% SOC [V]", -4.2, "positive"),
        ("Thermodynamic factor", -1.0, "positive"),
    ],
)
def test_bad_values_raise(chen, name, value, message):
    with pytest.raises(ValueError, match=message) as info:
        chen.update({name: value})
    assert name in str(info.value)


def test_a_number_no_model_reads_is_updated_with_a_warning(chen):
    """PyBaMM's "Current function [A]" drives PyBaMM's simulations without an experiment, and its
    charge transfer coefficients shape asymmetric kinetics; no jaxcell model reads them (the
    current comes from the experiment, the kinetics are symmetric), so changing one warns (a
    coefficient of 0.1 gave the same capacity and energy, silently)."""
    with pytest.warns(UserWarning, match="'Current function \\[A\\]' is not read by jaxcell's models"):
        q = chen.update({"Current function [A]": 1.0})
    assert float(q["Current function [A]"]) == 1.0
    with pytest.warns(UserWarning, match="'Negative electrode charge transfer coefficient' is not read .* symmetric"):
        chen.update({"Negative electrode charge transfer coefficient": 0.1})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chen.update({"Negative electrode charge transfer coefficient": 0.5, "Negative electrode thickness [m]": 80e-6})


def test_batch_shape_is_the_leaves_broadcast_shape(chen):
    """A leaf of shape (1,) beside one of (3,) is a batch of 3 (it was read as (1,), the longest
    shape, and a batched simulation failed in numpy); (3, 1) beside (3,) broadcasts to (3, 3)."""
    a, b = "Negative electrode thickness [m]", "Positive electrode thickness [m]"
    assert chen.batch_shape == ()
    assert chen.update({a: [80e-6]}).update({b: [70e-6, 75e-6, 80e-6]}).batch_shape == (3,)
    assert chen.update({a: np.full((3, 1), 80e-6)}).update({b: [70e-6, 75e-6, 80e-6]}).batch_shape == (3, 3)


def test_batched_bad_value_names_index(chen):
    with pytest.raises(ValueError, match="batch index"):
        chen.update({"Negative electrode porosity": np.array([0.2, 0.1, 1.5])})


@pytest.mark.parametrize("value, message", [
    ("8e-5", "got str"), (None, "got NoneType"), (np.array(["a", "b"]), "array of <U1"), ([[1e-5], [1e-5, 2e-5]], "rectangular"),
])
def test_update_refuses_non_numbers(chen, value, message):
    """Strings, None and ragged lists are refused at `update`, naming the parameter (they
    used to be stored and fail later, or be read as NaN)."""
    name = "Negative electrode thickness [m]"
    with pytest.raises(ValueError, match=message) as info:
        chen.update({name: value})
    assert name in str(info.value)


def test_update_takes_functions_only_where_the_models_evaluate_them(chen):
    """A function for a parameter the models read as a number was stored, and `simulate` then
    failed inside the model with a TypeError that named no parameter. It is refused at `update`;
    a function where the models evaluate one (a diffusivity of stoichiometry and temperature,
    a number in Chen2020) is taken and evaluated."""
    from jaxcell.parameters import ParameterValueError

    name = "Negative electrode thickness [m]"
    with pytest.raises(ParameterValueError, match="must be a number") as info:
        chen.update({name: lambda: 7e-5})
    assert name in str(info.value)
    with pytest.raises(ParameterValueError, match="comes from the experiment"):
        chen.update({"Current function [A]": lambda t: 5.0})
    d = "Negative particle diffusivity [m2.s-1]"
    q = chen.update({d: lambda sto, T: 2.0 * sto * 1e-14})
    assert float(q.evaluate(d, 0.5, 298.15)) == 1e-14


def test_update_refuses_shapes_that_do_not_broadcast(chen):
    batch = chen.update({"Negative electrode thickness [m]": np.full(3, 80e-6)})
    name = "Positive electrode thickness [m]"
    with pytest.raises(ValueError, match=r"shape \(4,\).*batch shape \(3,\)") as info:
        batch.update({name: np.full(4, 70e-6)})
    assert name in str(info.value)
    assert batch.update({name: np.full(3, 70e-6)}).batch_shape == (3,)  # same batch: fine


@pytest.mark.parametrize("set_name", ["Chen2020", "Marquis2019", "Ecker2015"])
def test_volume_fractions_per_electrode(set_name):
    """An electrode's porosity and active material fraction share its volume: their sum above
    1 is refused (per cell of a batch), naming both; updating both in one call is accepted."""
    p = jaxcell.load_parameters(set_name)
    for electrode in ("Negative", "Positive"):
        por, act = f"{electrode} electrode porosity", f"{electrode} electrode active material volume fraction"
        solid = float(p[act])
        with pytest.raises(ValueError, match="exceeds 1") as info:
            p.update({por: 1.0 - solid + 0.01})
        assert por in str(info.value) and act in str(info.value)
        with pytest.raises(ValueError, match=r"batch index \[1\]"):
            p.update({por: np.array([0.1, 1.0 - solid + 0.01])})
        q = p.update({por: 0.9, act: 0.05})
        assert float(q[por]) == 0.9


def test_initial_concentration_at_most_maximum(chen):
    name = "Initial concentration in positive electrode [mol.m-3]"
    with pytest.raises(ValueError, match=r"exceeds 'Maximum concentration in positive electrode \[mol.m-3\]' \(63104\)") as info:
        chen.update({name: 70000.0})
    assert name in str(info.value)
    with pytest.raises(ValueError, match=r"batch index \[1\]"):
        chen.update({name: np.array([30000.0, 1e9])})


def test_pytree_vmap_grad(chen):
    """Numbers are leaves: vmap over a batch axis and grad with respect to a value work."""
    batch = jaxcell.stack([chen.update({"Negative electrode thickness [m]": L}) for L in (70e-6, 80e-6)])
    assert batch.batch_shape == (2,)
    thick = jax.vmap(lambda q: q["Negative electrode thickness [m]"] * 2)(batch)
    np.testing.assert_allclose(thick, [140e-6, 160e-6])
    g = jax.grad(lambda q: q.evaluate("Negative electrode exchange-current density [A.m-2]", 1000.0, 15000.0, 33133.0, 298.15))(chen)
    k = chen["Negative electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]"]
    j0 = chen.evaluate("Negative electrode exchange-current density [A.m-2]", 1000.0, 15000.0, 33133.0, 298.15)
    np.testing.assert_allclose(g.values["Negative electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]"], j0 / k, rtol=1e-12)


ARGS = {  # how the reference JSON's arguments map onto jaxcell's calls
    "OCP": lambda f, a: f(a["sto"]),
}


@pytest.mark.parametrize("name", ["Chen2020", "Marquis2019", "Ecker2015"])
def test_functions_match_pybamm(name):
    """Every OCP, exchange-current, electrolyte and particle-transport function against the
    values PyBaMM's own set gives on a grid (tests/data/make_references.py)."""
    ref = json.loads((DATA / "pybamm" / f"functions_{name}.json").read_text())
    p = jaxcell.load_parameters(name)
    checked = 0
    for key, entry in ref.items():
        if key.startswith("_") or not isinstance(entry, dict) or "args" not in entry:
            continue
        if key.startswith("model: "):  # the models' OCP, tests/test_reference.py
            continue
        assert key in p, f"{key!r} is in PyBaMM's reference but not in jaxcell's {name}"
        grids = [np.asarray(ref[a] if isinstance(a, str) else a) for a in entry["args"]]
        mesh = np.meshgrid(*grids, indexing="ij")
        if "exchange-current" in key:
            # args are c_e, sto, T; jaxcell's (and PyBaMM's) signature is (c_e, c_s, c_max, T)
            domain = "negative" if key.startswith("Negative") else "positive"
            c_max = float(p[f"Maximum concentration in {domain} electrode [mol.m-3]"])
            got = p.evaluate(key, mesh[0], mesh[1] * c_max, c_max, mesh[2])
        else:
            got = p.evaluate(key, *mesh)
        want = np.asarray(entry["values"], dtype=float)
        np.testing.assert_allclose(np.broadcast_to(got, want.shape), want, rtol=1e-9, err_msg=key)
        checked += 1
    assert checked >= 6


def test_from_bpx():
    p = jaxcell.ParameterSet.from_bpx(str(DATA / "bpx_example.json"))
    raw = json.loads((DATA / "bpx_example.json").read_text())
    neg = raw["Parameterisation"]["Negative electrode"]
    np.testing.assert_allclose(p["Negative electrode thickness [m]"], neg["Thickness [m]"])
    np.testing.assert_allclose(p["Negative particle radius [m]"], neg["Particle radius [m]"])
    assert callable(p["Negative electrode OCP [V]"])
    assert np.isfinite(float(p.evaluate("Negative electrode OCP [V]", 0.5)))


def test_bpx_simulates(spm):
    p = jaxcell.ParameterSet.from_bpx(str(DATA / "bpx_example.json"))
    sol = jaxcell.simulate(spm, p, "Discharge at 1C for 10 minutes")
    assert int(sol.status) == 0
    assert np.all(np.isfinite(np.asarray(sol.voltage)))


def test_cutoffs_must_be_ordered(spm, chen):
    bad = chen.update({"Lower voltage cut-off [V]": 4.3})
    with pytest.raises(ValueError, match="must be below 'Upper voltage cut-off"):
        jaxcell.simulate(spm, bad, "Rest for 1 hour")
