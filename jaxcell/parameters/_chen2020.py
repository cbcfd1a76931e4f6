"""LG M50 cell (NMC811 / graphite-SiOx) of Chen et al. (2020).

C.-H. Chen, F. Brosa Planella, K. O'Regan, D. Gastol, W. D. Widanage and E. Kendrick,
"Development of Experimental Techniques for Parameterization of Multi-scale Lithium-ion Battery
Models", J. Electrochem. Soc. 167 (2020) 080534. Electrolyte: A. Nyman, M. Behm and G. Lindbergh,
Electrochim. Acta 53 (2008) 6356. Thermal values as collected in PyBaMM's Chen2020 set.
"""

import jax.numpy as jnp

from ._functions import arrhenius, mass_action_exchange_current

CITATION = (
    "Chen et al., J. Electrochem. Soc. 167 (2020) 080534; "
    "Nyman et al., Electrochim. Acta 53 (2008) 6356"
)


def graphite_ocp(sto):
    """Graphite-SiOx open-circuit potential [V] (fit of Chen et al. 2020)."""
    return (
        1.9793 * jnp.exp(-39.3631 * sto)
        + 0.2482
        - 0.0909 * jnp.tanh(29.8538 * (sto - 0.1234))
        - 0.04478 * jnp.tanh(14.9159 * (sto - 0.2769))
        - 0.0205 * jnp.tanh(30.4444 * (sto - 0.6103))
    )


def nmc811_ocp(sto):
    """NMC811 open-circuit potential [V] (fit of Chen et al. 2020)."""
    return (
        -0.8090 * sto
        + 4.4875
        - 0.0428 * jnp.tanh(18.5138 * (sto - 0.5542))
        - 17.7326 * jnp.tanh(15.7890 * (sto - 0.3117))
        + 17.5842 * jnp.tanh(15.9308 * (sto - 0.3120))
    )


def negative_exchange_current(c_e, c_s_surf, c_s_max, T, *, p):
    """Graphite exchange-current density [A.m-2], mass-action form with Arrhenius factor."""
    k = p["Negative electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]"]
    E = p["Negative electrode reaction activation energy [J.mol-1]"]
    return mass_action_exchange_current(k, c_e, c_s_surf, c_s_max) * arrhenius(E, T)


def positive_exchange_current(c_e, c_s_surf, c_s_max, T, *, p):
    """NMC811 exchange-current density [A.m-2], mass-action form with Arrhenius factor."""
    k = p["Positive electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]"]
    E = p["Positive electrode reaction activation energy [J.mol-1]"]
    return mass_action_exchange_current(k, c_e, c_s_surf, c_s_max) * arrhenius(E, T)


def electrolyte_diffusivity_nyman2008(c_e, T):
    """LiPF6 in EC:EMC (3:7) diffusivity [m2.s-1] (Nyman et al. 2008; no T dependence given)."""
    c = c_e / 1000.0
    return 8.794e-11 * c**2 - 3.972e-10 * c + 4.862e-10


def electrolyte_conductivity_nyman2008(c_e, T):
    """LiPF6 in EC:EMC (3:7) conductivity [S.m-1] (Nyman et al. 2008; no T dependence given)."""
    c = c_e / 1000.0
    return 0.1297 * c**3 - 2.51 * c * jnp.sqrt(c) + 3.329 * c  # c**1.5: sqrt is cheaper than pow


