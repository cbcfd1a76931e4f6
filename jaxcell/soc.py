"""State of charge: the electrodes' stoichiometry window and a cell's initial state, as PyBaMM
places them (``ParameterValues.set_initial_state``).

The cyclable lithium is that of the set's initial concentrations. With it fixed, 100% and 0%
SOC are where the open-circuit voltage at the reference temperature equals the set's
"Open-circuit voltage at 100% SOC [V]" and "... at 0% SOC [V]", the positive electrode taking up
what the negative gives; a state of charge is linear in the stoichiometries between them. Every
function here is JAX code: it works under `jit` and `vmap` (a batched set gives a window per
cell) and its derivatives with respect to the parameters come from the implicit function theorem
through the root finds (`_bisect`); `initial_concentrations` is the traceable core for one cell.
"""

from __future__ import annotations

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._roots import bisect, frozen, implicit_root
from .parameters import ParameterSet
from .physics import cell

_VOLTAGE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(V|v|mV)\s*$")  # volts or millivolts


def _capacities(p: ParameterSet):
    """Lithium capacity of each electrode's solid per unit area [mol.m-2] and the cyclable
    lithium of the set's initial concentrations, in the same unit."""
    q = {}
    for side in ("negative", "positive"):
        D = side.capitalize()
        q[side] = (p[f"{D} electrode active material volume fraction"] * p[f"{D} electrode thickness [m]"]
                   * p[f"Maximum concentration in {side} electrode [mol.m-3]"])
    lithium = (q["negative"] * p["Initial concentration in negative electrode [mol.m-3]"]
               / p["Maximum concentration in negative electrode [mol.m-3]"]
               + q["positive"] * p["Initial concentration in positive electrode [mol.m-3]"]
               / p["Maximum concentration in positive electrode [mol.m-3]"])
    return q["negative"], q["positive"], lithium


def open_circuit_voltage(p: ParameterSet, x, y):
    """Open-circuit voltage [V] at negative stoichiometry `x` and positive `y`, at the set's
    reference temperature (the models' OCPs: PyBaMM's clipping at the stoichiometry limits)."""
    T = p["Reference temperature [K]"]
    return cell.open_circuit_potential("positive", y, T, p) - cell.open_circuit_potential("negative", x, T, p)


def _per_cell(fn, p: ParameterSet, *args):
    """fn(p, *args) for one cell, mapped over the leading batch axis of a batched set (and of
    the batched arrays among args): the root finds are scalar bisections."""
    if not p.batch_shape:
        return fn(p, *args)
    axes = jax.tree.map(lambda x: 0 if jnp.ndim(x) else None, (p, args))
    return jax.vmap(lambda p_, a: fn(p_, *a), in_axes=axes)(p, args)


# bisection steps of `_bisect`: the bracket shrinks by 2**-64, below float64's resolution
BISECTION_STEPS = 64


def _bisect(fn, lo, hi):
    """The root of the scalar fn(x), increasing on [lo, hi] (a bracket's end where it has no
    root there), by a fixed number of bisection steps on fn's frozen inputs, with the implicit
    function theorem's derivative with respect to what fn closes over, to every order
    (`_roots.implicit_root`). A plain loop rather than optimistix's root find: that one fails
    to compile under `vmap` over cells inside reverse mode through a solve (jax 0.10,
    "Incompatible types for broadcasting"), which fits of many cells need."""
    g, consts, fixed = frozen(fn, lo)
    a, b = bisect(lambda m: g(m, *fixed) > 0, lo, hi, BISECTION_STEPS)
    return implicit_root(g, 0.5 * (a + b), *consts)


def _window_of(p: ParameterSet):
    """(x_0, x_100, y_0, y_100) of one cell, traceable (see `stoichiometry_window`)."""
    Q_n, Q_p, Li = _capacities(p)

    def at_full(x):
        return open_circuit_voltage(p, x, (Li - x * Q_n) / Q_p) - p["Open-circuit voltage at 100% SOC [V]"]

    x_100 = _bisect(at_full, jnp.maximum(0.0, (Li - Q_p) / Q_n), jnp.minimum(1.0, Li / Q_n))
    y_100 = (Li - x_100 * Q_n) / Q_p

    def at_empty(x):
        return open_circuit_voltage(p, x, y_100 + (x_100 - x) * Q_n / Q_p) - p["Open-circuit voltage at 0% SOC [V]"]

    x_0 = _bisect(at_empty, jnp.maximum(0.0, x_100 - (1.0 - y_100) * Q_p / Q_n), x_100)
    y_0 = y_100 + (x_100 - x_0) * Q_n / Q_p
    return x_0, x_100, y_0, y_100


