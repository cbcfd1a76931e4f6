"""Effective transport in porous media: kappa_eff = kappa * B, with B the transport efficiency."""

from ..parameters import UnknownParameterError

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