VALUES = {
    # cell
    "Negative current collector thickness [m]": 12e-6,
    "Negative electrode thickness [m]": 85.2e-6,
    "Separator thickness [m]": 12e-6,
    "Positive electrode thickness [m]": 75.6e-6,
    "Positive current collector thickness [m]": 16e-6,
    "Electrode height [m]": 0.065,
    "Electrode width [m]": 1.58,
    "Cell cooling surface area [m2]": 0.00531,
    "Cell volume [m3]": 2.42e-5,
    "Negative current collector conductivity [S.m-1]": 58411000.0,
    "Positive current collector conductivity [S.m-1]": 36914000.0,
    "Negative current collector density [kg.m-3]": 8960.0,
    "Positive current collector density [kg.m-3]": 2700.0,
    "Negative current collector specific heat capacity [J.kg-1.K-1]": 385.0,
    "Positive current collector specific heat capacity [J.kg-1.K-1]": 897.0,
    "Negative current collector thermal conductivity [W.m-1.K-1]": 401.0,
    "Positive current collector thermal conductivity [W.m-1.K-1]": 237.0,
    "Nominal cell capacity [A.h]": 5.0,
    "Current function [A]": 5.0,
    "Contact resistance [Ohm]": 0.0,
    # negative electrode
    "Negative electrode conductivity [S.m-1]": 215.0,
    "Maximum concentration in negative electrode [mol.m-3]": 33133.0,
    "Negative particle diffusivity [m2.s-1]": 3.3e-14,
    "Negative electrode OCP [V]": graphite_ocp,
    "Negative electrode porosity": 0.25,
    "Negative electrode active material volume fraction": 0.75,
    "Negative particle radius [m]": 5.86e-6,
    "Negative electrode Bruggeman coefficient (electrolyte)": 1.5,
    "Negative electrode Bruggeman coefficient (electrode)": 0.0,
    "Negative electrode charge transfer coefficient": 0.5,
    "Negative electrode double-layer capacity [F.m-2]": 0.2,
    "Negative electrode exchange-current density [A.m-2]": negative_exchange_current,
    "Negative electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]": 6.48e-7,
    "Negative electrode reaction activation energy [J.mol-1]": 35000.0,
    "Negative electrode density [kg.m-3]": 1657.0,
    "Negative electrode specific heat capacity [J.kg-1.K-1]": 700.0,
    "Negative electrode thermal conductivity [W.m-1.K-1]": 1.7,
    "Negative electrode OCP entropic change [V.K-1]": 0.0,
    # separator
    "Separator porosity": 0.47,
    "Separator Bruggeman coefficient (electrolyte)": 1.5,
    "Separator density [kg.m-3]": 397.0,
    "Separator specific heat capacity [J.kg-1.K-1]": 700.0,
    "Separator thermal conductivity [W.m-1.K-1]": 0.16,
    # positive electrode
    "Positive electrode conductivity [S.m-1]": 0.18,
    "Maximum concentration in positive electrode [mol.m-3]": 63104.0,
    "Positive particle diffusivity [m2.s-1]": 4e-15,
    "Positive electrode OCP [V]": nmc811_ocp,
    "Positive electrode porosity": 0.335,
    "Positive electrode active material volume fraction": 0.665,
    "Positive particle radius [m]": 5.22e-6,
    "Positive electrode Bruggeman coefficient (electrolyte)": 1.5,
    "Positive electrode Bruggeman coefficient (electrode)": 0.0,
    "Positive electrode charge transfer coefficient": 0.5,
    "Positive electrode double-layer capacity [F.m-2]": 0.2,
    "Positive electrode exchange-current density [A.m-2]": positive_exchange_current,
    "Positive electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]": 3.42e-6,
    "Positive electrode reaction activation energy [J.mol-1]": 17800.0,
    "Positive electrode density [kg.m-3]": 3262.0,
    "Positive electrode specific heat capacity [J.kg-1.K-1]": 700.0,
    "Positive electrode thermal conductivity [W.m-1.K-1]": 2.1,
    "Positive electrode OCP entropic change [V.K-1]": 0.0,
    # electrolyte
    "Initial concentration in electrolyte [mol.m-3]": 1000.0,
    "Cation transference number": 0.2594,
    "Thermodynamic factor": 1.0,
    "Electrolyte diffusivity [m2.s-1]": electrolyte_diffusivity_nyman2008,
    "Electrolyte conductivity [S.m-1]": electrolyte_conductivity_nyman2008,
    # experiment and thermal
    "Reference temperature [K]": 298.15,
    "Total heat transfer coefficient [W.m-2.K-1]": 10.0,
    "Ambient temperature [K]": 298.15,
    "Number of electrodes connected in parallel to make a cell": 1.0,
    "Number of cells connected in series to make a battery": 1.0,
    "Lower voltage cut-off [V]": 2.5,
    "Upper voltage cut-off [V]": 4.2,
    "Open-circuit voltage at 0% SOC [V]": 2.5,
    "Open-circuit voltage at 100% SOC [V]": 4.2,
    "Initial concentration in negative electrode [mol.m-3]": 29866.0,
    "Initial concentration in positive electrode [mol.m-3]": 17038.0,
    "Initial temperature [K]": 298.15,
}
