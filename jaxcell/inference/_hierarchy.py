"""Hierarchical models of many cells: every cell's parameters are drawn from a population
distribution whose location and spread are learned with them, every cell's records are solved
together in one compiled, `vmap`ped call, and a new cell is predicted from the population.

Parameters live in a transformed space where a population is a normal distribution: log for
positive parameters (a log-normal population), logit for fractions (logit-normal), and the value
divided by |nominal| otherwise. The cells are non-centred (numpyro's `LocScaleReparam`): the
sampler sees standard-normal offsets, not the funnel of a centred hierarchy (DESIGN 5b).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer.reparam import LocScaleReparam

from .._forward import in_forward_mode
from ..experiment import DriveCycle, Experiment, StepTable
from ..parameters import ParameterSet
from ..simulate import _prepare, _simulate
from ..soc import initial_concentrations, parse_soc
from ._data import MeasurementError, Record, StackedRecords
from ._model import _bounds, voltage_likelihood, voltage_limits

# `_prepare`'s experiment for traced records (only its control modes are used: a drive cycle)
_ANY_DRIVE_CYCLE = Experiment([DriveCycle([0.0, 1.0], [0.0, 0.0])])
# chunk of posterior draws solved in one compiled call by `predict_voltage` (the last chunk is
# padded, so one compile serves any number of draws)
PREDICT_CHUNK = 32


@dataclasses.dataclass(frozen=True)
class PopulationPrior:
    """The prior of one parameter's population, in its transformed space u (log x for a positive
    parameter, logit x for a fraction, x / |nominal| otherwise):

        location ~ Normal(u(nominal), spread)      spread ~ HalfNormal(cell_spread)
        u_cell   = location + spread_value * z_cell,   z_cell ~ Normal(0, 1)

    so `spread` is how far the population's median may lie from `nominal` (0.5 in log space: a
    factor 1.6 for one standard deviation) and `cell_spread` the typical cell-to-cell standard
    deviation in the transformed space (0.1 in log space: about 10 % between cells).
    Build it with `population_prior`."""

    name: str
    kind: str
    nominal: float
    spread: float
    cell_spread: float

    @property
    def centre(self) -> float:
        """u(nominal): the centre of the prior on the population's location."""
        x = self.nominal
        if self.kind == "positive":
            return float(np.log(x))
        if self.kind == "fraction":
            return float(np.log(x) - np.log1p(-x))
        return x / self._scale

    def to_natural(self, u):
        """The parameter in natural units from its transformed value u."""
        if self.kind == "positive":
            return jnp.exp(u)
        if self.kind == "fraction":
            return jax.nn.sigmoid(u)
        return u * self._scale

    def to_transformed(self, x):
        """The transformed value u of the parameter x (natural units)."""
        x = jnp.asarray(x, dtype=jnp.float64)
        if self.kind == "positive":
            return jnp.log(x)
        if self.kind == "fraction":
            return jnp.log(x) - jnp.log1p(-x)
        return x / self._scale

    @property
    def _scale(self) -> float:
        return abs(self.nominal) if self.nominal != 0 else 1.0


def population_prior(name: str, nominal, spread: float = 0.5, cell_spread: float = 0.1) -> PopulationPrior:
    """The population prior of parameter `name` around `nominal` (natural units): see
    `PopulationPrior`. `spread` and `cell_spread` are standard deviations in the transformed
    space (log, logit or relative) and must be positive.

    Example:
        >>> population_prior("Positive particle diffusivity [m2.s-1]", 4e-15, cell_spread=0.2)
    """
    nominal = float(np.asarray(nominal))
    for label, v in (("spread", spread), ("cell_spread", cell_spread)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"population_prior({name!r}): {label} must be a positive number, got {v}.")
    kind = _bounds(name)
    if kind == "positive" and not nominal > 0:
        raise ValueError(f"{name!r} is positive; its population prior's centre must be too, got {nominal}.")
    if kind == "fraction" and not 0 < nominal < 1:
        raise ValueError(f"{name!r} lies in (0, 1); its population prior's centre must too, got {nominal}.")
    if not np.isfinite(nominal):
        raise ValueError(f"{name!r}: the population prior's centre must be finite, got {nominal}.")
    return PopulationPrior(name, kind, nominal, float(spread), float(cell_spread))


