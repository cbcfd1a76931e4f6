"""Checks of user arguments shared across the package."""

from numbers import Integral


def check_int(value, name: str, low: int = 1, why: str = "") -> int:
    """`value` as an int when it is an integer (Python's or numpy's, not a bool) of at least
    `low`; else a ValueError naming `name`, the accepted range and `why` (a reason in
    parentheses, e.g. "(number of cells)")."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        word = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{name} must be {word}{' ' + why if why else ''}, got {value!r}.")
    return int(value)
