"""jaxcell.design's gradients against finite differences (the robust objective and the smoothed
chance constraint, through `simulate` with its events), the common-random-numbers draw, and an
infeasible constraint reported as such. PyBOP's design problem itself (SPMe with a voltage hold)
is benchmarks/bench_design.py: its compiles take minutes."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FAST_XLA

import jaxcell
from jaxcell import design
from jaxcell.population import Variation, default_variation

STEP = ["Discharge at 1C until 2.5 V"]
VARY = ["Negative electrode thickness [m]=70e-6:100e-6", "Positive electrode thickness [m]=65e-6:100e-6"]
TIGHT = dict(rtol=1e-9, atol=1e-11)  # finite differences need the solve far below their step


@pytest.fixture(scope="module")
def setup():
    p = jaxcell.load_parameters("Chen2020")
    space = design.DesignSpace.create(p, VARY)
    d = default_variation().to_dict()
    d["hierarchy"] = {"modules_per_pack": 1, "cells_per_module": 1}  # every cell its own production lot
    variation = Variation.from_dict(d)
    draws = design.common_draws(p, space, variation, 2, 7)
    model = jaxcell.SPM(n_r_n=8, n_r_p=8, thermal="lumped")  # the temperature constraint has a gradient
    return p, space, variation, draws, model


def test_common_draws_reproduce_the_population_sampler(setup):
    """At the set's own design, the draw's cells are the cells `sample_population` draws with the
    same key: the deviations carried from design to design are the sampler's."""
    p, space, variation, draws, _ = setup
    q = space.apply(p, space.to_unit(space.initial(p)))
    cells = design.population_cells(q, draws)
    ref = jaxcell.sample_population(p, variation, 2, jax.random.key(7))
    for name, values in cells.items():
        np.testing.assert_allclose(np.asarray(values), np.asarray(ref[name]), rtol=1e-12, err_msg=name)
    # the default variation's 96-cell packs: still one independent lot per cell (a sample of one
    # pack's cells would see one lot), the same cells as the flattened variation's
    hier = design.population_cells(q, design.common_draws(p, space, default_variation(), 2, 7))
    for name, values in cells.items():
        np.testing.assert_allclose(np.asarray(hier[name]), np.asarray(values), rtol=1e-12, err_msg=name)
    # a thicker design moves every cell by the same factor (lognormal: multiplicative deviation)
    q2 = space.apply_values(p, {**space.initial(p), "Negative electrode thickness [m]": 90e-6})
    ratio = np.asarray(design.population_cells(q2, draws)["Negative electrode thickness [m]"]) / np.asarray(
        cells["Negative electrode thickness [m]"])
    np.testing.assert_allclose(ratio, 90e-6 / 85.2e-6, rtol=1e-12)


def test_gradients_of_objective_and_smoothed_constraint_match_finite_differences(setup):
    p, space, _, draws, model = setup
    f = design.robust_objective(model, p, STEP, space, draws, **TIGHT)
    u0 = jnp.asarray(space.to_unit(space.initial(p)))
    width = 0.02

    def both(u, c_min):
        out = f(u)
        return jnp.stack([jnp.mean(out.objective), design.smoothed_failure(out.capacity, c_min, width),
                          design.cvar_shortfall(out.capacity, c_min, 0.3), jnp.mean(out.max_temperature),
                          jnp.mean(out.capacity)])

    value = jax.jit(both).lower(u0, 5.0).compile(compiler_options=FAST_XLA)
    c_min = value(u0, 5.0)[4]  # the constraint at its steepest: the floor at the sample's mean capacity
    jac = jax.jit(jax.jacrev(both)).lower(u0, c_min).compile(compiler_options=FAST_XLA)(u0, c_min)
    h = 1e-4
    for i in range(2):
        e = jnp.zeros(2).at[i].set(h)
        fd = (value(u0 + e, c_min) - value(u0 - e, c_min)) / (2 * h)
        np.testing.assert_allclose(np.asarray(jac[:4, i]), np.asarray(fd[:4]), rtol=2e-4, atol=1e-9)
    # not flat here: the test can fail
    assert abs(float(jac[1, 0])) > 1e-2 and abs(float(jac[2, 0])) > 1e-3 and abs(float(jac[3, 0])) > 1e-2


