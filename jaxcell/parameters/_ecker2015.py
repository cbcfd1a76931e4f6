"""Kokam SLPB 75106100 pouch cell (NCO / graphite) of Ecker et al. (2015).

M. Ecker, T. K. D. Tran, P. Dechent, S. Kaebitz, A. Warnecke and D. U. Sauer, "Parameterization
of a Physico-Chemical Model of a Lithium-Ion Battery: I. Determination of Parameters",
J. Electrochem. Soc. 162 (2015) A1836; M. Ecker, S. Kaebitz, I. Laresgoiti and D. U. Sauer,
"... II. Model Validation", J. Electrochem. Soc. 162 (2015) A1849. The analytic fits of the
open-circuit potentials, diffusivities, kinetics and electrolyte properties are those contributed
by S. O'Kane to G. Richardson, I. Korotkin, R. Ranom, M. Castle and J. M. Foster, Electrochim.
Acta 339 (2020) 135862. Thermal material properties of a 5 Ah Kokam power pouch cell from
Y. Zhao, Y. Patel, T. Zhang and G. J. Offer, J. Electrochem. Soc. 165 (2018) A3169. Values as
collected in PyBaMM's Ecker2015 set.
"""

import jax.numpy as jnp

from ..physics.constants import F, R_GAS
from ._functions import arrhenius, mass_action_exchange_current

CITATION = (
    "Ecker et al., J. Electrochem. Soc. 162 (2015) A1836 and A1849; "
    "Richardson et al., Electrochim. Acta 339 (2020) 135862; "
    "Zhao et al., J. Electrochem. Soc. 165 (2018) A3169"
)

# reference temperatures of the published fits [K] (the measurements were made near 23 C)
_T_FIT = 296.15
_T_FIT_GRAPHITE_DIFFUSIVITY = 296.0
_T_FIT_ELECTROLYTE = 296.0


def graphite_ocp(sto):
    """Graphite open-circuit potential [V] (analytic fit to the data of Ecker et al.)."""
    return (
        0.716502 * jnp.exp(-369.028 * sto)
        + 0.12193 * jnp.exp(-35.6478 * (sto - 0.0530947))
        - 0.0189193 * jnp.tanh(21.1967 * (sto - 0.196176))
        - 0.0169644 * jnp.tanh(27.1365 * (sto - 0.312832))
        - 0.0199313 * jnp.tanh(28.5697 * (sto - 0.614221))
        - 0.931153 * jnp.exp(36.328 * (sto - 1.10743))
        + 0.140031
    )


def nco_ocp(sto):
    """NCO open-circuit potential [V] (analytic fit to the data of Ecker et al., as revised by O'Kane)."""
    return (
        -2.35211 * sto
        - 0.0747061 * jnp.tanh(31.886 * (sto - 0.0219921))
        + 6.34984 * jnp.tanh(2.66395 * (sto - 0.174352))
        - 0.640243 * jnp.tanh(5.48623 * (sto - 0.439245))
        - 3.82383 * jnp.tanh(4.12167 * (sto - 0.176187))
        - 0.0542123 * jnp.tanh(18.2919 * (sto - 0.762272))
        + 4.23285
    )


def negative_exchange_current(c_e, c_s_surf, c_s_max, T, *, p):
    """Graphite exchange-current density [A.m-2], mass-action form with Arrhenius factor (ref. 296.15 K)."""
    k = p["Negative electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]"]
    E = p["Negative electrode reaction activation energy [J.mol-1]"]
    return mass_action_exchange_current(k, c_e, c_s_surf, c_s_max) * arrhenius(E, T, _T_FIT)


def positive_exchange_current(c_e, c_s_surf, c_s_max, T, *, p):
    """NCO exchange-current density [A.m-2], mass-action form with Arrhenius factor (ref. 296.15 K)."""
    k = p["Positive electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]"]
    E = p["Positive electrode reaction activation energy [J.mol-1]"]
    return mass_action_exchange_current(k, c_e, c_s_surf, c_s_max) * arrhenius(E, T, _T_FIT)


