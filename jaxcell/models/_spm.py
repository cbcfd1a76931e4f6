"""Single particle models: SPM and SPMe (PyBaMM's formulation, term for term)."""

import equinox as eqx
import jax.numpy as jnp

from .. import mesh
from ..parameters._functions import arrhenius
from ..physics import cell, kinetics, transport
from ..physics.constants import F, R_GAS
from ._base import AbstractCellModel


def _check_sizes(**sizes):
    for name, n in sizes.items():
        if not isinstance(n, int) or n < 3:
            raise ValueError(f"{name} must be an integer >= 3 (finite volumes), got {n!r}.")


def _check_stretch(r_stretch):
    if isinstance(r_stretch, bool) or not (isinstance(r_stretch, (int, float)) and 1.0 <= r_stretch <= 100.0):
        raise ValueError(f"r_stretch must be a number in [1, 100] (1 = uniform shells), got {r_stretch!r}.")


def particle_edges(model):
    """Shell edges r / R of the (negative, positive) particles of `model` (`n_r_n`, `n_r_p`,
    `r_stretch`; `mesh.shell_edges`)."""
    return mesh.shell_edges(model.n_r_n, model.r_stretch), mesh.shell_edges(model.n_r_p, model.r_stretch)


def particle_rhs(domain, c, j, T, p, edges=None):
    """dc/dt in the particles of one electrode for interfacial current density `j` [A.m-2]
    (positive = delithiation), with the set's diffusivity D(sto, T); `edges` are the shell
    edges r / R (default uniform). Where the diffusivity is a constant and the set has "<Domain>
    particle diffusion activation energy [J.mol-1]" (PyBaMM's name; Chen2020 has none), D is
    multiplied by the Arrhenius factor exp(E / R (1 / T_ref - 1 / T)) at the set's reference
    temperature; a diffusivity given as a function (Marquis2019's) applies its own."""
    c_max = p[f"Maximum concentration in {domain} electrode [mol.m-3]"]
    diffusivity = particle_diffusivity(domain, c / c_max, T, p)
    return mesh.spherical_diffusion(c, diffusivity, j / F, p[f"{domain.capitalize()} particle radius [m]"], edges)


def particle_diffusivity(domain, sto, T, p):
    """The particles' diffusivity D(sto, T) [m2.s-1] of one electrode (`particle_rhs`)."""
    D = domain.capitalize()
    name = f"{D} particle diffusivity [m2.s-1]"
    diffusivity = p.evaluate(name, sto, T)
    activation = f"{D} particle diffusion activation energy [J.mol-1]"
    if activation in p and name in p.values:
        diffusivity = diffusivity * arrhenius(p[activation], T, p["Reference temperature [K]"])
    return diffusivity


def _solid_charge(domain, mean_concentration, p):
    """Lithium [A.h] in an electrode's particles whose volume-averaged concentration over the
    electrode is `mean_concentration` [mol.m-3]."""
    D = domain.capitalize()
    volume = p[f"{D} electrode active material volume fraction"] * p[f"{D} electrode thickness [m]"] * cell.electrode_area(p)
    return mean_concentration * volume * F / 3600.0


def exchange_current(domain, c_e, c_surf, T, p):
    """Exchange-current density [A.m-2] with the surface stoichiometry kept inside (0, 1)."""
    D = domain.capitalize()
    c_max = p[f"Maximum concentration in {domain} electrode [mol.m-3]"]
    c_s = cell.clip_stoichiometry(c_surf / c_max) * c_max
    return p.evaluate(f"{D} electrode exchange-current density [A.m-2]", c_e, c_s, c_max, T)


REGIONS = ("Negative electrode", "Separator", "Positive electrode")


def x_volumes(transport_efficiency, sizes, p):
    """Finite volumes across the cell, `sizes` = volumes in (negative electrode, separator,
    positive electrode): widths dx [m], porosity and the electrolyte's transport efficiency at
    every node (SPMe and DFN)."""
    dx, eps, tor = [], [], []
    for name, n in zip(REGIONS, sizes):
        e = p[f"{name} porosity"]
        dx.append(jnp.full(n, p[f"{name} thickness [m]"] / n))
        eps.append(jnp.full(n, e))
        tor.append(jnp.full(n, transport.efficiency(transport_efficiency, name, "electrolyte", e, p)))
    return jnp.concatenate(dx), jnp.concatenate(eps), jnp.concatenate(tor)


