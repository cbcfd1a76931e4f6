"""Why the LG M50 1C discharge is predicted badly from the slower rates (docs/inference.md).

At the MAP point of the 1C-left-out fit in ``results/inference_lgm50_spme_ocv_pulse_prior.json``
(SPMe, lumped thermal, fitted to C/10 and C/2 with the measured OCV curve and the pulses' prior on
the contact resistance):

1. the 1C prediction's RMS error, overall and above 3.0 V, with particle diffusion activation
   energies of 0, 20 and 40 kJ/mol on both electrodes (Chen2020's diffusivities are constants);
2. the model's temperature rise over a constant-current discharge to 2.5 V at C/2 and 1C for
   four heat transfer coefficients, against the cell's thermocouple (``rate_tests.csv``).

    python benchmarks/lgm50_thermal_check.py [--data rate_tests.csv]

Writes results/lgm50_thermal_check.json.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import jaxcell  # noqa: E402
from jaxcell.inference import predict_voltage, read_measurements, stack_records  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
FIT = HERE / "results" / "inference_lgm50_spme_ocv_pulse_prior.json"
ACTIVATION = [f"{side} particle diffusion activation energy [J.mol-1]" for side in ("Negative", "Positive")]


def main():
    import inference_lgm50 as lgm50

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(HERE / "data" / "lgm50_25degC_discharges.csv"),
                    help="the rate tests (default: the 25 degC discharges extracted by inference_lgm50.py; the full "
                         "rate_tests.csv is read too, its 25 degC records kept)")
    args = ap.parse_args()
    case = next(c for c in json.loads(FIT.read_text())["cases"] if c["left_out"] == 1.0)
    point = {k: v for k, v in case["map"].items() if not k.startswith("sigma")}
    model = jaxcell.SPMe(thermal="lumped")
    base = jaxcell.load_parameters("Chen2020").update({"Lower voltage cut-off [V]": 2.0})
    test = stack_records([read_measurements(lgm50.discharges()[1.0], "c_rate")[0]])
    mask = test.mask[0]
    measured = test.voltage[0][mask]
    out = {"fit": FIT.name, "map_point": point, "activation_energy": [], "temperature_rise": []}
    for E in (0.0, 20e3, 40e3):
        p = base.update(dict.fromkeys(ACTIVATION, E), check_already_exists=False) if E else base
        v = predict_voltage(model, p, {k: np.array([x]) for k, x in point.items()}, test)[0, 0][mask]
        above = measured >= lgm50.KNEE_V
        row = {"E_J_per_mol": E, "rms_mV": float(1e3 * np.sqrt(np.nanmean((v - measured) ** 2))),
               "rms_above_knee_mV": float(1e3 * np.sqrt(np.nanmean((v - measured)[above] ** 2)))}
        print(row, flush=True)
        out["activation_energy"].append(row)
    raw = pd.read_csv(args.data)
    if "ambient_degC" in raw:
        raw = raw[raw.ambient_degC == 25]
    for rate in (0.5, 1.0):
        g = raw[(raw.c_rate == rate) & (raw.I_A > 0.05)]
        measured_rise = float(g.T_cell_degC.iloc[-1] - g.T_cell_degC.iloc[0])
        for h in (10.0, 20.0, 30.0, 40.0):
            p = jaxcell.load_parameters("Chen2020").update({**point, "Total heat transfer coefficient [W.m-2.K-1]": h})
            sol = jaxcell.simulate(model, p, f"Discharge at {5.0 * rate} A until 2.5 V", t_eval=np.linspace(0, 8000 / rate, 400))
            T = np.asarray(sol.temperature)
            T = T[np.isfinite(T)]
            row = {"c_rate": rate, "h_W_per_m2K": h, "model_rise_K": float(T[-1] - T[0]), "measured_rise_K": measured_rise}
            print(row, flush=True)
            out["temperature_rise"].append(row)
    path = HERE / "results" / "lgm50_thermal_check.json"
    path.write_text(json.dumps(out, indent=1))
    print("written", path)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(HERE))
    main()