def test_cvar_shortfall_is_the_worst_fractions_mean_and_bounds_the_chance_constraint():
    """Against its definition: the mean of the worst k = alpha n losses, and for a fractional
    alpha n the Rockafellar-Uryasev minimum over t (attained at a sample point). CVaR <= 0
    implies that at most alpha n cells of the sample fall short."""
    rng = np.random.default_rng(0)
    c_min = 5.0
    signs = set()
    for shift in np.linspace(0.0, 3.0, 20):  # from half the cells short to almost none
        cap = c_min * (1 + 0.02 * (shift + rng.standard_normal(40)))
        loss = np.sort((c_min - cap) / c_min)[::-1]
        np.testing.assert_allclose(float(design.cvar_shortfall(jnp.asarray(cap), c_min, 0.1)), loss[:4].mean(), rtol=1e-12)
        ru = min(t + np.maximum(0.0, loss - t).sum() / (0.13 * 40) for t in loss)
        cvar = float(design.cvar_shortfall(jnp.asarray(cap), c_min, 0.13))
        np.testing.assert_allclose(cvar, ru, rtol=1e-12)
        signs.add(cvar <= 0)
        if cvar <= 0:
            assert np.mean(cap < c_min) <= 0.13
    assert signs == {True, False}  # both cases were met


def test_chance_constraint_has_a_finite_gradient_where_every_cell_is_far_from_the_floor():
    """Far below the floor's reach the smoothed failure probability is exactly 0 (or 1 far
    above it), where sqrt(P (1 - P) / n) has an infinite derivative: the constraint's gradient
    was NaN even with z = 0, the optimiser read it as a failed solve and stopped at its start
    as converged (a floor of 1.5 A.h for 5 A.h cells). Its derivative is now that of P alone
    there, and sqrt's elsewhere."""
    from jaxcell.design._robust import _spread

    def g(cap, z, floor=1.5, n=4):
        prob = design.smoothed_failure(cap, floor, 0.01 * floor)
        return jnp.mean(prob + z * _spread(prob, n))

    for z in (0.0, 1.645):
        for cap in (jnp.full(4, 50.0), jnp.full(4, 0.1)):  # every cell far above, or far below, the floor: P is 0 or 1
            d = jax.grad(g)(cap, z)
            assert np.all(np.isfinite(np.asarray(d))) and np.all(np.asarray(d) == 0.0), (z, cap[0], d)
    cap = jnp.array([1.49, 1.5, 1.51, 1.52])  # near the floor: sqrt's derivative, against central differences
    h = 1e-7
    for i in range(4):
        e = jnp.zeros(4).at[i].set(h)
        fd = (g(cap + e, 1.645) - g(cap - e, 1.645)) / (2 * h)
        np.testing.assert_allclose(float(jax.grad(g)(cap, 1.645)[i]), float(fd), rtol=1e-6)


def test_design_budget_and_floor_are_checked():
    """A budget of 1 gradient ended in a bare StopIteration after the compile; True was taken
    as a floor of 1 A.h. Both are refused before anything is compiled."""
    p = jaxcell.load_parameters("Chen2020")
    vary = ["Positive electrode thickness [m]=65e-6:100e-6"]
    for bad in (1, 0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"max_evaluations must be an integer >= 2"):
            design.optimise_design(jaxcell.SPM(), p, ["Discharge at 1C until 2.5 V"], vary, max_evaluations=bad)
        with pytest.raises(ValueError, match=r"max_evaluations must be an integer >= 2"):
            design.optimise_robust_design(jaxcell.SPM(), p, ["Discharge at 1C until 2.5 V"], vary, default_variation(),
                                          min_capacity=4.5, alpha=0.05, max_evaluations=bad)
    with pytest.raises(ValueError, match="min_capacity must be a positive capacity"):
        design.optimise_design(jaxcell.SPM(), p, ["Discharge at 1C until 2.5 V"], vary, min_capacity=True)