def graphite_diffusivity(sto, T, *, p):
    """Graphite diffusivity [m2.s-1]: exponential fit in stoichiometry, Arrhenius (ref. 296 K)."""
    E = p["Negative particle diffusion activation energy [J.mol-1]"]
    D_ref = 8.4e-13 * jnp.exp(-11.3 * sto) + 8.2e-15
    return D_ref * arrhenius(E, T, _T_FIT_GRAPHITE_DIFFUSIVITY)


def nco_diffusivity(sto, T, *, p):
    """NCO diffusivity [m2.s-1]: Gaussian-dip fit in stoichiometry, Arrhenius (ref. 296.15 K)."""
    E = p["Positive particle diffusion activation energy [J.mol-1]"]
    D_ref = 3.7e-13 - 3.4e-13 * jnp.exp(-12.0 * (sto - 0.62) * (sto - 0.62))
    return D_ref * arrhenius(E, T, _T_FIT)


def electrolyte_conductivity_ecker2015(c_e, T, *, p):
    """LiPF6 in EC:DMC conductivity [S.m-1]: cubic fit at 296 K times (296/T) exp(-E/RT) scaling."""
    E = p["Electrolyte conductivity activation energy [J.mol-1]"]
    c = c_e / 1000.0
    sigma_296 = 0.2667 * c**3 - 1.2983 * c**2 + 1.7919 * c + 0.1726
    return sigma_296 * (_T_FIT_ELECTROLYTE / T) * arrhenius(E, T, _T_FIT_ELECTROLYTE)


def electrolyte_diffusivity_ecker2015(c_e, T, *, p):
    """LiPF6 in EC:DMC diffusivity [m2.s-1] from the conductivity by Nernst-Einstein: R T sigma / (F^2 c_e).

    The conductivity is the set's "Electrolyte conductivity [S.m-1]" function, so replacing it
    (or changing its activation energy) changes the diffusivity too, as in PyBaMM.
    """
    sigma = p.evaluate("Electrolyte conductivity [S.m-1]", c_e, T)
    return (R_GAS / F**2) * sigma * T / c_e


