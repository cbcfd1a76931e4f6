"""Gradients against finite differences, vmap against a loop, compile once, failing cells."""

import jax
import jax.numpy as jnp
import numpy as np
from conftest import FAST_XLA, GRAD_PARAMS, rule_and_jax_gradients

import jaxcell

T_EVAL = np.linspace(0.0, 400.0, 11)  # inside the discharge to 3.85 V (ends near 450 s)


def _with(p, name, value):
    return p.update({name: value})


def test_gradients_match_finite_differences(spme, chen):
    """Reverse-mode derivatives of a voltage-RMSE loss (fixed times) and of the time at which
    the voltage reaches 3.85 V (an event time) against central differences, relative 1e-5; the
    nominal capacity too, which sets the 1C current (its derivative was NaN until the step's
    unset current limit, NaN, stopped being multiplied by it). The derivatives with respect to
    every other parameter of the set come out of the same reverse pass and must be finite."""
    exp = jaxcell.Experiment(["Discharge at 1C until 3.85 V"])
    kw = dict(t_eval=T_EVAL, rtol=1e-10, atol=1e-10)
    target = np.asarray(jaxcell.simulate(spme, chen, exp, **kw).voltage) + 0.01

    def losses(values):
        sol = jaxcell.simulate(spme, chen.update(values), exp, **kw)
        return jnp.stack([jnp.sqrt(jnp.mean((sol.voltage - target) ** 2)), sol.step_end_time[0] / 3600.0])

    names = GRAD_PARAMS + ["Nominal cell capacity [A.h]"]
    theta = {k: chen[k] for k in names}
    jac = jax.jit(jax.jacrev(losses), compiler_options=FAST_XLA)(dict(chen.values))
    bad = [k for k, v in jac.items() if not np.all(np.isfinite(v))]
    assert len(jac) == 72 and not bad, bad
    f = jax.jit(losses, compiler_options=FAST_XLA)
    for k in names:
        h = 1e-4 * float(theta[k])
        fd = (f({**theta, k: theta[k] + h}) - f({**theta, k: theta[k] - h})) / (2 * h)
        ad = np.asarray(jac[k])
        np.testing.assert_allclose(ad, fd, rtol=1e-5, atol=0, err_msg=k)
        assert np.all(np.abs(ad) > 0), k


def test_vmap_equals_loop_and_one_compile(spm, chen):
    """A batched ParameterSet runs in one compiled call and gives what one-by-one calls give;
    new parameter values reuse the compiled solve."""
    exp = jaxcell.Experiment(["Discharge at 1C until 3.0 V"])
    thicknesses = [70e-6, 85.2e-6, 95e-6]
    cells = [chen.update({"Negative electrode thickness [m]": L, "Positive particle radius [m]": R})
             for L, R in zip(thicknesses, [5e-6, 5.22e-6, 6e-6])]
    singles = [jaxcell.simulate(spm, c, exp) for c in cells]

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: compiles.append(event) if event == "/jax/core/compile/backend_compile_duration" else None
    )
    before = len(compiles)
    jaxcell.simulate(spm, chen.update({"Negative electrode porosity": 0.2}), exp)
    jaxcell.simulate(spm, cells[0], jaxcell.Experiment(["Discharge at 2C until 3.2 V"]))
    assert len(compiles) == before, "new parameter or protocol values must not recompile"

    batch = jaxcell.stack(cells)
    sols = jax.vmap(lambda q: jaxcell.simulate(spm, q, exp))(batch)
    assert sols.voltage.shape == (3,) + singles[0].voltage.shape
    for k, s in enumerate(singles):
        np.testing.assert_allclose(sols.voltage[k], s.voltage, rtol=1e-9)
        np.testing.assert_allclose(sols.step_end_time[k], s.step_end_time, rtol=1e-9)
    assert len(set(np.round(np.asarray(sols.step_end_time[:, 0]), 3))) == 3


