"""Design variables: parameters by PyBaMM name with bounds, mapped to the unit box and to an
unbounded space (the logit of the position in the interval), with the coupled parameters that
follow them."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..parameters import ParameterSet
from ..parameters._parameter_set import _value_rule, solid_part_names

ELECTRODES = ("Negative", "Positive")
_VARY = re.compile(r"^\s*(?P<name>.+?)\s*=\s*(?P<lo>[^:=]+?)\s*:\s*(?P<hi>[^:=]+?)\s*$")


class DesignVariableError(ValueError):
    """A design variable that the parameter set does not have, or bounds it cannot take."""


@dataclasses.dataclass(frozen=True)
class DesignVariable:
    """A parameter varied by the design, by its PyBaMM name, between `lower` and `upper` (its
    units)."""

    name: str
    lower: float
    upper: float

    @classmethod
    def parse(cls, text: str) -> "DesignVariable":
        """From ``"NAME=LO:HI"``, e.g. ``"Positive electrode thickness [m]=65e-6:100e-6"``."""
        m = _VARY.match(str(text))
        if m is None:
            raise DesignVariableError(
                f"a design variable is NAME=LO:HI, e.g. \"Positive electrode thickness [m]=65e-6:100e-6\", got {text!r}."
            )
        try:
            lo, hi = float(m["lo"]), float(m["hi"])
        except ValueError:
            raise DesignVariableError(f"design variable {text!r}: bounds {m['lo']!r} and {m['hi']!r} must be numbers.") from None
        return cls(m["name"], lo, hi)


def _porosity(e: str) -> str:
    return f"{e} electrode porosity"


def _active(e: str) -> str:
    return f"{e} electrode active material volume fraction"


def _thickness(e: str) -> str:
    return f"{e} electrode thickness [m]"


def _c_max(e: str) -> str:
    return f"Maximum concentration in {e.lower()} electrode [mol.m-3]"


def np_ratio(p) -> jax.Array:
    """The N/P ratio of a set (or a mapping of its values): the negative electrode's theoretical
    lithium capacity per area over the positive's, ``c_max x active fraction x thickness`` each
    (Chen2020: 0.667; the stoichiometry windows the electrodes are cycled over are not in it)."""
    cap = {e: p[_c_max(e)] * p[_active(e)] * p[_thickness(e)] for e in ELECTRODES}
    return cap["Negative"] / cap["Positive"]


def _check_variable(p: ParameterSet, v: DesignVariable) -> None:
    if v.name not in p:
        close = p._unknown(v.name)  # noqa: SLF001 - the set's own message with close matches
        raise DesignVariableError(f"design variable: {close}")
    if callable(p[v.name]):
        raise DesignVariableError(f"design variable {v.name!r} is a function in parameter set {p.name!r}; only numbers can be designed.")
    if not (math.isfinite(v.lower) and math.isfinite(v.upper)) or not v.lower < v.upper:
        raise DesignVariableError(
            f"design variable {v.name!r}: bounds must be finite numbers with lower < upper, got [{v.lower:g}, {v.upper:g}]."
        )
    rule = _value_rule(v.name)
    if rule is not None:
        desc, ok = rule
        for b in (v.lower, v.upper):
            if not bool(ok(np.float64(b))):
                raise DesignVariableError(
                    f"design variable {v.name!r}: bound {b:g} is outside its physical range ({desc}); "
                    f"accepted bounds lie {desc}."
                )


@dataclasses.dataclass(frozen=True)
class DesignSpace:
    """Design variables on a parameter set, with the parameters that follow them.

    The optimisers work on `u` in the unit box (``u = (x - lower) / (upper - lower)``, for
    bound-constrained methods such as L-BFGS-B) or on ``z = logit(u)``, unbounded, for
    unconstrained ones (optax, optimistix). Coupled parameters: when an electrode's porosity is
    designed and its active material volume fraction is not, the fraction (and a binder or
    additive fraction the set names) follows it so the solid's composition is kept
    (``active / (1 - porosity)`` fixed, as `jaxcell.population` does);
    when the active fraction is designed and the porosity is not, the porosity gives way to it
    (the binder and additive fraction ``1 - porosity - active`` is kept); when both are designed,
    their upper bounds (plus the binder fraction) must not exceed 1.

    N/P balance (`np_ratio`, "keep" for the set's own or a number): the thickness of the electrode
    whose thickness is not designed follows, so that the negative electrode's capacity per area
    over the positive's (`np_ratio`) stays at that value whatever the design does to the other
    electrode's thickness, porosity or active fraction.

    Example:
        >>> space = DesignSpace.create(p, ["Positive electrode thickness [m]=65e-6:100e-6",
        ...                                 "Positive particle radius [m]=2e-6:9e-6"])
        >>> q = space.apply(p, space.to_unit(space.initial(p)))
    """

    variables: tuple[DesignVariable, ...]
    follows: tuple[tuple[str, str, float], ...]  # (derived name, driver name, kept quantity)
    np_balance: tuple[str, float] | None = None  # (the thickness that follows, the N/P ratio kept)

    @classmethod
    def create(cls, p: ParameterSet, variables: Sequence[DesignVariable | str | tuple],
               np_ratio: str | float | None = None) -> "DesignSpace":
        """Check `variables` (``DesignVariable``, ``"NAME=LO:HI"`` or ``(name, lo, hi)``) against the
        set: every name must be a number in the set and each bound inside the parameter's physical
        range (porosities and volume fractions in (0, 1), lengths positive, ...). Raises
        `DesignVariableError` naming the variable and the accepted range."""
        vs = []
        for v in variables:
            if isinstance(v, str):
                v = DesignVariable.parse(v)
            elif not isinstance(v, DesignVariable):
                v = DesignVariable(*v)
            _check_variable(p, v)
            vs.append(DesignVariable(v.name, float(v.lower), float(v.upper)))
        if not vs:
            raise DesignVariableError("a design needs at least one design variable (NAME=LO:HI).")
        names = [v.name for v in vs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise DesignVariableError(f"design variable {sorted(dup)[0]!r} is given more than once.")
        bounds = {v.name: v for v in vs}
        follows = []
        for e in ELECTRODES:
            por, act = _porosity(e), _active(e)
            if por not in p or act not in p:
                continue
            eps0, act0 = float(p[por]), float(p[act])
            binder = max(0.0, 1.0 - eps0 - act0)
            if por in bounds and act in bounds:
                top = bounds[por].upper + bounds[act].upper + binder
                if top > 1 + 1e-9:
                    raise DesignVariableError(
                        f"design variables {por!r} (up to {bounds[por].upper:g}) and {act!r} (up to {bounds[act].upper:g}) "
                        f"with the binder fraction {binder:g} can add up to {top:g} > 1: lower their upper bounds so "
                        f"porosity + active fraction stays at most {1 - binder:g}."
                    )
            elif por in bounds:
                # every part of the solid the set names follows, its share of 1 - porosity kept
                for part in [act] + [n for n in solid_part_names(e)[1:] if n in p and n not in bounds]:
                    follows.append((part, por, float(p[part]) / (1.0 - eps0)))
            elif act in bounds:
                hi = bounds[act].upper
                if hi + binder >= 1.0:
                    raise DesignVariableError(
                        f"design variable {act!r}: upper bound {hi:g} leaves no pores beside the binder fraction "
                        f"{binder:g} ({por!r} follows it as 1 - binder - active); accepted upper bounds are below {1 - binder:g}."
                    )
                follows.append((por, act, binder))
        return cls(tuple(vs), tuple(follows), _np_balance(p, bounds, np_ratio))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variables)

    @property
    def derived_names(self) -> tuple[str, ...]:
        """The parameters that follow the design (coupled fractions, the N/P-balanced thickness)."""
        return tuple(d for d, _, _ in self.follows) + ((self.np_balance[0],) if self.np_balance else ())

    @property
    def lower(self) -> np.ndarray:
        return np.array([v.lower for v in self.variables])

    @property
    def upper(self) -> np.ndarray:
        return np.array([v.upper for v in self.variables])

    def initial(self, p: ParameterSet) -> dict[str, float]:
        """The set's values of the design variables, clipped into their bounds."""
        return {v.name: float(np.clip(float(p[v.name]), v.lower, v.upper)) for v in self.variables}

    def to_unit(self, values: Mapping[str, float]) -> jax.Array:
        """Position of `values` (name -> value) in the unit box."""
        x = jnp.stack([jnp.asarray(values[n], jnp.float64) for n in self.names])
        return (x - self.lower) / (self.upper - self.lower)

    def from_unit(self, u) -> dict[str, jax.Array]:
        """Values (name -> value) at `u` in the unit box."""
        x = self.lower + jnp.asarray(u) * (self.upper - self.lower)
        return {n: x[..., i] for i, n in enumerate(self.names)}

    @staticmethod
    def unit_to_unbounded(u, margin: float = 1e-12):
        """logit(u): the unbounded coordinate (u kept `margin` inside the box)."""
        u = jnp.clip(jnp.asarray(u), margin, 1 - margin)
        return jnp.log(u) - jnp.log1p(-u)

    @staticmethod
    def unbounded_to_unit(z):
        return jax.nn.sigmoid(z)

    def apply(self, p: ParameterSet, u) -> ParameterSet:
        """The set with the design at `u` (unit box) and the parameters that follow it."""
        return self.apply_values(p, self.from_unit(u))

    def apply_values(self, p: ParameterSet, values: Mapping[str, float]) -> ParameterSet:
        """The set with the design's `values` (name -> value) and the parameters that follow them."""
        new = dict(values)
        for derived, driver, kept in self.follows:
            if driver.endswith("porosity"):  # a part of the solid: its share of 1 - porosity kept
                new[derived] = kept * (1.0 - values[driver])
            else:  # porosity = 1 - binder - active
                new[derived] = 1.0 - kept - values[driver]
        if self.np_balance is not None:
            follower, ratio = self.np_balance
            value = {k: new.get(k, p[k]) for k in
                     [_c_max(e) for e in ELECTRODES] + [_active(e) for e in ELECTRODES] + [_thickness(e) for e in ELECTRODES]}
            r = np_ratio(value)  # with the follower's own (set) thickness: scale it to the ratio
            new[follower] = value[follower] * (ratio / r if follower == _thickness("Negative") else r / ratio)
        return p.update(new)


def _np_balance(p: ParameterSet, bounds: Mapping[str, DesignVariable], np_ratio_: str | float | None):
    """`DesignSpace.create`'s N/P balance: which thickness follows, and the ratio it keeps."""
    if np_ratio_ is None:
        return None
    names = [f(e) for e in ELECTRODES for f in (_c_max, _active, _thickness)]
    missing = [n for n in names if n not in p or callable(p[n])]
    if missing:
        raise DesignVariableError(f"np_ratio needs the numbers {missing} in parameter set {p.name!r}.")
    designed = [e for e in ELECTRODES if _thickness(e) in bounds]
    if len(designed) != 1:
        raise DesignVariableError(
            "np_ratio: design exactly one electrode's thickness, and the other's follows it to keep the N/P "
            f"ratio; {'both are' if designed else 'neither is'} designed."
        )
    follower = _thickness("Positive" if designed == ["Negative"] else "Negative")
    if np_ratio_ == "keep":
        ratio = float(np_ratio(p))
    else:
        try:
            ratio = float(np_ratio_)
        except (TypeError, ValueError):
            raise DesignVariableError(f"np_ratio must be 'keep' or a positive number, got {np_ratio_!r}.") from None
        if not (math.isfinite(ratio) and ratio > 0):
            raise DesignVariableError(f"np_ratio must be 'keep' or a positive number, got {np_ratio_!r}.")
    return follower, ratio
