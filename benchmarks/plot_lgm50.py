"""The figure of `inference_lgm50.py`'s leave-one-rate-out fits: for each case, the measured LG M50
discharges against their discharged charge, with the posterior predictive mean and its 90 %
band (noise included) for the fitted rates and for the rate left out. matplotlib only; reads the
curves a run of `inference_lgm50.py` stores with each case.

    python benchmarks/plot_lgm50.py [results/inference_lgm50_spme_temperature.json] [out.png]
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent


def _rate(c):
    return f"{c:g}C" if c >= 1.0 else f"C/{1 / c:g}"


def main():
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results" / "inference_lgm50_spme_temperature.json"
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else src.with_suffix(".png")
    cases = [c for c in json.loads(src.read_text())["cases"] if "curves" in c]
    if not cases:
        raise SystemExit(f"{src}: no case with curves (run inference_lgm50.py to make them).")
    fig, axes = plt.subplots(1, len(cases), figsize=(5.5 * len(cases), 4.2), squeeze=False)
    for ax, case in zip(axes[0], cases):
        for cur in case["curves"]:
            t, current = np.asarray(cur["t_s"]), np.asarray(cur["I_A"])
            q = np.concatenate([[0.0], np.cumsum(np.diff(t) * 0.5 * (current[1:] + current[:-1]))]) / 3600.0
            out = cur["c_rate"] == case["left_out"]
            colour = "tab:red" if out else "tab:blue"
            ax.fill_between(q, cur["lo_V"], cur["hi_V"], color=colour, alpha=0.25, lw=0)
            ax.plot(q, cur["mean_V"], color=colour, lw=1.2)
            ax.plot(q, cur["V_V"], "o", ms=2.5, color="k" if out else "0.35",
                    label=f"{_rate(cur['c_rate'])} {'left out' if out else 'fitted'}")
        lo = case["left_out_record"]
        ax.set_title(f"{_rate(case['left_out'])} predicted: {lo['rms_mV']:.1f} mV RMS, "
                     f"{100 * lo['coverage']:.0f} % in the band", fontsize=10)
        ax.set_xlabel("Discharged charge [A.h]")
        ax.set_ylabel("Voltage [V]")
        ax.legend(fontsize=8, loc="lower left")
    fig.suptitle("LG M50, 25 degC: measured (dots), posterior predictive mean and 90 % band (fitted blue, left out red)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)
    print("wrote", dst)


if __name__ == "__main__":
    main()