def loc_site(name: str) -> str:
    """Name of the sample site of the population location of `name` (transformed space)."""
    return f"population loc: {name}"


def scale_site(name: str) -> str:
    """Name of the sample site of the population spread of `name` (transformed space)."""
    return f"population scale: {name}"


def _cell_site(name: str) -> str:
    return f"cell: {name}"


def offset_site(name: str) -> str:
    """Name of the sample site of the cells' standard-normal offsets of `name`, shape (n_cells,)
    (numpyro's `LocScaleReparam` names it after the centred site)."""
    return f"{_cell_site(name)}_decentered"


def group_records(records: Sequence[Record] | StackedRecords, by: str | Sequence[str]):
    """Which cell each record belongs to: `(cell_index, cells)`, where `cell_index` (n_records,)
    holds integers 0 .. n_cells - 1 and `cells` the cells' values of the `by` column(s), in the
    order of first appearance. A record may have any number of records in one cell.

    Example:
        >>> recs = read_measurements("pulses.csv", ["ambient_degC", "soc_percent", "cell"])
        >>> index, cells = group_records(recs, "cell")      # 180 records -> 20 cells
    """
    keys = records.keys if isinstance(records, StackedRecords) else [r.key for r in records]
    cols = [by] if isinstance(by, str) else list(by)
    if not cols:
        raise ValueError("group_records: name at least one record column in `by`.")
    labels, index = [], []
    for i, key in enumerate(keys):
        missing = [c for c in cols if c not in key]
        if missing:
            raise MeasurementError(
                f"record {i} ({key}) has no column {missing[0]!r} to group cells by; its record columns are "
                f"{sorted(key)} (read_measurements' records=)."
            )
        label = key[cols[0]] if len(cols) == 1 else tuple(key[c] for c in cols)
        if label not in labels:
            labels.append(label)
        index.append(labels.index(label))
    return np.asarray(index, dtype=np.int64), tuple(labels)


def _check_index(cell_index, n_records: int) -> tuple[np.ndarray, int]:
    idx = np.asarray(cell_index)
    if idx.shape != (n_records,) or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"cell_index must hold one integer per record, shape ({n_records},), got {idx.dtype} {idx.shape}.")
    n_cells = int(idx.max()) + 1 if idx.size else 0
    if idx.min() < 0 or set(np.unique(idx)) != set(range(n_cells)):
        raise ValueError(f"cell_index must number the cells 0 .. n_cells - 1, each with a record; got {np.unique(idx)}.")
    return idx, n_cells


def _initial_socs(records: StackedRecords, initial_soc, p: ParameterSet):
    """("voltage", (n,)) rest voltages or ("soc", (n,)) states of charge for every record."""
    n = len(records)
    if isinstance(initial_soc, str):  # one rest voltage for every record, "4.0 V"
        kind, value = parse_soc(initial_soc)
        return kind, _check_rest_voltages(np.full(n, float(value)), records, p, initial_soc)
    if initial_soc is None:
        if isinstance(records.first_voltage, jax.core.Tracer):  # checked where the fit saw them concrete
            return "voltage", records.first_voltage
        moving = np.flatnonzero(~np.asarray(records.at_rest))
        if moving.size:
            r = int(moving[0])
            which = f"record {r}" + (f" ({records.keys[r]})" if records.keys[r] else "")
            more = f" and {moving.size - 1} more do" if moving.size > 1 else " does"
            raise MeasurementError(
                f"{which}{more} not start at rest, so the first voltage is not a rest voltage: give initial_soc (a "
                "state of charge in [0, 1], one or one per record)."
            )
        return "voltage", _check_rest_voltages(np.asarray(records.first_voltage, dtype=np.float64), records, p, None)
    soc = np.broadcast_to(np.asarray(initial_soc, dtype=np.float64), (n,)).copy()
    if not np.all((soc >= 0) & (soc <= 1)):
        raise ValueError(f"initial_soc must lie in [0, 1] (a fraction, not a percentage), got {initial_soc}.")
    return "soc", soc


