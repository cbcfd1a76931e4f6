"""Kokam SLPB78205130H pouch cell (LiCoO2 / graphite MCMB 2528) of Marquis et al. (2019).

S. G. Marquis, V. Sulzer, R. Timms, C. P. Please and S. J. Chapman, "An asymptotic derivation
of a single particle model with electrolyte", J. Electrochem. Soc. 166 (2019) A3693.
The electrode fits (open-circuit potentials, exchange-current densities, particle diffusivities
and their Arrhenius energies) are those of J. Newman's DUALFOIL code; the entropic-change fits
are from S. Moura's fastDFN code (https://github.com/scott-moura/fastDFN); the LiPF6 in EC:DMC
electrolyte fits are DUALFOIL's fits of the data of C. Capiglia et al., J. Power Sources 81-82
(1999) 859. Values as collected in PyBaMM's Marquis2019 set.
"""

import jax.numpy as jnp

from ._functions import arrhenius, mass_action_exchange_current, sech2

CITATION = (
    "Marquis et al., J. Electrochem. Soc. 166 (2019) A3693; "
    "Newman, DUALFOIL; Moura, fastDFN; "
    "Capiglia et al., J. Power Sources 81-82 (1999) 859"
)

# maximum concentrations that the entropic-change fits were written with (kept fixed, as in the
# original fits, so the fits stay functions of stoichiometry alone)
_C_MAX_NEG_FIT = 24983.2619938437
_C_MAX_POS_FIT = 51217.9257309275
_LICOO2_STRETCH = 1.062  # stoichiometry stretch of the DUALFOIL LiCoO2 fit


def graphite_ocp(sto):
    """Graphite MCMB 2528 open-circuit potential [V] (DUALFOIL fit)."""
    return (
        0.194
        + 1.5 * jnp.exp(-120.0 * sto)
        + 0.0351 * jnp.tanh((sto - 0.286) / 0.083)
        - 0.0045 * jnp.tanh((sto - 0.849) / 0.119)
        - 0.035 * jnp.tanh((sto - 0.9233) / 0.05)
        - 0.0147 * jnp.tanh((sto - 0.5) / 0.034)
        - 0.102 * jnp.tanh((sto - 0.194) / 0.142)
        - 0.022 * jnp.tanh((sto - 0.9) / 0.0164)
        - 0.011 * jnp.tanh((sto - 0.124) / 0.0226)
        + 0.0155 * jnp.tanh((sto - 0.105) / 0.029)
    )


def lico2_ocp(sto):
    """LiCoO2 open-circuit potential [V] (DUALFOIL fit, stoichiometry stretched by 1.062)."""
    x = _LICOO2_STRETCH * sto
    return (
        2.16216
        + 0.07645 * jnp.tanh(30.834 - 54.4806 * x)
        + 2.1581 * jnp.tanh(52.294 - 50.294 * x)
        - 0.14169 * jnp.tanh(11.0923 - 19.8543 * x)
        + 0.2051 * jnp.tanh(1.4684 - 5.4888 * x)
        + 0.2531 * jnp.tanh((-x + 0.56478) / 0.1316)
        - 0.02167 * jnp.tanh((x - 0.525) / 0.006)
    )


def graphite_entropic_change(sto):
    """Graphite entropic coefficient dU/dT [V.K-1] at 298.15 K (fastDFN fit)."""
    c = _C_MAX_NEG_FIT
    return (
        -1.5 * (120.0 / c) * jnp.exp(-120.0 * sto)
        + (0.0351 / (0.083 * c)) * sech2((sto - 0.286) / 0.083)
        - (0.0045 / (0.119 * c)) * sech2((sto - 0.849) / 0.119)
        - (0.035 / (0.05 * c)) * sech2((sto - 0.9233) / 0.05)
        - (0.0147 / (0.034 * c)) * sech2((sto - 0.5) / 0.034)
        - (0.102 / (0.142 * c)) * sech2((sto - 0.194) / 0.142)
        - (0.022 / (0.0164 * c)) * sech2((sto - 0.9) / 0.0164)
        - (0.011 / (0.0226 * c)) * sech2((sto - 0.124) / 0.0226)
        + (0.0155 / (0.029 * c)) * sech2((sto - 0.105) / 0.029)
    )


