"""`jaxcell fit` and `jaxcell predict`: identify a cell model's parameters from measured CSV files
and predict other measurements from the posterior (docs/inference.md)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

import numpy as np

from ..cli import MODELS, UsageError, _json_ready, _load, _seed, _write, check_output_path, user_input, write_json

#: parameters identified when --fit is not given: the two electrodes' thicknesses (each
#: electrode's capacity, hence the cell's capacity and stoichiometry window) and particle
#: diffusivities (the rate dependence). Not the active material volume fractions: in Chen2020
#: they already fill each electrode with its porosity (0.75 + 0.25, 0.665 + 0.335), so any
#: larger value is refused by the parameter set's checks
DEFAULT_FIT = (
    "Negative electrode thickness [m]",
    "Positive electrode thickness [m]",
    "Negative particle diffusivity [m2.s-1]",
    "Positive particle diffusivity [m2.s-1]",
)
FIT_FORMAT = "jaxcell-fit/1"
N_KEEP = 400  # posterior draws kept in fit.json for `predict`
MIN_POINTS = 5  # a record needs at least this many points (and more than the fitted parameters)
R_HAT_MAX = 1.01  # a NUTS or IMH run with a larger R-hat, or any divergence, has not converged
PARETO_K_MAX = 0.7  # an IMH run whose proposals' weights have a larger Pareto k has not converged
IMH_CHAINS, IMH_WARMUP = 4, 100  # IMH's defaults: its chains cost one batch of forward solves together
WARM_WARMUP = 200  # NUTS warm-up after a MAP warm start: the step size alone is tuned

FIT_DESCRIPTION = """Identify a cell model's parameters from measurements (docs/inference.md).

  jaxcell fit rate_tests.csv --records ambient_degC,C_rate --model SPMe --parameters Chen2020 \\
      --fit "Positive particle diffusivity [m2.s-1]" --method map --output fit.json
  jaxcell fit pulses.csv --records ambient_degC,soc_percent,cell --group cell --method svi \\
      --output fit.json

A CSV has columns t_s (time [s]), I_A (current [A], positive on discharge) and V_V (voltage [V]);
--records names the columns that tell records apart. Every record is simulated with its measured
current (all in one compiled, vmapped call) and compared with its voltage. Priors: log-normal
(positive parameters) or logit-normal (fractions) around the set's values, log/logit sd 0.5
(--prior NAME=CENTRE[,SD] to change one). Without --fit these are identified:
  """ + "\n  ".join(DEFAULT_FIT) + """
