"""Ground truth without a peer: conservation, equilibrium, convergence order."""

import jax
import jax.numpy as jnp
import numpy as np

import jaxcell
from jaxcell import mesh
from jaxcell.physics.constants import F


def lithium_in_particles(model, y, p):
    """Moles of lithium in each electrode's particles."""
    c_n, c_p, _ = model.split(y)
    out = []
    for domain, c in (("negative", c_n), ("positive", c_p)):
        D = domain.capitalize()
        w = mesh.sphere_volume_weights(c.shape[0], 1.0)
        solid_volume = (p[f"{D} electrode active material volume fraction"] * p[f"{D} electrode thickness [m]"]
                        * jaxcell.physics.cell.electrode_area(p))
        out.append(float(jnp.sum(w * c) * solid_volume))
    return out


def test_lithium_conservation(spme, chen):
    """Lithium leaves the negative particles exactly as fast as charge passes (Q F), the total
    in the particles is constant, and the electrolyte keeps its lithium: to 1e-9 relative."""
    exp = jaxcell.Experiment(["Discharge at 2C for 15 minutes", "Rest for 5 minutes", "Charge at 1C for 10 minutes"])
    sol = jaxcell.simulate(spme, chen, exp)
    y0 = spme.initial_state(chen)
    y1 = sol.final_state
    (n0, p0), (n1, p1) = lithium_in_particles(spme, y0, chen), lithium_in_particles(spme, y1, chen)
    q = float(np.asarray(sol.discharge_capacity)[-1])  # net A.h discharged
    assert abs(q - (10 * 0.25 - 5 * 10 / 60)) < 1e-9  # 2.5 A.h out, 0.833 A.h back in
    assert abs((n0 - n1) - q * 3600 / F) < 1e-9 * n0
    assert abs((n0 + p0) - (n1 + p1)) < 1e-9 * (n0 + p0)
    dx, eps, _ = spme._x_mesh(chen)
    ce0, ce1 = spme.split_electrolyte(y0), spme.split_electrolyte(y1)
    assert abs(float(jnp.sum(eps * dx * (ce1 - ce0)))) < 1e-9 * float(jnp.sum(eps * dx * ce0))
    assert float(jnp.max(jnp.abs(ce1 - ce0))) > 1.0  # the electrolyte did move


def test_rest_keeps_open_circuit_voltage(spme, chen):
    """At zero current from a uniform state nothing moves: V stays the OCV of the initial
    stoichiometries, computed independently from the OCP functions."""
    sol = jaxcell.simulate(spme, chen, "Rest for 1 hour")
    sto_n = chen["Initial concentration in negative electrode [mol.m-3]"] / chen["Maximum concentration in negative electrode [mol.m-3]"]
    sto_p = chen["Initial concentration in positive electrode [mol.m-3]"] / chen["Maximum concentration in positive electrode [mol.m-3]"]
    ocv = float(chen.evaluate("Positive electrode OCP [V]", sto_p) - chen.evaluate("Negative electrode OCP [V]", sto_n))
    np.testing.assert_allclose(np.asarray(sol.voltage), ocv, atol=1e-12)
    assert int(sol.step_end[0]) == jaxcell.StepEnd.DURATION
    np.testing.assert_allclose(sol.final_state, spme.initial_state(chen), rtol=0, atol=1e-9)


def _quasi_steady_error(n, stretch=None, R=5e-6, D=1e-14, N=1e-5):
    """Under a constant outward surface flux N the profile settles to
    c(r) = c_mean - (3 N / R) t - (N R / D) (r^2 / (2 R^2) - 3/10), uniform dc/dt = -3N/R.
    Solve the discrete quasi-steady problem A c + b = -3N/R (zero mean deviation) and return
    the max node error and the surface-value error against that profile. `stretch`: the DFN's
    explicit shells (`mesh.shell_edges`; nodes where `mesh.shell_nodes` puts them, the
    centroids of stretched shells); None: uniform shells with nodes at their midpoints (the
    SPM/SPMe, PyBaMM's discretisation)."""
    edges = None if stretch is None else mesh.shell_edges(n, stretch)
    op = lambda c: mesh.spherical_diffusion(c, D, jnp.asarray(N), jnp.asarray(R), edges)  # noqa: E731
    b = op(jnp.zeros(n))
    A = jax.jacfwd(op)(jnp.zeros(n))  # the operator is affine: op(c) = A c + b
    w = mesh.sphere_volume_weights(n, 1.0, edges)
    # [A; w] c = [-3N/R - b; 0]  (least squares with the mean fixed)
    M = jnp.vstack([A, w[None, :]])
    rhs = jnp.concatenate([-3 * N / R - b, jnp.zeros(1)])
    c = jnp.linalg.lstsq(M, rhs)[0]
    exact = lambda r: -(N * R / D) * (r**2 / (2 * R**2) - 3 / 10)  # noqa: E731
    # FV unknowns are shell averages: compare with the exact average of the profile per shell
    r = R * (np.linspace(0.0, 1.0, n + 1) if edges is None else edges)
    shell_avg = -(N * R / D) * ((r[1:] ** 5 - r[:-1] ** 5) / (10 * R**2) * 3 / (r[1:] ** 3 - r[:-1] ** 3) - 3 / 10)
    return float(jnp.max(jnp.abs(c - shell_avg))), float(abs(mesh.surface_value(c, edges) - exact(R)))


