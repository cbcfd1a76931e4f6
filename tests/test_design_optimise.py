"""jaxcell.design's gradients against finite differences (the robust objective and the smoothed
chance constraint, through `simulate` with its events), the common-random-numbers draw, and an
infeasible constraint reported as such. PyBOP's design problem itself (SPMe with a voltage hold)
is benchmarks/bench_design.py: its compiles take minutes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcell
from jaxcell import design
from jaxcell.population import Variation, default_variation

STEP = ["Discharge at 1C until 2.5 V"]
VARY = ["Negative electrode thickness [m]=70e-6:100e-6", "Positive electrode thickness [m]=65e-6:100e-6"]
FAST_XLA = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
TIGHT = dict(rtol=1e-9, atol=1e-11)  # finite differences need the solve far below their step


@pytest.fixture(scope="module")
def setup():
    p = jaxcell.load_parameters("Chen2020")
    space = design.DesignSpace.create(p, VARY)
    d = default_variation().to_dict()
    d["hierarchy"] = {"modules_per_pack": 1, "cells_per_module": 1}  # every cell its own production lot
    variation = Variation.from_dict(d)
    draws = design.common_draws(p, space, variation, 2, 7)
    model = jaxcell.SPM(n_r_n=8, n_r_p=8)
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
                          jnp.mean(out.capacity)])

    value = jax.jit(both).lower(u0, 5.0).compile(compiler_options=FAST_XLA)
    c_min = value(u0, 5.0)[2]  # the constraint at its steepest: the floor at the sample's mean capacity
    jac = jax.jit(jax.jacrev(both)).lower(u0, c_min).compile(compiler_options=FAST_XLA)(u0, c_min)
    h = 1e-4
    for i in range(2):
        e = jnp.zeros(2).at[i].set(h)
        fd = (value(u0 + e, c_min) - value(u0 - e, c_min)) / (2 * h)
        np.testing.assert_allclose(np.asarray(jac[:2, i]), np.asarray(fd[:2]), rtol=2e-4, atol=1e-9)
    assert abs(float(jac[1, 0])) > 1e-2  # the constraint is not flat here: the test can fail


def test_infeasible_capacity_floor_is_reported(setup):
    """A capacity floor no design within the bounds reaches: the result says infeasible."""
    p, space, _, _, model = setup
    res = design.optimise_design(model, p, STEP, space, min_capacity=8.0, max_evaluations=4)
    assert not res.feasible
    assert res.message.startswith("infeasible")
    assert res.capacity < 8.0 and res.constraint > 0
    assert res.evaluations == 4  # the budget is a hard limit