def _soc_of_voltage(p: ParameterSet, voltage):
    """The state of charge of one cell whose open-circuit voltage is `voltage`, traceable."""
    x_0, x_100, y_0, y_100 = _window_of(p)
    return _bisect(lambda s: open_circuit_voltage(p, x_0 + s * (x_100 - x_0), y_0 - s * (y_0 - y_100)) - voltage,
                   jnp.asarray(0.0), jnp.asarray(1.0))


def _stoichiometries_of(p: ParameterSet, soc):
    x_0, x_100, y_0, y_100 = _window_of(p)
    return x_0 + soc * (x_100 - x_0), y_0 - soc * (y_0 - y_100)


def _with_stoichiometries(p: ParameterSet, x, y) -> ParameterSet:
    return p.update({
        "Initial concentration in negative electrode [mol.m-3]": x * p["Maximum concentration in negative electrode [mol.m-3]"],
        "Initial concentration in positive electrode [mol.m-3]": y * p["Maximum concentration in positive electrode [mol.m-3]"],
    })


def initial_concentrations(p: ParameterSet, kind: str, value) -> ParameterSet:
    """The set `p` (one cell) with its initial particle concentrations at a state of charge
    (`kind` "soc", `value` in [0, 1]) or at the state whose open-circuit voltage is `value` [V]
    (`kind` "voltage"; `parse_soc` gives the pair): what `with_initial_soc` computes, without
    its checks of concrete input, so that it can be traced inside a solve (under `vmap` and
    reverse mode, as a fit of many cells needs)."""
    soc = _soc_of_voltage(p, value) if kind == "voltage" else value
    return _with_stoichiometries(p, *_stoichiometries_of(p, soc))


_window = eqx.filter_jit(_window_of)


def stoichiometry_window(p: ParameterSet):
    """(x_0, x_100, y_0, y_100): the negative (x) and positive (y) stoichiometries at 0% and 100%
    state of charge (see the module docstring). Raises `ValueError` for a concrete set whose
    open-circuit voltage does not reach the 0% or 100% SOC voltage within the stoichiometry
    ranges the cyclable lithium allows.

    Example:
        >>> x_0, x_100, y_0, y_100 = jaxcell.stoichiometry_window(jaxcell.load_parameters("Chen2020"))
    """
    x_0, x_100, y_0, y_100 = (jnp.asarray(v) for v in _per_cell(_window, p))
    if not isinstance(x_0, jax.core.Tracer):
        _check_window(p, x_0, x_100, y_0, y_100)
    return x_0, x_100, y_0, y_100


def _check_window(p, x_0, x_100, y_0, y_100):
    """Each end of the window must reach its voltage (bisection returns a bracket's end when the
    voltage has no root in it)."""
    for what, x, y, name in (("100%", x_100, y_100, "Open-circuit voltage at 100% SOC [V]"),
                             ("0%", x_0, y_0, "Open-circuit voltage at 0% SOC [V]")):
        miss = np.abs(np.asarray(open_circuit_voltage(p, x, y) - p[name]))
        if np.any(~(miss < 1e-6)):
            raise ValueError(
                f"the open-circuit voltage does not reach {name!r} ({np.max(np.asarray(p[name])):g} V) at {what} SOC "
                f"within the stoichiometries that the set's cyclable lithium allows (off by {np.max(miss):.3g} V): "
                "check the initial concentrations and the electrodes' capacities."
            )


def initial_stoichiometries(p: ParameterSet, soc):
    """Negative and positive particle stoichiometries at state of charge `soc` (0 to 1; an
    array for a batch), linear between the window's ends (`stoichiometry_window`)."""
    x_0, x_100, y_0, y_100 = stoichiometry_window(p)
    return x_0 + soc * (x_100 - x_0), y_0 - soc * (y_0 - y_100)


