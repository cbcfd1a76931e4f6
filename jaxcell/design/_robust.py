"""Robust design: a design plus jaxcell's manufacturing variation (`jaxcell.population`), its
expected energy density and a chance constraint on capacity, by sample-average approximation
with common random numbers; the Monte Carlo check of a design on a fresh population; the cell
failure rate from a pack's."""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from .._checks import as_key, check_int
from ..batch import simulate_batch
from ..experiment import Experiment
from ..parameters import ParameterSet
from ..parameters._parameter_set import _validate
from ..population import Hierarchy, Variation, sample_population, sample_values, transformed_deviations
from ..population._sample import _transform, derived_parameters
from ..soc import with_initial_soc
from ._mass import cell_mass, cell_volume, densities as _densities
from ._objective import cell_outcome, check_objective, formation_ratio, with_formation_lithium
from ._optimise import (
    DesignResult,
    UndeliveredStart,
    augmented_lagrangian,
    check_budget,
    check_capacity_floor,
    check_discharges,
    derivative_mode,
    jit_value_and_grad,
    maximise,
    no_energy,
)
from ._variables import DesignSpace


def cell_alpha(alpha_pack: float, n_cells: int) -> float:
    """The failure probability a cell may have so that a pack of `n_cells` cells, all of which must
    pass, fails with probability `alpha_pack`: ``1 - (1 - alpha_pack)^(1 / n_cells)``.

    It assumes independent cells. Cells of one pack share production lots (jaxcell's default
    variation puts most of the variance at the pack level), so their failures are positively
    correlated: a pack fails less often than the formula says for the same cell rate, but its
    failures come together (a bad lot fails many cells). Measure the pack rate on a hierarchical
    check population rather than trusting the formula (docs/design.md)."""
    if not 0.0 < alpha_pack < 1.0:
        raise ValueError(f"alpha_pack must be a probability in (0, 1), got {alpha_pack!r}.")
    check_int(n_cells, "n_cells")
    return float(-math.expm1(math.log1p(-alpha_pack) / n_cells))


def around_design(variation: Variation, names) -> Variation:
    """`variation` with the parameters in `names` (the designed ones) centred on the design's
    values: a spec's `center` for a designed parameter is dropped, with a warning. The design
    sets the value; the spec sets the spread. (A check that kept the spec's centre checked the
    same cells for every design.) The optimisation's draws (`common_draws`) are deviations from
    the centre, applied to each design, so the centre never entered them."""
    names = set(names)
    dropped = [pv.name for pv in variation.parameters if pv.name in names and pv.center is not None]
    if dropped:
        warnings.warn(f"the variation's center of {', '.join(map(repr, dropped))} is not used: a designed parameter "
                      "varies around the design.", stacklevel=3)
    return dataclasses.replace(variation, parameters=tuple(
        dataclasses.replace(pv, center=None) if pv.name in names and pv.center is not None else pv
        for pv in variation.parameters
    ))


def _apply_deviation(kind: str, x, d):
    if kind == "log":
        return x * jnp.exp(d)
    if kind == "logit":
        return jax.nn.sigmoid(jnp.log(x) - jnp.log1p(-x) + d)
    return x + d


@dataclasses.dataclass(frozen=True)
class CommonDraws:
    """The manufacturing draws shared by every candidate design (common random numbers): each
    varied parameter's deviation in its transformed space (log for positive quantities, logit
    for fractions), applied to the design's value, and the sampled values of varied parameters
    the design does not touch."""

    deviations: dict  # name -> (n,) deviation in the transformed space, for designed names
    kinds: dict  # name -> "log" | "logit" | "identity"
    fixed: dict  # name -> (n,) sampled values of the other varied parameters
    derived: dict  # active fraction name -> porosity name (the fraction follows the porosity)
    n: int