def test_a_protocol_that_delivers_no_energy_is_refused():
    """A rest (or charges and rests) delivers no energy on discharge for any design: it was
    "optimised", reported feasible and converged with objective 0, and design.json held the
    loss 0 / 0 as a bare NaN. Refused on its steps, before anything is compiled; a start whose
    objective is not positive is refused after the first evaluation (`no_energy`)."""
    from jaxcell.design._optimise import UndeliveredStart, no_energy

    p = jaxcell.load_parameters("Chen2020")
    vary = ["Positive electrode thickness [m]=65e-6:100e-6"]
    for steps in (["Rest for 1 hour"], ["Charge at 1C until 4.2 V", "Rest for 10 minutes"]):
        with pytest.raises(UndeliveredStart, match="has no step that discharges the cell"):
            design.optimise_design(jaxcell.SPM(), p, steps, vary)
        with pytest.raises(UndeliveredStart, match="has no step that discharges the cell"):
            design.optimise_robust_design(jaxcell.SPM(), p, steps, vary, default_variation(), min_capacity=4.5, alpha=0.05)
    with pytest.raises(UndeliveredStart, match="objective is 0: the protocol delivers no energy"):
        no_energy(0.0)
    no_energy(310.0)  # a positive objective passes, as does NaN (refused by its own check)
    no_energy(float("nan"))


def test_the_budget_named_counts_the_callers_evaluations():
    """The designs count the start's evaluation (which scales the loss) in the budget, and the
    optimiser gets the rest: a design run with 5 said "5 gradient evaluations" and "stopped at
    the budget of 4". A quadratic on the unit box, where BFGS's first line search outruns a
    budget of 2."""
    from jaxcell.design._optimise import maximise

    def value_and_grad(u, lam, mu):
        u = np.asarray(u)
        return (float(np.sum((u - 0.3) ** 2)), None), 2.0 * (u - 0.3)

    _, path, n, ok, msg = maximise(value_and_grad, np.array([0.9, 0.8]), method="BFGS", max_evaluations=2, spent=1)
    assert (n, len(path), ok) == (2, 2, False)
    assert msg == "stopped at the budget of 3 gradient evaluations"


def test_design_json_holds_no_nan():
    """JSON has no NaN: a failed solve's loss on the path was written as a bare NaN, which strict
    parsers reject."""
    from jaxcell.cli import _json_ready

    out = _json_ready({"loss": float("nan"), "path": [{"x": np.float64(np.inf), "n": np.int64(3)}, jnp.asarray(2.5)]})
    assert out == {"loss": None, "path": [{"x": None, "n": 3}, 2.5]}
    json.dumps(out, allow_nan=False)


def test_cli_reports_an_infeasible_capacity_floor(tmp_path, capsys):
    """`jaxcell design` end to end: a capacity floor no design within the bounds reaches gives
    exit status 1 and a design.json that says infeasible, with the issue's keys and a check."""
    from jaxcell.cli import main

    out = tmp_path / "design.json"
    rc = main(["design", "--model", "SPM", "--vary", "Positive electrode thickness [m]=65e-6:100e-6",
               "--min-capacity", "8", "--max-evaluations", "4", "--check", "4", "--output", str(out)])
    assert rc == 1
    d = json.loads(out.read_text())
    for key in ("design", "objective", "initial_objective", "capacity", "evaluations", "check", "feasible", "message"):
        assert key in d, key
    assert d["feasible"] is False and d["message"].startswith("infeasible")
    assert d["evaluations"] == 4  # the budget is a hard limit
    assert d["capacity"] < 8.0 and d["constraint"] > 0
    assert set(d["check"]) >= {"n", "failure_probability", "stderr", "mean_objective", "mean_capacity"}
    assert d["check"]["n"] == 4 and d["check"]["failure_probability"] == 1.0  # no cell reaches 8 A.h
    assert "infeasible" in capsys.readouterr().out


def test_check_design_varies_the_design_not_the_specs_centre():
    """A spec that gives a designed parameter its own `center` (a measured production mean) used
    to be checked around that centre whatever the design: 65 and 100 um positive electrodes both
    came out at 5.008 A.h, no cell below a 4.9 A.h floor that the 65 um cell itself misses
    (4.895 A.h). The checked cells now vary around the design: their mean capacity is within 1 %
    of the design's own cell, simulated directly."""
    from jaxcell.population import ParameterVariation

    p = jaxcell.load_parameters("Chen2020")
    name = "Positive electrode thickness [m]"
    spec = Variation([ParameterVariation(name, "lognormal", center=75.6e-6, rel_std=0.01)])
    designs = (65e-6, 100e-6)
    with pytest.warns(UserWarning, match="center of 'Positive electrode thickness.*is not used"):
        checks = [design.check_design(jaxcell.SPM(), p, STEP, {name: L}, spec, 4, key=1, min_capacity=4.9)
                  for L in designs]
    nominal = jaxcell.simulate_batch(jaxcell.SPM(), jaxcell.stack(
        [jaxcell.with_initial_soc(p.update({name: L}), 1.0) for L in designs]), STEP).capacity
    assert float(nominal[1] - nominal[0]) > 0.1  # the two designs differ by more than the spread
    for k, check in enumerate(checks):  # before, both checks read 5.008 A.h
        np.testing.assert_allclose(np.mean(check.capacities), float(nominal[k]), rtol=0.01)
    assert checks[0].failures > 0  # the 65 um design's cells fall below the floor it misses
    bounded = Variation([ParameterVariation(name, "truncated_normal", rel_std=0.01, lower=70e-6, upper=80e-6)])
    with pytest.raises(ValueError, match="the design's 'Positive electrode thickness \\[m\\]' = 6.5e-05 lies outside"):
        design.check_design(jaxcell.SPM(), p, STEP, {name: 65e-6}, bounded, 4, key=1)