def solid_conductivity(transport_efficiency, domain, T, p):
    """Effective electronic conductivity [S/m] of an electrode's solid (SPMe and DFN)."""
    D = domain.capitalize()
    return p.evaluate(f"{D} electrode conductivity [S.m-1]", T) * transport.efficiency(
        transport_efficiency, f"{D} electrode", "electrode", 1.0 - p[f"{D} electrode porosity"], p
    )


def uniform_interfacial_current(domain, i_app, p):
    """x-averaged interfacial current density j [A.m-2] of an electrode carrying `i_app`
    [A.m-2]: i_app / (a L) in the negative, -i_app / (a L) in the positive."""
    D = domain.capitalize()
    sign = 1.0 if domain == "negative" else -1.0
    return sign * i_app / (cell.surface_area_per_volume(domain, p) * p[f"{D} electrode thickness [m]"])


class SPM(AbstractCellModel):
    """Single Particle Model: one representative particle per electrode, uniform electrolyte.

    State: particle concentrations [mol.m-3] on `n_r_n` and `n_r_p` spherical finite volumes,
    then the cell temperature [K]. Voltage from the inverse Butler-Volmer law (PyBaMM's SPM).

    The shells are uniform by default (`r_stretch=1`, PyBaMM's discretisation, node for node).
    `r_stretch > 1` makes them thinner towards the surface, the outermost `r_stretch` times
    thinner than the innermost, with nodes at the shells' volume centroids as in the `DFN`:
    fewer shells for the same accuracy (with 10 shells at `r_stretch=4` a 1C Chen2020 discharge
    is about as close to a converged solution as with 20 uniform shells; benchmarks/README.md).

    Example:
        >>> sol = jaxcell.simulate(jaxcell.SPM(), jaxcell.load_parameters("Chen2020"),
        ...                        jaxcell.Experiment(["Discharge at 1C until 2.5 V"]))
    """

    thermal: str = eqx.field(static=True, default="isothermal")
    n_r_n: int = eqx.field(static=True, default=20)
    n_r_p: int = eqx.field(static=True, default=20)
    r_stretch: float = eqx.field(static=True, default=1.0)
    rhs_reads_time = False  # time enters through the current only (SPM, SPMe)

    def __check_init__(self):
        _check_sizes(n_r_n=self.n_r_n, n_r_p=self.n_r_p)
        _check_stretch(self.r_stretch)

    @property
    def edges(self):
        """Shell edges r / R of the (negative, positive) particles (`particle_edges`)."""
        return particle_edges(self)

    # -- state layout --------------------------------------------------------------------------
    def split(self, y):
        """(c_n, c_p, T) views of the state."""
        return y[: self.n_r_n], y[self.n_r_n : self.n_r_n + self.n_r_p], y[-1]

    def _initial_particles_and_T(self, p):
        c_n = jnp.full(self.n_r_n, p["Initial concentration in negative electrode [mol.m-3]"])
        c_p = jnp.full(self.n_r_p, p["Initial concentration in positive electrode [mol.m-3]"])
        T0 = p["Initial temperature [K]"] if self.thermal == "lumped" else p["Ambient temperature [K]"]
        return c_n, c_p, jnp.reshape(T0, (1,))

    def initial_state(self, p):
        c_n, c_p, T = self._initial_particles_and_T(p)
        return jnp.concatenate([c_n, c_p, T])

    @property
    def jacobian_pattern(self):
        """The sparsity of `rhs` at fixed current, for `jaxcell.solvers.BandedSolve`: runs of the
        state whose unknowns couple only to their neighbours in the run (each particle's shells)
        besides the temperature; the temperature's position; whether it evolves."""
        n_p = self.n_r_n + self.n_r_p
        return ((0, self.n_r_n), (self.n_r_n, n_p)), n_p, self.thermal != "isothermal"

    def particle_charge(self, y, p):
        c_n, c_p, _ = self.split(y)
        return tuple(
            _solid_charge(domain, jnp.sum(mesh.sphere_volume_weights(c.shape[0], 1.0, edges) * c), p)
            for domain, c, edges in (("negative", c_n, self.edges[0]), ("positive", c_p, self.edges[1]))
        )

    def surface_stoichiometries(self, y, p):
        c_n, c_p, _ = self.split(y)
        return (
            mesh.surface_value(c_n, self.edges[0]) / p["Maximum concentration in negative electrode [mol.m-3]"],
            mesh.surface_value(c_p, self.edges[1]) / p["Maximum concentration in positive electrode [mol.m-3]"],
        )

    # -- physics -------------------------------------------------------------------------------
    def _electrolyte_terms(self, y, i_app, p):
        """Reaction overpotentials (negative, positive) and electrolyte/solid losses [V]."""
        c_n, c_p, T = self.split(y)
        c_e = p["Initial concentration in electrolyte [mol.m-3]"]
        eta = []
        for domain, c, edges in (("negative", c_n, self.edges[0]), ("positive", c_p, self.edges[1])):
            j = uniform_interfacial_current(domain, i_app, p)
            j0 = exchange_current(domain, c_e, mesh.surface_value(c, edges), T, p)
            eta.append(kinetics.overpotential(j, j0, T))
        return eta[0], eta[1], 0.0

    def _voltages(self, y, current, p):
        """(surface open-circuit voltage, electrochemical voltage without contact resistance)."""
        i_app = cell.current_density(current, p)
        eta_n, eta_p, losses = self._electrolyte_terms(y, i_app, p)
        ocv = self.open_circuit_voltage(y, p)
        return ocv, ocv + eta_p - eta_n + losses

    def voltage(self, y, current, p):
        return self._voltages(y, current, p)[1] - current * p.get("Contact resistance [Ohm]", 0.0)

    def heat_per_area(self, y, current, p):
        """Electrochemical heat [W.m-2]: irreversible i (U_surf - V) plus reversible
        i T (dU_n/dT - dU_p/dT)."""
        i_app = cell.current_density(current, p)
        ocv, v = self._voltages(y, current, p)
        sn, sp = self.surface_stoichiometries(y, p)
        T = y[-1]
        dUdT_n = p.evaluate("Negative electrode OCP entropic change [V.K-1]", sn)
        dUdT_p = p.evaluate("Positive electrode OCP entropic change [V.K-1]", sp)
        return i_app * (ocv - v) + i_app * T * (dUdT_n - dUdT_p)

    def _particle_rhs(self, y, i_app, p):
        c_n, c_p, T = self.split(y)
        dc_n = particle_rhs("negative", c_n, uniform_interfacial_current("negative", i_app, p), T, p, self.edges[0])
        dc_p = particle_rhs("positive", c_p, uniform_interfacial_current("positive", i_app, p), T, p, self.edges[1])
        return dc_n, dc_p

    def rhs(self, t, y, current, p):
        i_app = cell.current_density(current, p)
        dc_n, dc_p = self._particle_rhs(y, i_app, p)
        dT = self._dT_dt(y, current, p, self.heat_per_area(y, current, p))
        return jnp.concatenate([dc_n, dc_p, jnp.reshape(dT, (1,))])