def common_draws(params: ParameterSet, space: DesignSpace, variation: Variation, n: int, key) -> CommonDraws:
    """Draw `n` cells' variation once (`transformed_deviations`, `sample_values`) for use with
    every design. A designed parameter whose distribution is not in a log, logit or identity
    space (a truncated normal, or an active fraction varied as a share of the solid) cannot
    carry a deviation from design to design: refused with a ValueError naming it.

    The cells are drawn independently, each its own pack and module (the hierarchy's levels
    kept as variance): a sample average then sees `n` production lots, where the variation's
    own layout would give a sample of 64 cells one lot (one pack's draw), an estimate of a
    cell's failure probability with the variance of a single lot. `check_design` keeps the
    hierarchy, and measures the packs' failure rate with it."""
    key = as_key(key)
    variation = dataclasses.replace(variation, hierarchy=Hierarchy())
    dev = transformed_deviations(params, variation, n, key)
    vals = sample_values(params, variation, n, key)
    designed = set(space.names) | set(space.derived_names)
    kinds, deviations, fixed = {}, {}, {}
    for name in variation.names:
        if name in designed:
            kind = _transform(name, params)
            dist = variation[name].distribution
            if kind not in ("log", "logit", "identity") or "truncated" in dist:
                raise ValueError(
                    f"{name!r} is both designed and varied ({dist!r}): a robust design needs its variation in a log, "
                    "logit or identity space (lognormal, logit_normal, normal, student_t, ...), so that one draw "
                    "applies to every design."
                )
            kinds[name], deviations[name] = kind, dev[name]
        else:
            fixed[name] = vals[name]
    return CommonDraws(deviations, kinds, fixed, derived_parameters(params, variation), int(n))


def population_cells(q: ParameterSet, draws: CommonDraws) -> dict:
    """The varied parameters of the draw's cells around design `q`: name -> (n,) values."""
    values = dict(draws.fixed)
    for name, d in draws.deviations.items():
        values[name] = _apply_deviation(draws.kinds[name], q[name], d)
    for act, por in draws.derived.items():  # the solid's composition of the design is kept
        values[act] = q[act] / (1.0 - q[por]) * (1.0 - values[por])
    return values


def robust_objective(
    model,
    params: ParameterSet,
    experiment,
    space: DesignSpace,
    draws: CommonDraws,
    *,
    objective: str = "gravimetric",
    initial_soc=1.0,
    lithium: str = "set",
    densities: Mapping[str, float] | None = None,
    **simulate_kwargs,
):
    """``f(u) -> Outcome`` with a leading axis of ``draws.n`` cells: the cells the factory makes of
    the design at `u`, each simulated (one `jax.vmap`). The same draws for every `u`, so the
    sample averages are smooth in the design."""
    check_objective(objective)
    _densities(params, densities)
    if not isinstance(experiment, Experiment):
        experiment = Experiment(experiment if isinstance(experiment, (list, tuple)) else [experiment])
    ratio = formation_ratio(params) if lithium == "formation" else None
    kwargs = dict(simulate_kwargs)
    kwargs.setdefault("outputs_in_loop", True)  # faster under vmap (jaxcell.simulate)

    def one(q, values):
        c = q.update(values)
        if lithium == "formation":
            c = with_formation_lithium(c, ratio)
        if initial_soc is not None:
            c = with_initial_soc(c, initial_soc)
        return cell_outcome(model, c, experiment, objective=objective, densities=densities, **kwargs)

    def f(u):
        q = space.apply(params, u)
        return jax.vmap(lambda v: one(q, v))(population_cells(q, draws))

    return f


def smoothed_failure(capacity, min_capacity, width):
    """Sample average of ``sigmoid((min_capacity - capacity) / width)``: a smooth estimate of
    P(capacity < min_capacity), differentiable in the design (the indicator's step smoothed over
    a width [A.h])."""
    return jnp.mean(jax.nn.sigmoid((min_capacity - capacity) / width))


def cvar_shortfall(capacity, min_capacity, alpha):
    """The sample's conditional value at risk, at level `alpha`, of the relative shortfall
    ``L = (min_capacity - capacity) / min_capacity``: the mean of its worst `alpha` fraction,
    ``t + sum(max(0, L - t)) / (alpha n)`` with t the ceil(alpha n)-th largest L
    (Rockafellar-Uryasev, exact on the sample). CVaR <= 0 implies that at most a fraction `alpha`
    of the sample falls short: a conservative, convex replacement of the chance constraint that
    needs no smoothing width, and is differentiable wherever no two cells tie."""
    return _cvar((min_capacity - capacity) / min_capacity, alpha)


def _cvar(loss, alpha):
    """The sample CVaR of `loss` at level `alpha` (the mean of its worst `alpha` fraction)."""
    n = loss.shape[0]
    k = max(1, math.ceil(alpha * n - 1e-9))
    t = jnp.sort(loss)[n - k]
    return t + jnp.sum(jnp.maximum(0.0, loss - t)) / (alpha * n)


