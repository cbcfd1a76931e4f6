"""`ModalSolve`: the isothermal SPM at constant currents solved exactly in time, against Rodas4
(solution), conservation (lithium), finite differences and forward mode (gradient)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FAST_XLA

import jaxcell
from jaxcell import mesh
from jaxcell._modal import _modes
from jaxcell.simulate import default_solver
from jaxcell.solution import Status, StepEnd

# a voltage limit on discharge and on charge, a rest, a duration, and a cut-off that ends it all
PROTOCOL = ["Discharge at 1C until 3.5 V", "Rest for 10 minutes", "Charge at 0.5C until 4.1 V",
            "Discharge at 2C for 20 minutes", "Discharge at 1C until 3.0 V", "Discharge at 0.5C for 2 hours"]
T_EVAL = np.linspace(0.0, 12_000.0, 121)
PARAMS = ["Negative particle radius [m]", "Positive particle diffusivity [m2.s-1]",
          "Negative electrode active material volume fraction", "Positive electrode thickness [m]",
          "Positive electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]", "Nominal cell capacity [A.h]"]


def test_same_solution_as_rodas4_at_tight_tolerance(spm, chen):
    """The exact solve is the same discrete solution that Rodas4 converges to: through a protocol
    of voltage limits, a rest, durations and a stop at the lower cut-off, with Rodas4 at rtol
    1e-10 the voltages agree to 1e-8 V, the step ends to 1e-5 s, and the charge and energy totals
    (the energy the modal solve's quadrature) to 1e-8 relative; the same steps end the same way."""
    modal = jaxcell.simulate(spm, chen, PROTOCOL, t_eval=T_EVAL)
    ref = jaxcell.simulate(spm, chen, PROTOCOL, t_eval=T_EVAL, solver=default_solver(spm), rtol=1e-10, atol=1e-12)
    assert modal.status == ref.status == Status.LOWER_CUTOFF
    np.testing.assert_array_equal(modal.step_end, ref.step_end)
    assert list(np.asarray(modal.step_end)[:3]) == [StepEnd.VOLTAGE, StepEnd.DURATION, StepEnd.VOLTAGE]
    np.testing.assert_allclose(modal.step_end_time, ref.step_end_time, rtol=0, atol=1e-5)
    reached = np.isfinite(np.asarray(ref.voltage))
    np.testing.assert_array_equal(np.isfinite(np.asarray(modal.voltage)), reached)
    assert reached[0] and not reached[-1]
    np.testing.assert_allclose(modal.voltage[reached], ref.voltage[reached], rtol=0, atol=1e-8)
    np.testing.assert_allclose(modal.step_totals, ref.step_totals, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(modal.final_state, ref.final_state, rtol=1e-9)


def test_a_cut_off_at_a_kink_of_the_voltage(spm, chen):
    """At 3C (from full) and 5C (from half full) the voltage collapses just past the cut-off, where
    the surface stoichiometry reaches its clip (its slope 15-80 times steeper within 0.1 s): the
    event's time is still Rodas4's, to 1e-5 s. Newton's method in the search ended 0.53 s (3C,
    its steps carrying no slope) and 0.17 s (5C) late there."""
    for p, exp in ((chen, "Discharge at 3C until 2.5 V or 20 minutes"),
                   (jaxcell.with_initial_soc(chen, 0.5), "Discharge at 5C until 2.5 V or 20 minutes")):
        modal = jaxcell.simulate(spm, p, exp, t_eval=T_EVAL[:9])
        ref = jaxcell.simulate(spm, p, exp, t_eval=T_EVAL[:9], solver=default_solver(spm), rtol=1e-10, atol=1e-12)
        assert int(modal.step_end[0]) == int(ref.step_end[0]) == StepEnd.VOLTAGE
        np.testing.assert_allclose(modal.step_end_time, ref.step_end_time, rtol=0, atol=1e-5)
        np.testing.assert_allclose(modal.energy, ref.energy, rtol=1e-8)


def test_lithium_is_conserved_exactly(spm, chen):
    """The particles' lithium changes by exactly the charge passed (conservation of the finite
    volumes, kept by the modal solution to round-off): after 1C for 30 minutes the negative
    electrode has lost 0.5 times the nominal capacity and the positive gained it."""
    sol = jaxcell.simulate(spm, chen, "Discharge at 1C for 30 minutes", t_eval=np.linspace(0.0, 1800.0, 5))
    before = spm.particle_charge(spm.initial_state(chen), chen)
    after = spm.particle_charge(sol.final_state, chen)
    q = 0.5 * float(chen["Nominal cell capacity [A.h]"])
    np.testing.assert_allclose(float(before[0] - after[0]), q, rtol=1e-12)
    np.testing.assert_allclose(float(after[1] - before[1]), q, rtol=1e-12)
    np.testing.assert_allclose(float(sol.capacity), q, rtol=1e-14)


def test_the_operator_is_symmetric_in_volume_weights_and_its_modes_reproduce_it(spm):
    """The factorisation behind the solve: W^-1/2 Q L Q^T W^1/2 is the mesh's diffusion operator
    (uniform and stretched shells), with one zero mode (conservation) and the others decaying."""
    for edges in (spm.edges[0], jaxcell.SPM(r_stretch=4.0, n_r_n=10).edges[0]):
        to_modes, from_modes, rates, _ = _modes(tuple(edges))
        A = jax.jacfwd(lambda c, e=edges: mesh.spherical_diffusion(c, 1.0, 0.0, 1.0, e))(jnp.zeros(len(edges) - 1))
        np.testing.assert_allclose(from_modes @ np.diag(rates) @ to_modes, A, rtol=0, atol=1e-9 * np.abs(A).max())
        np.testing.assert_allclose(from_modes @ to_modes, np.eye(len(edges) - 1), atol=1e-12)
        assert abs(rates[-1]) < 1e-9 * abs(rates[0]) and np.all(rates[:-1] < 0)


@pytest.fixture(scope="module")
def gradients(spm, chen):
    """The gradient of a loss of voltages, end times and the energy, in reverse and forward mode."""
    theta = {k: jnp.asarray(chen[k]) for k in PARAMS}
    protocol = PROTOCOL[:4]
    t_eval = np.linspace(0.0, 6500.0, 66)  # all before the protocol's end (6594 s): the loss is smooth

    def loss(values):
        sol = jaxcell.simulate(spm, chen.update(values), protocol, t_eval=t_eval)
        v = jnp.where(jnp.isfinite(sol.voltage), sol.voltage, 0.0)
        return jnp.sum(v**2) + jnp.sum(sol.step_end_time) / 3600.0 + sol.energy

    value = jax.jit(loss, compiler_options=FAST_XLA).lower(theta).compile()
    reverse = jax.jit(jax.grad(loss), compiler_options=FAST_XLA)(theta)
    forward = jax.jit(jax.jacfwd(loss), compiler_options=FAST_XLA)(theta)
    return theta, value, reverse, forward


def test_gradient_matches_finite_differences_and_forward_mode(gradients):
    """No solver loop to differentiate: JAX's own rules through the closed form and the events'
    implicit derivative. Reverse equals forward mode to 1e-10 relative, and both equal central
    differences of the solve to 1e-6 (the closed form has no tolerance to blur them; measured
    2e-8 and better)."""
    theta, value, reverse, forward = gradients
    for k in PARAMS:
        a, b = float(reverse[k]), float(forward[k])
        assert abs(a - b) <= 1e-10 * abs(b), (k, a, b)
        h = 1e-6 * abs(float(theta[k]))  # the truncation error (h^2) of 1e-5 was 2e-6 for the capacity
        fd = (float(value({**theta, k: theta[k] + h})) - float(value({**theta, k: theta[k] - h}))) / (2 * h)
        assert abs(fd - a) <= 1e-6 * abs(fd), (k, a, fd)


def test_where_it_applies_and_where_not(spm, chen):
    """`simulate` picks the exact solve for the isothermal SPM at constant currents and Rodas4
    otherwise; asked for where it does not apply, it says why."""
    from jaxcell._modal import why_not

    exp = jaxcell.Experiment(["Discharge at 1C until 3.5 V", "Rest for 1 hour"])
    assert why_not(spm, chen, exp.modes) is None
    assert "SPMe" in why_not(jaxcell.SPMe(), chen, exp.modes)
    assert "isothermal" in why_not(jaxcell.SPM(thermal="lumped"), chen, exp.modes)
    assert "voltage" in why_not(spm, chen, jaxcell.Experiment(["Hold at 4.0 V for 1 minute"]).modes)
    assert "function of concentration" in why_not(spm, jaxcell.load_parameters("Ecker2015"), exp.modes)
    with pytest.raises(ValueError, match="ModalSolve does not apply here: it solves current, C-rate, rest and drive-cycle steps"):
        jaxcell.simulate(spm, chen, "Discharge at 2 W for 1 minute", solver=jaxcell.ModalSolve())


def test_a_bad_cell_in_a_batch_gets_a_status_and_leaves_its_neighbours_alone(spm, chen):
    """Under vmap, a cell with a negative particle radius gets BAD_PARAMETERS and NaN outputs;
    the others are the cells solved one by one."""
    radius = jnp.asarray([5.86e-6, -1.0, 4e-6])
    t_eval = np.linspace(0.0, 4000.0, 9)
    batch = jax.vmap(lambda r: jaxcell.simulate(spm, chen.update({"Negative particle radius [m]": r}),
                                                "Discharge at 1C until 3.2 V", t_eval=t_eval))(radius)
    assert list(np.asarray(batch.status)) == [Status.COMPLETED, Status.BAD_PARAMETERS, Status.COMPLETED]
    assert np.all(np.isnan(np.asarray(batch.voltage[1])))
    for i in (0, 2):
        one = jaxcell.simulate(spm, chen.update({"Negative particle radius [m]": float(radius[i])}),
                               "Discharge at 1C until 3.2 V", t_eval=t_eval)
        np.testing.assert_allclose(batch.voltage[i], one.voltage, rtol=1e-13, atol=0)


def test_the_spm_reads_its_particles_only_at_their_surfaces(spm, chen):
    """What the event's search and the energy's quadrature rely on: the SPM's voltage and
    stoichiometries (its end conditions) are the same on a state and on the state whose particles
    are uniform at its surface values."""
    rng = np.random.default_rng(0)
    y0 = np.asarray(spm.initial_state(chen))
    n_n, n_p = spm.n_r_n, spm.n_r_p
    for _ in range(3):
        y = y0 * (1.0 + 0.2 * rng.uniform(-1.0, 1.0, y0.shape))
        y[-1] = y0[-1]
        c_n, c_p, _ = spm.split(jnp.asarray(y))
        s_n, s_p = mesh.surface_value(c_n, spm.edges[0]), mesh.surface_value(c_p, spm.edges[1])
        y_s = np.concatenate([np.full(n_n, s_n), np.full(n_p, s_p), y[-1:]])
        for I in (-5.0, 0.0, 10.0):
            np.testing.assert_allclose(spm.voltage(y_s, I, chen), spm.voltage(y, I, chen), rtol=1e-14)
        np.testing.assert_allclose(spm.surface_stoichiometries(y_s, chen), spm.surface_stoichiometries(y, chen),
                                   rtol=1e-14)


# drive cycles: a current that changes sign inside segments, a rest between, and a cycle that the
# lower cut-off stops inside one of its segments
_TC = np.linspace(0.0, 600.0, 13)
_TD = np.linspace(0.0, 4000.0, 81)
DRIVE = ["Discharge at 1C for 30 minutes", jaxcell.DriveCycle(_TC, 6.0 * np.cos(_TC / 60.0)), "Rest for 2 minutes",
         jaxcell.DriveCycle(_TD, 8.0 + 3.0 * np.sin(_TD / 100.0))]
DRIVE_T_EVAL = np.linspace(0.0, 3600.0, 121)


def test_drive_cycles_same_solution_as_rodas4(spm, chen):
    """Under a drive cycle the current is linear in time between breakpoints, and each segment is
    solved exactly from the last one's end (a phi2 term for the slope): through a constant
    current, a cycle whose current changes sign inside its segments, a rest, and a cycle the
    lower cut-off stops, the same as Rodas4 at rtol 1e-10 (voltages 1e-8 V, end times 1e-5 s,
    charge and energy totals 1e-8 relative, measured 2e-11 and better)."""
    modal = jaxcell.simulate(spm, chen, DRIVE, t_eval=DRIVE_T_EVAL)
    ref = jaxcell.simulate(spm, chen, DRIVE, t_eval=DRIVE_T_EVAL, solver=default_solver(spm), rtol=1e-10, atol=1e-12)
    assert modal.status == ref.status == Status.LOWER_CUTOFF
    np.testing.assert_array_equal(modal.step_end, ref.step_end)
    np.testing.assert_allclose(modal.step_end_time, ref.step_end_time, rtol=0, atol=1e-5)
    reached = np.isfinite(np.asarray(ref.voltage))
    np.testing.assert_array_equal(np.isfinite(np.asarray(modal.voltage)), reached)
    np.testing.assert_allclose(modal.voltage[reached], ref.voltage[reached], rtol=0, atol=1e-8)
    np.testing.assert_allclose(modal.step_totals, ref.step_totals, rtol=1e-8, atol=1e-12)
    assert float(modal.charged_capacity) > 0 and float(modal.charged_energy) > 0  # the first cycle charges too
    np.testing.assert_allclose(modal.final_state, ref.final_state, rtol=1e-9)


def test_drive_cycle_gradient_matches_finite_differences(spm, chen):
    """Through drive cycles too the gradient is JAX's reverse mode through the closed form, with no
    forward-mode detour (Rodas4 through a drive cycle is differentiated in forward mode): equal
    to central differences to 1e-6 relative, the energy's quadrature and the cut-off's time
    included."""
    names = PARAMS[:2] + PARAMS[-1:]
    theta = {k: jnp.asarray(chen[k]) for k in names}

    def loss(values):
        sol = jaxcell.simulate(spm, chen.update(values), DRIVE, t_eval=DRIVE_T_EVAL)
        v = jnp.where(jnp.isfinite(sol.voltage), sol.voltage, 0.0)
        return jnp.sum(v**2) + sol.step_end_time[-1] / 3600.0 + sol.energy

    value_and_grad = jax.jit(jax.value_and_grad(loss), compiler_options=FAST_XLA)
    reverse = value_and_grad(theta)[1]
    for k in names:
        a = float(reverse[k])
        h = 1e-6 * abs(float(theta[k]))
        value = lambda v: value_and_grad(v)[0]
        fd = (float(value({**theta, k: theta[k] + h})) - float(value({**theta, k: theta[k] - h}))) / (2 * h)
        assert abs(fd - a) <= 1e-6 * abs(fd), (k, a, fd)
