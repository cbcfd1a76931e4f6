"""Effective transport in porous media."""


def bruggeman(volume_fraction, exponent):
    """Transport efficiency eps^b (Bruggeman 1935): kappa_eff = kappa * bruggeman(eps, b)."""
    return volume_fraction**exponent