def _check_rest_voltages(volts, records: StackedRecords, p: ParameterSet, given):
    """Rest voltages must lie within the set's open-circuit voltages at 0 and 100 % SOC: outside
    them no state of charge has that voltage, and a solve started there stops at once (every
    prediction NaN, which a fit would read as a huge noise)."""
    lo, hi = p["Open-circuit voltage at 0% SOC [V]"], p["Open-circuit voltage at 100% SOC [V]"]
    if any(isinstance(x, jax.core.Tracer) for x in (lo, hi)):
        return volts
    lo, hi = float(np.min(np.asarray(lo))), float(np.max(np.asarray(hi)))
    bad = np.flatnonzero(~((volts >= lo) & (volts <= hi)))
    if bad.size:
        r = int(bad[0])
        rng = (f"outside the set's open-circuit voltage range [{lo:g}, {hi:g}] V ('Open-circuit voltage at 0% SOC [V]' "
               "and 'Open-circuit voltage at 100% SOC [V]')")
        what = f"initial_soc {given!r} lies {rng}" if given is not None else (
            f"record {r} ({records.keys[r]}) starts at rest at {volts[r]:.6g} V, its first voltage and so its initial "
            f"state, {rng}" + (f"; so do {bad.size - 1} more records" if bad.size > 1 else ""))
        raise ValueError(f"{what}. No state of charge has that voltage: give initial_soc (a state of charge; 1.0 "
                         "for a cell charged to its limit, whose rest voltage reads a little above it), or widen "
                         "the set's range if the cell's window differs.")
    return volts


def _solve_records(model, p, tables, modes, t, soc_kind, soc, opts, values, temperature=False):
    def solve(opts_, vals, others):
        (model_, p_), table, t_, s = others
        q = initial_concentrations(p_.update(vals), soc_kind, s)
        sol = _simulate(model_, q, table, modes, t_, opts_)
        return (sol.voltage, sol.temperature, sol.status) if temperature else (sol.voltage, sol.status)

    one = lambda v, *a: in_forward_mode(solve, opts, v, ((model, p), *a))
    if getattr(model, "structure", None) is not None:
        # The DFN's records one after another (`lax.map`), as when its reverse mode in lockstep
        # was NaN on the LG M50 discharges; whether lockstep pays in forward mode is not measured
        return jax.lax.map(lambda a: one(*a), (values, tables, t, soc))
    return jax.vmap(one)(values, tables, t, soc)


# compiled once per (model, record shapes, options)
_solve_records_jit = eqx.filter_jit(_solve_records)


def _solve_draws(model, p, tables, modes, t, soc_kind, soc, opts, values):
    return jax.vmap(lambda v: _solve_records(model, p, tables, modes, t, soc_kind, soc, opts, v))(values)


_solve_draws_jit = eqx.filter_jit(_solve_draws)


class RecordSolver:
    """The measured currents of stacked records, run through a model with per-record parameters
    in one compiled, `vmap`ped call: `solver(values)` -> voltages (n_records, n_points) at the
    measured times, NaN where a solve stopped first; `solver.solve(values)` -> (voltages, the
    solves' `Status` codes (n_records,)); `solver.solve(values, temperature=True)` -> (voltages,
    temperatures [K], codes). `values`: name -> array (n_records,) in natural units; the other
    parameters are `p`'s.

    The records' initial states come from `initial_soc`: None for each record's first voltage
    (every record must start at rest; the state of charge then depends on the parameters, as
    the stoichiometry window does), a string "4.0 V" for one rest voltage, else a state of
    charge in [0, 1] (one, or one per record).

    The records may be traced (a model's argument in a compiled fit): then nothing is checked
    but the shapes, as the fit checked them on the concrete records first."""

    def __init__(self, model, p: ParameterSet, records: StackedRecords, *, initial_soc=None, rtol=1e-6, atol=1e-8,
                 max_steps=20_000):
        traced = isinstance(records.t, jax.core.Tracer)
        # every row a valid drive cycle (`DriveCycle`'s checks), and the checks of `simulate`, once,
        # on the first record; all share the table's shapes
        first = records.experiments()[0] if not traced else _ANY_DRIVE_CYCLE
        model, _, _, modes, _, opts = _prepare(model, p, first, None, rtol, atol, max_steps, None, None,
                                               outputs_in_loop=True)
        self.model, self.p, self.modes, self.opts = model, p, modes, opts
        self.tables = StepTable.drive_cycles(records.t, records.current)
        self.t = (jnp if traced else np).asarray(records.t, dtype=np.float64)
        self.soc_kind, self.soc = _initial_socs(records, initial_soc, p)
        self.n_records = len(records)

    def solve(self, values: Mapping, temperature: bool = False):
        return _solve_records_jit(self.model, self.p, self.tables, self.modes, self.t, self.soc_kind, self.soc,
                                  self.opts, dict(values), bool(temperature))

    def __call__(self, values: Mapping):
        return self.solve(values)[0]