@dataclasses.dataclass
class CheckResult:
    """A plain Monte Carlo check of a design on a fresh population.

    Attributes:
        n: cells simulated; failures: cells with capacity below `min_capacity`, above
            `max_temperature` (overheated: how many delivered cells) or that did not deliver the
            experiment; failure_probability: failures / n, stderr: its standard
            error sqrt(p (1 - p) / n), 0 where no cell or every cell failed; upper95: the
            one-sided 95 % Clopper-Pearson upper bound on the failure probability (exact for
            any n; about 3 / n where no cell failed), what a chance constraint P(fail) <= alpha
            is checked against; not_delivered: cells that did not deliver it (counted as
            failures); mean_objective, mean_capacity: over delivered cells; pack_failure_probability:
            the fraction of packs (of the variation's hierarchy) with at least one failed cell;
        capacities, objectives, temperatures: each cell's capacity [A.h], energy density and
            highest temperature [K] (NaN where it did not deliver the experiment), left out of
            `to_dict`.
    """

    n: int
    failures: int
    failure_probability: float
    stderr: float
    upper95: float
    not_delivered: int
    mean_objective: float
    mean_capacity: float
    min_capacity: float | None
    pack_failure_probability: float | None
    seconds: float
    max_temperature: float | None = None
    overheated: int | None = None
    capacities: np.ndarray = dataclasses.field(default=None, repr=False)
    objectives: np.ndarray = dataclasses.field(default=None, repr=False)
    temperatures: np.ndarray = dataclasses.field(default=None, repr=False)

    def to_dict(self) -> dict:
        """The summary figures (not the per-cell arrays) as plain data."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.repr}

    def plot(self, ax=None, label: str | None = None, bins: int = 50):
        """Histogram of the delivered cells' capacities, with `min_capacity` and the failure
        probability (with its standard error) in the legend. Returns the axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.5))
        cap = self.capacities[np.isfinite(self.capacities)]
        text = f"P(fail) = {self.failure_probability:.4f} +- {self.stderr:.4f}"
        ax.hist(cap, bins=bins, alpha=0.5, label=text if label is None else f"{label}: {text}")
        if self.min_capacity is not None:
            ax.axvline(self.min_capacity, color="k", lw=1)
        ax.set_xlabel("capacity [A.h]")
        ax.set_ylabel(f"cells (of {self.n})")
        ax.legend(fontsize=8)
        return ax


def check_design(
    model,
    params: ParameterSet,
    experiment,
    design: Mapping[str, float],
    variation: Variation,
    n: int,
    key,
    *,
    min_capacity: float | None = None,
    objective: str = "gravimetric",
    initial_soc=1.0,
    lithium: str = "set",
    densities: Mapping[str, float] | None = None,
    batch_size: int | None = None,
    np_ratio: str | float | None = None,
    max_temperature: float | None = None,
) -> CheckResult:
    """Check `design` (name -> value, e.g. `DesignResult.design`) by plain Monte Carlo: `n` fresh
    cells from `variation` around it (`sample_population`, a key the optimisation did not use;
    a designed parameter varies around the design, whatever `center` the spec gives it),
    simulated with `simulate_batch`; the share below `min_capacity` with its standard error.
    `np_ratio`: as the design's `DesignSpace` had it (the balanced thickness follows again).
    With `max_temperature` [K], a cell whose highest temperature exceeds it fails too."""
    t0 = time.perf_counter()
    check_objective(objective)
    check_int(n, "n", why="(the number of cells to check)")
    if min_capacity is not None:
        check_capacity_floor(min_capacity)
    _check_max_temperature(max_temperature)
    for k, v in design.items():  # by the parameter's own range: the bounds below are the design's own
        _validate(k, v)
    # the design's values with the parameters that follow them, as in the optimisation
    space = DesignSpace.create(params, [(k, float(v) * (1 - 1e-9), float(v) * (1 + 1e-9)) for k, v in design.items()],
                               np_ratio=np_ratio)
    q = space.apply_values(params, {k: float(v) for k, v in design.items()})
    ratio = formation_ratio(params) if lithium == "formation" else None
    key = as_key(key)
    designed = set(space.names) | set(space.derived_names)
    for pv in variation.parameters:  # a spec's bounds hold for the design too
        lo, hi = (-np.inf if pv.lower is None else pv.lower), (np.inf if pv.upper is None else pv.upper)
        if pv.name in designed and not lo < float(q[pv.name]) < hi:
            raise ValueError(f"the design's {pv.name!r} = {float(q[pv.name]):g} lies outside the variation's bounds "
                             f"({lo:g}, {hi:g}); its cells would vary around it.")
    cells = sample_population(q, around_design(variation, designed), n, key)
    if lithium == "formation":
        cells = with_formation_lithium(cells, ratio)
    if initial_soc is not None:
        cells = with_initial_soc(cells, initial_soc)
    sols = simulate_batch(model, cells, experiment, batch_size=batch_size)
    cap = np.asarray(sols.capacity)
    energy = np.asarray(sols.energy)
    delivered = np.asarray(sols.delivered)
    size = np.asarray(cell_mass(cells, densities) if objective == "gravimetric" else cell_volume(cells))
    obj = energy / np.broadcast_to(size, energy.shape)
    temp = np.nanmax(np.asarray(sols.temperature), axis=-1)
    fail = ~delivered
    if min_capacity is not None:
        fail = fail | (cap < min_capacity)
    overheated = None
    if max_temperature is not None:
        overheated = int((delivered & (temp > max_temperature)).sum())
        fail = fail | (temp > max_temperature)
    p = float(fail.mean())
    pack_p = None
    if min_capacity is not None or max_temperature is not None:
        pack, _ = variation.hierarchy.layout(n)
        packs = np.unique(pack)
        pack_p = float(np.mean([fail[pack == k].any() for k in packs]))
    ok = delivered
    return CheckResult(
        n=int(n), failures=int(fail.sum()), failure_probability=p, stderr=math.sqrt(p * (1 - p) / n),
        upper95=_upper95(int(fail.sum()), int(n)),
        not_delivered=int((~delivered).sum()),
        mean_objective=float(obj[ok].mean()) if ok.any() else float("nan"),
        mean_capacity=float(cap[ok].mean()) if ok.any() else float("nan"),
        min_capacity=min_capacity, pack_failure_probability=pack_p, seconds=time.perf_counter() - t0,
        capacities=np.where(delivered, cap, np.nan), objectives=np.where(delivered, obj, np.nan),
        max_temperature=max_temperature, overheated=overheated, temperatures=np.where(delivered, temp, np.nan),
    )