def test_cli_bad_input_is_named(tmp_path, capsys):
    from jaxcell.cli import main

    out = str(tmp_path / "d.json")
    cases = [
        (["--vary", "Positive electrode thicknes [m]=65e-6:100e-6"], "Did you mean 'Positive electrode thickness [m]'"),
        (["--vary", "Positive electrode porosity=0.1:1.5"], "outside its physical range"),
        (["--vary", "Positive electrode porosity=0.1:0.5", "--alpha", "0.1"], "--alpha needs --min-capacity"),
        (["--vary", "Positive electrode porosity=0.1:0.5", "--min-capacity", "5", "--alpha", "2"], r"--alpha must be a probability in (0, 1)"),
        (["--vary", "Positive electrode porosity=0.1:0.5", "--min-capacity", "5", "--alpha", "0.1", "--confidence", "1.5"],
         r"--confidence needs --alpha and must be in [0.5, 1)"),
        (["--vary", "Positive electrode porosity=0.1:0.5", "--chance", "cvar"], "--chance cvar needs --alpha"),
        (["--vary", "Positive electrode porosity=0.1:0.5", "--min-capacity", "5", "--alpha", "0.1", "--max-temperature", "310"],
         "--max-temperature needs --thermal lumped"),
        (["--vary", "Positive electrode porosity=0.1:0.5", "--np-ratio", "keep"], "neither is designed"),
        ([], "at least one design variable"),
        # one gradient leaves the optimiser no step: a traceback after the compile
        (["--vary", "Positive electrode porosity=0.1:0.5", "--max-evaluations", "1"], "--max-evaluations must be an integer >= 2"),
        (["--vary", "Positive electrode porosity=0.1:0.5", "--experiment", "Rest for 1 hour"], "no step that discharges the cell"),
    ]
    for extra, message in cases:
        assert main(["design", *extra, "--output", out]) == 2
        assert message in capsys.readouterr().err
    assert main(["design", "--vary", "Positive electrode porosity=0.1:0.5", "--output", str(tmp_path / "d.csv")]) == 2
    assert "must end in .json" in capsys.readouterr().err


def test_cli_start_that_does_not_deliver_is_bad_input(tmp_path, capsys, monkeypatch):
    """A protocol the starting design does not deliver (a charge to the upper cut-off from a
    charged cell: the step is skipped) is the user's input, not a failure of the optimiser: exit
    status 2 with the library's message (it was a traceback and exit 1), for the nominal and the
    robust optimisers. Each is replaced by the error it raises there, so no gradient is compiled
    here."""
    from jaxcell.cli import main
    from jaxcell.design._optimise import UndeliveredStart

    def undelivered(*args, **kwargs):
        raise UndeliveredStart("the starting design does not deliver the experiment: a step is skipped")

    monkeypatch.setattr(design, "optimise_design", undelivered)
    monkeypatch.setattr(design, "optimise_robust_design", undelivered)
    for robust in ([], ["--min-capacity", "4", "--alpha", "0.1"]):
        rc = main(["design", "--model", "SPM", "--vary", "Positive electrode thickness [m]=65e-6:100e-6",
                   "--experiment", "Charge at 1C until 4.2 V", *robust, "--output", str(tmp_path / "d.json")])
        assert rc == 2 and "does not deliver the experiment: a step is skipped" in capsys.readouterr().err
    assert not (tmp_path / "d.json").exists()
