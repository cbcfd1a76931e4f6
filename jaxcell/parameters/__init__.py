"""Parameter sets: `load_parameters(name)` and the `ParameterSet` pytree."""

from importlib import import_module

from ._parameter_set import (
    ParameterSet as ParameterSet,
    ParameterValueError as ParameterValueError,
    UnknownParameterError as UnknownParameterError,
    stack as stack,
)

_SETS = {"chen2020": "_chen2020", "marquis2019": "_marquis2019", "ecker2015": "_ecker2015"}
_NAMES = {"chen2020": "Chen2020", "marquis2019": "Marquis2019", "ecker2015": "Ecker2015"}


def available_parameter_sets() -> list[str]:
    """Names accepted by `load_parameters`."""
    return list(_NAMES.values())


def load_parameters(name: str) -> ParameterSet:
    """Load a published parameter set by name (case-insensitive).

    Available: "Chen2020" (LG M50, NMC811/graphite-SiOx), "Marquis2019" (Kokam, LCO/graphite),
    "Ecker2015" (Kokam SLPB 75106100, NMC/graphite). Each module cites its source.

    Example:
        >>> p = jaxcell.load_parameters("chen2020")
    """
    key = str(name).lower()
    if key not in _SETS:
        raise ValueError(
            f"Unknown parameter set {name!r}; available: {', '.join(available_parameter_sets())}."
        )
    mod = import_module(f".{_SETS[key]}", __name__)
    return ParameterSet.from_dict(mod.VALUES, name=_NAMES[key], citation=mod.CITATION)