_initial = eqx.filter_jit(_stoichiometries_of)


def soc_at_voltage(p: ParameterSet, voltage):
    """The state of charge (0 to 1) whose open-circuit voltage at the reference temperature is
    `voltage` [V], which must lie between the set's 0% and 100% SOC voltages."""
    soc = _per_cell(_soc_at_voltage, p, jnp.asarray(voltage, float))
    if not isinstance(soc, jax.core.Tracer):
        x, y = initial_stoichiometries(p, soc)
        miss = np.abs(np.asarray(open_circuit_voltage(p, x, y) - voltage))
        if np.any(~(miss < 1e-6)):
            raise ValueError(
                f"no state of charge has the open-circuit voltage {voltage} V: it must lie between the set's "
                "'Open-circuit voltage at 0% SOC [V]' and 'Open-circuit voltage at 100% SOC [V]'."
            )
    return soc


_soc_at_voltage = eqx.filter_jit(_soc_of_voltage)


def parse_soc(initial_soc):
    """`initial_soc` as ("soc", value) for a number or array in [0, 1], or ("voltage", V) for a
    string such as "4.0 V" (a rest voltage). Raises `ValueError` naming the accepted forms."""
    if isinstance(initial_soc, str):
        m = _VOLTAGE.match(initial_soc)
        if m is None:
            raise ValueError(f"initial_soc must be a number in [0, 1] or a rest voltage such as \"4.0 V\", got {initial_soc!r}.")
        return "voltage", float(m.group(1)) * (1e-3 if m.group(2) == "mV" else 1.0)
    if isinstance(initial_soc, bool) or initial_soc is None:
        raise ValueError(f"initial_soc must be a number in [0, 1] or a rest voltage such as \"4.0 V\", got {initial_soc!r}.")
    if not isinstance(initial_soc, jax.core.Tracer):
        arr = np.asarray(initial_soc, dtype=float)
        if not np.all((arr >= 0) & (arr <= 1)):
            raise ValueError(f"initial_soc must lie in [0, 1] (a fraction, not a percentage), got {initial_soc}.")
    return "soc", initial_soc


def with_initial_soc(p: ParameterSet, initial_soc) -> ParameterSet:
    """The set with its initial particle concentrations at `initial_soc`: a state of charge in
    [0, 1] (an array for a batched set), or a rest voltage as a string, e.g. ``"3.9 V"``, within
    the set's 0% and 100% SOC voltages. PyBaMM's ``initial_soc`` does the same.

    Example:
        >>> half = jaxcell.with_initial_soc(jaxcell.load_parameters("Chen2020"), 0.5)
        >>> rested = jaxcell.with_initial_soc(jaxcell.load_parameters("Chen2020"), "3.8 V")
    """
    kind, value = parse_soc(initial_soc)
    try:
        fits = np.broadcast_shapes(np.shape(value), p.batch_shape) == tuple(p.batch_shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"initial_soc has shape {np.shape(value)}, which does not match the parameter set's batch "
                         f"shape {tuple(p.batch_shape)}: give one value, or one per cell (for several states of charge "
                         "of one cell, stack the set first: jaxcell.stack([p] * n)).")
    if not isinstance(value, jax.core.Tracer) and not any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(p)):
        stoichiometry_window(p)  # names a set whose window cannot be placed
    if kind == "voltage":
        lo, hi = p["Open-circuit voltage at 0% SOC [V]"], p["Open-circuit voltage at 100% SOC [V]"]
        if not isinstance(lo, jax.core.Tracer) and not (np.all(np.asarray(lo) <= value) and np.all(value <= np.asarray(hi))):
            raise ValueError(
                f"initial_soc {initial_soc!r} is outside the set's open-circuit voltage range "
                f"[{float(np.min(np.asarray(lo))):g}, {float(np.max(np.asarray(hi))):g}] V (its 0% and 100% SOC voltages)."
            )
        value = soc_at_voltage(p, value)
    return _with_stoichiometries(p, *_per_cell(_initial, p, jnp.asarray(value, float)))