def test_particle_discretisation_converges_second_order():
    ns = [10, 20, 40, 80]
    errs = np.array([_quasi_steady_error(n) for n in ns])
    orders = np.log2(errs[:-1] / errs[1:])
    # node values (shell averages) and the extrapolated surface value both converge as dr^2
    assert np.all(orders[:, 0] > 1.8), orders
    assert np.all(orders[:, 1] > 1.8), orders
    assert errs[-1, 1] < 1e-3 * (1e-5 * 5e-6 / 1e-14)  # small against the profile's depth N R / D


def test_stretched_shells_surface_value():
    """The DFN's stretched shells (`r_stretch` 4, nodes at the shells' centroids): the surface
    value converges at second order, and on 20 shells it is within 1e-4 of the profile's depth
    N R / D (measured 6e-5; with the nodes at the shells' midpoints it was 3.5e-4)."""
    ns = [10, 20, 40, 80]
    errs = np.array([_quasi_steady_error(n, stretch=4.0) for n in ns])
    orders = np.log2(errs[:-1] / errs[1:])
    assert np.all(orders[:, 1] > 1.8), orders
    assert np.all(np.diff(errs[:, 0]) < 0) and orders[-1, 0] > 1.4, orders  # node values: orders 1.1-1.6 measured
    assert errs[1, 1] < 1e-4 * (1e-5 * 5e-6 / 1e-14), errs[1, 1]


def test_arcsinh_equals_numpy_and_has_exact_derivatives():
    """`kinetics.arcsinh` (the overpotential's, faster than XLA's on CPUs) against numpy's over
    |x| from 1e-300 to 1e150 and both signs: within 2 ulp of max(|arcsinh x|, 1) (measured 1;
    below |x| = 0.5 that is 4.4e-16 absolutely, coarse relative to tiny values, which the
    overpotential does not mind); its first and second derivatives (by its rule) are the closed
    forms, also at x = 0."""
    from jaxcell.physics import kinetics

    x = np.concatenate([-np.logspace(-300, 150, 4001), [0.0], np.logspace(-300, 150, 4001)])
    got, want = np.asarray(jax.jit(kinetics.arcsinh)(jnp.asarray(x))), np.arcsinh(x)
    err = np.abs(got - want)
    assert np.all(err <= 2 * np.spacing(np.maximum(np.abs(want), 1.0))), np.max(err)
    d1 = jax.vmap(jax.grad(kinetics.arcsinh))(jnp.asarray(x))
    d2 = jax.vmap(jax.grad(jax.grad(kinetics.arcsinh)))(jnp.asarray(x[np.abs(x) < 1e100]))
    np.testing.assert_allclose(d1, 1.0 / np.sqrt(1.0 + x * x), rtol=1e-15, atol=0.0)
    xs = x[np.abs(x) < 1e100]
    np.testing.assert_allclose(d2, -xs / (1.0 + xs * xs) ** 1.5, rtol=1e-14, atol=1e-300)
    assert float(jax.grad(kinetics.arcsinh)(0.0)) == 1.0


def test_butler_volmer_inverse():
    """overpotential() inverts butler_volmer() (symmetric kinetics, as PyBaMM's default)."""
    from jaxcell.physics import kinetics

    eta = jnp.linspace(-0.3, 0.3, 13)
    j = kinetics.butler_volmer(eta, 2.5, 310.0)
    np.testing.assert_allclose(kinetics.overpotential(j, 2.5, 310.0), eta, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(j[6], 0.0, atol=1e-15)


def test_particle_diffusion_activation_energy_is_an_arrhenius_factor(chen):
    """A set with a constant diffusivity and "... particle diffusion activation energy [J.mol-1]"
    diffuses as the same set with its diffusivity multiplied by exp(E / R (1 / T_ref - 1 / T))
    (computed here by hand): equal to rounding at 310 K, and no change at the reference
    temperature. Marquis2019's diffusivity, a function that applies its own activation energy
    (same name), is not multiplied again."""
    from jaxcell.models._spm import particle_rhs
    from jaxcell.physics.constants import R_GAS

    E = 30e3
    name = "Negative particle diffusion activation energy [J.mol-1]"
    with_E = chen.update({name: E}, check_already_exists=False)
    c = jnp.linspace(0.3, 0.8, 12) * float(chen["Maximum concentration in negative electrode [mol.m-3]"])
    T_ref = float(chen["Reference temperature [K]"])
    for T in (310.0, T_ref):
        factor = np.exp(E / R_GAS * (1 / T_ref - 1 / T))
        scaled = chen.update({"Negative particle diffusivity [m2.s-1]": float(chen["Negative particle diffusivity [m2.s-1]"]) * factor})
        got, want = (np.asarray(particle_rhs("negative", c, 2.0, T, q)) for q in (with_E, scaled))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
        if T != T_ref:
            assert factor > 1.5 and not np.allclose(got, np.asarray(particle_rhs("negative", c, 2.0, T, chen)))
    marquis = jaxcell.load_parameters("Marquis2019")
    assert name in marquis and "Negative particle diffusivity [m2.s-1]" not in marquis.values
    c = jnp.linspace(0.3, 0.8, 12) * float(marquis["Maximum concentration in negative electrode [mol.m-3]"])
    own = marquis.evaluate("Negative particle diffusivity [m2.s-1]", c / float(marquis["Maximum concentration in negative electrode [mol.m-3]"]), 310.0)
    want = mesh.spherical_diffusion(c, own, 2.0 / F, marquis["Negative particle radius [m]"], None)
    np.testing.assert_allclose(np.asarray(particle_rhs("negative", c, 2.0, 310.0, marquis)), np.asarray(want), rtol=1e-12)
