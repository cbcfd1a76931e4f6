"""The Doyle-Fuller-Newman (pseudo-two-dimensional) model in its double-layer form.

State (flat vector, in this order):

- particle concentrations [mol.m-3] at every node of the negative electrode, ``n_x_n x n_r_n``,
  then of the positive electrode, ``n_x_p x n_r_p`` (row per x node, outermost shell last);
- electrolyte concentration [mol.m-3] at all ``n_x_n + n_x_s + n_x_p`` nodes;
- the potential difference ``dphi = phi_s - phi_e`` [V] at every electrode node (negative, then
  positive);
- the cell temperature [K].

The potentials are not algebraic unknowns: each electrode node carries its physical double-layer
capacitance ``C_dl`` [F.m-2], ``a C_dl d(dphi)/dt = d(i_e)/dx - a j``, and the electrolyte current
follows locally from Ohm's laws in both phases with ``i_s + i_e = i_app`` (docs/dfn.md). That makes
the DFN a stiff ODE whose Jacobian couples each node only to its neighbours and to the temperature,
which `jaxcell.solvers.Rodas4` exploits (`structure`).
"""

import dataclasses
import itertools

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .. import mesh
from ..physics import cell, kinetics, transport
from ..physics.constants import R_GAS, F
from ._base import AbstractCellModel
from ._spm import (
    _check_sizes,
    _check_stretch,
    _solid_charge,
    exchange_current,
    particle_edges,
    particle_rhs,
    solid_conductivity,
    x_volumes,
)

DEFAULT_DOUBLE_LAYER = 0.2  # F.m-2, used when a set has no double-layer capacity


@dataclasses.dataclass(frozen=True, eq=False)
class DFNStructure:
    """Where each unknown of a DFN-like state sits, for the structured linear solve (all static
    numpy index arrays into the flat state).

    - `micro`: per electrode, an (n_nodes, n_shells) array of particle unknowns; the particle of
      a node couples only to itself (tridiagonally in r), to the `local` macro unknowns of its
      node, and the macro rows of its node see it only through its two outermost shells.
    - `local`: per electrode, (n_nodes, 3) positions *in the macro vector* of the node's
      electrolyte concentration, potential difference and the temperature.
    - `macro`: positions of the macro unknowns (electrolyte, potentials, temperature) in the state;
      `macro_x` their x node (-1 for the temperature), `macro_kind` 0 electrolyte, 1 potential,
      2 temperature. Macro unknowns couple (at fixed current) only to macro unknowns of
      neighbouring x nodes and to the temperature.
    """

    micro: tuple
    local: tuple
    macro: np.ndarray
    macro_x: np.ndarray
    macro_kind: np.ndarray
    n: int
    thermal: bool = True


