"""`ScanAdjoint`: the adaptive solve as a scan, against diffrax's loop (solution) and forward mode (gradient)."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FAST_XLA, GRAD_PARAMS

import jaxcell
from jaxcell.solution import Status
from jaxcell.solvers import BandedSolve, Rodas4

TC = np.linspace(0.0, 180.0, 19)
# every kind of end: a voltage limit, a duration, a drive cycle's breakpoints, a held voltage's current limit
PROTOCOL = ["Discharge at 1C until 3.6 V", "Rest for 5 minutes", jaxcell.DriveCycle(TC, 5.0 * np.sin(TC / 20.0) + 2.0),
            "Hold at 3.9 V until 1 A"]
T_EVAL = np.linspace(0.0, 4000.0, 81)
KW = dict(t_eval=T_EVAL, rtol=1e-8, atol=1e-10)


def _loss(sol):
    """Voltages at fixed times (some in the hold, whose end moves), every step's end time and the energy."""
    v = jnp.where(jnp.isfinite(sol.voltage), sol.voltage, 0.0)
    return jnp.sum(v**2) + jnp.sum(sol.step_end_time) / 3600.0 + sol.energy, sol


def test_same_solution_and_gradient_as_forward_mode(spm, chen):
    """Through a protocol with every kind of step end (voltage limit, duration, a drive cycle,
    current limit of a held voltage), `ScanAdjoint` gives diffrax's loop's solution (same steps;
    only the events' roots differ: diffrax's root find stops within 1e-9 of the condition, a
    microsecond at a slowly moving voltage, the scan's bisection at the last bit. End times to
    1e-6 s, outputs to 1e-8 V, measured 1.5e-9 V). Its reverse-mode gradient is the derivative of
    its own discrete solution: forward mode through the same scan (JAX's derivative of the
    stages) agrees to 1e-10 (measured 1e-13). Against forward mode through diffrax's loop (how
    `simulate` differentiates a drive cycle when no adjoint is given) 1e-6: the roots' difference
    moves the end times' derivatives by about 1e-8, and the drive cycle, which starts at an event
    time, turns its start's derivative into voltages that move with the current (measured 1.6e-7;
    1e-12 for the same protocol without the drive cycle).

    The drive cycle's start carries a derivative: solved with that start inside its times,
    reverse mode's derivative through the cycle was rounding (-6.5e6 and 1.3e8 with and without
    Rodas4's rule, against 1.29e5); each step is now solved in time held without derivative, the
    start's derivative added back."""
    theta = {k: jnp.asarray(chen[k]) for k in GRAD_PARAMS}

    def loss(values, adjoint, **kw):
        return _loss(jaxcell.simulate(spm, chen.update(values), PROTOCOL, adjoint=adjoint, **KW, **kw))

    scan = jax.jit(jax.value_and_grad(lambda v: loss(v, jaxcell.ScanAdjoint()), has_aux=True),
                   compiler_options=FAST_XLA)
    (value, sol), grad = scan(theta)
    ref = jaxcell.simulate(spm, chen, PROTOCOL, **KW)
    assert ref.status == sol.status == Status.COMPLETED
    np.testing.assert_array_equal(sol.step_end, ref.step_end)
    np.testing.assert_allclose(sol.step_end_time, ref.step_end_time, rtol=0, atol=1e-6)
    np.testing.assert_allclose(sol.voltage, ref.voltage, rtol=0, atol=1e-8)
    np.testing.assert_allclose(sol.capacity, ref.capacity, rtol=1e-10)
    assert np.isnan(ref.voltage[-1]) and np.isfinite(ref.voltage[0])  # the hold ends before the last output time

    no_rule = Rodas4(BandedSolve(spm.jacobian_pattern), reverse_rule=False)
    own = jax.jit(jax.jacfwd(lambda v: loss(v, jaxcell.ScanAdjoint(), solver=no_rule)[0]), compiler_options=FAST_XLA)
    loop = jax.jit(jax.jacfwd(lambda v: loss(v, diffrax.ForwardMode())[0]), compiler_options=FAST_XLA)
    for forward, rtol in ((own(theta), 1e-10), (loop(theta), 1e-6)):
        moved = 0
        for k in GRAD_PARAMS:
            a, b = float(grad[k]), float(forward[k])
            assert np.isfinite(a) and abs(a - b) <= rtol * abs(b), (k, a, b, rtol)
            moved += b != 0.0
        assert moved >= 4  # (the positive porosity does not enter the SPM's voltage)


def test_too_few_steps_is_a_status_with_a_finite_gradient(spm, chen):
    """A step that needs more attempts than `max_steps` ends as diffrax's loop does at its own
    bound: Status.MAX_STEPS, outputs up to where it stopped, and a finite gradient."""
    theta = {k: jnp.asarray(chen[k]) for k in GRAD_PARAMS}

    def loss(values):
        # (Rodas4 named: for this constant-current SPM `simulate` would take the exact `ModalSolve`)
        return _loss(jaxcell.simulate(spm, chen.update(values), "Discharge at 1C until 3.0 V", t_eval=T_EVAL,
                                      solver=Rodas4(BandedSolve(spm.jacobian_pattern)),
                                      adjoint=jaxcell.ScanAdjoint(max_steps=6)))

    (_, sol), grad = jax.jit(jax.value_and_grad(loss, has_aux=True), compiler_options=FAST_XLA)(theta)
    assert sol.status == Status.MAX_STEPS
    reached = np.isfinite(np.asarray(sol.voltage))
    assert reached[0] and not reached[-1]
    assert all(np.isfinite(float(g)) for g in grad.values())


def test_bad_settings_are_refused(spm, chen):
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        jaxcell.ScanAdjoint(max_steps=0)
    with pytest.raises(ValueError, match="ScanAdjoint steps with Rodas4"):
        jaxcell.simulate(spm, chen, "Rest for 1 minute", solver=diffrax.Kvaerno5(), adjoint=jaxcell.ScanAdjoint())
