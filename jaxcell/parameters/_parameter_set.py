"""The `ParameterSet` pytree: PyBaMM-named parameters whose numbers are JAX arrays."""

from __future__ import annotations

import difflib
import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

Value = Any  # an array-like number or a callable


class UnknownParameterError(KeyError):
    """Raised for a parameter name that the set does not have."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


class ParameterValueError(ValueError):
    """Raised for a parameter value outside its physical range."""


def _rule(name: str) -> tuple[str, Callable[[np.ndarray], np.ndarray]] | None:
    """The physical range that a parameter of this name must lie in, if any."""
    low = name.lower()
    if "porosity" in low and "separator" in low:  # a separator may be all pores (Marquis2019: 1.0)
        return "in (0, 1]", lambda v: (v > 0) & (v <= 1)
    if "porosity" in low:
        return "in the open interval (0, 1)", lambda v: (v > 0) & (v < 1)
    if "volume fraction" in low:
        return "in the open interval (0, 1)", lambda v: (v > 0) & (v < 1)
    positive = (
        "thickness [m]", "radius [m]", "height [m]", "width [m]", "diffusivity", "capacity [a.h]",
        "maximum concentration", "double-layer capacity", "cell volume", "cooling surface area",
        "density [kg.m-3]", "specific heat capacity", "temperature [k]",
        "number of electrodes connected in parallel", "number of cells connected in series",
        "reaction rate constant", "conductivity [s.m-1]", "initial concentration in electrolyte",
        "tortuosity factor", "cut-off [v]", "open-circuit voltage at", "thermodynamic factor",
    )
    if any(p in low for p in positive):
        return "positive", lambda v: v > 0
    nonneg = ("conductivity", "initial concentration", "contact resistance", "heat transfer coefficient",
              "activation energy", "bruggeman")
    if any(p in low for p in nonneg):
        return "non-negative", lambda v: v >= 0
    return None


def _as_number(name: str, value: Any) -> Any:
    """`value` if it is a number, an array of numbers or a traced value; otherwise a
    `ParameterValueError` naming the parameter (a string, None or an object array would
    otherwise fail later, far from the name)."""
    if isinstance(value, jax.core.Tracer):
        return value
    if value is None or isinstance(value, (str, bytes)) or isinstance(value, bool):
        raise ParameterValueError(
            f"{name!r} must be a number, an array of numbers or a function, got {type(value).__name__} {value!r}."
        )
    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged sequences
        raise ParameterValueError(f"{name!r} must be a number or a rectangular array of numbers: {e}") from None
    if arr.dtype.kind not in "iuf":
        raise ParameterValueError(
            f"{name!r} must be a number, an array of numbers or a function, got an array of {arr.dtype} {value!r}."
        )
    return value


# numbers a set carries (PyBaMM's sets have them) that no jaxcell model reads, and why
_SYMMETRIC = "the Butler-Volmer kinetics are symmetric (the overpotential is an arcsinh of the current: 0.5)"
NOT_READ = {
    "Current function [A]": "the current comes from the experiment (simulate's third argument, "
                            "e.g. \"Discharge at 2 A until 2.5 V\")",
    "Negative electrode charge transfer coefficient": _SYMMETRIC,
    "Positive electrode charge transfer coefficient": _SYMMETRIC,
}


# temperatures [K] a set may hold: -123 to 227 degC, beyond what a lithium-ion cell survives on
# either side (its electrolyte freezes, or boils and decomposes) but wide enough for any test
TEMPERATURE_RANGE = (150.0, 500.0)


def _value_rule(name: str) -> tuple[str, Callable[[np.ndarray], np.ndarray]] | None:
    """The range a value of this name is checked against (`update`, design bounds): `_rule`'s,
    with temperatures also bounded to TEMPERATURE_RANGE. A population still varies a
    temperature on a log scale (`_rule`: positive)."""
    rule = _rule(name)
    if rule is not None and "temperature [k]" in name.lower():
        rule = (f"between {TEMPERATURE_RANGE[0]:g} and {TEMPERATURE_RANGE[1]:g} K (a cell's temperature)",
                lambda v: (v >= TEMPERATURE_RANGE[0]) & (v <= TEMPERATURE_RANGE[1]))
    return rule


# The parameters jaxcell's models evaluate as functions (`ParameterSet.evaluate`), PyBaMM's
# arguments first; every other parameter is read as a number.
FUNCTION_NAMES = frozenset(
    [f"{d} electrode {what}" for d in ("Negative", "Positive") for what in
     ("OCP [V]", "OCP entropic change [V.K-1]", "exchange-current density [A.m-2]", "conductivity [S.m-1]")]
    + [f"{d} particle diffusivity [m2.s-1]" for d in ("Negative", "Positive")]
    + ["Electrolyte conductivity [S.m-1]", "Electrolyte diffusivity [m2.s-1]", "Cation transference number",
       "Thermodynamic factor"]
)


def _check_function(name: str) -> None:
    """A function for a parameter the models read as a number (it failed later, inside the
    model, with an error that named no parameter)."""
    if name in NOT_READ:
        raise ParameterValueError(f"{name!r} cannot be a function: jaxcell's models do not read it; {NOT_READ[name]}.")
    if name not in FUNCTION_NAMES:
        raise ParameterValueError(
            f"{name!r} must be a number: jaxcell's models read it as one, got a function. Functions are accepted "
            f"for {', '.join(sorted(FUNCTION_NAMES))}."
        )


def _validate(name: str, value: Any) -> None:
    """Check a concrete value (scalar or batch); traced values are left to the caller."""
    _as_number(name, value)
    if isinstance(value, jax.core.Tracer):
        return
    arr = np.asarray(value, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        where = f" at batch index {np.argwhere(bad)[0].tolist()}" if arr.ndim else ""
        raise ParameterValueError(f"{name!r} must be finite, got {arr[bad].flat[0]}{where}.")
    rule = _value_rule(name)
    if rule is not None:
        desc, ok = rule
        good = ok(arr)
        if not np.all(good):
            first = arr[~good].flat[0]
            where = f" at batch index {np.argwhere(~good)[0].tolist()}" if arr.ndim else ""
            raise ParameterValueError(f"{name!r} must be {desc}, got {first}{where}.")


# Volume fractions of an electrode that share its volume: pores, active material and, where a
# set names them, binder and conductive additive. Their sum cannot exceed 1.
_SOLID_PARTS = ("active material volume fraction", "binder volume fraction", "conductive additive volume fraction")
VOLUME_TOLERANCE = 1e-6  # published fractions add up to 1 only up to rounding (BPX files derive them)


def solid_part_names(electrode: str) -> list[str]:
    """The names of an electrode's solid volume fractions: active material first, then the
    inactive parts a set may name (binder, conductive additive)."""
    return [f"{electrode} electrode {part}" for part in _SOLID_PARTS]


def _check_volume_fractions(values: Mapping[str, Any]) -> None:
    """Raise `ParameterValueError` where an electrode's porosity and solid volume fractions add
    up to more than 1 (per cell of a batch). Traced values are left unchecked."""
    for electrode in ("Negative", "Positive"):
        names = [f"{electrode} electrode porosity"] + solid_part_names(electrode)
        present = [n for n in names if n in values]
        if len(present) < 2 or any(isinstance(values[n], jax.core.Tracer) for n in present):
            continue
        try:
            total = sum(np.asarray(values[n], dtype=np.float64) for n in present)
        except ValueError:  # batches of shapes that do not broadcast: reported by the shape check
            continue
        bad = total > 1.0 + VOLUME_TOLERANCE
        if np.any(bad):
            at = tuple(int(i) for i in np.argwhere(bad)[0]) if np.ndim(total) else ()
            where = f" at batch index {list(at)}" if at else ""
            parts = " + ".join(f"{n!r} ({np.broadcast_to(np.asarray(values[n]), np.shape(total))[at]:g})" for n in present)
            raise ParameterValueError(
                f"{parts} = {np.asarray(total)[at]:.6g} exceeds 1{where}: an electrode's pores and solid "
                "share its volume. Lower the porosity or the solid volume fractions (update both in one call)."
            )


def _check_concentrations(values: Mapping[str, Any]) -> None:
    """Raise `ParameterValueError` where an electrode's initial concentration exceeds its
    maximum (a stoichiometry above 1, where the open-circuit potentials are not defined)."""
    for side in ("negative", "positive"):
        c0, cmax = f"Initial concentration in {side} electrode [mol.m-3]", f"Maximum concentration in {side} electrode [mol.m-3]"
        if c0 not in values or cmax not in values or any(isinstance(values[n], jax.core.Tracer) for n in (c0, cmax)):
            continue
        a, b = np.broadcast_arrays(np.asarray(values[c0], float), np.asarray(values[cmax], float))
        if np.any(a > b):
            at = tuple(int(i) for i in np.argwhere(a > b)[0])
            where = f" at batch index {list(at)}" if at else ""
            raise ParameterValueError(f"{c0!r} ({a[at]:g}) exceeds {cmax!r} ({b[at]:g}){where}: a stoichiometry above 1.")


def _check_batch_shapes(values: Mapping[str, Any], changed: Iterator[str] = ()) -> None:
    """Raise `ParameterValueError` if the numbers' shapes do not broadcast to one batch shape,
    naming a changed parameter whose shape disagrees."""
    shapes = {k: np.shape(v) for k, v in values.items()}
    try:
        np.broadcast_shapes(*shapes.values())
    except ValueError:
        others = {k: s for k, s in shapes.items() if k not in set(changed) and s != ()}
        base = max(others.values(), key=len) if others else ()
        for k in changed:
            try:
                np.broadcast_shapes(base, shapes[k])
            except ValueError:
                raise ParameterValueError(
                    f"{k!r} has shape {shapes[k]}, which does not broadcast with the set's batch shape {base}: "
                    "give it the same leading batch axes as the other varied parameters, or a scalar."
                ) from None
        raise ParameterValueError(f"the parameters' shapes {sorted(set(shapes.values()))} do not broadcast to one batch shape.")


def _takes_p(fn: Callable) -> bool:
    try:
        return "p" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class ParameterSet(eqx.Module):
    """A named set of cell parameters, read and updated by PyBaMM's names.

    Numbers are stored as float64 JAX arrays (the pytree leaves), so a `ParameterSet` can be
    passed through `jax.jit`, `jax.vmap` (give leaves a leading batch axis), `jax.grad`, numpyro
    and optax. Functions (open-circuit potentials, exchange-current densities, transport
    properties) are static: they are part of the tree structure, not leaves.

    A function is called with PyBaMM's signature (e.g. ``ocp(sto)``,
    ``j0(c_e, c_s_surf, c_s_max, T)``, ``D_e(c_e, T)``). A function that also takes a keyword
    argument ``p`` is given the `ParameterSet`, so constants it reads from the set (a reaction
    rate constant, an activation energy) can be varied, batched and differentiated.

    Example:
        >>> p = jaxcell.load_parameters("Chen2020")
        >>> p["Negative electrode thickness [m]"]
        Array(8.52e-05, dtype=float64)
        >>> thin = p.update({"Negative electrode thickness [m]": 70e-6})
    """

    values: dict[str, jax.Array]
    functions: tuple[tuple[str, Callable], ...] = eqx.field(static=True)
    name: str = eqx.field(static=True, default="custom")
    citation: str = eqx.field(static=True, default="")

    @classmethod
    def from_dict(cls, d: Mapping[str, Value], *, name: str = "custom", citation: str = "") -> "ParameterSet":
        """Build a set from a mapping of PyBaMM-style names to numbers or functions."""
        values, functions = {}, []
        for k, v in d.items():
            if callable(v):
                functions.append((k, v))
            else:
                _validate(k, v)
                values[k] = jnp.asarray(v, dtype=jnp.float64)
        _check_batch_shapes(values, list(values))
        _check_volume_fractions(values)
        _check_concentrations(values)
        return cls(values=values, functions=tuple(sorted(functions, key=lambda kv: kv[0])), name=name, citation=citation)

    # -- reading ------------------------------------------------------------------------------
    def _function(self, name: str) -> Callable | None:
        for k, f in self.functions:
            if k == name:
                return f
        return None

    def keys(self) -> list[str]:
        return sorted(list(self.values) + [k for k, _ in self.functions])

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.values) + len(self.functions)

    def __contains__(self, name: object) -> bool:
        return name in self.values or any(k == name for k, _ in self.functions)

    def _unknown(self, name: str) -> UnknownParameterError:
        close = difflib.get_close_matches(name, self.keys(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return UnknownParameterError(f"Unknown parameter {name!r} in parameter set {self.name!r}.{hint}")

    def __getitem__(self, name: str) -> Value:
        if name in self.values:
            return self.values[name]
        f = self._function(name)
        if f is None:
            raise self._unknown(name)
        return f

    def get(self, name: str, default: Value = None) -> Value:
        return self[name] if name in self else default

    def evaluate(self, name: str, *args: Any) -> jax.Array:
        """Value of a parameter that may be a number or a function of `args`.

        A number is returned as is (it broadcasts against `args`), a function is called on them.
        """
        if name in self.values:
            return self.values[name]
        f = self._function(name)
        if f is None:
            raise self._unknown(name)
        return f(*args, p=self) if _takes_p(f) else f(*args)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Batch shape of the numeric leaves broadcast together (``()`` for a single cell): a leaf
        of shape (1,) beside one of (3,) makes a batch of 3 (the longest shape, (1,), was taken
        for it, and a batched simulation then failed in numpy)."""
        return tuple(np.broadcast_shapes(*[v.shape for v in self.values.values()]))

    # -- updating -----------------------------------------------------------------------------
    def update(self, new: Mapping[str, Value], *, check_already_exists: bool = True) -> "ParameterSet":
        """A new set with some values replaced (the set itself is immutable).

        Raises `UnknownParameterError` for a name the set does not have (with close matches),
        unless ``check_already_exists=False``, and `ParameterValueError` for a value outside its
        physical range: porosities and volume fractions in (0, 1) (a separator's porosity may be
        1) with an electrode's porosity and solid fractions adding up to at most 1; lengths,
        radii, diffusivities, capacities, conductivities, reaction rate constants, tortuosity
        and thermodynamic factors, voltage cut-offs and open-circuit voltages positive;
        temperatures [K] between 150 and 500 K; every value a finite number (not a string or
        None), and shapes that broadcast with the set's batch shape; a function only for a parameter
        the models evaluate as one (`FUNCTION_NAMES`: open-circuit potentials, exchange currents,
        diffusivities, conductivities, transference number, thermodynamic factor). Update an electrode's
        porosity and active material fraction in one call when both change. A number the models
        do not read is changed with a warning: "Current function [A]" (the current comes from
        the experiment) and the charge transfer coefficients (the kinetics are symmetric).
        """
        values = dict(self.values)
        functions = dict(self.functions)
        for k, v in new.items():
            if check_already_exists and k not in self:
                raise self._unknown(k)
            if callable(v):
                if k in self.values:
                    _check_function(k)
                values.pop(k, None)
                functions[k] = v
            else:
                _validate(k, v)
                functions.pop(k, None)
                values[k] = jnp.asarray(v, dtype=jnp.float64)
        changed = [k for k in new if k in values]
        for k in changed:
            # warned when its concrete value changes (not for a whole set passed through, as a
            # gradient with respect to every number of the set does)
            if k in NOT_READ and not isinstance(new[k], jax.core.Tracer) and not (
                    k in self.values and np.array_equal(np.asarray(new[k]), np.asarray(self.values[k]))):
                warnings.warn(f"{k!r} is not read by jaxcell's models: {NOT_READ[k]}; the new value has no effect.",
                              stacklevel=2)
        _check_batch_shapes(values, changed)
        if any("porosity" in k or "volume fraction" in k for k in changed):
            _check_volume_fractions(values)
        if any("concentration in" in k and "electrode" in k for k in changed):
            _check_concentrations(values)
        return ParameterSet(
            values=values,
            functions=tuple(sorted(functions.items(), key=lambda kv: kv[0])),
            name=self.name,
            citation=self.citation,
        )

    def to_dict(self) -> dict[str, Value]:
        out: dict[str, Value] = {k: v for k, v in self.functions}
        out.update(self.values)
        return out

    def __repr__(self) -> str:
        b = f", batch_shape={self.batch_shape}" if self.batch_shape else ""
        return f"ParameterSet(name={self.name!r}, {len(self.values)} numbers, {len(self.functions)} functions{b})"

    # -- BPX ----------------------------------------------------------------------------------
    @classmethod
    def from_bpx(cls, path: str) -> "ParameterSet":
        """Read a BPX (Battery Parameter eXchange) JSON file.

        The file is validated against the BPX schema with the `bpx` package, then mapped to
        PyBaMM-style names. Functions given as expressions of ``x`` (stoichiometry) or as data
        tables become jnp functions (tables are interpolated linearly).
        """
        from ._bpx import read_bpx

        return read_bpx(path)


def stack(sets: list[ParameterSet]) -> ParameterSet:
    """Stack sets with the same names and functions into one batched set (leading axis)."""
    if not sets:
        raise ValueError("stack() needs at least one ParameterSet.")
    first = sets[0]
    for i, s in enumerate(sets[1:], 1):
        if s.functions != first.functions or set(s.values) != set(first.values):
            raise ValueError(f"ParameterSet {i} has different names or functions from set 0; cannot stack.")
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *sets)