def hierarchical_model(model, p: ParameterSet, records: StackedRecords, cell_index, observed=None, *,
                       priors: Mapping[str, PopulationPrior], noise_prior=None, noise: str = "gaussian",
                       df: float = 4.0, initial_soc=None, rtol: float = 1e-6, atol: float = 1e-8):
    """A numpyro model of many cells' measured voltages. Cell c has its own value of each
    parameter in `priors`, drawn from the parameter's population (`PopulationPrior`: a normal
    distribution in the transformed space with learned location and spread, the cells
    non-centred); record r belongs to cell `cell_index[r]` (`group_records`); all records are
    solved in one `vmap`ped call (`RecordSolver`); one noise scale `sigma` [V] for all
    (`noise_prior`, default a half-normal of scale 10 mV), Gaussian or Student-t. `observed`:
    voltages (n_records, n_points), by default `records.voltage`; padding is masked.

    Sites: `loc_site(name)` and `scale_site(name)` (the population, transformed space),
    `offset_site(name)` (the cells' offsets, shape (n_cells,)), "sigma"; deterministic: `name`,
    the cells' values in natural units, shape (n_cells,) (in `run_nuts`'s samples only with
    `deterministic=True`). `cell_values`, `population_summary` and `new_cell_values` derive
    these from any engine's samples.

    Example:
        >>> index, cells = group_records(recs, "cell")
        >>> priors = {k: population_prior(k, p[k]) for k in names}
        >>> res = fit_svi(hierarchical_model, jaxcell.SPMe(), p, stack_records(recs), index, priors=priors)
    """
    idx, n_cells = _check_index(cell_index, len(records))
    observed = records.voltage if observed is None else observed
    solver = RecordSolver(model, p, records, initial_soc=initial_soc, rtol=rtol, atol=atol)
    values = {}
    for name, prior in priors.items():
        if name not in p:
            raise ValueError(f"unknown parameter {name!r} in the priors (parameter set {p.name!r}).")
        if not isinstance(prior, PopulationPrior):
            raise TypeError(f"the prior of {name!r} must be a PopulationPrior (population_prior(...)), got {type(prior).__name__}.")
        loc = numpyro.sample(loc_site(name), dist.Normal(prior.centre, prior.spread))
        scale = numpyro.sample(scale_site(name), dist.HalfNormal(prior.cell_spread))
        with numpyro.plate("cells", n_cells), numpyro.handlers.reparam(config={_cell_site(name): LocScaleReparam(0)}):
            u = numpyro.sample(_cell_site(name), dist.Normal(loc, scale))
        values[name] = numpyro.deterministic(name, prior.to_natural(u))[idx]
    sigma = numpyro.sample("sigma", noise_prior if noise_prior is not None else dist.HalfNormal(0.01))
    predicted, status = solver.solve(values)
    return voltage_likelihood(predicted, observed, sigma, mask=records.mask, noise=noise, df=df, cut_offs=voltage_limits(p),
                              status=status)