def test_failing_cell_does_not_touch_neighbours(spm, chen):
    """One impossible cell (particles that cannot take lithium in: diffusivity 1e-30) reaches
    its voltage limit at once (its surface fills, and the open-circuit potential is steep at
    the stoichiometry limit, as PyBaMM's) with almost no charge; every cell, that one too,
    matches its individual solve exactly."""
    exp = jaxcell.Experiment(["Discharge at 1C until 3.0 V"])
    cells = [chen, chen.update({"Positive particle diffusivity [m2.s-1]": 1e-30}),
             chen.update({"Negative electrode thickness [m]": 70e-6})]
    sols = jax.vmap(lambda q: jaxcell.simulate(spm, q, exp))(jaxcell.stack(cells))
    assert np.all(np.isfinite(np.asarray(sols.voltage)))
    for k, c in enumerate(cells):
        s = jaxcell.simulate(spm, c, exp)
        assert int(sols.status[k]) == int(s.status) == jaxcell.Status.COMPLETED
        np.testing.assert_allclose(sols.voltage[k], s.voltage, rtol=1e-9)
        np.testing.assert_allclose(float(sols.capacity[k]), float(s.capacity), rtol=1e-9)
    assert float(sols.capacity[1]) < 0.2 * float(sols.capacity[0])
    assert float(sols.step_end_time[1, 0]) < 0.2 * float(sols.step_end_time[0, 0])


def test_lost_lithium_is_a_failure_not_a_result(spm, chen):
    """Particles far too small (radius 1e-16 m: a diffusion time of 1e-19 s) make the linear
    solves lose all precision and the positive electrode stops taking in lithium; the cell used
    to come out COMPLETED with more capacity than it holds (5.08 against 4.98 A.h at the
    fast-diffusion limit, radius 1e-8 m). Lithium conservation is checked at the end of every
    solve: such a cell is NOT_CONSERVED and not delivered; its neighbours are untouched. The
    dense linear solve loses the lithium; the SPM's default banded solve fails to step there
    instead (MAX_STEPS): not delivered either."""
    from jaxcell.solvers import DenseSolve, Rodas4

    exp = jaxcell.Experiment(["Discharge at 1C until 3.0 V"])  # the compiled solve of the test above
    name = "Positive particle radius [m]"
    cells = [chen.update({name: 1e-8}), chen.update({name: 1e-16}), chen]
    default = jax.vmap(lambda q: jaxcell.simulate(spm, q, exp))(jaxcell.stack(cells))
    assert not bool(default.delivered[1]) and bool(default.delivered[0]) and bool(default.delivered[2])
    sols = jax.vmap(lambda q: jaxcell.simulate(spm, q, exp, solver=Rodas4(DenseSolve())))(jaxcell.stack(cells))
    assert list(np.asarray(sols.status)) == [jaxcell.Status.COMPLETED, jaxcell.Status.NOT_CONSERVED, jaxcell.Status.COMPLETED]
    assert list(np.asarray(sols.delivered)) == [True, False, True] and not bool(sols.success[1])
    assert "lithium does not match the charge passed" in sols.message[1]
    for k in (0, 2):  # sound cells: each electrode's lithium follows the charge to 1e-9
        y0, y1 = spm.initial_state(cells[k]), sols.final_state[k]
        (n0, p0), (n1, p1) = spm.particle_charge(y0, cells[k]), spm.particle_charge(y1, cells[k])
        np.testing.assert_allclose([float(n0 - n1), float(p1 - p0)], float(sols.net_charge[k]), rtol=1e-9)


def test_forward_mode(spm, chen):
    """Forward mode (jax.jvp with diffrax.ForwardMode) through an event time, against central
    differences; its second derivative, forward over forward (`jax.jacfwd` twice: through the
    event's root find, the stages' linear solves and the Jacobian), against central differences
    of the first."""
    import diffrax

    name = "Positive particle radius [m]"

    def t_cut(R):
        sol = jaxcell.simulate(spm, chen.update({name: R}), "Discharge at 2C until 3.6 V", rtol=1e-10, atol=1e-10,
                               adjoint=diffrax.ForwardMode())
        return sol.step_end_time[0]

    R = chen[name]
    first = jax.jit(lambda r: jax.jvp(t_cut, (r,), (jnp.ones_like(r),)))
    _, tangent = first(R)
    h = 1e-4 * float(R)
    up, down = first(R + h), first(R - h)
    np.testing.assert_allclose(tangent, (up[0] - down[0]) / (2 * h), rtol=1e-5)
    assert abs(float(tangent)) > 0
    second = jax.jit(jax.jacfwd(jax.jacfwd(t_cut)))(R)
    np.testing.assert_allclose(second, (up[1] - down[1]) / (2 * h), rtol=1e-5)
    assert abs(float(second)) > 0