--ocv FILE adds the cell's measured open-circuit-voltage curve (columns soc in [0, 1] and ocv_V,
with rows at 0 and 1 whose voltages are the curve's ends; the rows between them are the
evidence) on the stoichiometry window (ocv_likelihood; fit the electrodes' thicknesses and the cyclable lithium, "Initial
concentration in positive electrode [mol.m-3]", for it to act on).
--temperature COL (with --thermal lumped) adds the cell's measured temperature: its rise from each
record's first point against the model's, with its own noise scale; fit "Total heat transfer
coefficient [W.m-2.K-1]" for the model to learn how the cell exchanges heat.
--group COL fits the records hierarchically, one cell per value of COL: the population's median
and spread of each parameter and every cell's value (svi or nuts; a joint MAP of a hierarchy is
not a population estimate). --method imh samples the exact posterior of one cell from forward
solves alone (independence Metropolis-Hastings around the MAP fit's Laplace approximation): fast
where that approximation is close, and it says when it is not (the Pareto k of its weights).
fit.json holds for each parameter {"mean", "sd", "q05", "q95"} under "parameters" (group fits:
the population median's; each cell's under "cells"), the noise scale, the method's diagnostics
and posterior draws for `jaxcell predict`.
Exit status: 0, 1 if the fit did not converge, or if at the posterior mean the model stops before
points measured more than 3 noise scales from both cut-offs (fit.json is written and says so), 2
for bad input."""

PREDICT_DESCRIPTION = """Predict measured voltages from a fit (docs/inference.md).

  jaxcell predict fit.json --data other_rate.csv --records ambient_degC,C_rate --output pred.csv

Runs the measured current of every record of --data through the posterior draws of fit.json and
writes t_s, I_A, V_V (measured), V_pred_V (posterior predictive mean) and V_lo_V, V_hi_V (its 5 %
and 95 % quantiles, measurement noise included), with the record columns. Prints the RMS error
and the share of measured points inside the band. For a group fit, records are matched to the
fitted cells by the group column; --new-cell predicts a cell not in the fit from the population.
Where the model stops (a cut-off, or a failed solve) before a record's end, V_pred_V is the mean
of the draws that reached a point (NaN where none did), the figures are over the points every
draw reached, and the exit status is 1 if a point measured more than 3 noise scales from both
cut-offs was not reached. Exit status: 0, 1 for such points, 2 for bad input."""


# a point the model does not reach counts as missed when it was measured more than this many
# noise scales from both cut-offs (`_beyond_cutoffs`), the noise scale taken as at most
# UNREACHED_SIGMA_MAX [V]: a fit that cannot follow its data learns a noise scale as large as
# its misfit (379 mV for a current logged in mA), which would otherwise excuse every point
UNREACHED_SIGMAS = 3.0
UNREACHED_SIGMA_MAX = 0.02


def _columns(text: str | None) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()] if text else []


def _initial_soc(text: str | None):
    if text is None:
        return None
    from ..soc import parse_soc

    if text.strip().lower().endswith("v"):
        parse_soc(text)  # checks the form
        return text
    try:
        x = float(text)
    except ValueError:
        raise UsageError(f"--initial-soc must be a state of charge in [0, 1] or a rest voltage such as \"4.0 V\", got {text!r}") from None
    if not 0 <= x <= 1:
        raise UsageError(f"--initial-soc must lie in [0, 1] (a fraction, not a percentage), got {x:g}")
    return x


def add_inference_parsers(subparsers) -> None:
    """Add the `fit` and `predict` commands to an `argparse` subparsers object."""
    fit = subparsers.add_parser("fit", help="identify cell parameters from measured CSV files",
                                description=FIT_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    fit.add_argument("data", nargs="+", metavar="DATA.csv", help="measurement files (t_s, I_A, V_V)")
    fit.add_argument("--model", default="SPMe", choices=MODELS, help="cell model (default SPMe)")
    fit.add_argument("--parameters", default="Chen2020",
                     help="parameter set: Chen2020, Marquis2019, Ecker2015, or a BPX .json file (default Chen2020)")
    fit.add_argument("--thermal", default="isothermal", choices=("isothermal", "lumped"), help="thermal model")
    fit.add_argument("--fit", nargs="+", action="extend", default=None, metavar="NAME",
                     help="parameters to identify (PyBaMM names; default: see above)")
    fit.add_argument("--prior", action="append", default=[], metavar="NAME=CENTRE[,SD]",
                     help="prior of a fitted parameter: its centre (natural units) and log/logit sd (default 0.5)")
    fit.add_argument("--method", default=None, choices=("map", "svi", "nuts", "imh"),
                     help="map (with a Laplace approximation; default), svi (AutoMultivariateNormal), nuts, or imh "
                          "(independence Metropolis-Hastings around the MAP fit; default svi with --group)")
    fit.add_argument("--initial-soc", default=None, metavar="X",
                     help="initial state of charge in [0, 1] or a rest voltage \"4.0 V\" (default: each record's first voltage, "
                          "which must be at rest)")
    fit.add_argument("--records", default=None, metavar="COLS", help="comma-separated columns that tell records apart")
    fit.add_argument("--group", default=None, metavar="COL", help="fit hierarchically, one cell per value of COL")
    fit.add_argument("--ocv", default=None, metavar="FILE.csv",
                     help="the cell's measured open-circuit voltage (soc, ocv_V) as further evidence (not with --group)")
    fit.add_argument("--temperature", default=None, metavar="COL",
                     help="a column of the cell's measured temperature (name ending in degC or _K) as a second channel: "
                          "its rise against the model's (needs --thermal lumped; not with --group)")
    fit.add_argument("--noise", default="gaussian", choices=("gaussian", "student_t"), help="measurement noise model")
    fit.add_argument("--steps", type=int, default=None, help="optimiser steps (map: 200, svi: 2000)")
    fit.add_argument("--starts", type=int, default=1,
                     help="map: optimisations from the priors' medians and from prior draws; the best is kept "
                          "(default 1; more find a posterior's other modes)")
    fit.add_argument("--samples", type=int, default=500, help="nuts, imh: draws kept per chain (default 500)")
    fit.add_argument("--warmup", type=int, default=None,
                     help=f"nuts: warm-up iterations per chain (default {WARM_WARMUP} after a converged MAP fit, which "
                          f"starts the chains and sets the mass matrix; otherwise as many as --samples); imh: draws "
                          f"dropped at each chain's start (default {IMH_WARMUP})")
    fit.add_argument("--chains", type=int, default=None,
                     help=f"nuts: chains, run vectorised in one program (default 1); imh: chains (default {IMH_CHAINS})")
    fit.add_argument("--seed", type=_seed, default=0, help="random seed, an integer in [0, 2**63 - 1] (default 0)")
    fit.add_argument("--output", default="fit.json", help="JSON file to write (default fit.json)")
    fit.set_defaults(func=_fit)

    pred = subparsers.add_parser("predict", help="predict measured voltages from a fit",
                                 description=PREDICT_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    pred.add_argument("fit_file", metavar="fit.json", help="a file written by `jaxcell fit`")
    pred.add_argument("--data", required=True, metavar="FILE.csv", help="measurement file (t_s, I_A, V_V)")
    pred.add_argument("--records", default=None, metavar="COLS", help="comma-separated columns that tell records apart")
    pred.add_argument("--new-cell", action="store_true", help="predict a cell not in the (group) fit from the population")
    pred.add_argument("--seed", type=_seed, default=0, help="random seed, an integer in [0, 2**63 - 1] (default 0)")
    pred.add_argument("--output", default="pred.csv", help="CSV file to write (default pred.csv)")
    pred.set_defaults(func=_predict)


def _read(paths, records, min_points, temperature=None):
    from ._data import read_measurements

    recs = []
    for path in paths:
        recs += read_measurements(path, records or None, min_points=min_points, temperature=temperature)
    return recs


def _stats(x) -> dict:
    x = np.asarray(x, dtype=float)
    if x.size < 2:  # a point without a posterior (a fit that did not converge)
        return {"mean": float(x.reshape(-1)[0]), "sd": None, "q05": None, "q95": None}
    return {"mean": float(x.mean()), "sd": float(x.std(ddof=1)), "q05": float(np.quantile(x, 0.05)),
            "q95": float(np.quantile(x, 0.95))}


def _priors(args, p, names, group):
    from ._hierarchy import population_prior
    from ._model import default_prior

    centres = {}
    for item in args.prior:
        if "=" not in item:
            raise UsageError(f"--prior expects NAME=CENTRE[,SD], got {item!r}")
        name, value = item.rsplit("=", 1)
        name = name.strip()
        if name not in names:
            raise UsageError(f"--prior {name!r}: not among the fitted parameters ({', '.join(names)})")
        parts = value.split(",")
        try:
            centres[name] = tuple(float(v) for v in parts)
        except ValueError:
            raise UsageError(f"--prior {item!r}: CENTRE and SD must be numbers") from None
        if len(parts) > 2:
            raise UsageError(f"--prior {item!r}: give NAME=CENTRE or NAME=CENTRE,SD")
    out, used = {}, {}
    for name in names:
        centre, *sd = centres.get(name, (float(np.asarray(p[name])),))
        spread = sd[0] if sd else 0.5
        try:
            out[name] = population_prior(name, centre, spread=spread) if group else default_prior(name, centre, spread)
        except ValueError as e:
            raise UsageError(f"prior of {name!r}: {e}") from None
        used[name] = {"centre": centre, "spread": spread}
    return out, used


def _read_ocv(path):
    """(soc, voltage, ends) of an open-circuit-voltage CSV for `ocv_likelihood`, or UsageError."""
    import pandas as pd

    from ._model import _check_ocv_curve

    try:
        d = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise UsageError(f"--ocv {path}: cannot read it as CSV ({e})") from None
    missing = [c for c in ("soc", "ocv_V") if c not in d.columns]
    if missing:
        raise UsageError(f"--ocv {path}: no column {', '.join(missing)} (it needs soc in [0, 1] and ocv_V [V])")
    soc, v = (pd.to_numeric(d[c], errors="coerce").to_numpy(dtype=float) for c in ("soc", "ocv_V"))
    bad = np.flatnonzero(~(np.isfinite(soc) & np.isfinite(v)))
    if bad.size:
        raise UsageError(f"--ocv {path}: line {bad[0] + 2} has a missing or non-numeric soc or ocv_V")
    outside = np.flatnonzero((soc < 0) | (soc > 1))
    if outside.size:
        raise UsageError(f"--ocv {path}: line {outside[0] + 2}: soc {soc[outside[0]]:g} is outside [0, 1]")
    ends = []
    for at in (0.0, 1.0):
        rows = np.flatnonzero(soc == at)
        if not rows.size:
            raise UsageError(f"--ocv {path}: no row at soc {at:g}: the curve's voltages at 0 and 1 fix its scale's ends")
        ends.append(float(v[rows[0]]))
    try:
        _check_ocv_curve(soc, v, ends)
    except ValueError as e:
        raise UsageError(f"--ocv {path}: {str(e).removeprefix('ocv_likelihood: ')}") from None
    inside = (soc > 0) & (soc < 1)  # the end rows match by construction: no evidence
    if inside.sum() < 2:
        raise UsageError(f"--ocv {path}: needs at least two rows between soc 0 and 1 besides the ends")
    return soc[inside], v[inside], tuple(ends)


def _fit(args) -> int:
    import jax

    from ._data import stack_records
    from ._fit import diagnostics, fit_map, fit_svi, posterior_samples, run_nuts
    from ._imh import run_imh
    from ._hierarchy import cell_values, group_records, hierarchical_model, population_summary, records_model

    with user_input():
        check_output_path("--output", args.output, (".json",))
        method = args.method or ("svi" if args.group else "map")
        if args.group and method == "map":
            raise UsageError("--group needs --method svi or nuts: the joint maximum of a hierarchical model overstates "
                             "the population's spread (it is not a population estimate)")
        if args.group and method == "imh":
            raise UsageError("--group needs --method svi or nuts: imh samples around a MAP fit's Laplace approximation, "
                             "which a hierarchical model's posterior (a funnel) is far from")
        p = _load(args.parameters)
        names = list(dict.fromkeys(args.fit or DEFAULT_FIT))
        for name in names:
            if name not in p:
                raise p._unknown(name)
            if not np.ndim(p[name]) == 0 or callable(p[name]):
                raise UsageError(f"--fit {name!r}: only scalar parameters can be fitted")
        # --warmup may be 0, as run_imh and run_nuts take it
        for label, low in (("steps", 1), ("samples", 1), ("starts", 1), ("warmup", 0), ("chains", 1)):
            v = getattr(args, label)
            if v is not None and v < low:
                raise UsageError(f"--{label} must be a {'positive' if low else 'non-negative'} integer, got {v}")
        import jaxcell

        model = getattr(jaxcell, args.model)(thermal=args.thermal)
        records_cols = _columns(args.records)
        if args.group and args.group not in records_cols:
            records_cols.append(args.group)
        if args.temperature and args.thermal == "isothermal":
            raise UsageError("--temperature needs a thermal model (--thermal lumped): an isothermal model's temperature "
                             "does not move")
        if args.temperature and args.group:
            raise UsageError("--temperature with --group: fit the temperature of one cell's records, without --group")
        recs = _read(args.data, records_cols, max(MIN_POINTS, len(names) + 2), args.temperature)
        initial_soc = _initial_soc(args.initial_soc)
        stacked = stack_records(recs)
        priors, prior_table = _priors(args, p, names, args.group)
        kwargs = dict(priors=priors, noise=args.noise, initial_soc=initial_soc)
        if args.ocv and args.group:
            raise UsageError("--ocv with --group: a measured OCV curve belongs to one cell; fit it without --group")
        if args.ocv:
            from ._model import ocv_curve_voltage

            kwargs["ocv"] = _read_ocv(args.ocv)
            try:  # the set must reach the curve's end voltages
                ocv_curve_voltage(p, kwargs["ocv"][0], kwargs["ocv"][2])
            except ValueError as e:
                raise UsageError(f"--ocv {args.ocv}: {str(e).removeprefix('ocv_curve_voltage: ')}") from None
        if args.temperature:
            kwargs["temperature"] = True
        if args.group:
            index, cells = group_records(recs, args.group)
            if len(cells) == 1:
                warnings.warn(f"--group {args.group}: the records hold one cell ({cells[0]!r}), so the population's "
                              "spread comes from its prior alone: a group fit learns it from several cells.",
                              stacklevel=2)
            model_fn, margs = hierarchical_model, (model, p, stacked, index)
        else:
            model_fn, margs = records_model, (model, p, stacked)
        # the checks of the record solve (initial state, cut-offs) before any compile
        from ._hierarchy import RecordSolver

        RecordSolver(model, p, stacked, initial_soc=initial_soc)

    key = jax.random.key(args.seed)
    print(f"fitting {len(names)} parameter(s) to {len(recs)} record(s) ({int(stacked.mask.sum())} points) "
          f"with the {args.model}, method {method}" + (f", {len(cells)} cells" if args.group else ""))
    diag: dict = {"method": method}
    if method == "map":
        res = fit_map(model_fn, *margs, key=key, max_steps=args.steps or 200, starts=args.starts, **kwargs)
        finite = bool(np.all(np.isfinite(res.hessian)))  # not where a solve failed next to the end point
        eig = np.linalg.eigvalsh(res.hessian) if finite else np.full(res.hessian.shape[0], np.nan)
        converged = res.converged
        diag.update(converged=res.converged, newton_decrement=res.decrement, optimiser=res.message, steps=res.steps,
                    neg_log_posterior=res.potential, hessian_eigenvalues=[None if np.isnan(w) else float(w) for w in eig],
                    starts_neg_log_posterior=[None if np.isnan(x) else x for x in res.optima])
        if finite and np.all(eig > 0):
            samples = res.sample(key, N_KEEP)
        else:  # no Laplace approximation: the optimum's point alone, no spread, and no draws
            samples = {k: np.asarray(v)[None] for k, v in res.params.items()}
    elif method == "imh":
        key, k_map = jax.random.split(key)
        res = _map_fit(fit_map, model_fn, margs, kwargs, args, k_map, diag)
        converged = res.converged
        draws = None
        if res.converged:
            chains, warmup = args.chains or IMH_CHAINS, IMH_WARMUP if args.warmup is None else args.warmup
            try:
                draws = run_imh(res, key=key, num_samples=args.samples, num_chains=chains, num_warmup=warmup)
            except ValueError as e:  # every proposal of a chain failed: nothing to sample from
                print(f"jaxcell: {e}", file=sys.stderr)
                diag["error"] = str(e)
                converged = False
        if draws is not None:
            d = diagnostics(draws)
            r_hat, ess = _chain_summary(d)
            diag.update(chains=chains, warmup=warmup, r_hat_max=r_hat, ess_min=ess,
                        # NaN (no moves kept, too few proposals for a tail) as null: JSON has no NaN
                        acceptance=[float(a) if np.isfinite(a) else None for a in d["acceptance"]],
                        pareto_k=draws.pareto_k if np.isfinite(draws.pareto_k) else None,
                        failed_proposals=draws.failed)
            converged = bool(r_hat < R_HAT_MAX and draws.pareto_k <= PARETO_K_MAX)
            samples = _thinned(posterior_samples(draws))
        else:  # no Laplace approximation to propose from, or no proposal solved: the end point alone
            if not res.converged:
                print(f"the MAP fit did not converge ({res.message}); no proposals to sample from")
            samples = {k: np.asarray(v)[None] for k, v in res.params.items()}
        diag["converged"] = converged
    elif method == "svi":
        res = fit_svi(model_fn, *margs, key=key, guide="multivariate", num_steps=args.steps or 2000,
                      num_samples=N_KEEP, **kwargs)
        samples = res.samples
        diag.update(converged=res.converged, steps=len(res.losses), final_loss=float(np.mean(res.losses[-10:])))
        converged = res.converged
    else:
        # one cell: NUTS starts from the MAP fit (its Laplace draws and covariance as the mass
        # matrix), which mixes from the first draw; a hierarchy, or a fit that did not converge,
        # starts from the priors' medians and adapts its mass matrix
        warm = None
        if not args.group:
            key, k_map = jax.random.split(key)
            res = _map_fit(fit_map, model_fn, margs, kwargs, args, k_map, diag)
            if res.converged:
                warm = res
            else:
                print(f"the MAP fit did not converge ({res.message}); NUTS starts from the priors' medians")
        warmup = args.warmup if args.warmup is not None else (WARM_WARMUP if warm else args.samples)
        chains = args.chains or 1
        diag.update(start="map" if warm else "prior medians", warmup=warmup, chains=chains)
        mcmc = run_nuts(model_fn, *margs, key=key, init=warm, adapt_mass_matrix=warm is None, num_warmup=warmup,
                        num_samples=args.samples, num_chains=chains,
                        chain_method="vectorized" if chains > 1 else "sequential", **kwargs)
        d = diagnostics(mcmc)
        r_hat, ess = _chain_summary(d)
        diag.update(r_hat_max=r_hat, ess_min=ess, divergences=d["divergences"])
        converged = r_hat < R_HAT_MAX and d["divergences"] == 0
        diag["converged"] = converged
        samples = _thinned(posterior_samples(mcmc))

    # the records solved at the posterior mean (each cell's, for a group fit): a fit can converge
    # to a point where the model stops (at a cut-off) before the records end, the later points
    # then fitted only by the noise scale (not checked for a fit that did not converge)
    unreached = None
    if converged:
        if args.group:
            means = {k: v.mean(axis=0)[np.asarray(index)] for k, v in cell_values(samples, priors).items()}
        else:
            means = {k: np.full(len(recs), float(np.mean(samples[k]))) for k in names}
        unreached = _unreached_points(model, p, stacked, initial_soc, means, bool(args.temperature),
                                      float(np.mean(samples["sigma"])))
    diag["unreached_points"] = unreached
    out = {
        "format": FIT_FORMAT, "model": args.model, "parameter_set": args.parameters, "thermal": args.thermal,
        "method": method, "noise": args.noise, "data": list(args.data), "records": records_cols,
        "group": args.group, "initial_soc": initial_soc, "fit": names,
        "priors": prior_table,
        "noise_scale": _stats(samples["sigma"]),
        "diagnostics": diag,
    }
    if args.ocv:
        out["ocv"] = {"file": args.ocv, "points": int(kwargs["ocv"][0].size), "ends_V": list(kwargs["ocv"][2]),
                      "noise_scale": _stats(samples["sigma_ocv"])}
    if args.temperature:
        out["temperature"] = {"column": args.temperature, "noise_scale_K": _stats(samples["sigma_T"])}
    if args.group:
        pop = population_summary(samples, priors)
        out["parameters"] = {k: _stats(pop[k]["median"]) for k in names}
        out["population_spread"] = {k: _stats(pop[k]["scale"]) for k in names}
        cv = cell_values(samples, priors)
        out["cells"] = {str(c): {k: _stats(cv[k][:, i]) for k in names} for i, c in enumerate(cells)}
        out["cell_labels"] = [c if isinstance(c, (int, float, str)) else list(c) for c in cells]
        out["priors"] = {k: {"centre": v.nominal, "spread": v.spread, "cell_spread": v.cell_spread} for k, v in priors.items()}
    else:
        out["parameters"] = {k: _stats(samples[k]) for k in names}
    if len(samples["sigma"]) > 1:
        out["samples"] = {k: np.asarray(v, dtype=float).tolist() for k, v in samples.items()}

    write_json("--output", args.output, out)
    for k, s in out["parameters"].items():
        band = f"(90 % {s['q05']:.4g} .. {s['q95']:.4g})" if s["sd"] is not None else "(no posterior)"
        print(f"{k:60s} {s['mean']:.4g} {band}")
    print(f"noise scale {1e3 * out['noise_scale']['mean']:.3g} mV; written {args.output}")
    if not converged:
        print(f"jaxcell: error: the {method} fit did not converge ({_json_ready(diag)}); fit.json says so "
              "(diagnostics.converged false)", file=sys.stderr)
        return 1
    if unreached:
        print(f"jaxcell: error: at the fit's posterior mean the model stops before {unreached} of "
              f"{int(stacked.mask.sum())} measured points that lie more than {UNREACHED_SIGMAS:g} noise scales "
              f"(at most {1e3 * UNREACHED_SIGMAS * UNREACHED_SIGMA_MAX:g} mV) from the cut-offs (a cut-off reached, or a failed solve, before the records end): the fit does not describe "
              "these data there; fit.json says so (diagnostics.unreached_points)", file=sys.stderr)
        return 1
    return 0


def _beyond_cutoffs(p, measured, sigma: float):
    """Where a measured voltage is more than UNREACHED_SIGMAS noise scales `sigma` (at most
    UNREACHED_SIGMA_MAX) from both of the set's cut-offs. A model that stops at a cut-off a
    point or two before a discharge measured down to it has not missed those points (the
    likelihood holds them at the cut-off); points far from either cut-off, it has."""
    from ._model import voltage_limits

    band = UNREACHED_SIGMAS * min(sigma, UNREACHED_SIGMA_MAX)
    return np.min([np.abs(measured - float(c)) for c in voltage_limits(p)], axis=0) > band


def _unreached_points(model, p, stacked, initial_soc, values, temperature: bool, sigma: float) -> int:
    """How many measured points the record solve at `values` (name -> (n_records,)) does not
    reach, not counting those within UNREACHED_SIGMAS noise scales `sigma` of a cut-off. The
    call is the fit's own (same shapes and options), compiled when numpyro first ran the model."""
    from ._hierarchy import RecordSolver

    solver = RecordSolver(model, p, stacked, initial_soc=initial_soc)
    voltage = np.asarray(solver.solve({k: np.asarray(v, dtype=np.float64) for k, v in values.items()}, temperature)[0])
    mask = np.asarray(stacked.mask)
    missed = ~np.isfinite(voltage) & mask & _beyond_cutoffs(p, np.where(mask, stacked.voltage, 0.0), sigma)
    return int(missed.sum())


def _map_fit(fit_map, model_fn, margs, kwargs, args, key, diag):
    """The MAP fit that starts NUTS and IMH; its diagnostics go to diag["map"]."""
    res = fit_map(model_fn, *margs, key=key, max_steps=args.steps or 200, starts=args.starts, **kwargs)
    diag["map"] = dict(converged=res.converged, newton_decrement=res.decrement, optimiser=res.message, steps=res.steps)
    return res


def _chain_summary(d):
    """The largest R-hat and smallest effective sample size over the sites of `diagnostics(...)`."""
    sites = [v for v in d.values() if isinstance(v, dict)]
    # NaN (not estimated, `diagnostics`) wins, as np.max has it: Python's max of NaNs is order-dependent
    return (float(np.max([np.max(v["r_hat"]) for v in sites])), float(np.min([np.min(v["ess"]) for v in sites])))


def _thinned(samples):
    """At most N_KEEP draws, evenly spaced over the chains' draws, for fit.json."""
    n = len(samples["sigma"])
    idx = np.linspace(0, n - 1, min(N_KEEP, n)).astype(int)
    return {k: np.asarray(v)[idx] for k, v in samples.items()}


def _predict(args) -> int:
    import jax
    import pandas as pd

    import jaxcell

    from ._data import stack_records
    from ._hierarchy import PopulationPrior, cell_values, new_cell_values, predict_voltage

    with user_input():
        check_output_path("--output", args.output, (".csv",))
        try:
            with open(args.fit_file) as f:
                fit = json.load(f)
        except json.JSONDecodeError as e:
            raise UsageError(f"{args.fit_file!r} is not a JSON file ({e})") from None
        if not isinstance(fit, dict) or fit.get("format") != FIT_FORMAT:
            raise UsageError(f"{args.fit_file!r} is not a file written by `jaxcell fit` (no \"format\": \"{FIT_FORMAT}\")")
        p = _checked_fit_file(fit, args.fit_file)
        model = getattr(jaxcell, fit["model"])(thermal=fit["thermal"])
        cols = _columns(args.records) if args.records is not None else list(fit["records"])
        group = fit.get("group")
        if group and not args.new_cell and group not in cols:
            cols.append(group)
        recs = _read([args.data], cols, 2)
        stacked = stack_records(recs)
        samples = {k: np.asarray(v, dtype=np.float64) for k, v in fit["samples"].items()}
        names = fit["fit"]
        n = len(samples["sigma"])
        if group:
            priors = {k: PopulationPrior(k, *_kind_of(k), v["centre"], v["spread"], v["cell_spread"])
                      for k, v in fit["priors"].items()}
            if args.new_cell:
                values = new_cell_values(samples, priors, jax.random.fold_in(jax.random.key(args.seed), 1))
            else:
                labels = [c if not isinstance(c, list) else tuple(c) for c in fit["cell_labels"]]
                per_cell = cell_values(samples, priors)
                idx = []
                for r in recs:
                    label = r.key.get(group)
                    if label not in labels:
                        raise UsageError(f"record {r.key}: cell {label!r} (column {group!r}) was not in the fit "
                                         f"(cells {labels}); predict it from the population with --new-cell")
                    idx.append(labels.index(label))
                values = {k: per_cell[k][:, idx] for k in names}
        else:
            if args.new_cell:
                raise UsageError("--new-cell needs a group fit (jaxcell fit --group COL): this fit is of one cell")
            values = {k: samples[k] for k in names}
        initial_soc = fit.get("initial_soc")
        from ._hierarchy import RecordSolver

        RecordSolver(model, p, stacked, initial_soc=initial_soc)

    print(f"predicting {len(recs)} record(s) from {n} posterior draws ({'new cell' if args.new_cell else 'fitted'})")
    v = predict_voltage(model, p, values, stacked, sigma=samples["sigma"], key=jax.random.key(args.seed),
                        noise=fit.get("noise", "gaussian"), initial_soc=initial_soc)
    with warnings.catch_warnings():  # points no draw reached are NaN, and said so below
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(v, axis=0)
        lo, hi = np.nanquantile(v, [0.05, 0.95], axis=0)
    reached = np.isfinite(v).mean(axis=0)  # the share of draws whose solve reached each point
    frames = []
    for r, rec in enumerate(recs):
        m = stacked.mask[r]
        df = pd.DataFrame({**{c: [rec.key.get(c)] * len(rec) for c in cols}, "t_s": rec.t + rec.t_start,
                           "I_A": rec.current, "V_V": rec.voltage, "V_pred_V": mean[r][m], "V_lo_V": lo[r][m],
                           "V_hi_V": hi[r][m]})
        frames.append(df)
    table = pd.concat(frames, ignore_index=True)
    share = np.concatenate([reached[r][stacked.mask[r]] for r in range(len(recs))])
    err = table["V_pred_V"] - table["V_V"]
    inside = (table["V_lo_V"] <= table["V_V"]) & (table["V_V"] <= table["V_hi_V"])
    _write("--output", args.output, lambda path: table.to_csv(path, index=False))
    ok = share == 1.0
    n_pts = len(table)
    if ok.any():
        print(f"RMS error {1e3 * np.sqrt(np.mean(err[ok] ** 2)):.2f} mV, band coverage {100 * inside[ok].mean():.1f} % "
              f"(90 % band, mean width {1e3 * np.mean((table['V_hi_V'] - table['V_lo_V'])[ok]):.2f} mV)"
              + ("" if ok.all() else f" over the {int(ok.sum())} of {n_pts} points every draw reached"))
    else:
        print("no RMS error: no measured point was reached by every draw")
    print(f"written {args.output}")
    # a solve that stops (at a cut-off, or failing) before a record's end leaves its later points
    # unpredicted: said, not averaged away; points measured at a cut-off are not missed
    far = _beyond_cutoffs(p, table["V_V"].to_numpy(), float(np.mean(samples["sigma"])))
    missed = ~ok & far
    if not missed.any():
        return 0
    starts = np.cumsum([0] + [len(rec) for rec in recs])
    names = [recs[r].name for r in range(len(recs)) if missed[starts[r]:starts[r + 1]].any()]
    none = int((missed & (share == 0.0)).sum())
    print(f"jaxcell: error: the model stopped before {int(missed.sum())} of {n_pts} measured points ({none} reached by "
          f"no draw; V_pred_V is NaN there) in {', '.join(names)}: it reached a cut-off or failed before the "
          "record's end, so the fit does not describe these data there", file=sys.stderr)
    return 1


def _checked_fit_file(fit: dict, path: str):
    """The parameter set of a fit.json, after checking what `predict` reads from it: a file
    edited by hand or cut short gets an error naming the field, not a traceback (or, for NaN
    draws, a run of minutes)."""
    def bad(field, why):
        return UsageError(f"{path!r}: {field} {why} (a file written by `jaxcell fit` has it right; was it edited?)")

    if fit.get("model") not in MODELS:
        raise bad('"model"', f"must be one of {', '.join(MODELS)}, got {fit.get('model')!r}")
    if fit.get("thermal") not in ("isothermal", "lumped"):
        raise bad('"thermal"', f"must be 'isothermal' or 'lumped', got {fit.get('thermal')!r}")
    if fit.get("noise", "gaussian") not in ("gaussian", "student_t"):
        raise bad('"noise"', f"must be 'gaussian' or 'student_t', got {fit.get('noise')!r}")
    if not (isinstance(fit.get("records"), list) and all(isinstance(c, str) for c in fit["records"])):
        raise bad('"records"', f"must be a list of column names, got {fit.get('records')!r}")
    if not isinstance(fit.get("parameter_set"), str):
        raise bad('"parameter_set"', f"must be a parameter set's name or a path, got {fit.get('parameter_set')!r}")
    p = _load(fit["parameter_set"])
    names = fit.get("fit")
    if not (isinstance(names, list) and names and all(isinstance(k, str) for k in names)):
        raise bad('"fit"', f"must be a non-empty list of parameter names, got {names!r}")
    for k in names:
        if k not in p:
            raise bad('"fit"', f"names {k!r}, which parameter set {p.name!r} does not have")
    if "samples" not in fit:
        diag = fit.get("diagnostics") if isinstance(fit.get("diagnostics"), dict) else {}
        eig = diag.get("hessian_eigenvalues")
        if diag.get("converged") is False:
            why = "the fit did not converge"
        elif isinstance(eig, list) and not all(isinstance(w, (int, float)) and w > 0 for w in eig):
            why = "the MAP fit's Hessian is not positive definite (no Laplace approximation to draw from)"
        else:
            raise bad('"samples"', "is missing (the posterior draws that predict uses)")
        raise UsageError(f"{path!r} holds no posterior draws: {why} (diagnostics {diag})")
    samples = fit["samples"]
    if not isinstance(samples, dict) or "sigma" not in samples:
        raise bad('"samples"', "must map each sampled site, \"sigma\" among them, to its draws")
    need = [k for k in (names if not fit.get("group") else []) if k not in samples]
    if need:
        raise bad('"samples"', f"has no draws of {need[0]!r}")
    n = None
    for k, v in samples.items():
        try:
            a = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise bad(f'"samples" of {k!r}', "must be numbers") from None
        if a.ndim == 0 or a.shape[0] == 0:
            raise bad(f'"samples" of {k!r}', "must be a non-empty list of draws")
        if not np.all(np.isfinite(a)):
            raise bad(f'"samples" of {k!r}', f"must be finite numbers, got {a[~np.isfinite(a)].flat[0]}")
        if n is not None and a.shape[0] != n:
            raise bad(f'"samples" of {k!r}', f"has {a.shape[0]} draws where the other sites have {n}")
        n = a.shape[0]
    if not np.all(np.asarray(samples["sigma"], dtype=np.float64) > 0):
        raise bad('"samples" of \'sigma\'', "(the noise scale [V]) must be positive")
    if not fit.get("group"):
        # the parameters' draws in natural units: each in its own range (the volume fractions' sum
        # is not checked: a fit of Chen2020's porosity, whose electrodes are full, crosses it)
        from ..parameters._parameter_set import _value_rule

        for k in names:
            rule = _value_rule(k)
            a = np.asarray(samples[k], dtype=np.float64)
            if rule is not None and not np.all(rule[1](a)):
                raise bad(f'"samples" of {k!r}', f"must be {rule[0]}, got {a[~rule[1](a)][0]:g}")
    else:
        priors, labels = fit.get("priors"), fit.get("cell_labels")
        if not (isinstance(priors, dict) and set(priors) == set(names) and all(
                isinstance(v, dict) and all(isinstance(v.get(x), (int, float)) for x in ("centre", "spread", "cell_spread"))
                for v in priors.values())):
            raise bad('"priors"', "must give each fitted parameter's population prior (centre, spread, cell_spread)")
        if not isinstance(labels, list) or not labels:
            raise bad('"cell_labels"', "must list the fitted cells")
    return p


def _kind_of(name: str) -> tuple[str]:
    from ._model import _bounds

    return (_bounds(name),)
