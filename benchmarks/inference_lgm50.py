"""Real-data check of jaxcell.inference on the LG M50 (the Chen2020 cell).

Leave one rate out at 25 degC: the discharges of two rates (rate_tests.csv, from full until the
current stops) fit one cell (`records_model`, MAP with its Laplace approximation, the
documented default parameters of `jaxcell fit`), and the posterior predicts the third rate's
discharge (never seen). Reported per case: the RMS error [mV] of the posterior predictive mean,
the share of measured points inside the 90 % band (noise included) and the band's mean width,
with the fit's own RMS and its timing; and Chen2020 as published for comparison.

Records are thinned to at most ``--points`` points evenly spread over each discharge (jaxcell never
resamples: the thinning is this script's, the points are measured ones). The lower voltage
cut-off is lowered to 2.0 V for fitting and prediction so that a model that reaches 2.5 V before
the cell did still predicts the remaining points instead of stopping.

With ``--thermal lumped`` the model's temperature rise is compared with the cell's thermocouple
(``T_cell_degC``) on every record; ``--heat-from-temperature`` fits the heat transfer coefficient
to the fitted records' thermocouple and fits again with it; ``--temperature-evidence`` instead fits
it with the rest, the thermocouple a second channel of the likelihood (``records_model``'s
``temperature=True``); ``--oregan2022-thermal`` adds the
cell's published entropic changes and diffusion activation energies (docs/inference.md);
``--oregan2022-diffusivity`` its published stoichiometry-dependent particle diffusivities, each
scaled by a fitted reference value.

    python benchmarks/inference_lgm50.py [--cases 0.1 0.5 1.0] [--model SPMe|SPM] [--thermal lumped]
        [--noise student_t] [--init-sigma 0.05] [--ocv-evidence] [--resistance-from FIT_JSON]
        [--oregan2022-thermal] [--oregan2022-diffusivity] [--heat-from-temperature | --temperature-evidence]
        [--set NAME=VALUE]
        [--out FILE]

Writes benchmarks/results/inference_lgm50_<model>_latest.json.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
import pandas as pd  # noqa: E402

import jaxcell  # noqa: E402
from jaxcell.inference import (  # noqa: E402
    fit_map,
    predict_voltage,
    read_measurements,
    records_model,
    stack_records,
)
from jaxcell.inference._cli import DEFAULT_FIT, _priors, _read_ocv  # noqa: E402
from jaxcell.parameters._functions import arrhenius  # noqa: E402
from jaxcell.physics.constants import R_GAS  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
# the 25 degC discharges of the LG M50 rate tests (W. D. Widanage, WMG, University of Warwick;
# BSD-3, as distributed with PyBOP's examples): from the first (rest) row until the current
# stops, every measured row with its thermocouple reading; `--extract-from rate_tests.csv` rebuilds it from the full table
DATA = HERE / "data" / "lgm50_25degC_discharges.csv"
N_POINTS = 61  # the identification notebook's; with 120 the SPM fits end at a negative Hessian eigenvalue
RATES = (0.1, 0.5, 1.0)


def extract(source, temperature=25):
    d = pd.read_csv(source)
    d = d[d.ambient_degC == temperature]
    parts = []
    for rate, g in d.groupby("c_rate"):
        g = g.reset_index(drop=True)
        on = np.flatnonzero(g.I_A.to_numpy() > 0.05)
        stop = on[np.flatnonzero(np.diff(on) > 1)[0]] if np.any(np.diff(on) > 1) else on[-1]
        parts.append(g.iloc[: stop + 1][["c_rate", "t_s", "I_A", "V_V", "T_cell_degC"]])
    DATA.parent.mkdir(exist_ok=True)
    pd.concat(parts).to_csv(DATA, index=False)


def discharges(n_points=N_POINTS):
    """One record per rate, thinned to `n_points` measured points: the first two rows (rest, then
    the current switched on) and points evenly spread in time."""
    out = {}
    for rate, g in pd.read_csv(DATA).groupby("c_rate"):
        g = g.reset_index(drop=True)
        t = g.t_s.to_numpy()
        idx = np.unique(np.r_[0, 1, np.searchsorted(t, np.linspace(t[1], t[-1], n_points - 2)), len(g) - 1])
        out[float(rate)] = g.iloc[idx]
    return out


RESISTANCE = "Contact resistance [Ohm]"
LITHIUM = "Initial concentration in positive electrode [mol.m-3]"  # with the window, the cyclable lithium
KNEE_V = 3.0  # measured voltages below this are the end-of-discharge knee (reported apart as well)


def stats(v, rec_v, mask):
    """RMS error of the predictive mean, coverage and width of the 90 % band; also the RMS over
    the points measured above `KNEE_V`: on the knee (2.5-3.0 V, the last ~2 % of the charge) a
    1 % error in the predicted capacity alone makes errors of 100-200 mV."""
    mean = np.nanmean(v, 0)[mask]
    lo, hi = np.nanquantile(v, [0.05, 0.95], axis=0)
    lo, hi = lo[mask], hi[mask]
    meas = rec_v[mask]
    above = meas >= KNEE_V
    return {
        "rms_mV": float(1e3 * np.sqrt(np.nanmean((mean - meas) ** 2))),
        "rms_above_knee_mV": float(1e3 * np.sqrt(np.nanmean((mean - meas)[above] ** 2))),
        "points_below_knee": int((~above).sum()), "points": int(above.size),
        "coverage": float(np.mean((lo <= meas) & (meas <= hi))),
        "band_width_mV": float(1e3 * np.nanmean(hi - lo)),
        "unreached_share": float(np.mean(~np.isfinite(np.nanmean(v, 0)[mask]))),
        "knee_points": [[float(m), float(1e3 * (p - m))] for m, p in zip(meas[~above], mean[~above])],  # V, error mV
    }


def curve(rate, recs, v):
    """One record's measured points and the predictive mean and 90 % band (noise included) at
    them, as lists for the JSON."""
    rec = recs[rate]
    lo, hi = np.nanquantile(v[:, : len(rec.t)], [0.05, 0.95], axis=0)
    return {"c_rate": rate, "t_s": rec.t.tolist(), "I_A": rec.current.tolist(), "V_V": rec.voltage.tolist(),
            "mean_V": np.nanmean(v[:, : len(rec.t)], 0).tolist(), "lo_V": lo.tolist(), "hi_V": hi.tolist()}


def ocv_check(path):
    """Chen2020's open-circuit voltage against the cell's measured one (`ocv_25degC.csv`: the mean
    of the charge and discharge curves against state of charge), at Chen2020's stoichiometry
    window and at the window that fits the measured curve best (least squares over the four
    stoichiometries, states of charge 0.05 to 0.97: the steep ends left out). The second is what
    the electrode potentials' shape allows at best; a fitted window far from it absorbs
    something else the model misses."""
    from scipy.optimize import least_squares

    from jaxcell.soc import open_circuit_voltage, stoichiometry_window

    p = jaxcell.load_parameters("Chen2020")
    o = pd.read_csv(path)
    keep = (o.soc >= 0.05) & (o.soc <= 0.97)
    s, ocv = o.soc.to_numpy()[keep], o.ocv_V.to_numpy()[keep]

    def residual(w):
        x0, x100, y0, y100 = w
        return np.asarray(open_circuit_voltage(p, x0 + s * (x100 - x0), y0 + s * (y100 - y0))) - ocv

    chen = [float(np.asarray(w)) for w in stoichiometry_window(p)]
    best = least_squares(residual, chen, bounds=([0] * 4, [1] * 4))
    rms = lambda r: float(1e3 * np.sqrt(np.mean(r**2)))  # noqa: E731
    out = {"chen2020_window": chen, "chen2020_rms_mV": rms(residual(chen)), "chen2020_max_mV": float(1e3 * np.abs(residual(chen)).max()),
           "best_window": [float(w) for w in best.x], "best_rms_mV": rms(best.fun), "best_max_mV": float(1e3 * np.abs(best.fun).max())}
    print(json.dumps({"ocv": out}, indent=1), flush=True)
    return out


HEAT = "Total heat transfer coefficient [W.m-2.K-1]"


# The thermal properties of the LG M50(T) that Chen2020 lacks, as published by O'Regan, Brosa
# Planella, Widanage and Kendrick, Electrochim. Acta 425 (2022) 140700: the electrodes' entropic
# change of the open-circuit potential (fits in mV/K against stoichiometry, at 298.15 K) and the
# activation energies of the particle diffusivities (2092 R and 1449 R). Chen2020's OCPs,
# diffusivities and exchange currents are kept.
E_D_GRAPHITE, E_D_NMC811 = 2092 * R_GAS, 1449 * R_GAS  # the particle diffusion activation energies


def _graphite_entropic_change(sto):
    return (-0.1112 * sto + 0.02914 + 0.3561 * jnp.exp(-((sto - 0.08309) ** 2) / 0.004616)) / 1000.0


def _nmc811_entropic_change(sto):
    return (0.04006 * jnp.exp(-((sto - 0.2828) ** 2) / 0.0009855)
            - 0.06656 * jnp.exp(-((sto - 0.8032) ** 2) / 0.02179)) / 1000.0


OREGAN2022_THERMAL = {
    "Negative electrode OCP entropic change [V.K-1]": _graphite_entropic_change,
    "Positive electrode OCP entropic change [V.K-1]": _nmc811_entropic_change,
    "Negative particle diffusion activation energy [J.mol-1]": E_D_GRAPHITE,
    "Positive particle diffusion activation energy [J.mol-1]": E_D_NMC811,
}


# O'Regan et al. 2022's particle diffusivities of the LG M50 against stoichiometry (log10 fits to
# GITT, at 298.15 K, with their activation energies): D(sto, T) = D_ref g(sto) / g(0.5) times the
# Arrhenius factor, where log10 g is the fit's stoichiometry-dependent part and D_ref, "<Domain>
# particle diffusivity reference [m2.s-1]", the published value at a stoichiometry of 0.5 (the
# fit's constants and correction factors included). `--oregan2022-diffusivity` fits D_ref: the
# published shape, a fitted scale.
def _graphite_log10_shape(sto):
    return (11.17 * sto - 1.553 * jnp.exp(-((sto - 0.2031) ** 2) / 0.0006091)
            - 6.136 * jnp.exp(-((sto - 0.5375) ** 2) / 0.06438) - 9.725 * jnp.exp(-((sto - 0.9144) ** 2) / 0.0578)
            + 1.85 * jnp.exp(-((sto - 0.5953) ** 2) / 0.001356))


def _nmc811_log10_shape(sto):
    return (-0.9231 * jnp.exp(-((sto - 0.3216) ** 2) / 0.002534) - 0.4066 * jnp.exp(-((sto - 0.4532) ** 2) / 0.003926)
            - 0.993 * jnp.exp(-((sto - 0.8098) ** 2) / 0.09924))


def _shaped_diffusivity(domain, log10_shape, activation_energy):
    def diffusivity(sto, T, *, p):
        shape = 10.0 ** (log10_shape(sto) - log10_shape(0.5))
        return (p[f"{domain} particle diffusivity reference [m2.s-1]"] * shape
                * arrhenius(activation_energy, T, p["Reference temperature [K]"]))

    return diffusivity


OREGAN2022_DIFFUSIVITY = {
    "Negative particle diffusivity [m2.s-1]": _shaped_diffusivity("Negative", _graphite_log10_shape, E_D_GRAPHITE),
    "Negative particle diffusivity reference [m2.s-1]": 10.0 ** (-15.11 + float(_graphite_log10_shape(0.5))) * 3.0321,
    "Positive particle diffusivity [m2.s-1]": _shaped_diffusivity("Positive", _nmc811_log10_shape, E_D_NMC811),
    "Positive particle diffusivity reference [m2.s-1]": 10.0 ** (-13.96 + float(_nmc811_log10_shape(0.5))) * 2.7,
}


def temperature_rises(model, p, recs, tables):
    """The model's temperature rise [K] at every measured time of each record (its measured
    current from its first, rest voltage) and the thermocouple's (`T_cell_degC`)."""
    out = []
    for rec, table in zip(recs, tables):
        sol = jaxcell.simulate(model, p, rec.experiment(), t_eval=rec.t, initial_soc=f"{rec.voltage[0]} V")
        T = np.asarray(sol.temperature)
        measured = table.T_cell_degC.to_numpy()
        out.append((T - T[0], measured - measured[0]))
    return out