def records_model(model, p: ParameterSet, records: StackedRecords, observed=None, *, priors, noise_prior=None,
                  noise: str = "gaussian", df: float = 4.0, initial_soc=None, rtol: float = 1e-6, atol: float = 1e-8,
                  ocv=None, ocv_noise_prior=None, temperature: bool = False, temperature_noise_prior=None):
    """A numpyro model of one cell measured in several records (e.g. discharges at several
    rates): one value of each parameter in `priors` (natural units, as `cell_model`), shared by
    every record; the records solved in one `vmap`ped call (`RecordSolver`, initial states as
    there); one noise scale `sigma` [V]; padding masked. Sites: the parameters' names, "sigma".

    `ocv` = (soc, voltage, ends) adds the cell's measured open-circuit-voltage curve as
    evidence (`ocv_likelihood`, site "OCV") with its own scale "sigma_ocv" (prior
    `ocv_noise_prior`, default a half-normal of scale 10 mV).

    `temperature=True` (a thermal model, records read with a measured temperature) adds the
    measured temperature as a second channel (`temperature_likelihood`, site "T"): its rise
    from each record's first point against the model's, with its own scale "sigma_T" [K]
    (prior `temperature_noise_prior`, default a half-normal of scale 1 K). With the heat
    transfer coefficient in `priors`, the fit learns how the cell exchanges heat from the
    same records as the voltage.

    Example:
        >>> priors = {k: default_prior(k, p[k]) for k in names}
        >>> res = fit_map(records_model, jaxcell.SPMe(), p, stack_records(recs), priors=priors)
    """
    from ._model import ocv_likelihood, sample_parameters, temperature_likelihood

    if temperature:
        if records.temperature is None:
            raise ValueError("records_model: temperature=True needs a measured temperature in every record "
                             "(read_measurements(..., temperature='T_cell_degC')).")
        if getattr(model, "thermal", "isothermal") == "isothermal":
            raise ValueError(f"records_model: temperature=True needs a thermal model (e.g. {type(model).__name__}"
                             "(thermal='lumped')); an isothermal model's temperature does not move.")

    observed = records.voltage if observed is None else observed
    solver = RecordSolver(model, p, records, initial_soc=initial_soc, rtol=rtol, atol=atol)
    q = sample_parameters(p, priors)
    values = {k: jnp.broadcast_to(q[k], (len(records),)) for k in priors}
    sigma = numpyro.sample("sigma", noise_prior if noise_prior is not None else dist.HalfNormal(0.01))
    if ocv is not None:
        soc, voltage, ends = ocv
        sigma_ocv = numpyro.sample("sigma_ocv", ocv_noise_prior if ocv_noise_prior is not None else dist.HalfNormal(0.01))
        ocv_likelihood(q, soc, voltage, sigma_ocv, ends=ends)
    if not temperature:
        predicted, status = solver.solve(values)
    else:
        predicted, temp, status = solver.solve(values, temperature=True)
        sigma_t = numpyro.sample("sigma_T", temperature_noise_prior if temperature_noise_prior is not None
                                 else dist.HalfNormal(1.0))
        temperature_likelihood(temp, records.temperature, sigma_t, mask=records.mask)
    return voltage_likelihood(predicted, observed, sigma, mask=records.mask, noise=noise, df=df,
                              cut_offs=voltage_limits(p), status=status)


def cell_values(samples: Mapping, priors: Mapping[str, PopulationPrior]) -> dict:
    """name -> the cells' values in natural units, (n_draws, n_cells), from any engine's draws
    of a `hierarchical_model` (the population location, spread and the cells' offsets)."""
    out = {}
    for name, prior in priors.items():
        loc, scale = np.asarray(samples[loc_site(name)]), np.asarray(samples[scale_site(name)])
        z = np.asarray(samples[offset_site(name)])
        out[name] = np.asarray(prior.to_natural(loc[..., None] + scale[..., None] * z))
    return out


def population_summary(samples: Mapping, priors: Mapping[str, PopulationPrior]) -> dict:
    """name -> draws of the population in natural units: "median" (the population's median,
    to_natural(location)), "loc" and "scale" (location and spread in the transformed space)."""
    return {
        name: {
            "median": np.asarray(prior.to_natural(np.asarray(samples[loc_site(name)]))),
            "loc": np.asarray(samples[loc_site(name)]),
            "scale": np.asarray(samples[scale_site(name)]),
        }
        for name, prior in priors.items()
    }