class SPMe(SPM):
    """Single Particle Model with electrolyte (Marquis et al. 2019; Brosa Planella et al. 2021),
    as PyBaMM ships it: SPM particles driven by the x-averaged reaction, full electrolyte
    diffusion across the cell, composite (first-order) electrolyte and solid potentials.

    State: particle concentrations (negative, positive), electrolyte concentration [mol.m-3] on
    `n_x_n + n_x_s + n_x_p` finite volumes across the cell, then the temperature [K].

    `transport_efficiency` (PyBaMM's option "transport efficiency"): "Bruggeman" (default,
    B = eps^b with the set's "... Bruggeman coefficient (electrolyte)" and "(electrode)") or
    "tortuosity factor" (B = eps / tau with "... tortuosity factor (electrolyte)" and
    "(electrode)", which the set must have; tau = phi^(1 - b) gives Bruggeman's B, phi the
    porosity for the electrolyte and one minus it for the electrode).
    """

    n_x_n: int = eqx.field(static=True, default=20)
    n_x_s: int = eqx.field(static=True, default=20)
    n_x_p: int = eqx.field(static=True, default=20)
    transport_efficiency: str = eqx.field(static=True, default="Bruggeman")

    def __check_init__(self):
        _check_sizes(n_x_n=self.n_x_n, n_x_s=self.n_x_s, n_x_p=self.n_x_p)
        transport.check_option(self.transport_efficiency)

    @property
    def n_x(self):
        return self.n_x_n + self.n_x_s + self.n_x_p

    def electrolyte_margin(self, y, p):
        """The lowest electrolyte concentration [mol.m-3]: the SPMe's reactions are uniform
        across each electrode whatever the electrolyte, so where it runs out the model no longer
        holds and `simulate` stops (Status.ELECTROLYTE_DEPLETED)."""
        return jnp.min(self.split_electrolyte(y))

    def split_electrolyte(self, y):
        """Electrolyte concentration [mol.m-3] at the x nodes (negative, separator, positive)."""
        start = self.n_r_n + self.n_r_p
        return y[start : start + self.n_x]

    def initial_state(self, p):
        c_n, c_p, T = self._initial_particles_and_T(p)
        c_e = jnp.full(self.n_x, p["Initial concentration in electrolyte [mol.m-3]"])
        return jnp.concatenate([c_n, c_p, c_e, T])

    @property
    def jacobian_pattern(self):
        """As the SPM's, with the electrolyte's nodes a run of their own (diffusion between
        neighbouring nodes, a reaction term that depends on the current)."""
        runs, n_p, thermal = super().jacobian_pattern
        return runs + ((n_p, n_p + self.n_x),), n_p + self.n_x, thermal

    def _x_mesh(self, p):
        """Volume widths dx [m], porosity and transport efficiency at every x node."""
        return x_volumes(self.transport_efficiency, (self.n_x_n, self.n_x_s, self.n_x_p), p)

    def _electrolyte_terms(self, y, i_app, p):
        c_n, c_p, T = self.split(y)
        c_n_surf, c_p_surf = mesh.surface_value(c_n, self.edges[0]), mesh.surface_value(c_p, self.edges[1])
        c_e = transport.positive_concentration(self.split_electrolyte(y))
        dx, _, tor = self._x_mesh(p)
        L_n, L_s, L_p = (p[f"{name} thickness [m]"] for name in REGIONS)
        c_e_n, c_e_p = c_e[: self.n_x_n], c_e[self.n_x - self.n_x_p :]
        c_e_av = jnp.sum(c_e * dx) / (L_n + L_s + L_p)

        # reaction overpotential: x-average of the local inverse Butler-Volmer law
        eta = []
        for domain, c_surf, ce in (("negative", c_n_surf, c_e_n), ("positive", c_p_surf, c_e_p)):
            j = uniform_interfacial_current(domain, i_app, p)
            j0 = exchange_current(domain, ce, c_surf, T, p)
            eta.append(jnp.mean(kinetics.overpotential(j, j0, T)))

        # electrolyte: concentration overpotential and ohmic loss, kappa at the mean concentration
        t_plus = p.evaluate("Cation transference number", c_e_av, T)
        chi = 2.0 * (1.0 - t_plus) * p.evaluate("Thermodynamic factor", c_e_av, T)
        eta_c = chi * R_GAS * T / F * (
            jnp.mean(jnp.log(c_e_p / c_e_av)) - jnp.mean(jnp.log(c_e_n / c_e_av))
        )
        kappa = p.evaluate("Electrolyte conductivity [S.m-1]", c_e_av, T)
        tor_n, tor_s, tor_p = tor[0], tor[self.n_x_n], tor[-1]
        ohmic_e = -i_app * (L_n / (3 * kappa * tor_n) + L_s / (kappa * tor_s) + L_p / (3 * kappa * tor_p))

        # solid: sigma_eff = sigma B_s(1 - eps)
        ohmic_s = 0.0
        for domain, L in (("negative", L_n), ("positive", L_p)):
            sigma = solid_conductivity(self.transport_efficiency, domain, T, p)
            ohmic_s = ohmic_s - i_app * L / (3.0 * sigma)
        return eta[0], eta[1], eta_c + ohmic_e + ohmic_s

    def rhs(self, t, y, current, p):
        i_app = cell.current_density(current, p)
        dc_n, dc_p = self._particle_rhs(y, i_app, p)
        T = y[-1]
        c_e = self.split_electrolyte(y)
        c_pos = transport.positive_concentration(c_e)
        dx, eps, tor = self._x_mesh(p)
        L_n, L_p = p["Negative electrode thickness [m]"], p["Positive electrode thickness [m]"]
        t_plus = p.evaluate("Cation transference number", c_pos, T)
        a_j = jnp.concatenate([
            jnp.full(self.n_x_n, i_app / L_n), jnp.zeros(self.n_x_s), jnp.full(self.n_x_p, -i_app / L_p)
        ])
        D_eff = tor * p.evaluate("Electrolyte diffusivity [m2.s-1]", c_pos, T)
        dc_e = mesh.cartesian_diffusion(c_e, D_eff, dx, (1.0 - t_plus) * a_j / F) / eps
        dT = self._dT_dt(y, current, p, self.heat_per_area(y, current, p))
        return jnp.concatenate([dc_n, dc_p, dc_e, jnp.reshape(dT, (1,))])