def fit_heat_transfer(model, p, recs, tables):
    """The heat transfer coefficient whose lumped temperature best follows the thermocouple over
    the fitted records (least squares on the rises, log h in [1, 200] W.m-2.K-1), and the RMS
    [K] of that fit."""
    from scipy.optimize import minimize_scalar

    def sse(log_h):
        rises = temperature_rises(model, p.update({HEAT: float(np.exp(log_h))}), recs, tables)
        return float(sum(np.nansum((m - d) ** 2) for m, d in rises))

    best = minimize_scalar(sse, bounds=(0.0, np.log(200.0)), method="bounded", options={"xatol": 1e-3})
    h = float(np.exp(best.x))
    errors = np.concatenate([m - d for m, d in temperature_rises(model, p.update({HEAT: h}), recs, tables)])
    return h, float(np.sqrt(np.nanmean(errors**2)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=float, nargs="+", default=[0.5], help="left-out rates")
    ap.add_argument("--model", default="SPMe")
    ap.add_argument("--thermal", default="isothermal", choices=["isothermal", "lumped"])
    ap.add_argument("--noise", default="gaussian", choices=["gaussian", "student_t"])
    ap.add_argument("--fit", nargs="+", default=list(DEFAULT_FIT),
                    help="parameters to fit (default: jaxcell fit's default set)")
    ap.add_argument("--out", help="result file (default results/inference_lgm50_<model>_latest.json)")
    ap.add_argument("--points", type=int, default=N_POINTS, help="measured points kept per record")
    ap.add_argument("--init-sigma", type=float, default=0.05, help="starting noise scale [V]")
    ap.add_argument("--noise-prior", type=float, default=0.05, help="scale of the half-normal noise prior [V]")
    ap.add_argument("--ocv-evidence", action="store_true",
                    help="fit the measured open-circuit-voltage curve (--ocv, states of charge 0.05 to 0.97) with the "
                         "rates (records_model's ocv=), and the cyclable lithium with the --fit parameters")
    ap.add_argument("--prior", action="append", default=[], metavar="NAME=CENTRE[,SD]",
                    help="a fitted parameter's prior median (also the starting point) and log/logit sd, as "
                         "`jaxcell fit --prior` (e.g. 'Contact resistance [Ohm]=0.01': Chen2020 has none)")
    ap.add_argument("--resistance-from", metavar="FIT_JSON",
                    help="fit the contact resistance too, its prior the population of a group fit of the pulses "
                         "(jaxcell fit --group cell; median and spread from FIT_JSON): a new cell's predictive")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a fixed parameter value, as `jaxcell simulate --set` (also a name the set lacks, e.g. "
                         "'Negative particle diffusion activation energy [J.mol-1]=17394')")
    ap.add_argument("--oregan2022-thermal", action="store_true",
                    help="add the LG M50's published entropic changes and particle diffusion activation energies "
                         "(O'Regan et al. 2022) to Chen2020")
    ap.add_argument("--oregan2022-diffusivity", action="store_true",
                    help="the particle diffusivities as O'Regan et al. 2022's functions of stoichiometry (with their "
                         "activation energies), scaled by a fitted reference value: --fit's diffusivities become "
                         "'<Domain> particle diffusivity reference [m2.s-1]' (prior log sd 1.0 around the published "
                         "value at stoichiometry 0.5)")
    ap.add_argument("--heat-from-temperature", action="store_true",
                    help="(lumped thermal) after the fit, fit the heat transfer coefficient to the fitted records' "
                         "thermocouple rises at its MAP point, then fit again with it; the left-out record's "
                         "temperature is predicted too")
    ap.add_argument("--temperature-evidence", action="store_true",
                    help="(lumped thermal) fit the heat transfer coefficient with the rest (prior log sd 1.0 around "
                         "the set's), the fitted records' thermocouple rises a second channel of the likelihood")
    ap.add_argument("--temperature-noise", type=float, default=None, metavar="K",
                    help="with --temperature-evidence: the temperature channel's noise scale held near K kelvin "
                         "(log-normal prior, log sd 0.1) instead of learned from a half-normal of scale 1 K")
    ap.add_argument("--staged", action="store_true",
                    help="with --temperature-evidence: start the joint fit from a fit of the voltage alone, with the "
                         "heat transfer coefficient fitted to the thermocouple there")
    ap.add_argument("--extract-from", help="rebuild the extract from the data's rate_tests.csv first")
    ap.add_argument("--ocv", default=str(HERE / "data" / "lgm50_ocv_25degC.csv"),
                    help="the cell's measured open-circuit voltage (compared with Chen2020's when the file exists)")
    args = ap.parse_args()
    if args.extract_from:
        extract(args.extract_from)
    model = getattr(jaxcell, args.model)(thermal=args.thermal)
    from jaxcell.cli import UsageError, _parse_set

    chen = p = jaxcell.load_parameters("Chen2020").update({"Lower voltage cut-off [V]": 2.0})
    try:
        fixed = dict(_parse_set(item) for item in args.set)
    except UsageError as e:
        ap.error(str(e))
    if args.oregan2022_thermal:
        p = p.update(OREGAN2022_THERMAL, check_already_exists=False)
    if args.oregan2022_diffusivity:
        p = p.update(OREGAN2022_DIFFUSIVITY, check_already_exists=False)
        args.fit = [k.replace("diffusivity [", "diffusivity reference [") if k in OREGAN2022_DIFFUSIVITY else k
                    for k in args.fit]
        args.prior += [f"{k}={OREGAN2022_DIFFUSIVITY[k]},1.0" for k in args.fit if "reference" in k
                       and not any(item.startswith(k + "=") for item in args.prior)]
    p = p.update(fixed, check_already_exists=False)
    if args.heat_from_temperature and args.thermal != "lumped":
        ap.error("--heat-from-temperature needs --thermal lumped")
    if args.heat_from_temperature and HEAT in fixed:
        ap.error(f"--set {HEAT!r} and --heat-from-temperature: the second fits it")
    if args.temperature_evidence and (args.thermal != "lumped" or args.heat_from_temperature or HEAT in fixed):
        ap.error("--temperature-evidence needs --thermal lumped, and fits the heat transfer coefficient itself "
                 "(not with --heat-from-temperature or --set it)")
    tables = discharges(args.points)
    recs = {r: read_measurements(t, "c_rate", temperature="T_cell_degC")[0] for r, t in tables.items()}
    fit = tuple(args.fit)
    if args.temperature_evidence:
        fit = tuple(dict.fromkeys(fit + (HEAT,)))
        args.prior.append(f"{HEAT}={float(p[HEAT])},1.0")
    ocv_data = None
    if args.ocv_evidence:
        soc, v, ends = _read_ocv(args.ocv)
        keep = (soc >= 0.05) & (soc <= 0.97)
        ocv_data = (soc[keep], v[keep], ends)
        fit = tuple(dict.fromkeys(fit + (LITHIUM,)))
    if args.resistance_from:  # the pulse fit's population as the prior of a new cell's contact resistance
        pulses = json.loads(pathlib.Path(args.resistance_from).read_text())
        fit = tuple(dict.fromkeys(fit + (RESISTANCE,)))
        args.prior.append(f"{RESISTANCE}={pulses['parameters'][RESISTANCE]['mean']},"
                          f"{pulses['population_spread'][RESISTANCE]['mean']}")
    priors, used = _priors(args, p, list(fit), None)
    centre = {k: used[k]["centre"] for k in fit}
    spread = {k: used[k]["spread"] for k in fit}
    ocv = ocv_check(args.ocv) if pathlib.Path(args.ocv).exists() else None
    results = {"ocv": ocv, "init_sigma": args.init_sigma, "noise_prior": args.noise_prior, "model": args.model, "thermal": args.thermal, "noise": args.noise, "n_points": args.points, "fit": list(fit), "prior_centres": centre, "prior_spreads": spread,
               "ocv_evidence": args.ocv_evidence, "fixed": fixed,
               "oregan2022_thermal": args.oregan2022_thermal, "oregan2022_diffusivity": args.oregan2022_diffusivity,
               "heat_from_temperature": args.heat_from_temperature, "temperature_evidence": args.temperature_evidence,
               "temperature_noise": args.temperature_noise, "staged": args.staged,
               "cases": []}
    for out_rate in args.cases:
        train = [recs[r] for r in RATES if r != out_rate]
        train_tables = [tables[r] for r in RATES if r != out_rate]
        test = stack_records([recs[out_rate]])
        stacked = stack_records(train)
        case = {"left_out": out_rate, "fitted": [r for r in RATES if r != out_rate]}
        # Chen2020 as published: its predictions of the left-out rate
        v0 = predict_voltage(model, chen, {fit[0]: np.full(1, float(chen[fit[0]]))}, test)
        case["chen2020_rms_mV"] = stats(v0[:, 0], test.voltage[0], test.mask[0])["rms_mV"]
        t0 = time.perf_counter()
        # start at Chen2020 with a noise scale near its misfit (tens of mV): from the noise
        # prior's median (7 mV) the first BFGS step jumped to a degenerate point (noise 0.57 V)
        init = {**centre, "sigma": args.init_sigma}
        if ocv_data is not None:
            init["sigma_ocv"] = 0.01
        if args.temperature_evidence:
            init["sigma_T"] = args.temperature_noise or 0.5
        fit_kw = dict(priors=priors, max_steps=300, noise_prior=dist.HalfNormal(args.noise_prior), noise=args.noise,
                      ocv=ocv_data, temperature=args.temperature_evidence,
                      temperature_noise_prior=(dist.LogNormal(np.log(args.temperature_noise), 0.1)
                                               if args.temperature_noise else None))
        if args.temperature_evidence and args.staged:
            # start the joint fit where the voltage alone puts the cell (h at the set's value),
            # with h fitted to the thermocouple there
            volt = [k for k in fit if k != HEAT]
            v_kw = {**fit_kw, "temperature": False, "temperature_noise_prior": None,
                    "priors": {k: priors[k] for k in volt}}
            first = fit_map(records_model, model, p, stacked,
                            init={k: v for k, v in init.items() if k not in (HEAT, "sigma_T")}, **v_kw)
            h, t_rms = fit_heat_transfer(model, p.update({k: first.params[k] for k in volt}), train, train_tables)
            case["staged"] = {"voltage_fit_map": {k: float(v) for k, v in first.params.items()},
                              "voltage_fit_converged": first.converged, "h_W_per_m2K": h,
                              "fitted_records_temperature_rms_K": t_rms}
            init = {**{k: float(v) for k, v in first.params.items()}, HEAT: h, "sigma_T": max(t_rms, 0.1)}
        res = fit_map(records_model, model, p, stacked, init=init, **fit_kw)
        q = p  # the set of this case: Chen2020 with the fixed values (and the fitted heat transfer)
        if args.heat_from_temperature:  # the thermocouple of the fitted records sets h; fit again with it
            h, t_rms = fit_heat_transfer(model, p.update({k: res.params[k] for k in fit}), train, train_tables)
            case["heat_transfer"] = {"first_fit_map": {k: float(v) for k, v in res.params.items()},
                                     "h_W_per_m2K": h, "fitted_records_temperature_rms_K": t_rms}
            q = p.update({HEAT: h})
            res = fit_map(records_model, model, q, stacked, init={k: float(v) for k, v in res.params.items()}, **fit_kw)
        case["fit_s"] = time.perf_counter() - t0
        case["converged"], case["steps"] = res.converged, res.steps
        case["map"] = {k: float(v) for k, v in res.params.items()}
        if ocv_data is not None:  # the fitted set's open-circuit voltage against the measured curve
            from jaxcell.inference import ocv_curve_voltage

            r = np.asarray(ocv_curve_voltage(q.update({k: res.params[k] for k in fit}), ocv_data[0], ocv_data[2])) - ocv_data[1]
            case["ocv_rms_mV"] = float(1e3 * np.sqrt(np.mean(r**2)))
        case["message"] = res.message
        finite = bool(np.all(np.isfinite(res.hessian)))
        case["hessian_eigenvalues"] = [float(w) for w in res.identifiability()["eigenvalues"]] if finite else None
        if not finite or not np.all(np.asarray(case["hessian_eigenvalues"]) > 0):  # no Laplace approximation
            print(json.dumps(case, indent=1), flush=True)
            results["cases"].append(case)
            continue
        draws = res.sample(jax.random.key(0), 200)
        t0 = time.perf_counter()
        vals = {k: draws[k] for k in fit}
        v_fit = predict_voltage(model, q, vals, stacked, sigma=draws["sigma"], key=jax.random.key(1), noise=args.noise)
        v = predict_voltage(model, q, vals, test, sigma=draws["sigma"], key=jax.random.key(2), noise=args.noise)
        case["predict_s"] = time.perf_counter() - t0
        case["fitted_records"] = [stats(v_fit[:, i], stacked.voltage[i], stacked.mask[i]) for i in range(len(train))]
        case["left_out_record"] = stats(v[:, 0], test.voltage[0], test.mask[0])
        # the curves behind the figures (`plot_lgm50.py`): each record's measured points and the
        # predictive mean and 90 % band there
        case["curves"] = [curve(r, recs, vv) for r, vv in zip(case["fitted"] + [out_rate],
                                                             [v_fit[:, i] for i in range(len(train))] + [v[:, 0]])]
        if args.thermal == "lumped":  # the temperature at the MAP point against the thermocouple
            rises = temperature_rises(model, q.update({k: res.params[k] for k in fit}), [recs[r] for r in RATES],
                                      [tables[r] for r in RATES])
            case["temperature_rise_K"] = {str(r): {"model": float(m[-1]), "measured": float(d[-1]),
                                                   "rms": float(np.sqrt(np.nanmean((m - d) ** 2)))}
                                          for r, (m, d) in zip(RATES, rises)}
        print(json.dumps(case, indent=1), flush=True)
        results["cases"].append(case)
    out = pathlib.Path(args.out) if args.out else HERE / "results" / f"inference_lgm50_{args.model.lower()}_latest.json"
    out.write_text(json.dumps(results, indent=1))
    print("written", out)


if __name__ == "__main__":
    main()
