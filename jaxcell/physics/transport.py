"""Effective transport in porous media: kappa_eff = kappa * B, with B the transport efficiency;
the electrolyte concentration at which its properties are evaluated."""

import jax.numpy as jnp

from ..parameters import UnknownParameterError

# [mol.m-3]: the scale below which `positive_concentration` departs from the concentration
ELECTROLYTE_FLOOR = 1e-3


def positive_concentration(c_e):
    """The electrolyte concentration [mol.m-3] at which the electrolyte's properties, the
    exchange current and ln(c_e) are evaluated: the smooth positive part
    (c + sqrt(c^2 + 4 d^2)) / 2 with d = `ELECTROLYTE_FLOOR`. It differs from c_e by d^2 / c_e
    (1e-12 relative at 1000 mol.m-3, 1e-6 at 1 mol.m-3) and stays positive when the solver's
    state dips below zero, which it may within its tolerance where the electrolyte runs out (the
    Chen2020 DFN near the positive current collector at 3C): sqrt(c_e) and ln(c_e) would be NaN
    there. The conserved state itself is not changed."""
    return 0.5 * (c_e + jnp.sqrt(c_e * c_e + 4.0 * ELECTROLYTE_FLOOR**2))

# the `transport_efficiency` option of the SPMe and the DFN (PyBaMM's "transport efficiency")
TRANSPORT_EFFICIENCY_OPTIONS = ("Bruggeman", "tortuosity factor")
# what "tortuosity factor" reads (PyBaMM's names)
TORTUOSITY_PARAMETERS = (
    "Negative electrode tortuosity factor (electrolyte)",
    "Separator tortuosity factor (electrolyte)",
    "Positive electrode tortuosity factor (electrolyte)",
    "Negative electrode tortuosity factor (electrode)",
    "Positive electrode tortuosity factor (electrode)",
)


def check_option(value):
    if value not in TRANSPORT_EFFICIENCY_OPTIONS:
        raise ValueError(f"transport_efficiency={value!r} is not one of {TRANSPORT_EFFICIENCY_OPTIONS}.")


def missing_parameters(option, p):
    """The parameters that `option` reads and the set `p` does not have."""
    return [k for k in TORTUOSITY_PARAMETERS if k not in p] if option == "tortuosity factor" else []


def bruggeman(volume_fraction, exponent):
    """Transport efficiency eps^b (Bruggeman 1935)."""
    return volume_fraction**exponent


def tortuosity_factor(volume_fraction, tau):
    """Transport efficiency phi / tau for a tortuosity factor tau, phi the phase's volume
    fraction; tau = phi^(1 - b) gives Bruggeman's phi^b."""
    return volume_fraction / tau


def efficiency(option, region, phase, volume_fraction, p):
    """Transport efficiency of `phase` ("electrolyte" or "electrode") in `region` ("Negative
    electrode", "Separator" or "Positive electrode") whose volume fraction is `volume_fraction`
    (the porosity for the electrolyte, one minus it for the electrode), under the model option
    `option` (`TRANSPORT_EFFICIENCY_OPTIONS`). Reads PyBaMM's parameters "{region} Bruggeman
    coefficient ({phase})" or "{region} tortuosity factor ({phase})"."""
    if option == "Bruggeman":
        return bruggeman(volume_fraction, p[f"{region} Bruggeman coefficient ({phase})"])
    name = f"{region} tortuosity factor ({phase})"
    if name not in p:
        missing = ", ".join(repr(k) for k in missing_parameters(option, p))
        raise UnknownParameterError(
            f"transport_efficiency='tortuosity factor' reads {missing}, which parameter set {p.name!r} does not "
            "have. Add these (positive) tortuosity factors with p.update({...}, check_already_exists=False); "
            "tau = phi^(1 - b), with phi the porosity for the electrolyte and one minus it for the "
            "electrode, reproduces Bruggeman's exponent b."
        )
    return tortuosity_factor(volume_fraction, p[name])
