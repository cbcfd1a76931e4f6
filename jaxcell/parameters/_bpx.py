"""Read BPX (Battery Parameter eXchange) files into a `ParameterSet`.

The file is validated against the BPX schema with the `bpx` package, then each BPX field is
mapped to the PyBaMM-style name that jaxcell uses. A BPX field that jaxcell cannot represent
(blended electrodes, OCP hysteresis, degradation states, user-defined functions) is an error
that names the field, rather than being dropped silently.

Notes on the mapping:

* BPX functions are either expression strings in ``x`` (stoichiometry for particle properties,
  electrolyte concentration in mol.m-3 for electrolyte properties) or ``{"x": [...], "y": [...]}``
  tables. Expressions are parsed with `ast` and only arithmetic, numbers, the variable names and
  a fixed list of maths functions are accepted; nothing is passed to `eval`. Tables are
  interpolated linearly and continued linearly outside their range (as PyBaMM's interpolant).
* Temperature dependence is Arrhenius about the BPX reference temperature. The activation
  energies (0 where the file gives none) are stored as scalar entries that the functions read
  from the set, so they can be varied and differentiated.
* BPX's normalised reaction rate ``K`` [mol.m-2.s-1] defines
  ``j0 = F K sqrt((c_e / c_e0) (c_s / c_max) (1 - c_s / c_max))`` with ``c_e0`` the initial
  electrolyte concentration. It is stored as the mass-action constant
  ``k = F K / (c_max sqrt(c_e0))`` [A.m-2.(m3.mol-1)1.5], as in the published sets, so that
  ``j0 = k sqrt(c_e c_s (c_max - c_s))``.
* Transport efficiency ``B`` becomes the Bruggeman exponent ``b = ln(B) / ln(porosity)``; the
  electrode conductivities in BPX are already effective (Bruggeman exponent 0 for the solid).
* Surface area per unit volume ``a`` becomes the active material volume fraction ``a R / 3``.
* Electrode area ``A`` becomes a square electrode, width and height ``sqrt(A)`` (as PyBaMM).
* Without an initial state of charge the cell starts fully charged: the negative electrode at its
  maximum stoichiometry, the positive at its minimum. With one, the stoichiometries are placed
  as PyBaMM's BPX import places them (`initial_stoichiometries`): linearly in SOC between the
  points where the open-circuit voltage equals the cut-off voltages, with the cyclable lithium
  of the full-charge state.

Parameter by parameter, the result equals PyBaMM's ``ParameterValues.create_from_bpx`` (the
numbers to 1e-12, the functions on a grid of stoichiometry, concentration and temperature),
except for the fields that no model reads (the BPX names as given, current collectors of zero
thickness) and the names of the activation energies, which are jaxcell's.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import operator
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from ..physics.constants import F
from ._functions import arrhenius, mass_action_exchange_current
from ._parameter_set import ParameterSet, ParameterValueError, _validate

__all__ = ["BPXUnsupportedError", "initial_stoichiometries", "read_bpx", "parse_expression"]

DEFAULT_REFERENCE_TEMPERATURE = 298.15  # [K], used only when the file gives no activation energy
DEFAULT_ELECTROLYTE_CONCENTRATION = 1000.0  # [mol.m-3], the conventional BPX reference c_e0
_MAX_EXPRESSION_LENGTH = 10_000


class BPXUnsupportedError(ValueError):
    """Raised for a BPX field (or field value) that jaxcell cannot represent."""


# ------------------------------------------------------------------------------------------------
# Expressions
# ------------------------------------------------------------------------------------------------

_FUNCTIONS: dict[str, tuple[Callable, int]] = {
    "exp": (jnp.exp, 1),
    "log": (jnp.log, 1),
    "log10": (jnp.log10, 1),
    "sqrt": (jnp.sqrt, 1),
    "abs": (jnp.abs, 1),
    "sin": (jnp.sin, 1),
    "cos": (jnp.cos, 1),
    "tan": (jnp.tan, 1),
    "sinh": (jnp.sinh, 1),
    "cosh": (jnp.cosh, 1),
    "tanh": (jnp.tanh, 1),
    "arcsin": (jnp.arcsin, 1),
    "arccos": (jnp.arccos, 1),
    "arctan": (jnp.arctan, 1),
    "arcsinh": (jnp.arcsinh, 1),
    "arccosh": (jnp.arccosh, 1),
    "arctanh": (jnp.arctanh, 1),
    "min": (jnp.minimum, 2),
    "max": (jnp.maximum, 2),
}

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}

Compiled = Callable[[dict[str, Any]], Any]


def _compile(node: ast.AST, variables: tuple[str, ...], source: str) -> Compiled:
    """Turn a whitelisted expression tree into a closure over a dict of variable values."""

    def bad(what: str) -> ValueError:
        return ValueError(
            f"{what} is not allowed in a BPX expression (allowed: numbers, + - * / **, "
            f"the variables {', '.join(variables)} and the functions {', '.join(sorted(_FUNCTIONS))}): "
            f"{source!r}"
        )

    if isinstance(node, ast.Expression):
        return _compile(node.body, variables, source)
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise bad(f"The constant {v!r}")
        try:
            const = float(v)  # plain floats: no big-integer arithmetic on the constants
        except OverflowError:
            const = math.inf
        if not math.isfinite(const):
            raise bad(f"The non-finite number {source[node.col_offset:node.end_col_offset]!r}")
        return lambda env: const
    if isinstance(node, ast.Name):
        if node.id not in variables:
            raise bad(f"The name {node.id!r}")
        name = node.id
        return lambda env: env[name]
    if isinstance(node, ast.UnaryOp):
        op = _UNARY.get(type(node.op))
        if op is None:
            raise bad(f"The operator {type(node.op).__name__}")
        arg = _compile(node.operand, variables, source)
        return lambda env: op(jnp.asarray(arg(env)))
    if isinstance(node, ast.BinOp):
        op = _BINARY.get(type(node.op))
        if op is None:
            raise bad(f"The operator {type(node.op).__name__}")
        left = _compile(node.left, variables, source)
        n = _integer_exponent(node.right) if isinstance(node.op, ast.Pow) else None
        if n is not None:
            # x**2 as an integer power: exact, and differentiable for x <= 0
            return lambda env: jnp.asarray(left(env)) ** n
        right = _compile(node.right, variables, source)
        return lambda env: op(jnp.asarray(left(env)), right(env))
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            what = node.func.id if isinstance(node.func, ast.Name) else type(node.func).__name__
            raise bad(f"The function {what!r}")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise bad("A keyword or starred argument")
        fn, nargs = _FUNCTIONS[node.func.id]
        if len(node.args) != nargs:
            raise ValueError(f"{node.func.id}() takes {nargs} argument(s), in BPX expression {source!r}")
        args = [_compile(a, variables, source) for a in node.args]
        return lambda env: fn(*(jnp.asarray(a(env)) for a in args))
    raise bad(f"The syntax {type(node).__name__}")


def _integer_exponent(node: ast.AST) -> int | None:
    """The value of an exponent written as a (signed) integer literal, else None."""
    sign = 1
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        sign = -sign if isinstance(node.op, ast.USub) else sign
        node = node.operand
    if isinstance(node, ast.Constant) and type(node.value) is int and abs(node.value) <= 64:
        return sign * node.value
    return None


def parse_expression(source: str, variables: tuple[str, ...] = ("x",)) -> Compiled:
    """Parse a BPX expression string into a function of a dict ``{variable: value}``.

    Only numbers, ``+ - * / **``, unary signs, the given variable names and the functions
    exp, log, log10, sqrt, abs, (arc)sin/cos/tan, (arc)sinh/cosh/tanh, min and max are
    accepted; anything else raises `ValueError`. Nothing is evaluated by Python's `eval`.
    """
    if not isinstance(source, str):
        raise TypeError(f"A BPX expression must be a string, got {type(source).__name__}.")
    if len(source) > _MAX_EXPRESSION_LENGTH:
        raise ValueError(f"BPX expression longer than {_MAX_EXPRESSION_LENGTH} characters.")
    try:
        text = source.strip()
        return _compile(ast.parse(text, mode="eval"), variables, text)
    except SyntaxError as e:
        raise ValueError(f"Cannot parse BPX expression {source!r}: {e.msg}") from None
    except RecursionError:
        raise ValueError(f"BPX expression nested too deeply: {source[:80]!r}...") from None


def _as_float(a: Any) -> Any:
    """`a` as a floating-point array (the default float width for integer input)."""
    a = jnp.asarray(a)
    return a if jnp.issubdtype(a.dtype, jnp.inexact) else a.astype(jnp.result_type(float))


def _broadcast(out: Any, *args: Any) -> Any:
    out = _as_float(out)
    shape = jnp.broadcast_shapes(out.shape, *(jnp.shape(a) for a in args))
    return jnp.broadcast_to(out, shape)


@dataclasses.dataclass(frozen=True)
class Expression:
    """A BPX expression as a jnp function of its variables (positional, in `variables` order).

    Compares and hashes by its text, so sets read from the same file share functions (and
    `jax.jit` caches, and can be `stack`-ed).
    """

    source: str
    variables: tuple[str, ...] = ("x",)
    _fn: Compiled = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_fn", parse_expression(self.source, self.variables))

    def __call__(self, *args: Any) -> Any:
        if len(args) != len(self.variables):
            raise TypeError(f"Expression {self.source!r} takes {len(self.variables)} argument(s), got {len(args)}.")
        env = {k: _as_float(a) for k, a in zip(self.variables, args)}
        return _broadcast(self._fn(env), *args)


@dataclasses.dataclass(frozen=True)
class Table:
    """A BPX ``{x, y}`` table as a jnp function of one variable: linear interpolation, continued
    linearly outside the table with the slope of its end segments (PyBaMM's linear interpolant,
    which a cell whose stoichiometry leaves the table's range sees too)."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __post_init__(self) -> None:
        x = np.asarray(self.x, dtype=float)
        y = np.asarray(self.y, dtype=float)
        if x.ndim != 1 or x.shape != y.shape or x.size < 2:
            raise ValueError("A BPX table needs x and y lists of the same length (at least 2 points).")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ValueError("A BPX table contains non-finite values.")
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
        if x[1] == x[0] or x[-1] == x[-2]:
            raise ValueError("A BPX table's first two and last two x values must differ (they set the slopes "
                             "outside the table).")
        object.__setattr__(self, "x", tuple(x.tolist()))
        object.__setattr__(self, "y", tuple(y.tolist()))

    def __call__(self, v: Any, *unused: Any) -> Any:
        x, y = self.x, self.y
        v = _as_float(v)
        below = y[0] + (v - x[0]) * ((y[1] - y[0]) / (x[1] - x[0]))
        above = y[-1] + (v - x[-1]) * ((y[-1] - y[-2]) / (x[-1] - x[-2]))
        inside = jnp.interp(v, jnp.asarray(x), jnp.asarray(y))
        return jnp.where(v < x[0], below, jnp.where(v > x[-1], above, inside))


@dataclasses.dataclass(frozen=True)
class Constant:
    """A constant as a function of one variable (an OCP given as a single number)."""

    value: float

    def __call__(self, v: Any, *unused: Any) -> Any:
        return _broadcast(self.value, v)


# -- functions of several arguments that read their constants from the set ---------------------


@dataclasses.dataclass(frozen=True)
class MassActionExchangeCurrent:
    """``k sqrt(c_e c_s (c_max - c_s))`` times an Arrhenius factor, k and E read from the set."""

    rate_constant: str
    activation_energy: str

    def __call__(self, c_e, c_s_surf, c_s_max, T, *, p):
        k = p[self.rate_constant]
        E = p[self.activation_energy]
        T_ref = p["Reference temperature [K]"]
        return mass_action_exchange_current(k, c_e, c_s_surf, c_s_max) * arrhenius(E, T, T_ref)


@dataclasses.dataclass(frozen=True)
class ArrheniusProperty:
    """``f(x) exp(E/R (1/T_ref - 1/T))``: f is a function of the first argument (stoichiometry or
    electrolyte concentration), or, when `reference` names a scalar in the set, that constant."""

    activation_energy: str
    base: Callable | None = None
    reference: str | None = None

    def __call__(self, x, T, *, p):
        base = p[self.reference] if self.base is None else self.base(x)
        E = p[self.activation_energy]
        return _broadcast(base * arrhenius(E, T, p["Reference temperature [K]"]), x, T)


# ------------------------------------------------------------------------------------------------
# Mapping
# ------------------------------------------------------------------------------------------------


def _import_bpx() -> Any:
    """Import `bpx`, hiding the deprecation warnings its pyparsing grammar raises on import."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpx

    return bpx


def _function_of(value: Any, where: str, variables: tuple[str, ...] = ("x",)) -> Callable:
    """A BPX FloatFunctionTable that is an expression or a table, as a jnp function."""
    bpx = _import_bpx()
    Function, InterpolatedTable = bpx.Function, bpx.InterpolatedTable

    if isinstance(value, Function) or isinstance(value, str):
        try:
            return Expression(str(value), variables)
        except ValueError as e:
            raise BPXUnsupportedError(f"BPX field {where!r}: {e}") from None
    if isinstance(value, InterpolatedTable):
        try:
            return Table(tuple(value.x), tuple(value.y))
        except ValueError as e:
            raise BPXUnsupportedError(f"BPX field {where!r}: {e}") from None
    raise BPXUnsupportedError(f"BPX field {where!r}: unsupported value of type {type(value).__name__}.")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Mapper:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}  # jaxcell name -> BPX field it came from (for messages)
        self.defaults: list[str] = []

    def set(self, name: str, value: Any, source: str) -> None:
        self.values[name] = value
        self.sources[name] = source

    def default(self, name: str, value: Any, why: str = "") -> None:
        if name not in self.values:
            self.values[name] = value
            self.sources[name] = "default"
            self.defaults.append(f"{name} = {value}{why}")


def _fields(section: Any, where: str) -> dict[str, Any]:
    """Alias -> value for the fields a BPX section sets (optional fields left out are skipped)."""
    if section is None:
        return {}
    out = {}
    for attr, field in type(section).model_fields.items():
        value = getattr(section, attr)
        if value is None:
            continue
        out[field.alias or attr] = value
    extra = getattr(section, "model_extra", None) or {}
    for k in extra:
        raise BPXUnsupportedError(f"BPX field {where + '.' + k!r} is not supported by jaxcell.")
    return out


def _unsupported(where: str, why: str = "") -> BPXUnsupportedError:
    return BPXUnsupportedError(f"BPX field {where!r} is not supported by jaxcell{': ' + why if why else ''}.")


def _map_cell(m: _Mapper, cell: Any) -> None:
    where = "Parameterisation.Cell"
    for alias, v in _fields(cell, where).items():
        src = f"{where}.{alias}"
        if alias == "Electrode area [m2]":
            m.set("Electrode width [m]", math.sqrt(v), src)
            m.set("Electrode height [m]", math.sqrt(v), src)
        elif alias == "External surface area [m2]":
            m.set("Cell cooling surface area [m2]", v, src)
        elif alias == "Volume [m3]":
            m.set("Cell volume [m3]", v, src)
        elif alias == "Number of electrode pairs connected in parallel to make a cell":
            m.set("Number of electrodes connected in parallel to make a cell", v, src)
        elif alias == "Lower voltage cut-off [V]":
            m.set("Lower voltage cut-off [V]", v, src)
            m.set("Open-circuit voltage at 0% SOC [V]", v, src)
        elif alias == "Upper voltage cut-off [V]":
            m.set("Upper voltage cut-off [V]", v, src)
            m.set("Open-circuit voltage at 100% SOC [V]", v, src)
        elif alias == "Nominal cell capacity [A.h]":
            m.set("Nominal cell capacity [A.h]", v, src)
            m.set("Current function [A]", v, src)
        elif alias == "Reference temperature [K]":
            m.set("Reference temperature [K]", v, src)
        elif alias == "Density [kg.m-3]":
            for part in _THERMAL_PARTS:
                m.set(f"{part} density [kg.m-3]", v, src)
        elif alias == "Specific heat capacity [J.K-1.kg-1]":
            for part in _THERMAL_PARTS:
                m.set(f"{part} specific heat capacity [J.kg-1.K-1]", v, src)
        else:
            raise _unsupported(src)


_THERMAL_PARTS = (
    "Negative electrode",
    "Separator",
    "Positive electrode",
    "Negative current collector",
    "Positive current collector",
)


def _bruggeman(porosity: float, efficiency: float, src: str) -> float:
    if not 0 < efficiency <= 1:
        raise ParameterValueError(f"BPX field {src!r} must be in (0, 1], got {efficiency}.")
    if not 0 < porosity <= 1:
        field = src.rsplit(".", 1)[0] + ".Porosity"
        raise ParameterValueError(f"BPX field {field!r} must be in (0, 1], got {porosity}.")
    if porosity == 1:
        if efficiency != 1:
            raise ParameterValueError(f"BPX field {src!r} must be 1 where the porosity is 1, got {efficiency}.")
        return 0.0
    return math.log(efficiency) / math.log(porosity)


def _map_porous(m: _Mapper, fields: dict[str, Any], prefix: str, where: str) -> None:
    """Thickness, porosity and transport efficiency (electrodes and separator)."""
    for alias in ("Thickness [m]", "Porosity", "Transport efficiency"):
        if alias not in fields:
            continue
        v = fields[alias]
        src = f"{where}.{alias}"
        if alias == "Thickness [m]":
            m.set(f"{prefix} thickness [m]", v, src)
        elif alias == "Porosity":
            m.set(f"{prefix} porosity", v, src)
        else:
            if "Porosity" not in fields:
                raise BPXUnsupportedError(f"BPX field {src!r} needs the porosity of the same section.")
            m.set(f"{prefix} Bruggeman coefficient (electrolyte)", _bruggeman(fields["Porosity"], v, src), src)


def _map_electrode(m: _Mapper, electrode: Any, side: str) -> dict[str, Any]:
    """Map one electrode; returns its raw fields (needed later for the kinetics and initial state)."""
    Side = side.capitalize()
    where = f"Parameterisation.{Side} electrode"
    fields = _fields(electrode, where)
    if "Particle" in fields:
        raise _unsupported(f"{where}.Particle", "blended (multi-material) electrodes")
    _map_porous(m, fields, f"{Side} electrode", where)
    E_name = f"{Side} particle diffusion activation energy [J.mol-1]"
    m.set(E_name, fields.get("Diffusivity activation energy [J.mol-1]", 0.0),
          f"{where}.Diffusivity activation energy [J.mol-1]")
    for alias, v in fields.items():
        src = f"{where}.{alias}"
        if alias in ("Thickness [m]", "Porosity", "Transport efficiency", "Diffusivity activation energy [J.mol-1]",
                     "Reaction rate constant [mol.m-2.s-1]", "Reaction rate constant activation energy [J.mol-1]"):
            continue  # handled elsewhere
        if alias == "Conductivity [S.m-1]":
            m.set(f"{Side} electrode conductivity [S.m-1]", v, src)
            m.set(f"{Side} electrode Bruggeman coefficient (electrode)", 0.0, src)  # BPX gives effective values
        elif alias == "Minimum stoichiometry":
            m.set(f"{Side} electrode minimum stoichiometry", v, src)
        elif alias == "Maximum stoichiometry":
            m.set(f"{Side} electrode maximum stoichiometry", v, src)
        elif alias == "Maximum concentration [mol.m-3]":
            m.set(f"Maximum concentration in {side} electrode [mol.m-3]", v, src)
        elif alias == "Particle radius [m]":
            m.set(f"{Side} particle radius [m]", v, src)
        elif alias == "Surface area per unit volume [m-1]":
            if "Particle radius [m]" not in fields:
                raise BPXUnsupportedError(f"BPX field {src!r} needs the particle radius of the same electrode.")
            m.set(f"{Side} electrode active material volume fraction", v * fields["Particle radius [m]"] / 3.0, src)
        elif alias == "Diffusivity [m2.s-1]":
            name = f"{Side} particle diffusivity [m2.s-1]"
            if _is_number(v):
                ref = f"{Side} particle diffusivity reference [m2.s-1]"
                m.set(ref, v, src)
                m.set(name, ArrheniusProperty(E_name, reference=ref), src)
            else:
                m.set(name, ArrheniusProperty(E_name, base=_function_of(v, src)), src)
        elif alias == "OCP [V]":
            m.set(f"{Side} electrode OCP [V]", Constant(float(v)) if _is_number(v) else _function_of(v, src), src)
        elif alias == "Entropic change coefficient [V.K-1]":
            m.set(f"{Side} electrode OCP entropic change [V.K-1]", v if _is_number(v) else _function_of(v, src), src)
        elif alias in ("OCP (lithiation) [V]", "OCP (delithiation) [V]", "OCP hysteresis decay constant"):
            raise _unsupported(src, "OCP hysteresis is not modelled; remove the field to use the single OCP")
        else:
            raise _unsupported(src)
    return fields


def _map_kinetics(m: _Mapper, fields: dict[str, Any], side: str, c_e0: float) -> None:
    Side = side.capitalize()
    where = f"Parameterisation.{Side} electrode"
    if "Reaction rate constant [mol.m-2.s-1]" not in fields:
        return
    src = f"{where}.Reaction rate constant [mol.m-2.s-1]"
    if "Maximum concentration [mol.m-3]" not in fields:
        raise BPXUnsupportedError(f"BPX field {src!r} needs the maximum concentration of the same electrode.")
    K = fields["Reaction rate constant [mol.m-2.s-1]"]
    c_max = fields["Maximum concentration [mol.m-3]"]
    k_name = f"{Side} electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]"
    E_name = f"{Side} electrode reaction activation energy [J.mol-1]"
    m.set(k_name, F * K / (c_max * math.sqrt(c_e0)), src)
    m.set(E_name, fields.get("Reaction rate constant activation energy [J.mol-1]", 0.0),
          f"{where}.Reaction rate constant activation energy [J.mol-1]")
    m.set(f"{Side} electrode exchange-current density [A.m-2]", MassActionExchangeCurrent(k_name, E_name), src)


def _map_electrolyte(m: _Mapper, electrolyte: Any) -> None:
    where = "Parameterisation.Electrolyte"
    fields = _fields(electrolyte, where)
    if not fields:
        return
    E_D = "Electrolyte diffusion activation energy [J.mol-1]"
    E_k = "Electrolyte conductivity activation energy [J.mol-1]"
    m.set(E_D, fields.get("Diffusivity activation energy [J.mol-1]", 0.0), f"{where}.Diffusivity activation energy [J.mol-1]")
    m.set(E_k, fields.get("Conductivity activation energy [J.mol-1]", 0.0), f"{where}.Conductivity activation energy [J.mol-1]")
    m.set("Thermodynamic factor", 1.0, where)
    for alias, v in fields.items():
        src = f"{where}.{alias}"
        if alias in ("Diffusivity activation energy [J.mol-1]", "Conductivity activation energy [J.mol-1]"):
            continue
        if alias == "Cation transference number":
            m.set("Cation transference number", v, src)
        elif alias in ("Diffusivity [m2.s-1]", "Conductivity [S.m-1]"):
            kind = "diffusivity [m2.s-1]" if alias.startswith("Diffusivity") else "conductivity [S.m-1]"
            E = E_D if alias.startswith("Diffusivity") else E_k
            name = f"Electrolyte {kind}"
            if _is_number(v):
                ref = f"Electrolyte {kind.replace(' [', ' reference [')}"
                m.set(ref, v, src)
                m.set(name, ArrheniusProperty(E, reference=ref), src)
            else:
                m.set(name, ArrheniusProperty(E, base=_function_of(v, src)), src)
        else:
            raise _unsupported(src)


def _map_user_defined(m: _Mapper, user_defined: Any) -> None:
    if user_defined is None:
        return
    where = "Parameterisation.User-defined"
    items = dict(user_defined.model_extra or {})
    for name, v in items.items():
        src = f"{where}.{name}"
        if _is_number(v):
            m.set(name, v, src)  # taken as a jaxcell (PyBaMM-style) name as it stands
        else:
            raise _unsupported(src, "only numbers are read from the User-defined section (functions have no agreed arguments)")


def _fields_holding(path: Path, text: str) -> list[str]:
    """The fields of the BPX file `path` (dotted paths, in file order) whose value is the string
    `text`; empty if the file cannot be read again."""
    import yaml  # a dependency of bpx, as pyparsing

    try:
        with path.open(encoding="utf-8") as f:
            raw = yaml.safe_load(f) if path.suffix.lower() in (".yml", ".yaml") else json.load(f)
    except (OSError, ValueError, yaml.YAMLError):
        return []
    found = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{where}.{k}" if where else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")
        elif node == text:
            found.append(where)

    walk(raw, "")
    return found


def read_bpx(path: str | Path, *, name: str | None = None) -> ParameterSet:
    """Read a BPX JSON (or YAML) file into a `ParameterSet` with PyBaMM-style names.

    The file is validated with `bpx.parse_bpx_file` (legacy v0.x files are converted by `bpx`,
    with its warning). Fields jaxcell cannot represent raise `BPXUnsupportedError` naming the
    field; values the file leaves out that the models need are given the defaults PyBaMM uses
    (listed in a `UserWarning`).

    Args:
        path: the BPX file.
        name: name of the returned set (default: the file's title, else its file name).

    Example:
        >>> p = read_bpx("cell.json")   # or ParameterSet.from_bpx("cell.json")
        >>> p["Negative electrode thickness [m]"]
    """
    bpx_pkg = _import_bpx()
    import pyparsing

    path = Path(path)
    try:
        obj = bpx_pkg.parse_bpx_file(str(path))
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        raise ValueError(f"{path} is not a valid BPX file:\n{e}") from e
    except pyparsing.ParseBaseException as e:
        # bpx catches pyparsing's ParseException only: a syntax error found after a fixed point
        # (an unclosed bracket) escapes as ParseSyntaxException, naming no field
        fields = _fields_holding(path, e.pstr)
        where = f"BPX field {fields[0]!r}" if fields else "a BPX expression"
        raise ValueError(f"{path} is not a valid BPX file: {where}: cannot parse the expression {e.pstr!r}: "
                         f"{e.msg} (at character {e.loc + 1})") from None

    par = obj.parameterisation
    m = _Mapper()

    # -- state: read first, the reaction rates need the reference electrolyte concentration ------
    state = obj.state
    ic = state.initial_conditions if state is not None else None
    te = state.thermal_environment if state is not None else None
    if state is not None and state.degradation is not None:
        raise _unsupported("State.Degradation", "degradation states (LLI, LAM) are not modelled")
    for side in ("positive", "negative"):
        attr = f"initial_hysteresis_state_{side}"
        if ic is not None and getattr(ic, attr) is not None:
            raise _unsupported(f"State.Initial conditions.Initial hysteresis state: {side.capitalize()} electrode",
                               "OCP hysteresis is not modelled")
    c_e0 = ic.initial_electrolyte_concentration if ic is not None else None
    if c_e0 is not None:
        m.set("Initial concentration in electrolyte [mol.m-3]", c_e0,
              "State.Initial conditions.Initial electrolyte concentration [mol.m-3]")
    else:
        m.default("Initial concentration in electrolyte [mol.m-3]", DEFAULT_ELECTROLYTE_CONCENTRATION)
    c_e0 = m.values["Initial concentration in electrolyte [mol.m-3]"]
    if not c_e0 > 0:
        raise ParameterValueError(f"The initial electrolyte concentration must be positive, got {c_e0}.")

    # -- parameterisation -------------------------------------------------------------------------
    _map_cell(m, par.cell)
    _map_electrolyte(m, getattr(par, "electrolyte", None))
    electrodes = {}
    for side in ("negative", "positive"):
        electrode = getattr(par, f"{side}_electrode")
        if electrode is not None:
            electrodes[side] = _map_electrode(m, electrode, side)
            _map_kinetics(m, electrodes[side], side, c_e0)
    sep = getattr(par, "separator", None)
    if sep is not None:
        _map_porous(m, _fields(sep, "Parameterisation.Separator"), "Separator", "Parameterisation.Separator")
    _map_user_defined(m, par.user_defined)

    # -- reference temperature (the Arrhenius factors are taken about it) --------------------------
    if "Reference temperature [K]" not in m.values:
        E_names = [k for k in m.values if "activation energy" in k and m.values[k] != 0]
        if E_names:
            raise BPXUnsupportedError(
                "The BPX file gives activation energies (e.g. from "
                f"{m.sources[E_names[0]]!r}) but no 'Parameterisation.Cell.Reference temperature [K]' "
                "to take them about."
            )
        m.default("Reference temperature [K]", DEFAULT_REFERENCE_TEMPERATURE)
    T_ref = m.values["Reference temperature [K]"]

    # -- remaining state ------------------------------------------------------------------------
    if te is not None and te.ambient_temperature is not None:
        m.set("Ambient temperature [K]", te.ambient_temperature, "State.Thermal environment.Ambient temperature [K]")
    else:
        m.default("Ambient temperature [K]", T_ref, " (the reference temperature)")
    if ic is not None and ic.initial_temperature is not None:
        m.set("Initial temperature [K]", ic.initial_temperature, "State.Initial conditions.Initial temperature [K]")
    else:
        m.default("Initial temperature [K]", T_ref, " (the reference temperature)")
    if te is not None and te.heat_transfer_coefficient is not None:
        m.set("Total heat transfer coefficient [W.m-2.K-1]", te.heat_transfer_coefficient,
              "State.Thermal environment.Heat transfer coefficient [W.m-2.K-1]")
    else:
        m.default("Total heat transfer coefficient [W.m-2.K-1]", 0.0, " (adiabatic, as PyBaMM)")

    # full charge: the negative electrode at its maximum stoichiometry, the positive at its minimum
    soc = ic.initial_soc if ic is not None else None
    soc_src = "State.Initial conditions.Initial state-of-charge"
    if soc is not None and not 0 <= soc <= 1:
        raise ParameterValueError(f"BPX field {soc_src!r} must be between 0 and 1, got {soc}.")
    for side, fields in electrodes.items():
        sto = fields.get("Maximum stoichiometry" if side == "negative" else "Minimum stoichiometry")
        c_max = fields.get("Maximum concentration [mol.m-3]")
        if sto is not None and c_max is not None:
            m.set(f"Initial concentration in {side} electrode [mol.m-3]", sto * c_max,
                  f"Parameterisation.{side.capitalize()} electrode (full charge)")
    if soc is None:
        m.defaults.append("initial state of charge = 1 (full charge)")

    m.set("Number of cells connected in series to make a battery", 1.0, "BPX describes a single cell")

    if m.defaults:
        warnings.warn(
            f"The BPX file {path.name} does not give the following; jaxcell used defaults: "
            + "; ".join(m.defaults) + ".",
            UserWarning,
            stacklevel=2,
        )

    for k, v in m.values.items():
        if not callable(v):
            try:
                _validate(k, v)
            except ParameterValueError as e:
                raise ParameterValueError(f"{e} (from BPX field {m.sources[k]!r} in {path})") from None

    header = obj.header
    set_name = name or header.title or path.stem
    p = ParameterSet.from_dict(m.values, name=set_name, citation=header.references or "")
    if soc is not None:
        x, y = initial_stoichiometries(p, soc)
        p = p.update({
            "Initial concentration in negative electrode [mol.m-3]": x * p["Maximum concentration in negative electrode [mol.m-3]"],
            "Initial concentration in positive electrode [mol.m-3]": y * p["Maximum concentration in positive electrode [mol.m-3]"],
        })
    return p


def initial_stoichiometries(p: ParameterSet, soc: float) -> tuple[float, float]:
    """Particle stoichiometries (negative, positive) at state of charge `soc` in [0, 1], as
    PyBaMM's ``ParameterValues.set_initial_state`` places them (what its BPX import does with a
    file's initial state of charge).

    The cyclable lithium is that of the set's initial concentrations. With it, 100% and 0% SOC
    are where the open-circuit voltage at the reference temperature equals "Open-circuit voltage
    at 100% SOC [V]" and "... at 0% SOC [V]" (for BPX, the cut-off voltages), the positive
    electrode taking what the negative gives up; `soc` is linear in between. These ends can lie
    inside the file's stoichiometry limits, whose own OCV need not equal the cut-offs.
    """
    from ..soc import initial_stoichiometries as window_soc

    x, y = window_soc(p, soc)
    return float(x), float(y)
