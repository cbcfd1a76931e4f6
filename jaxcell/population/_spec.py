"""The variation spec: which parameters vary, how, at which level, and how they depend."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

# Each distribution: its family (the law of a level's deviation) and the space the deviation is
# added in: "log" (positive parameters only), "logit" (fractions only), "natural" (the parameter's
# own units, truncated to its range) or None (the space chosen from the parameter's range: log for
# a positive parameter, logit for a fraction, natural units for an unconstrained one).
DISTRIBUTIONS = {
    "transformed_normal": ("normal", None),
    "lognormal": ("normal", "log"),
    "logit_normal": ("normal", "logit"),
    "truncated_normal": ("normal", "natural"),
    "log_student_t": ("student_t", "log"),
    "logit_student_t": ("student_t", "logit"),
    "pareto_tail": ("pareto_tail", "log"),
    # Gaussian / Student t in natural units on an unconstrained parameter; on a positive parameter
    # or a fraction, deprecated aliases of the log- or logit-space distributions (see _sample.py)
    "normal": ("normal", None),
    "student_t": ("student_t", None),
}
T_DISTRIBUTIONS = ("student_t", "log_student_t", "logit_student_t")
SPREADS = ("std", "rel_std", "sigma")
LEVELS = ("pack", "module", "cell")


class VariationError(ValueError):
    """Raised for an invalid variation spec; the message names the bad entry."""


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise VariationError(f"{what} must be a number, got {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise VariationError(f"{what} must be finite, got {value!r}.")
    return value


@dataclasses.dataclass(frozen=True)
class Levels:
    """A spread per level of the hierarchy, in the units of the spread it belongs to.

    A cell's deviation is the sum of independent pack, module and cell deviations, so the
    variances add: ``total**2 = pack**2 + module**2 + cell**2`` (for Gaussian levels, and for any
    levels with finite variance up to each family's variance factor).

    Example:
        >>> Levels(pack=0.01, cell=0.005).total
        0.01118...
    """

    pack: float = 0.0
    module: float = 0.0
    cell: float = 0.0

    def __post_init__(self):
        for level in LEVELS:
            v = _number(getattr(self, level), f"the {level} level")
            if v < 0:
                raise VariationError(
                    f"the {level} level must be non-negative, got {v}."
                )
            object.__setattr__(self, level, v)

    @classmethod
    def of(cls, value: Any, what: str = "spread") -> Levels:
        """A `Levels` from a number (the cell level), a mapping with keys among pack, module and
        cell, or a `Levels`."""
        if isinstance(value, Levels):
            return value
        try:
            if isinstance(value, Mapping):
                unknown = set(value) - set(LEVELS)
                if unknown:
                    raise VariationError(
                        f"unknown level(s) {sorted(unknown)} (accepted: {', '.join(LEVELS)})."
                    )
                return cls(**{k: value[k] for k in LEVELS if k in value})
            return cls(cell=value)
        except VariationError as e:
            raise VariationError(f"{what}: {e}") from None

    @property
    def total(self) -> float:
        """Square root of the sum of the squared levels."""
        return math.sqrt(self.pack**2 + self.module**2 + self.cell**2)

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.pack, self.module, self.cell)

    def to_data(self) -> float | dict[str, float]:
        if self.pack == 0 and self.module == 0:
            return self.cell
        return {k: getattr(self, k) for k in LEVELS}


@dataclasses.dataclass(frozen=True)
class ParameterVariation:
    """How one parameter varies from cell to cell.

    Most distributions add their deviations in a transformed space chosen from the parameter's
    physical range, so no sample is ever unphysical: ``log`` for positive quantities (lengths,
    radii, resistances, rate constants), ``logit`` for fractions in (0, 1) (porosities, volume
    fractions), none for unconstrained parameters. A cell's value is
    ``inverse_transform(transform(center) + d_pack + d_module + d_cell)``. (An electrode's active
    material volume fraction is varied as the active share of its solid phase; see
    docs/population.md.) A Gaussian in the log space is a *lognormal* in the parameter's units,
    skewed to the right, and a Student t in the log space (*log-t*) has no finite mean or
    variance in the parameter's units; the names below say which space a distribution lives in.
    ``"truncated_normal"`` is the one Gaussian in the parameter's own units: a symmetric spread
    of, say, an exchange-current density, cut only at the physical range.

    Args:
        name: the parameter's name in the `ParameterSet`, e.g. ``"Negative electrode porosity"``.
        distribution: family of each level's deviation and the space it is added in:

            - ``"transformed_normal"`` (the default): Gaussian in the parameter's transformed
              space: lognormal for a positive parameter, logit-normal for a fraction, Gaussian
              for an unconstrained one. Near-Gaussian in the parameter's units for spreads of a
              few percent (the lognormal's skewness is about ``3 sigma``).
            - ``"lognormal"``: the same, for a positive parameter (refused for others).
            - ``"logit_normal"``: the same, for a fraction in (0, 1) (refused for others).
            - ``"truncated_normal"``: Gaussian in the parameter's units with mean `center` and
              standard deviation `std` (or ``rel_std * center``), truncated to the physical range
              (positive: ``> 0``; fraction: in (0, 1)) and to `lower` / `upper` if given. This is
              the parent Gaussian's mean and standard deviation; the truncated distribution's own
              mean and standard deviation differ by the mass cut off (docs/population.md).
            - ``"log_student_t"``: Student t with `df` degrees of freedom in log space, for a
              positive parameter. Heavy-tailed in the parameter's units beyond any power: its mean
              and variance there are infinite for every `df`; `upper` truncates it.
            - ``"logit_student_t"``: Student t in logit space, for a fraction.
            - ``"pareto_tail"``: a positive quantity whose log is Gaussian up to its upper
              `tail_probability` quantile and exponential beyond: a power-law tail of index
              `tail_index`, e.g. rare bad welds.
            - ``"normal"`` and ``"student_t"``: Gaussian / Student t in natural units for an
              unconstrained parameter. On a positive parameter or a fraction they are the
              log- or logit-space distributions above under older names, kept as deprecated
              aliases that warn when sampled.
        std, rel_std, sigma: the spread, exactly one of them, as a number (cell level only) or
            per level (``{"pack": ..., "module": ..., "cell": ...}`` or `Levels`). `std` is in
            the parameter's units and `rel_std` a fraction of the center; for the transformed
            distributions both are converted to the transformed space to first order at the
            center (for ``log``, ``sigma = rel_std``). `sigma` is the scale in the transformed
            space itself (the log-space standard deviation of a lognormal); it does not apply to
            ``"truncated_normal"``. For the t distributions it is the t scale, not the standard
            deviation (which is ``scale * sqrt(df / (df - 2))`` in the transformed space).
        center: the value at zero deviation (the median of the transformed distributions; the
            parent Gaussian's mean for ``"truncated_normal"``); default: the parameter set's
            value.
        df: degrees of freedom of the t distributions (positive).
        tail_probability: probability of the tail of ``"pareto_tail"``, in (0, 1).
        tail_index: power-law index of that tail (positive; the tail has a finite mean above 1
            and a finite variance above 2).
        lower, upper: optional bounds in the parameter's units, inside its physical range, for
            ``"truncated_normal"`` and the t distributions: the distribution is truncated to
            ``(lower, upper)`` exactly (sampled by its quantile function, no clipping). For a
            t distribution only one level may vary (the sum of truncated levels is not a
            truncated t).

    Example:
        >>> ParameterVariation("Negative electrode thickness [m]", "lognormal", rel_std={"pack": 0.01, "cell": 0.003})
        >>> ParameterVariation("Positive electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]",
        ...                    "truncated_normal", rel_std=0.2)
        >>> ParameterVariation("Contact resistance [Ohm]", "pareto_tail", center=3e-4, sigma=0.3,
        ...                    tail_probability=0.01, tail_index=1.5)
    """

    name: str
    distribution: str = "transformed_normal"
    std: Levels | None = None
    rel_std: Levels | None = None
    sigma: Levels | None = None
    center: float | None = None
    df: float | None = None
    tail_probability: float | None = None
    tail_index: float | None = None
    lower: float | None = None
    upper: float | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise VariationError(
                f"a parameter variation needs a parameter name, got {self.name!r}."
            )
        where = f"variation of {self.name!r}"
        if self.distribution not in DISTRIBUTIONS:
            raise VariationError(
                f"{where}: unknown distribution {self.distribution!r} (accepted: {', '.join(DISTRIBUTIONS)})."
            )
        given = [k for k in SPREADS if getattr(self, k) is not None]
        if len(given) != 1:
            raise VariationError(
                f"{where}: give exactly one of {', '.join(SPREADS)} (got {', '.join(given) or 'none'})."
            )
        object.__setattr__(
            self, given[0], Levels.of(getattr(self, given[0]), f"{where}, {given[0]}")
        )
        if self.center is not None:
            object.__setattr__(self, "center", _number(self.center, f"{where}: center"))
        t_family = self.distribution in T_DISTRIBUTIONS
        shape = (
            ("df",)
            if t_family
            else ("tail_probability", "tail_index")
            if self.distribution == "pareto_tail"
            else ()
        )
        for key in ("df", "tail_probability", "tail_index"):
            value = getattr(self, key)
            if key in shape and value is None:
                raise VariationError(
                    f"{where}: the {self.distribution} distribution needs {key}."
                )
            if key not in shape and value is not None:
                owner = (
                    "pareto_tail distribution"
                    if key != "df"
                    else {
                        "lognormal": "log_student_t distribution",
                        "logit_normal": "logit_student_t distribution",
                        "normal": "student_t distribution",
                    }.get(self.distribution, f"t distributions ({', '.join(T_DISTRIBUTIONS)})")
                )
                raise VariationError(
                    f"{where}: {key} applies to the {owner}, not {self.distribution}."
                )
            if value is not None:
                object.__setattr__(self, key, _number(value, f"{where}: {key}"))
        if self.df is not None and self.df <= 0:
            raise VariationError(f"{where}: df must be positive, got {self.df}.")
        if self.tail_probability is not None and not 0 < self.tail_probability < 1:
            raise VariationError(
                f"{where}: tail_probability must be in (0, 1), got {self.tail_probability}."
            )
        if self.tail_index is not None and self.tail_index <= 0:
            raise VariationError(
                f"{where}: tail_index must be positive, got {self.tail_index}."
            )
        self._check_bounds(where)

    def _check_bounds(self, where: str) -> None:
        bounded = self.distribution == "truncated_normal" or self.distribution in T_DISTRIBUTIONS
        for key in ("lower", "upper"):
            value = getattr(self, key)
            if value is None:
                continue
            if not bounded:
                raise VariationError(
                    f"{where}: {key} applies to the truncated_normal and t distributions "
                    f"({', '.join(T_DISTRIBUTIONS)}), not {self.distribution}."
                )
            if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value):
                raise VariationError(f"{where}: {key} must be a number, got {value!r}.")
            object.__setattr__(self, key, float(value))
        if self.distribution == "truncated_normal" and self.sigma is not None:
            raise VariationError(
                f"{where}: truncated_normal is a Gaussian in the parameter's units: give its "
                f"standard deviation as std (in the parameter's units) or rel_std (a fraction of "
                f"the center), not sigma (a scale in a log or logit space)."
            )
        lo = -math.inf if self.lower is None else self.lower
        hi = math.inf if self.upper is None else self.upper
        if not lo < hi:
            raise VariationError(
                f"{where}: lower must be below upper, got lower = {lo} and upper = {hi}."
            )
        if self.center is not None and not lo < self.center < hi:
            raise VariationError(
                f"{where}: the center {self.center} must lie in (lower, upper) = ({lo}, {hi})."
            )
        if self.distribution in T_DISTRIBUTIONS and (self.lower, self.upper) != (None, None):
            varying = [lv for lv, s in zip(LEVELS, self.spread.as_tuple()) if s > 0]
            if len(varying) > 1:
                raise VariationError(
                    f"{where}: bounds on a t distribution need a single varying level, got "
                    f"{', '.join(varying)} (a sum of truncated t levels is not a truncated t); "
                    f"use truncated_normal for bounded spreads on several levels."
                )

    @property
    def spread_kind(self) -> str:
        """Which spread was given: ``"std"``, ``"rel_std"`` or ``"sigma"``."""
        return next(k for k in SPREADS if getattr(self, k) is not None)

    @property
    def spread(self) -> Levels:
        return getattr(self, self.spread_kind)

    def to_data(self) -> dict[str, Any]:
        """A plain dict for a TOML or JSON file (`Variation.to_dict`)."""
        out: dict[str, Any] = {"name": self.name, "distribution": self.distribution}
        out[self.spread_kind] = self.spread.to_data()
        for key in ("center", "df", "tail_probability", "tail_index", "lower", "upper"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def _correlation_matrix(
    parameters: tuple[str, ...], correlation: Any, where: str
) -> tuple[tuple[float, ...], ...]:
    k = len(parameters)
    if isinstance(correlation, Real) and not isinstance(correlation, bool):
        if k != 2:
            raise VariationError(
                f"{where}: a single correlation number needs exactly 2 parameters, got {k}."
            )
        r = _number(correlation, f"{where}: correlation")
        correlation = [[1.0, r], [r, 1.0]]
    try:
        m = np.asarray(correlation, dtype=np.float64)
    except (TypeError, ValueError):
        raise VariationError(
            f"{where}: correlation must be a {k}x{k} matrix of numbers, got {correlation!r}."
        ) from None
    if m.shape != (k, k):
        raise VariationError(
            f"{where}: correlation must be a {k}x{k} matrix (one row per parameter), got shape {m.shape}."
        )
    if not np.all(np.isfinite(m)):
        raise VariationError(f"{where}: correlation has non-finite entries.")
    if not np.allclose(m, m.T, rtol=0, atol=1e-12):
        i, j = np.unravel_index(np.argmax(np.abs(m - m.T)), m.shape)
        raise VariationError(
            f"{where}: correlation must be symmetric: entry [{i}][{j}] = {m[i, j]} but [{j}][{i}] = {m[j, i]}."
        )
    if not np.allclose(np.diag(m), 1.0, rtol=0, atol=1e-12):
        raise VariationError(
            f"{where}: a correlation matrix has ones on its diagonal, got {np.diag(m).tolist()}."
        )
    if np.any(np.abs(m) > 1):
        raise VariationError(
            f"{where}: correlations must lie in [-1, 1], got {m[np.abs(m) > 1][0]}."
        )
    smallest = float(np.linalg.eigvalsh(m)[0])
    if smallest <= 1e-10:
        raise VariationError(
            f"{where}: not a valid correlation matrix: it must be positive definite, but its smallest "
            f"eigenvalue is {smallest:.3g} (these correlations contradict each other, or two parameters "
            f"are perfectly correlated)."
        )
    return tuple(tuple(float(x) for x in row) for row in m)


@dataclasses.dataclass(frozen=True)
class AbstractCopula:
    """A copula over some of the varied parameters: their deviations at each level are
    coupled through correlated scores with correlation matrix `correlation` (symmetric,
    unit diagonal, positive definite; a number for two parameters)."""

    parameters: tuple[str, ...]
    correlation: Any
    kind: ClassVar[str] = ""

    def __post_init__(self):
        if isinstance(self.parameters, str) or not isinstance(
            self.parameters, Sequence
        ):
            raise VariationError(
                f"{self.kind} copula: parameters must be a list of names, got {self.parameters!r}."
            )
        params = tuple(self.parameters)
        where = f"{self.kind} copula over {list(params)}"
        if len(params) < 2 or len(set(params)) != len(params):
            raise VariationError(
                f"{where}: a copula couples at least 2 distinct parameters."
            )
        object.__setattr__(self, "parameters", params)
        object.__setattr__(
            self, "correlation", _correlation_matrix(params, self.correlation, where)
        )

    def to_data(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "parameters": list(self.parameters),
            "correlation": [list(r) for r in self.correlation],
        }


@dataclasses.dataclass(frozen=True)
class GaussianCopula(AbstractCopula):
    """Gaussian copula: correlated standard normal scores. Kendall's tau between two of its
    parameters is ``(2/pi) arcsin(rho)``, whatever their marginal distributions; there is no
    tail dependence.

    Example:
        >>> GaussianCopula(("Negative electrode thickness [m]", "Negative electrode porosity"), -0.3)
    """

    kind: ClassVar[str] = "gaussian"


@dataclasses.dataclass(frozen=True)
class StudentTCopula(AbstractCopula):
    """Student-t copula with `df` degrees of freedom: correlated normal scores divided by one
    shared ``sqrt(chi2_df / df)``, so extreme deviations come together. Kendall's tau is
    ``(2/pi) arcsin(rho)`` as for the Gaussian copula; the upper (and lower) tail dependence
    coefficient is ``2 t_{df+1}(-sqrt((df + 1)(1 - rho)/(1 + rho)))``.

    Example:
        >>> StudentTCopula(("Contact resistance [Ohm]", "Total heat transfer coefficient [W.m-2.K-1]"), -0.5, df=3)
    """

    df: float = dataclasses.field(default=None)
    kind: ClassVar[str] = "t"

    def __post_init__(self):
        super().__post_init__()
        where = f"t copula over {list(self.parameters)}"
        if self.df is None:
            raise VariationError(f"{where}: needs df (degrees of freedom).")
        df = _number(self.df, f"{where}: df")
        if df <= 0:
            raise VariationError(f"{where}: df must be positive, got {df}.")
        object.__setattr__(self, "df", df)

    def to_data(self) -> dict[str, Any]:
        return {**super().to_data(), "df": self.df}


COPULAS = {"gaussian": GaussianCopula, "t": StudentTCopula}


@dataclasses.dataclass(frozen=True)
class Hierarchy:
    """How a population is laid out: cells ``0 .. cells_per_module - 1`` form module 0, and so on;
    modules ``0 .. modules_per_pack - 1`` form pack 0, and so on (the last module and pack may be
    partial). Each pack and each module draws its own deviation, shared by its cells.

    Example:
        >>> pack, module = Hierarchy(modules_per_pack=2, cells_per_module=3).layout(7)
        >>> pack.tolist(), module.tolist()
        ([0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 1, 1, 1, 2])
    """

    modules_per_pack: int = 1
    cells_per_module: int = 1

    def __post_init__(self):
        for key in ("modules_per_pack", "cells_per_module"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, Integral) or v < 1:
                raise VariationError(
                    f"hierarchy: {key} must be a positive integer, got {v!r}."
                )
            object.__setattr__(self, key, int(v))

    def layout(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Pack and (global) module index of each of `n` cells."""
        module = np.arange(n) // self.cells_per_module
        return module // self.modules_per_pack, module

    def counts(self, n: int) -> tuple[int, int]:
        """Number of packs and of modules that `n` cells fill."""
        modules = -(-n // self.cells_per_module)
        return -(-modules // self.modules_per_pack), modules

    def to_data(self) -> dict[str, int]:
        return {
            "modules_per_pack": self.modules_per_pack,
            "cells_per_module": self.cells_per_module,
        }


@dataclasses.dataclass(frozen=True)
class Variation:
    """A declarative spec of manufacturing variation: parameter variations, copulas coupling
    some of them, and the pack -> module -> cell layout. Read it from a TOML or JSON file with
    `Variation.from_file` (format in docs/population.md) or build it in Python.

    Parameters not in any copula vary independently. A parameter belongs to at most one copula.
    The copula couples the parameters' deviations at each level of the hierarchy.

    Example:
        >>> v = Variation(
        ...     parameters=[
        ...         ParameterVariation("Negative electrode thickness [m]", rel_std={"pack": 0.01, "cell": 0.003}),
        ...         ParameterVariation("Negative electrode porosity", rel_std=0.02),
        ...     ],
        ...     copulas=[GaussianCopula(["Negative electrode thickness [m]", "Negative electrode porosity"], -0.3)],
        ...     hierarchy=Hierarchy(modules_per_pack=8, cells_per_module=12),
        ... )
        >>> v.to_file("spec.toml"); Variation.from_file("spec.toml") == v
        True
    """

    parameters: tuple[ParameterVariation, ...]
    copulas: tuple[AbstractCopula, ...] = ()
    hierarchy: Hierarchy = Hierarchy()
    description: str = ""

    def __post_init__(self):
        params = tuple(self.parameters)
        if not params:
            raise VariationError("a Variation needs at least one parameter.")
        for i, p in enumerate(params):
            if not isinstance(p, ParameterVariation):
                raise VariationError(
                    f"parameter entry {i} must be a ParameterVariation, got {type(p).__name__}."
                )
        names = [p.name for p in params]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise VariationError(
                f"parameter(s) {dup} appear more than once in the variation."
            )
        copulas = tuple(self.copulas)
        seen: dict[str, int] = {}
        for i, c in enumerate(copulas):
            if not isinstance(c, AbstractCopula):
                raise VariationError(
                    f"copula entry {i} must be a GaussianCopula or StudentTCopula, got {type(c).__name__}."
                )
            for name in c.parameters:
                if name not in names:
                    raise VariationError(
                        f"copula entry {i} ({c.kind}) couples {name!r}, which is not among the varied parameters "
                        f"(add a [[parameter]] entry for it)."
                    )
                if name in seen:
                    raise VariationError(
                        f"{name!r} is in copula entries {seen[name]} and {i}; a parameter may be in one copula only."
                    )
                seen[name] = i
        if not isinstance(self.hierarchy, Hierarchy):
            raise VariationError(
                f"hierarchy must be a Hierarchy, got {type(self.hierarchy).__name__}."
            )
        if not isinstance(self.description, str):
            raise VariationError(
                f"description must be a string, got {self.description!r}."
            )
        object.__setattr__(self, "parameters", params)
        object.__setattr__(self, "copulas", copulas)

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the varied parameters, in spec order."""
        return tuple(p.name for p in self.parameters)

    def __getitem__(self, name: str) -> ParameterVariation:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(
            f"{name!r} is not varied by this variation (varied: {list(self.names)})."
        )

    def with_parameters(self, *entries: ParameterVariation) -> Variation:
        """A new variation where each entry replaces the one of the same name (or is appended).

        Example:
            >>> gaussian = v.with_parameters(ParameterVariation("Contact resistance [Ohm]", center=3e-4, sigma=0.3))
        """
        new = {e.name: e for e in entries}
        kept = [new.pop(p.name, p) for p in self.parameters]
        return dataclasses.replace(self, parameters=tuple(kept) + tuple(new.values()))

    # -- files ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data: the structure of the TOML and JSON files."""
        out: dict[str, Any] = {}
        if self.description:
            out["description"] = self.description
        out["hierarchy"] = self.hierarchy.to_data()
        out["parameter"] = [p.to_data() for p in self.parameters]
        if self.copulas:
            out["copula"] = [c.to_data() for c in self.copulas]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Variation:
        """Build a variation from plain data (the structure of the TOML and JSON files)."""
        if not isinstance(data, Mapping):
            raise VariationError(
                f"a variation spec is a table/object, got {type(data).__name__}."
            )
        unknown = set(data) - {"description", "hierarchy", "parameter", "copula"}
        if unknown:
            raise VariationError(
                f"unknown top-level key(s) {sorted(unknown)} (accepted: description, hierarchy, parameter, copula)."
            )
        hier = data.get("hierarchy", {})
        if not isinstance(hier, Mapping):
            raise VariationError(f"hierarchy must be a table, got {hier!r}.")
        bad = set(hier) - {"modules_per_pack", "cells_per_module"}
        if bad:
            raise VariationError(
                f"hierarchy: unknown key(s) {sorted(bad)} (accepted: modules_per_pack, cells_per_module)."
            )
        entries = data.get("parameter", [])
        if not isinstance(entries, Sequence) or isinstance(entries, str):
            raise VariationError(
                "'parameter' must be a list of tables ([[parameter]] in TOML)."
            )
        fields = {f.name for f in dataclasses.fields(ParameterVariation)}
        params = []
        for i, e in enumerate(entries):
            label = f"parameter entry {i}" + (
                f" ({e.get('name')!r})"
                if isinstance(e, Mapping) and "name" in e
                else ""
            )
            if not isinstance(e, Mapping):
                raise VariationError(f"{label} must be a table, got {e!r}.")
            bad = set(e) - fields
            if bad:
                raise VariationError(
                    f"{label}: unknown key(s) {sorted(bad)} (accepted: {', '.join(sorted(fields))})."
                )
            if "name" not in e:
                raise VariationError(f"{label}: missing 'name'.")
            try:
                params.append(ParameterVariation(**e))
            except VariationError as err:  # its message names the parameter
                raise VariationError(f"parameter entry {i}, {err}") from None
        copulas = []
        for i, c in enumerate(data.get("copula", [])):
            if not isinstance(c, Mapping):
                raise VariationError(f"copula entry {i} must be a table, got {c!r}.")
            kind = c.get("kind")
            if kind not in COPULAS:
                raise VariationError(
                    f"copula entry {i}: unknown kind {kind!r} (accepted: {', '.join(COPULAS)})."
                )
            cls_ = COPULAS[kind]
            accepted = {"kind", "parameters", "correlation"} | (
                {"df"} if kind == "t" else set()
            )
            bad = set(c) - accepted
            missing = {"parameters", "correlation"} - set(c)
            if bad or missing:
                what = (
                    f"unknown key(s) {sorted(bad)}"
                    if bad
                    else f"missing {sorted(missing)}"
                )
                raise VariationError(
                    f"copula entry {i} ({kind}): {what} (keys: {', '.join(sorted(accepted))})."
                )
            try:
                copulas.append(cls_(**{k: v for k, v in c.items() if k != "kind"}))
            except VariationError as err:
                raise VariationError(f"copula entry {i}: {err}") from None
        return cls(
            parameters=tuple(params),
            copulas=tuple(copulas),
            hierarchy=Hierarchy(**hier),
            description=data.get("description", ""),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> Variation:
        """Read a spec from a ``.toml`` or ``.json`` file (format: docs/population.md)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".toml", ".json"):
            raise VariationError(
                f"{path}: a variation file must end in .toml or .json."
            )
        text = path.read_text(encoding="utf-8")
        try:
            if suffix == ".toml":
                data = _toml_loads(text)
            else:
                data = json.loads(text)
        except (
            ValueError
        ) as e:  # tomllib.TOMLDecodeError and json.JSONDecodeError are ValueErrors
            raise VariationError(
                f"{path}: not valid {suffix[1:].upper()}: {e}"
            ) from None
        try:
            return cls.from_dict(data)
        except VariationError as e:
            raise VariationError(f"{path}: {e}") from None

    def to_file(self, path: str | Path) -> None:
        """Write the spec to a ``.toml`` or ``.json`` file (read back by `from_file`)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".toml":
            path.write_text(to_toml(self.to_dict()), encoding="utf-8")
        elif suffix == ".json":
            path.write_text(
                json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8"
            )
        else:
            raise VariationError(
                f"{path}: a variation file must end in .toml or .json."
            )


def _toml_loads(text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)


def _toml_value(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Integral):
        return str(int(v))
    if isinstance(v, Real):
        return repr(float(v))
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return "[" + ", ".join(_toml_value(x) for x in v) + "]"


def to_toml(data: Mapping[str, Any]) -> str:
    """The TOML text of `Variation.to_dict()` output (what `Variation.to_file` writes)."""
    lines = []
    if "description" in data:
        lines += [f"description = {_toml_value(data['description'])}", ""]
    lines += ["[hierarchy]"] + [
        f"{k} = {_toml_value(v)}" for k, v in data["hierarchy"].items()
    ]
    for table in ("parameter", "copula"):
        for entry in data.get(table, []):
            lines += ["", f"[[{table}]]"] + [
                f"{k} = {_toml_value(v)}" for k, v in entry.items()
            ]
    return "\n".join(lines) + "\n"
