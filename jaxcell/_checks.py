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


def as_key(key):
    """`key` as a `jax.random` key: an integer seed (Python's or numpy's, not a bool) becomes
    `jax.random.key(seed)`, which takes a 64-bit signed integer (a seed beyond raised numpy's
    OverflowError, naming no seed); anything else is returned as it is (a key)."""
    if isinstance(key, Integral) and not isinstance(key, bool):
        if not -(2**63) <= key < 2**63:
            raise ValueError(f"key: an integer seed must fit in 64 bits, [-2**63, 2**63 - 1], got {key}.")
        import jax

        return jax.random.key(int(key))
    return key