def new_cell_values(samples: Mapping, priors: Mapping[str, PopulationPrior], key) -> dict:
    """The posterior predictive of a new, unseen cell's parameters: for every draw of the
    population, one cell drawn from it. name -> (n_draws,) in natural units."""
    out = {}
    keys = jax.random.split(key, len(priors))
    for k, (name, prior) in zip(keys, priors.items()):
        loc, scale = np.asarray(samples[loc_site(name)]), np.asarray(samples[scale_site(name)])
        z = np.asarray(jax.random.normal(k, loc.shape))
        out[name] = np.asarray(prior.to_natural(loc + scale * z))
    return out


def predict_voltage(model, p: ParameterSet, values: Mapping, records: StackedRecords, *, sigma=None, key=None,
                    noise: str = "gaussian", df: float = 4.0, initial_soc=None, rtol: float = 1e-6,
                    atol: float = 1e-8):
    """Voltages (n_draws, n_records, n_points) of every record for every draw of parameter
    values: `values` maps names to (n_draws,) (one value for all records) or (n_draws,
    n_records) arrays in natural units. With `sigma` ((n_draws,) or a number [V]) and `key`,
    measurement noise is added (Gaussian or Student-t), giving the posterior predictive of the
    measured voltage. NaN where a solve stopped before the time. Draws run in chunks of
    `PREDICT_CHUNK` through one compiled function.

    Example:
        >>> v = predict_voltage(SPMe(), p, new_cell_values(samples, priors, key), stacked,
        ...                     sigma=samples["sigma"], key=key)
        >>> lo, hi = np.nanquantile(v, [0.05, 0.95], axis=0)
    """
    solver = RecordSolver(model, p, records, initial_soc=initial_soc, rtol=rtol, atol=atol)
    n_rec = solver.n_records
    vals = {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}
    if not vals:
        raise ValueError("predict_voltage: give at least one parameter's draws in `values`.")
    first = next(iter(vals.values()))
    n = first.shape[0] if first.ndim else 0
    if n == 0:
        raise ValueError("predict_voltage: `values` holds no draws; give each parameter's draws as an array (n_draws,) "
                         "or (n_draws, n_records) with n_draws >= 1.")
    if sigma is not None and not np.all(np.isfinite(sig := np.asarray(sigma, dtype=np.float64)) & (sig >= 0)):
        raise ValueError(f"predict_voltage: sigma (the noise scale [V]) must be finite and >= 0, got {sigma!r}.")
    for k, v in vals.items():
        if v.ndim == 1:
            v = np.repeat(v[:, None], n_rec, axis=1)
        if v.shape != (n, n_rec):
            raise ValueError(f"values[{k!r}] must have shape ({n},) or ({n}, {n_rec}) (draws, records), got {v.shape}.")
        vals[k] = v

    def fn(chunk):  # the voltages; the statuses are not needed: unreached points stay NaN
        return _solve_draws_jit(solver.model, solver.p, solver.tables, solver.modes, solver.t, solver.soc_kind,
                                solver.soc, solver.opts, chunk)[0]

    out = []
    for start in range(0, n, PREDICT_CHUNK):
        idx = np.minimum(np.arange(start, start + PREDICT_CHUNK), n - 1)
        out.append(np.asarray(fn({k: v[idx] for k, v in vals.items()})))
    v = np.concatenate(out)[:n]
    if sigma is not None:
        if key is None:
            raise ValueError("predict_voltage: adding noise (sigma) needs a random key.")
        s = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (n,))[:, None, None]
        if noise == "gaussian":
            eps = np.asarray(jax.random.normal(key, v.shape))
        elif noise == "student_t":
            eps = np.asarray(jax.random.t(key, df, v.shape))
        else:
            raise ValueError(f"noise must be 'gaussian' or 'student_t', got {noise!r}.")
        v = v + s * eps
    return v