def _check_max_temperature(max_temperature) -> None:
    if max_temperature is not None and not (np.isfinite(max_temperature) and max_temperature > 0):
        raise ValueError(f"max_temperature must be a positive temperature [K], got {max_temperature!r}.")


def _upper95(failures: int, n: int) -> float:
    """The one-sided 95 % Clopper-Pearson upper bound on a failure probability from `failures` of
    `n` cells: the p whose binomial chance of at most `failures` failures is 5 %."""
    return 1.0 if failures >= n else float(scipy.stats.beta.ppf(0.95, failures + 1, n - failures))


def _spread(prob, n):
    """sqrt(prob (1 - prob) / n), with a zero derivative where prob is exactly 0 or 1 (every
    sample far from the floor): sqrt's infinite one there made the whole gradient NaN, even
    with z = 0, and the optimiser stopped at its start as if converged."""
    var = prob * (1.0 - prob)
    return jnp.where(var > 0, jnp.sqrt(jnp.where(var > 0, var, 1.0) / n), 0.0)


def _broken(entry: dict, alpha: float, t_alpha: float) -> list[str]:
    """The chance constraints a path entry breaks, in words (none: it meets them): the optimised
    form (`constraint`, the smoothed probability or CVaR, to 1e-3 alpha) and the sample's
    counted fractions (a cell below the floor or not delivering the experiment fails, as in
    `check_design`). The sigmoid counts a cell just below the floor as less than one failure, so
    the smoothed probability can meet alpha where the count does not (8 cells, 1 below the
    floor: smoothed 0.087, counted 0.125, alpha 0.1)."""
    why = [f"optimised constraint {entry['constraint']:.4g}"] if entry["constraint"] > 1e-3 * alpha else []
    if entry["sample_failure_fraction"] > alpha:
        why.append(f"counted failures {entry['sample_failure_fraction']:.4g} > {alpha:g}")
    if entry.get("sample_overheat_fraction", 0.0) > t_alpha:
        why.append(f"counted overheating {entry['sample_overheat_fraction']:.4g} > {t_alpha:g}")
    return why


def choose_design(path: Sequence[dict], final: dict, alpha: float, t_alpha: float) -> tuple[dict, bool, str]:
    """(design entry, feasible, note) from the optimiser's `path` and its last point `final`:
    `final` where it meets the constraints (`_broken`), else the best entry of the path that does
    (the augmented Lagrangian approaches the boundary from outside, and its budget may end
    there), else `final`, infeasible."""
    why = _broken(final, alpha, t_alpha)
    if not why:
        return final, True, ""
    ok = [e for e in path if not _broken(e, alpha, t_alpha)]
    if not ok:
        return final, False, ""
    return max(ok, key=lambda e: e["objective"]), True, (
        f"the best feasible design evaluated (the augmented Lagrangian's last point was outside the constraint: "
        f"{', '.join(why)})")


