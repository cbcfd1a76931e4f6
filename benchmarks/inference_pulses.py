"""Real-data check of the hierarchy: the LG M50 pulses at 25 degC, one cell left out.

The data (``pulses.csv``, W. D. Widanage, WMG; see the shared data's README): five cells at
25 degC, each pulsed for about 10 s at 7.5 A from rest at nine states of charge, then rested
about 10 s, sampled about every 0.1 s. The fit is the command line's, as an engineer would run
it: ``jaxcell fit`` on the pulses of four cells (``--socs``, default five of the nine states of
charge) with ``--group cell`` (a hierarchical SVI fit: the population's median and spread of
each parameter and every cell's value), then ``jaxcell predict --new-cell`` on all nine pulses
of the left-out cell, from the population alone. Reported: the RMS error of the posterior
predictive mean, the share of measured points inside the 90 % band (noise included) and the
band's mean width, per record and over all; the same for the fitted cells predicted with their
own values; and Chen2020 as published (no contact resistance) for comparison.

Fitted per cell: the contact resistance (the pulses' ohmic drop; Chen2020 has none, so its
prior is centred on 10 mOhm), the negative electrode's reaction rate constant (charge transfer)
and the positive particle diffusivity (the voltage's slope during the pulse and its
relaxation). Noise: Student-t (``--noise student_t``): the current is logged about 0.1 s after
the voltage at each step change, so the first point of a pulse and of its rest is far off any
model that takes the logged current as given, and a Gaussian would let those few points set the
noise scale.

    python benchmarks/inference_pulses.py [--left-out 5] [--steps 800] [--reuse fit.json]

Writes benchmarks/results/inference_pulses_latest.json and the fit, ``inference_pulses_fit.json``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import jaxcell  # noqa: E402
from jaxcell.cli import main as jaxcell_main  # noqa: E402
from jaxcell.inference import predict_voltage, read_measurements, stack_records  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"
FIT = ["Contact resistance [Ohm]", "Negative electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]",
       "Positive particle diffusivity [m2.s-1]"]
PRIORS = ["Contact resistance [Ohm]=0.01"]


def stats(table: pd.DataFrame) -> dict:
    err = table.V_pred_V - table.V_V
    inside = (table.V_lo_V <= table.V_V) & (table.V_V <= table.V_hi_V)
    return {"rms_mV": float(1e3 * np.sqrt(np.nanmean(err**2))), "coverage": float(inside.mean()),
            "band_width_mV": float(1e3 * np.nanmean(table.V_hi_V - table.V_lo_V)), "points": int(len(table))}


def per_record(table: pd.DataFrame) -> list[dict]:
    return [{"soc_percent": int(s), **stats(g)} for s, g in table.groupby("soc_percent")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(HERE / "data" / "lgm50_25degC_pulses.csv"),
                    help="the pulse records (default: the 25 degC cells of the shared data's pulses.csv, extracted "
                         "unchanged; the full file is read too, its 25 degC records kept)")
    ap.add_argument("--left-out", type=int, default=5, help="the cell predicted from the population")
    ap.add_argument("--socs", type=int, nargs="+", default=[90, 70, 50, 30, 10], help="fitted states of charge [%%]")
    ap.add_argument("--model", default="SPMe")
    ap.add_argument("--steps", type=int, default=800, help="SVI steps")
    ap.add_argument("--reuse", help="a fit.json of this script's fit command, instead of fitting again")
    args = ap.parse_args()

    d = pd.read_csv(args.data)
    if "ambient_degC" in d:
        d = d[d.ambient_degC == 25].drop(columns="ambient_degC")
    tmp = pathlib.Path(tempfile.mkdtemp())
    train, test = tmp / "pulses_fitted_cells.csv", tmp / "pulses_left_out_cell.csv"
    d[(d.cell != args.left_out) & d.soc_percent.isin(args.socs)].to_csv(train, index=False)
    d[d.cell == args.left_out].to_csv(test, index=False)
    fit_json = RESULTS / "inference_pulses_fit.json"
    command = ["fit", str(train), "--records", "soc_percent,cell", "--group", "cell", "--method", "svi",
               "--model", args.model, "--noise", "student_t", "--fit", *FIT, "--steps", str(args.steps),
               "--output", str(fit_json)] + [a for pr in PRIORS for a in ("--prior", pr)]
    out = {"command": "jaxcell " + " ".join(f'"{c}"' if " " in c else c for c in command), "left_out": args.left_out,
           "fitted_socs": args.socs}
    if args.reuse:
        fit_json.write_text(pathlib.Path(args.reuse).read_text())
        out["reused"] = args.reuse
    else:
        t0 = time.perf_counter()
        out["fit_status"] = jaxcell_main(command)
        out["fit_s"] = time.perf_counter() - t0
    fit = json.loads(fit_json.read_text())
    out["diagnostics"], out["parameters"], out["noise_scale"] = fit["diagnostics"], fit["parameters"], fit["noise_scale"]
    out["cells"] = fit.get("cells")

    pred = tmp / "pred.csv"
    jaxcell_main(["predict", str(fit_json), "--data", str(test), "--records", "soc_percent,cell", "--new-cell",
                  "--output", str(pred)])
    table = pd.read_csv(pred)
    out["new_cell"] = {"all": stats(table), "records": per_record(table)}
    fitted = tmp / "fitted_pred.csv"
    jaxcell_main(["predict", str(fit_json), "--data", str(train), "--records", "soc_percent,cell", "--output", str(fitted)])
    out["fitted_cells"] = stats(pd.read_csv(fitted))

    # Chen2020 as published, on the left-out cell
    recs = read_measurements(test, ["soc_percent", "cell"])
    st = stack_records(recs)
    p = jaxcell.load_parameters("Chen2020")
    v = np.asarray(predict_voltage(getattr(jaxcell, args.model)(), p, {FIT[0]: np.array([float(p[FIT[0]])])}, st))[0]
    err = np.where(st.mask, v - st.voltage, np.nan)
    out["chen2020_rms_mV"] = float(1e3 * np.sqrt(np.nanmean(err**2)))
    path = RESULTS / "inference_pulses_latest.json"
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("new_cell", "fitted_cells", "chen2020_rms_mV")}, indent=1))
    print("written", path)


if __name__ == "__main__":
    main()