def test_vmapped_gradients_equal_one_by_one(spm, chen):
    """Reverse mode under `vmap` (Rodas4's stage rule batched over cells, with a voltage hold
    whose current depends on the state) gives each cell's own gradient: the one it gets in a batch
    of copies of itself, where every step is its own and lockstep has nothing to mask (a finished
    cell's masked steps once made the second cell's gradient NaN). And that gradient against
    central differences, relative 1e-5: through the hold the current is Newton's root of the held
    voltage, differentiated implicitly (`simulate._solve_current`), in the stages' reverse rule
    to second order. One compiled program gives it all (values and gradients of two cells)."""
    exp = jaxcell.Experiment(["Discharge at 1C for 5 minutes", "Hold at 3.9 V for 5 minutes"])
    names = ["Negative electrode thickness [m]", "Positive particle radius [m]"]

    def loss(values):
        sol = jaxcell.simulate(spm, chen.update(values), exp, t_eval=np.linspace(0.0, 600.0, 13), rtol=1e-10, atol=1e-12)
        return jnp.mean(sol.voltage * sol.current)

    cells = {names[0]: jnp.array([75e-6, 90e-6]), names[1]: jnp.array([5.0e-6, 5.6e-6])}
    value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(loss)), compiler_options=FAST_XLA)
    _, batched = value_and_grad(cells)
    for i in range(2):
        _, g = value_and_grad({k: jnp.stack([v[i], v[i]]) for k, v in cells.items()})
        for k in names:
            assert float(jnp.abs(g[k][0])) > 0 and g[k][0] == g[k][1], k
            np.testing.assert_allclose(batched[k][i], g[k][0], rtol=1e-10, err_msg=k)
    for k in names:  # the first cell, moved up and down in one batch
        h = 1e-4 * float(cells[k][0])
        moved = {n: cells[n][0] + (jnp.array([h, -h]) if n == k else jnp.zeros(2)) for n in names}
        values, _ = value_and_grad(moved)
        np.testing.assert_allclose(batched[k][0], (values[0] - values[1]) / (2 * h), rtol=1e-5, err_msg=k)


def test_reverse_rule_through_drive_cycle_equals_jax_derivative(chen):
    """Rodas4's reverse-mode rule through a whole protocol, a CC step then a drive cycle (a
    current interpolated in time: df/dt and its derivatives come from the interpolation; the
    control mode switches inside the compiled protocol), against JAX's derivative of the same
    stages (`reverse_rule=False`), relative 1e-10. Lumped SPM, dense solve; the step-level test
    in tests/test_dfn.py covers the structured solve and a current that depends on the state.
    At the default tolerances: at rtol 1e-8 JAX's derivative of this protocol moves by about
    1e-6 relative when the thickness moves by 1e-13, the rule's by 1e-10. A CC step ended by an
    event instead (until 3.9 V) makes both scatter by about 5e-7 (docs/dfn.md)."""
    from jaxcell.simulate import default_adjoint
    from jaxcell.solvers import DenseSolve, Rodas4

    model = jaxcell.SPM(thermal="lumped")
    tc = np.linspace(0.0, 180.0, 19)
    exp = jaxcell.Experiment(["Discharge at 1C for 5 minutes", jaxcell.DriveCycle(tc, 5.0 * np.sin(tc / 20.0) + 2.0)])
    t_eval = np.linspace(0.0, 470.0, 48)
    theta = {k: jnp.asarray(chen[k]) for k in GRAD_PARAMS}

    def loss(rule, values):
        # reverse mode asked for: by default `simulate` differentiates drive cycles in forward mode
        sol = jaxcell.simulate(model, chen.update(values), exp, t_eval=t_eval, solver=Rodas4(DenseSolve(), reverse_rule=rule),
                               adjoint=default_adjoint())
        return jnp.sum(sol.voltage**2) + jnp.sum(sol.temperature)

    ours, jaxs = (fn(theta) for fn in rule_and_jax_gradients(loss, theta))
    moved = 0
    for k in GRAD_PARAMS:
        a, b = float(ours[k]), float(jaxs[k])
        assert np.isfinite(a) and abs(a - b) <= 1e-10 * abs(b), (k, a, b)
        moved += b != 0.0
    assert moved >= 4  # (the positive porosity does not enter the SPM's voltage)