def lico2_entropic_change(sto):
    """LiCoO2 entropic coefficient dU/dT [V.K-1] at 298.15 K (fastDFN fit, same stretch as the OCP)."""
    c = _C_MAX_POS_FIT
    x = _LICOO2_STRETCH * sto
    return (
        0.07645 * (-54.4806 / c) * sech2(30.834 - 54.4806 * x)
        + 2.1581 * (-50.294 / c) * sech2(52.294 - 50.294 * x)
        + 0.14169 * (19.854 / c) * sech2(11.0923 - 19.8543 * x)
        - 0.2051 * (5.4888 / c) * sech2(1.4684 - 5.4888 * x)
        - (0.2531 / 0.1316 / c) * sech2((-x + 0.56478) / 0.1316)
        - (0.02167 / 0.006 / c) * sech2((x - 0.525) / 0.006)
    )


def negative_exchange_current(c_e, c_s_surf, c_s_max, T, *, p):
    """Graphite / LiPF6 exchange-current density [A.m-2], mass-action form with Arrhenius factor."""
    k = p["Negative electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]"]
    E = p["Negative electrode reaction activation energy [J.mol-1]"]
    return mass_action_exchange_current(k, c_e, c_s_surf, c_s_max) * arrhenius(E, T)


def positive_exchange_current(c_e, c_s_surf, c_s_max, T, *, p):
    """LiCoO2 / LiPF6 exchange-current density [A.m-2], mass-action form with Arrhenius factor."""
    k = p["Positive electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]"]
    E = p["Positive electrode reaction activation energy [J.mol-1]"]
    return mass_action_exchange_current(k, c_e, c_s_surf, c_s_max) * arrhenius(E, T)


def negative_particle_diffusivity(sto, T, *, p):
    """Graphite diffusivity [m2.s-1]: constant in stoichiometry, Arrhenius in temperature."""
    D = p["Negative particle diffusivity reference [m2.s-1]"]
    E = p["Negative particle diffusion activation energy [J.mol-1]"]
    return D * arrhenius(E, T) * jnp.ones_like(sto)


def positive_particle_diffusivity(sto, T, *, p):
    """LiCoO2 diffusivity [m2.s-1]: constant in stoichiometry, Arrhenius in temperature."""
    D = p["Positive particle diffusivity reference [m2.s-1]"]
    E = p["Positive particle diffusion activation energy [J.mol-1]"]
    return D * arrhenius(E, T) * jnp.ones_like(sto)


def electrolyte_diffusivity_capiglia1999(c_e, T, *, p):
    """LiPF6 in EC:DMC diffusivity [m2.s-1] (DUALFOIL fit of Capiglia et al. 1999)."""
    E = p["Electrolyte diffusion activation energy [J.mol-1]"]
    return 5.34e-10 * jnp.exp(-0.65 * c_e / 1000.0) * arrhenius(E, T)


def electrolyte_conductivity_capiglia1999(c_e, T, *, p):
    """LiPF6 in EC:DMC conductivity [S.m-1] (DUALFOIL fit of Capiglia et al. 1999)."""
    E = p["Electrolyte conductivity activation energy [J.mol-1]"]
    c = c_e / 1000.0
    sigma = 0.0911 + 1.9101 * c - 1.052 * c**2 + 0.1554 * c**3
    return sigma * arrhenius(E, T)