class DFN(AbstractCellModel):
    """Doyle-Fuller-Newman model (Doyle, Fuller & Newman 1993; Marquis et al. 2019): spherical
    particles at every electrode node, electrolyte diffusion and migration, charge conservation
    in both phases, Butler-Volmer kinetics, effective transport (Bruggeman, or tortuosity factors:
    `transport_efficiency`, as for `SPMe`), optional lumped thermal model and contact resistance.

    Potentials use the double-layer form (see the module docstring and docs/dfn.md): a pure ODE,
    integrated by default with `jaxcell.solvers.Rodas4` and a block-structured linear solve.

    Mesh sizes are static options; the defaults (`n_x_n = n_x_p = 40`, `n_x_s = 20`, 20 shells
    per particle, the outermost `r_stretch = 4` times thinner than the innermost) keep 0.5C-2C
    discharges of Chen2020, Marquis2019 and Ecker2015 within 1 mV RMS of converged PyBaMM
    solutions (tests/test_dfn.py; measured 0.09-0.55 mV). At 3C, where the electrolyte runs out
    before the cut-off, they are 7.5 mV RMS off; `n_x_n = n_x_p = 100` with 30 shells keeps
    0.75 mV (docs/dfn.md, "High rates"). On stretched shells the particle nodes
    sit at the shells' volume centroids (`jaxcell.mesh.shell_nodes`; docs/dfn.md, "Mesh"),
    which is what makes the default stretch accurate, but is less accurate than PyBaMM's
    midpoints for a stretch below about 3. `r_stretch=1` (uniform shells) keeps the midpoints:
    PyBaMM's discretisation.

    Example:
        >>> sol = jaxcell.simulate(jaxcell.DFN(), jaxcell.load_parameters("Chen2020"),
        ...                        "Discharge at 1C until 2.5 V")
    """

    thermal: str = eqx.field(static=True, default="isothermal")
    n_x_n: int = eqx.field(static=True, default=40)
    n_x_s: int = eqx.field(static=True, default=20)
    n_x_p: int = eqx.field(static=True, default=40)
    n_r_n: int = eqx.field(static=True, default=20)
    n_r_p: int = eqx.field(static=True, default=20)
    r_stretch: float = eqx.field(static=True, default=4.0)
    transport_efficiency: str = eqx.field(static=True, default="Bruggeman")
    rhs_reads_time = False  # time enters through the current only

    def __check_init__(self):
        transport.check_option(self.transport_efficiency)
        _check_stretch(self.r_stretch)
        _check_sizes(n_x_n=self.n_x_n, n_x_s=self.n_x_s, n_x_p=self.n_x_p, n_r_n=self.n_r_n, n_r_p=self.n_r_p)

    @property
    def edges(self):
        """Shell edges r / R of the (negative, positive) particles (`particle_edges`)."""
        return particle_edges(self)

    # -- state layout --------------------------------------------------------------------------
    @property
    def n_x(self):
        return self.n_x_n + self.n_x_s + self.n_x_p

    @property
    def _sizes(self):
        return (self.n_x_n * self.n_r_n, self.n_x_p * self.n_r_p, self.n_x, self.n_x_n, self.n_x_p, 1)

    def split(self, y):
        """(c_s_n (n_x_n, n_r_n), c_s_p (n_x_p, n_r_p), c_e (n_x,), dphi_n, dphi_p, T)."""
        offsets = np.cumsum((0,) + self._sizes)
        parts = [y[a:b] for a, b in itertools.pairwise(offsets)]
        return (
            parts[0].reshape(self.n_x_n, self.n_r_n),
            parts[1].reshape(self.n_x_p, self.n_r_p),
            parts[2], parts[3], parts[4], parts[5][0],
        )

    @property
    def output_start(self):
        """The voltage comes from the potentials, the electrolyte and the temperature, not
        from the particles (`_potentials`)."""
        return int(np.sum(self._sizes[:2]))

    @property
    def structure(self) -> DFNStructure:
        s = np.cumsum((0,) + self._sizes)
        n_x, nn, ns = self.n_x, self.n_x_n, self.n_x_s
        x_n, x_p = np.arange(nn), nn + ns + np.arange(self.n_x_p)
        macro = np.arange(s[2], s[6])
        macro_x = np.concatenate([np.arange(n_x), x_n, x_p, [-1]])
        macro_kind = np.concatenate([np.zeros(n_x, int), np.ones(nn + self.n_x_p, int), [2]])
        t_pos = len(macro) - 1
        local_n = np.stack([x_n, n_x + np.arange(nn), np.full(nn, t_pos)], axis=1)
        local_p = np.stack([x_p, n_x + nn + np.arange(self.n_x_p), np.full(self.n_x_p, t_pos)], axis=1)
        micro_n = s[0] + np.arange(nn * self.n_r_n).reshape(nn, self.n_r_n)
        micro_p = s[1] + np.arange(self.n_x_p * self.n_r_p).reshape(self.n_x_p, self.n_r_p)
        return DFNStructure(
            micro=(micro_n, micro_p), local=(local_n, local_p), macro=macro, macro_x=macro_x,
            macro_kind=macro_kind, n=int(s[-1]), thermal=self.thermal != "isothermal",
        )

    def initial_state(self, p):
        T0 = p["Initial temperature [K]"] if self.thermal == "lumped" else p["Ambient temperature [K]"]
        c_n0 = p["Initial concentration in negative electrode [mol.m-3]"]
        c_p0 = p["Initial concentration in positive electrode [mol.m-3]"]
        # at rest the double layers hold the open-circuit potentials
        U_n = cell.open_circuit_potential(
            "negative", c_n0 / p["Maximum concentration in negative electrode [mol.m-3]"], T0, p
        )
        U_p = cell.open_circuit_potential(
            "positive", c_p0 / p["Maximum concentration in positive electrode [mol.m-3]"], T0, p
        )
        return jnp.concatenate([
            jnp.full(self.n_x_n * self.n_r_n, c_n0),
            jnp.full(self.n_x_p * self.n_r_p, c_p0),
            jnp.full(self.n_x, p["Initial concentration in electrolyte [mol.m-3]"]),
            jnp.full(self.n_x_n, U_n),
            jnp.full(self.n_x_p, U_p),
            jnp.reshape(T0, (1,)),
        ])

    def _surface_stoichiometry_fields(self, y, p):
        c_n, c_p, *_ = self.split(y)
        return (
            mesh.surface_value(c_n, self.edges[0]) / p["Maximum concentration in negative electrode [mol.m-3]"],
            mesh.surface_value(c_p, self.edges[1]) / p["Maximum concentration in positive electrode [mol.m-3]"],
        )

    def surface_stoichiometries(self, y, p):
        """The surface stoichiometry of each electrode closest to 0 or 1 (over its nodes)."""
        out = []
        for s in self._surface_stoichiometry_fields(y, p):
            out.append(s[jnp.argmin(jnp.minimum(s, 1.0 - s))])
        return tuple(out)

    def open_circuit_voltage(self, y, p):
        """Open-circuit voltage of the node-averaged surface stoichiometries."""
        sn, sp = self._surface_stoichiometry_fields(y, p)
        T = self.temperature(y)
        return cell.open_circuit_potential("positive", jnp.mean(sp), T, p) - cell.open_circuit_potential(
            "negative", jnp.mean(sn), T, p
        )

    def particle_charge(self, y, p):
        c_n, c_p, *_ = self.split(y)
        dx = self._mesh(p)[0]
        nn, ns = self.n_x_n, self.n_x_s
        out = []
        for domain, c, w_dx, edges in (("negative", c_n, dx[:nn], self.edges[0]), ("positive", c_p, dx[nn + ns:], self.edges[1])):
            per_node = c @ mesh.sphere_volume_weights(c.shape[1], 1.0, edges)  # volume averages in each particle
            out.append(_solid_charge(domain, jnp.sum(w_dx * per_node) / jnp.sum(w_dx), p))
        return tuple(out)

    # -- physics -------------------------------------------------------------------------------
    def _mesh(self, p):
        """Volume widths dx [m], porosity, transport efficiency (electrolyte) at every node."""
        return x_volumes(self.transport_efficiency, (self.n_x_n, self.n_x_s, self.n_x_p), p)

    def _fields(self, y, current, p):
        """Everything the rhs, the voltage and the heat need: face currents, reaction rates."""
        c_n, c_p, c_e_state, dphi_n, dphi_p, T = self.split(y)
        c_e = transport.positive_concentration(c_e_state)  # where properties and logarithms are evaluated
        i_app = cell.current_density(current, p)
        dx, eps, tor = self._mesh(p)
        nn, ns = self.n_x_n, self.n_x_s
        # electrolyte properties at nodes, then on the interior faces
        kappa = tor * p.evaluate("Electrolyte conductivity [S.m-1]", c_e, T)
        t_plus = jnp.broadcast_to(p.evaluate("Cation transference number", c_e, T), c_e.shape)
        nu = 2.0 * (1.0 - t_plus) * p.evaluate("Thermodynamic factor", c_e, T) * R_GAS * T / F
        kappa_f = mesh.node_to_edge(kappa, dx)
        nu = jnp.broadcast_to(nu, c_e.shape)
        nu_f = 0.5 * (nu[:-1] + nu[1:])
        h = 0.5 * (dx[:-1] + dx[1:])  # node-to-node distances
        dlnc = jnp.diff(jnp.log(c_e)) / h
        sig_n, sig_p = (solid_conductivity(self.transport_efficiency, d, T, p) for d in ("negative", "positive"))

        # interior faces of the negative electrode: 0..nn-2, of the positive: nn+ns..n_x-2
        fn = slice(0, nn - 1)
        fp = slice(nn + ns, self.n_x - 1)
        dx_n, dx_p = dx[0], dx[-1]
        i_e_n = (jnp.diff(dphi_n) / dx_n + i_app / sig_n + nu_f[fn] * dlnc[fn]) / (1.0 / kappa_f[fn] + 1.0 / sig_n)
        i_e_p = (jnp.diff(dphi_p) / dx_p + i_app / sig_p + nu_f[fp] * dlnc[fp]) / (1.0 / kappa_f[fp] + 1.0 / sig_p)
        zero = jnp.zeros(1, i_e_n.dtype)
        i_app_face = jnp.full(ns + 1, i_app)  # both separator interfaces and its interior faces
        # electrolyte current on all n_x + 1 faces (collectors carry none)
        i_e = jnp.concatenate([zero, i_e_n, i_app_face, i_e_p, zero])

        # Butler-Volmer at every electrode node
        c_max_n = p["Maximum concentration in negative electrode [mol.m-3]"]
        c_max_p = p["Maximum concentration in positive electrode [mol.m-3]"]
        cs_n, cs_p = mesh.surface_value(c_n, self.edges[0]), mesh.surface_value(c_p, self.edges[1])
        ce_n, ce_p = c_e[:nn], c_e[nn + ns :]
        U_n = cell.open_circuit_potential("negative", cell.clip_stoichiometry(cs_n / c_max_n), T, p)
        U_p = cell.open_circuit_potential("positive", cell.clip_stoichiometry(cs_p / c_max_p), T, p)
        j_n = kinetics.butler_volmer(dphi_n - U_n, exchange_current("negative", ce_n, cs_n, T, p), T)
        j_p = kinetics.butler_volmer(dphi_p - U_p, exchange_current("positive", ce_p, cs_p, T, p), T)
        return {
            "c_n": c_n, "c_p": c_p, "c_e": c_e_state, "c_pos": c_e, "T": T, "i_app": i_app, "dx": dx, "eps": eps, "tor": tor, "kappa": kappa,
            "kappa_f": kappa_f, "nu": nu, "nu_f": nu_f, "dlnc": dlnc, "t_plus": t_plus, "i_e": i_e, "j_n": j_n, "j_p": j_p,
            "U_n": U_n, "U_p": U_p, "dphi_n": dphi_n, "dphi_p": dphi_p, "sig_n": sig_n, "sig_p": sig_p,
        }

    def rhs(self, t, y, current, p):
        f = self._fields(y, current, p)
        nn, ns = self.n_x_n, self.n_x_s
        dx, T = f["dx"], f["T"]
        a_n = cell.surface_area_per_volume("negative", p)
        a_p = cell.surface_area_per_volume("positive", p)
        dc_n = particle_rhs("negative", f["c_n"], f["j_n"], T, p, self.edges[0])
        dc_p = particle_rhs("positive", f["c_p"], f["j_p"], T, p, self.edges[1])
        # electrolyte: eps dc/dt = d/dx(D_eff dc/dx) + (1 - t+) a j / F
        a_j = jnp.concatenate([a_n * f["j_n"], jnp.zeros(ns), a_p * f["j_p"]])
        D_eff = f["tor"] * p.evaluate("Electrolyte diffusivity [m2.s-1]", f["c_pos"], T)
        dc_e = mesh.cartesian_diffusion(f["c_e"], D_eff, dx, (1.0 - f["t_plus"]) * a_j / F) / f["eps"]
        # double layers: a C_dl d(dphi)/dt = d(i_e)/dx - a j
        div_i_e = jnp.diff(f["i_e"]) / dx
        C_n = p.get("Negative electrode double-layer capacity [F.m-2]", DEFAULT_DOUBLE_LAYER)
        C_p = p.get("Positive electrode double-layer capacity [F.m-2]", DEFAULT_DOUBLE_LAYER)
        ddphi_n = (div_i_e[:nn] - a_n * f["j_n"]) / (a_n * C_n)
        ddphi_p = (div_i_e[nn + ns :] - a_p * f["j_p"]) / (a_p * C_p)
        dT = self._dT_dt(y, current, p, self.heat_per_area(y, current, p, f))
        return jnp.concatenate([
            dc_n.reshape(-1), dc_p.reshape(-1), dc_e, ddphi_n, ddphi_p, jnp.reshape(dT, (1,))
        ])

    def _potentials(self, f):
        """Solid potential at the two current collectors relative to the electrolyte potential
        at the first node: (phi_s(0), phi_s(L)) [V]."""
        dx, i_e, i_app = f["dx"], f["i_e"], f["i_app"]
        # electrolyte potential at the nodes: d(phi_e)/dx = -i_e / kappa + nu dln(c_e)/dx
        dphi_e = -i_e[1:-1] / f["kappa_f"] + f["nu_f"] * f["dlnc"]
        h = 0.5 * (dx[:-1] + dx[1:])
        phi_e = jnp.concatenate([jnp.zeros(1, dx.dtype), jnp.cumsum(dphi_e * h)])
        # solid potential at the outer nodes, then out to the collectors (trapezoid on i_s / sigma,
        # with i_e linear between the collector (0) and the first interior face)
        phi_s0 = f["dphi_n"][0] + phi_e[0]
        phi_sL = f["dphi_p"][-1] + phi_e[-1]
        phi_s_left = phi_s0 + 0.5 * dx[0] / f["sig_n"] * (i_app - 0.25 * i_e[1])
        phi_s_right = phi_sL - 0.5 * dx[-1] / f["sig_p"] * (i_app - 0.25 * i_e[-2])
        return phi_s_left, phi_s_right

    def voltage(self, y, current, p):
        f = self._fields(y, current, p)
        left, right = self._potentials(f)
        return right - left - current * p.get("Contact resistance [Ohm]", 0.0)

    def heat_per_area(self, y, current, p, f=None):
        """Heat [W.m-2]: ohmic heat in both phases, reaction heat a j eta and reversible heat
        a j T dU/dT, integrated over the cell (midpoint rule)."""
        if self.thermal == "isothermal":
            return jnp.zeros(())
        if f is None:
            f = self._fields(y, current, p)
        nn, ns = self.n_x_n, self.n_x_s
        dx, T = f["dx"], f["T"]
        i_e_nodes = 0.5 * (f["i_e"][:-1] + f["i_e"][1:])
        # electrolyte ohmic heat -i_e d(phi_e)/dx = i_e (i_e / kappa - nu dln c/dx), at nodes
        dlnc_nodes = jnp.gradient(jnp.log(f["c_pos"]), jnp.cumsum(dx) - 0.5 * dx)
        q_e = i_e_nodes * (i_e_nodes / f["kappa"] - f["nu"] * dlnc_nodes)
        i_s_n = f["i_app"] - i_e_nodes[:nn]
        i_s_p = f["i_app"] - i_e_nodes[nn + ns :]
        q_s = jnp.concatenate([i_s_n**2 / f["sig_n"], jnp.zeros(ns), i_s_p**2 / f["sig_p"]])
        a_n = cell.surface_area_per_volume("negative", p)
        a_p = cell.surface_area_per_volume("positive", p)
        sn, sp = self._surface_stoichiometry_fields(y, p)
        dUdT_n = p.evaluate("Negative electrode OCP entropic change [V.K-1]", sn)
        dUdT_p = p.evaluate("Positive electrode OCP entropic change [V.K-1]", sp)
        q_r_n = a_n * f["j_n"] * (f["dphi_n"] - f["U_n"] + T * dUdT_n)
        q_r_p = a_p * f["j_p"] * (f["dphi_p"] - f["U_p"] + T * dUdT_p)
        q_r = jnp.concatenate([q_r_n, jnp.zeros(ns), q_r_p])
        return jnp.sum((q_e + q_s + q_r) * dx)