def optimise_robust_design(
    model,
    params: ParameterSet,
    experiment,
    variables: DesignSpace | Sequence,
    variation: Variation,
    *,
    min_capacity: float,
    alpha: float,
    n_samples: int = 64,
    key=0,
    smoothing: float | None = None,
    objective: str = "gravimetric",
    method: str = "L-BFGS-B",
    max_evaluations: int = 40,
    initial_soc=1.0,
    lithium: str = "set",
    densities: Mapping[str, float] | None = None,
    start: Mapping[str, float] | None = None,
    confidence: float | None = None,
    chance: str = "sigmoid",
    max_temperature: float | None = None,
    temperature_alpha: float | None = None,
    temperature_smoothing: float = 0.1,
    **simulate_kwargs,
) -> DesignResult:
    """Maximise the expected energy density over the cells made of a design, subject to the
    chance constraint P(capacity < `min_capacity`) <= `alpha`.

    Sample-average approximation with common random numbers: `n_samples` cells' variation drawn
    once (`common_draws`, key `key`) and applied to every candidate design; the probability
    smoothed by a sigmoid of width `smoothing` [A.h] (default 0.2 % of `min_capacity`); an
    augmented Lagrangian on ``g = P_smooth - alpha <= 0`` with L-BFGS-B on the unit box (or
    `method`). The result's `constraint` is g at the optimum. A design is feasible where g <= 0
    and the sample's counted share of failed cells (below the floor or not delivering the
    experiment; with `max_temperature`, overheated ones against `temperature_alpha`) is at most
    `alpha` too: the sigmoid counts a cell just below the floor as less than one, and the
    augmented Lagrangian, which drives the smoothed share to alpha, can end one counted cell
    over it. Otherwise the best evaluated design that meets both is returned, or the result is
    marked infeasible (``feasible=False``, the message says so). Check the design on a fresh,
    larger population with `check_design`: the smoothed sample estimate is not the failure rate.

    A sample of n cells estimates the probability to about sqrt(P (1 - P) / n): a design that
    just meets `alpha` on its sample fails it about half the time on fresh cells. With
    `confidence` (e.g. 0.95) the constraint is on the one-sided upper confidence bound instead,
    ``P_smooth + z sqrt(P_smooth (1 - P_smooth) / n_samples) <= alpha`` (z the standard normal
    quantile of `confidence`): a margin that shrinks as the sample grows.

    `chance="cvar"` replaces the smoothed probability by the sample's CVaR of the relative
    capacity shortfall (`cvar_shortfall`): ``g = CVaR_alpha((C_min - C) / C_min) <= 0``, which
    implies the sample constraint and asks more (the worst cells' mean shortfall, not only
    their number, must vanish).

    `max_temperature` [K] adds P(highest temperature > `max_temperature`) <= `temperature_alpha`
    (default `alpha`), smoothed over `temperature_smoothing` [K] (or its CVaR), with its own
    multiplier: a thermal model (``thermal="lumped"``) makes it bite. The result's `constraint` is
    then the larger of the two g's; each is in the path (`constraints`).
    """
    t0 = time.perf_counter()
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be a probability in (0, 1), got {alpha!r}.")
    if confidence is not None and not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be a probability in [0.5, 1), got {confidence!r}.")
    if chance not in ("sigmoid", "cvar"):
        raise ValueError(f"chance must be 'sigmoid' or 'cvar', got {chance!r}.")
    if chance == "cvar" and confidence is not None:
        raise ValueError("confidence applies to chance='sigmoid' only (CVaR is already a conservative bound).")
    z = 0.0 if confidence is None else float(scipy.stats.norm.ppf(confidence))
    check_capacity_floor(min_capacity)
    check_budget(max_evaluations)
    check_discharges(experiment)
    _check_max_temperature(max_temperature)
    t_alpha = alpha if temperature_alpha is None else temperature_alpha
    if not 0.0 < t_alpha < 1.0:
        raise ValueError(f"temperature_alpha must be a probability in (0, 1), got {temperature_alpha!r}.")
    space = variables if isinstance(variables, DesignSpace) else DesignSpace.create(params, variables)
    draws = common_draws(params, space, variation, n_samples, key)
    forward, simulate_kwargs = derivative_mode(len(space.variables), simulate_kwargs)
    f = robust_objective(model, params, experiment, space, draws, objective=objective, initial_soc=initial_soc,
                         lithium=lithium, densities=densities, **simulate_kwargs)
    width = smoothing if smoothing is not None else 2e-3 * min_capacity
    u0 = np.asarray(space.to_unit(start if start is not None else space.initial(params)))

    # each constraint as a floor: (values, floor, smoothing width, alpha); a temperature ceiling
    # is the floor of the negated temperature
    def floors(out):
        terms = [(out.capacity, min_capacity, width, alpha)]
        if max_temperature is not None:
            terms.append((-out.max_temperature, -max_temperature, temperature_smoothing, t_alpha))
        return terms

    def loss(u, lam, mu, f0):
        out = f(u)
        gs, probs = [], []
        for values, floor, w, a in floors(out):
            prob = smoothed_failure(values, floor, w)
            probs.append(prob)
            excess = (floor - values) / abs(floor)
            gs.append(_cvar(excess, a) if chance == "cvar" else prob + z * _spread(prob, n_samples) - a)
        g = gs[0] if len(gs) == 1 else jnp.stack(gs)
        return augmented_lagrangian(jnp.mean(out.objective) / f0, g, lam, mu), (out, g, jnp.stack(probs))

    vg = jit_value_and_grad(loss, forward)
    # the start's mean objective scales the loss to about 1 (f0 is an argument: one compile)
    m = 1 if max_temperature is None else 2  # constraints, one multiplier each
    (_, (first, _, _)), _ = vg(jnp.asarray(u0), 0.0 if m == 1 else np.zeros(m), 1.0, 1.0)
    f0 = float(jnp.mean(first.objective))
    no_energy(f0)
    if not np.isfinite(f0):
        raise UndeliveredStart("the starting design's cells do not all deliver the experiment: choose another start or "
                               "protocol.")

    def record(u, aux):
        out, g, prob = aux
        cap, prob, g = np.asarray(out.capacity), np.asarray(prob), np.atleast_1d(np.asarray(g))
        delivered = np.asarray(out.delivered)
        failed = ~delivered | ~(cap >= min_capacity)  # as `check_design` counts them
        entry = {
            "design": {k: float(v) for k, v in space.from_unit(u).items()},
            "objective": float(jnp.mean(out.objective)), "capacity": float(cap.mean()),
            "constraint": float(g.max()), "constraints": [float(x) for x in g],
            "smoothed_probability": float(prob[0]), "sample_failure_fraction": float(np.mean(failed)),
            "delivered": float(np.mean(delivered)),
        }
        if max_temperature is not None:
            temp = np.asarray(out.max_temperature)
            entry.update(max_temperature=float(temp.max()), smoothed_temperature_probability=float(prob[1]),
                         sample_overheat_fraction=float(np.mean(temp > max_temperature)))
        return entry

    u, path, n_eval, ok, msg = maximise(lambda u, lam, mu: vg(u, lam, mu, f0), u0, method=method,
                                        max_evaluations=max_evaluations - 1, constraint=m, record=record, spent=1)
    final = next(e for e in reversed(path) if np.allclose(np.asarray(space.to_unit(e["design"])), u, rtol=0, atol=1e-12))
    final, feasible, note = choose_design(path, final, alpha, t_alpha)
    if note:
        msg = f"{note}; {msg}"
    g = final["constraint"]
    if not feasible:
        bound = (" by its CVaR" if chance == "cvar" else "") + ("" if confidence is None else f" with {confidence:g} confidence")
        heat = "" if max_temperature is None else (
            f" and P(temperature > {max_temperature:g} K) <= {t_alpha:g} (smoothed "
            f"{final['smoothed_temperature_probability']:.4g}, counted {final['sample_overheat_fraction']:.4g})")
        msg = (f"infeasible: no design evaluated within the bounds meets P(capacity < {min_capacity:g} A.h) <= {alpha:g}"
               f"{heat} on the {n_samples}-cell sample{bound} (smoothed probability {final['smoothed_probability']:.4g}, "
               f"counted {final['sample_failure_fraction']:.4g} at the last); {msg}")
    return DesignResult(
        design=dict(final["design"]),
        objective=final["objective"], initial_objective=f0,
        capacity=final["capacity"], evaluations=n_eval + 1, constraint=g, feasible=bool(feasible),
        converged=bool(ok), message=msg, path=path, seconds=time.perf_counter() - t0, method=method,
    )