VALUES = {
    # cell
    "Negative current collector thickness [m]": 2.5e-5,
    "Negative electrode thickness [m]": 1e-4,
    "Separator thickness [m]": 2.5e-5,
    "Positive electrode thickness [m]": 1e-4,
    "Positive current collector thickness [m]": 2.5e-5,
    "Electrode height [m]": 0.137,
    "Electrode width [m]": 0.207,
    "Cell cooling surface area [m2]": 0.0569,
    "Cell volume [m3]": 7.8e-6,
    "Negative current collector conductivity [S.m-1]": 59600000.0,
    "Positive current collector conductivity [S.m-1]": 35500000.0,
    "Negative current collector density [kg.m-3]": 8954.0,
    "Positive current collector density [kg.m-3]": 2707.0,
    "Negative current collector specific heat capacity [J.kg-1.K-1]": 385.0,
    "Positive current collector specific heat capacity [J.kg-1.K-1]": 897.0,
    "Negative current collector thermal conductivity [W.m-1.K-1]": 401.0,
    "Positive current collector thermal conductivity [W.m-1.K-1]": 237.0,
    "Nominal cell capacity [A.h]": 0.680616,
    "Current function [A]": 0.680616,
    "Contact resistance [Ohm]": 0.0,
    # negative electrode
    "Negative electrode conductivity [S.m-1]": 100.0,
    "Maximum concentration in negative electrode [mol.m-3]": 24983.2619938437,
    "Negative particle diffusivity [m2.s-1]": negative_particle_diffusivity,
    "Negative particle diffusivity reference [m2.s-1]": 3.9e-14,
    "Negative particle diffusion activation energy [J.mol-1]": 42770.0,
    "Negative electrode OCP [V]": graphite_ocp,
    "Negative electrode porosity": 0.3,
    "Negative electrode active material volume fraction": 0.6,
    "Negative particle radius [m]": 1e-5,
    "Negative electrode Bruggeman coefficient (electrolyte)": 1.5,
    "Negative electrode Bruggeman coefficient (electrode)": 1.5,
    "Negative electrode charge transfer coefficient": 0.5,
    "Negative electrode double-layer capacity [F.m-2]": 0.2,
    "Negative electrode exchange-current density [A.m-2]": negative_exchange_current,
    "Negative electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]": 2e-5,
    "Negative electrode reaction activation energy [J.mol-1]": 37480.0,
    "Negative electrode density [kg.m-3]": 1657.0,
    "Negative electrode specific heat capacity [J.kg-1.K-1]": 700.0,
    "Negative electrode thermal conductivity [W.m-1.K-1]": 1.7,
    "Negative electrode OCP entropic change [V.K-1]": graphite_entropic_change,
    # separator
    "Separator porosity": 1.0,
    "Separator Bruggeman coefficient (electrolyte)": 1.5,
    "Separator density [kg.m-3]": 397.0,
    "Separator specific heat capacity [J.kg-1.K-1]": 700.0,
    "Separator thermal conductivity [W.m-1.K-1]": 0.16,
    # positive electrode
    "Positive electrode conductivity [S.m-1]": 10.0,
    "Maximum concentration in positive electrode [mol.m-3]": 51217.9257309275,
    "Positive particle diffusivity [m2.s-1]": positive_particle_diffusivity,
    "Positive particle diffusivity reference [m2.s-1]": 1e-13,
    "Positive particle diffusion activation energy [J.mol-1]": 18550.0,
    "Positive electrode OCP [V]": lico2_ocp,
    "Positive electrode porosity": 0.3,
    "Positive electrode active material volume fraction": 0.5,
    "Positive particle radius [m]": 1e-5,
    "Positive electrode Bruggeman coefficient (electrolyte)": 1.5,
    "Positive electrode Bruggeman coefficient (electrode)": 1.5,
    "Positive electrode charge transfer coefficient": 0.5,
    "Positive electrode double-layer capacity [F.m-2]": 0.2,
    "Positive electrode exchange-current density [A.m-2]": positive_exchange_current,
    "Positive electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]": 6e-7,
    "Positive electrode reaction activation energy [J.mol-1]": 39570.0,
    "Positive electrode density [kg.m-3]": 3262.0,
    "Positive electrode specific heat capacity [J.kg-1.K-1]": 700.0,
    "Positive electrode thermal conductivity [W.m-1.K-1]": 2.1,
    "Positive electrode OCP entropic change [V.K-1]": lico2_entropic_change,
    # electrolyte
    "Initial concentration in electrolyte [mol.m-3]": 1000.0,
    "Cation transference number": 0.4,
    "Thermodynamic factor": 1.0,
    "Electrolyte diffusivity [m2.s-1]": electrolyte_diffusivity_capiglia1999,
    "Electrolyte diffusion activation energy [J.mol-1]": 37040.0,
    "Electrolyte conductivity [S.m-1]": electrolyte_conductivity_capiglia1999,
    "Electrolyte conductivity activation energy [J.mol-1]": 34700.0,
    # experiment and thermal
    "Reference temperature [K]": 298.15,
    "Total heat transfer coefficient [W.m-2.K-1]": 10.0,
    "Ambient temperature [K]": 298.15,
    "Number of electrodes connected in parallel to make a cell": 1.0,
    "Number of cells connected in series to make a battery": 1.0,
    "Lower voltage cut-off [V]": 3.105,
    "Upper voltage cut-off [V]": 4.1,
    "Open-circuit voltage at 0% SOC [V]": 3.105,
    "Open-circuit voltage at 100% SOC [V]": 4.1,
    "Initial concentration in negative electrode [mol.m-3]": 19986.609595075,
    "Initial concentration in positive electrode [mol.m-3]": 30730.7554385565,
    "Initial temperature [K]": 298.15,
}