VALUES = {
    # cell
    "Negative current collector thickness [m]": 1.4e-5,
    "Negative electrode thickness [m]": 7.4e-5,
    "Separator thickness [m]": 2e-5,
    "Positive electrode thickness [m]": 5.4e-5,
    "Positive current collector thickness [m]": 1.5e-5,
    "Electrode height [m]": 0.101,
    "Electrode width [m]": 0.085,
    "Cell cooling surface area [m2]": 0.0172,
    "Cell volume [m3]": 1.52e-6,
    "Negative current collector conductivity [S.m-1]": 58411000.0,
    "Positive current collector conductivity [S.m-1]": 36914000.0,
    "Negative current collector density [kg.m-3]": 8933.0,
    "Positive current collector density [kg.m-3]": 2702.0,
    "Negative current collector specific heat capacity [J.kg-1.K-1]": 385.0,
    "Positive current collector specific heat capacity [J.kg-1.K-1]": 903.0,
    "Negative current collector thermal conductivity [W.m-1.K-1]": 398.0,
    "Positive current collector thermal conductivity [W.m-1.K-1]": 238.0,
    "Nominal cell capacity [A.h]": 0.15625,
    "Current function [A]": 0.15652,
    "Contact resistance [Ohm]": 0.0,
    # negative electrode
    "Negative electrode conductivity [S.m-1]": 14.0,
    "Maximum concentration in negative electrode [mol.m-3]": 31920.0,
    "Negative particle diffusivity [m2.s-1]": graphite_diffusivity,
    "Negative particle diffusion activation energy [J.mol-1]": 3.03e4,
    "Negative electrode OCP [V]": graphite_ocp,
    "Negative electrode porosity": 0.329,
    "Negative electrode active material volume fraction": 0.372403,
    "Negative particle radius [m]": 1.37e-5,
    "Negative electrode Bruggeman coefficient (electrolyte)": 1.6372789338386007,
    "Negative electrode Bruggeman coefficient (electrode)": 0.0,
    "Negative electrode exchange-current density [A.m-2]": negative_exchange_current,
    # F times the published rate constant 1.11e-10 m2.5.mol-0.5.s-1
    "Negative electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]": F * 1.11e-10,
    "Negative electrode reaction activation energy [J.mol-1]": 53400.0,
    "Negative electrode density [kg.m-3]": 1555.0,
    "Negative electrode specific heat capacity [J.kg-1.K-1]": 1437.0,
    "Negative electrode thermal conductivity [W.m-1.K-1]": 1.58,
    "Negative electrode OCP entropic change [V.K-1]": 0.0,
    # separator
    "Separator porosity": 0.508,
    "Separator Bruggeman coefficient (electrolyte)": 1.9804586773134945,
    "Separator density [kg.m-3]": 1017.0,
    "Separator specific heat capacity [J.kg-1.K-1]": 1978.0,
    "Separator thermal conductivity [W.m-1.K-1]": 0.34,
    # positive electrode
    "Positive electrode conductivity [S.m-1]": 68.1,
    "Maximum concentration in positive electrode [mol.m-3]": 48580.0,
    "Positive particle diffusivity [m2.s-1]": nco_diffusivity,
    "Positive particle diffusion activation energy [J.mol-1]": 8.06e4,
    "Positive electrode OCP [V]": nco_ocp,
    "Positive electrode porosity": 0.296,
    "Positive electrode active material volume fraction": 0.40832,
    "Positive particle radius [m]": 6.5e-6,
    "Positive electrode Bruggeman coefficient (electrolyte)": 1.5442267190786427,
    "Positive electrode Bruggeman coefficient (electrode)": 0.0,
    "Positive electrode exchange-current density [A.m-2]": positive_exchange_current,
    # F times the published rate constant 3.01e-11 m2.5.mol-0.5.s-1
    "Positive electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]": F * 3.01e-11,
    "Positive electrode reaction activation energy [J.mol-1]": 4.36e4,
    "Positive electrode density [kg.m-3]": 2895.0,
    "Positive electrode specific heat capacity [J.kg-1.K-1]": 1270.0,
    "Positive electrode thermal conductivity [W.m-1.K-1]": 1.04,
    "Positive electrode OCP entropic change [V.K-1]": 0.0,
    # electrolyte
    "Initial concentration in electrolyte [mol.m-3]": 1000.0,
    "Cation transference number": 0.26,
    "Thermodynamic factor": 1.0,
    "Electrolyte diffusivity [m2.s-1]": electrolyte_diffusivity_ecker2015,
    "Electrolyte conductivity [S.m-1]": electrolyte_conductivity_ecker2015,
    "Electrolyte conductivity activation energy [J.mol-1]": 1.71e4,
    # experiment and thermal
    "Reference temperature [K]": 296.15,
    "Total heat transfer coefficient [W.m-2.K-1]": 10.0,
    "Ambient temperature [K]": 298.15,
    "Number of electrodes connected in parallel to make a cell": 1.0,
    "Number of cells connected in series to make a battery": 1.0,
    "Lower voltage cut-off [V]": 2.5,
    "Upper voltage cut-off [V]": 4.2,
    "Open-circuit voltage at 0% SOC [V]": 2.5,
    "Open-circuit voltage at 100% SOC [V]": 4.2,
    "Initial concentration in negative electrode [mol.m-3]": 26120.05,
    "Initial concentration in positive electrode [mol.m-3]": 12630.8,
    "Initial temperature [K]": 298.15,
}
