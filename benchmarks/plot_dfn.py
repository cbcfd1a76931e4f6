"""Plot the DFN benchmark's single solves: warm solve time against distance from the reference.

Reads a ``bench_dfn.py`` result (default ``results/dfn_latest.json``) and draws one point per
candidate (library, mesh, rtol): the warm median solve time [ms] against the RMS voltage
difference from the converged reference [mV], with the 1 mV "equal accuracy" line and each
library's chosen configuration circled. Needs matplotlib only (no JAX, no PyBaMM).

Usage::

    python benchmarks/plot_dfn.py [--json results/dfn_latest.json] [--out results/dfn_latest.png]
"""

import argparse
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
MARKERS = {1e-6: "o", 1e-4: "s", 1e-3: "^"}
COLOURS = {"PyBaMM": "tab:blue", "jaxcell": "tab:orange"}


def _label(run: dict) -> str:
    return f"{run['mesh']} ({run['n_states']} states)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=pathlib.Path, default=HERE / "results" / "dfn_latest.json")
    ap.add_argument("--out", type=pathlib.Path, default=HERE / "results" / "dfn_latest.png")
    args = ap.parse_args()
    data = json.loads(args.json.read_text())
    head = data["headline"]
    target = data["settings"]["target_rms_mV"]

    fig, ax = plt.subplots(figsize=(7.5, 5))
    for library, key in (("PyBaMM", "pybamm_single"), ("jaxcell", "jaxcell_single")):
        runs = data[key]
        for run in runs:
            x = run["vs_reference"]["rms_mV"]
            y = 1e3 * run["single_median_s"]
            ax.scatter(x, y, marker=MARKERS.get(run["rtol"], "x"), color=COLOURS[library], s=36, zorder=3)
            if run["rtol"] == 1e-3:
                ax.annotate(_label(run), (x, y), textcoords="offset points", xytext=(6, -3),
                            fontsize=7, color=COLOURS[library])
        chosen_mesh = head[f"{library.lower()}_mesh"]
        chosen_rtol = head[f"{library.lower()}_rtol"]
        for run in runs:
            if run["mesh"] == chosen_mesh and run["rtol"] == chosen_rtol:
                ax.scatter(run["vs_reference"]["rms_mV"], 1e3 * run["single_median_s"], s=220,
                           facecolors="none", edgecolors=COLOURS[library], linewidths=1.5, zorder=4)
    ax.axvline(target, color="grey", linestyle="--", linewidth=1)
    for library, colour in COLOURS.items():
        ax.scatter([], [], color=colour, label=library)
    for rtol, marker in MARKERS.items():
        ax.scatter([], [], color="black", marker=marker, label=f"rtol {rtol:g}")
    ax.scatter([], [], s=150, facecolors="none", edgecolors="black", label="chosen (fastest within target)")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_yticks([5, 10, 20, 50])
    ax.set_ylim(4.5, 100)
    ax.set_xlim(0, max(ax.get_xlim()[1], target) + 0.3)
    ax.text(target, 4.7, f" equal accuracy: {target:g} mV", va="bottom", fontsize=8, color="grey")
    ax.set_xlabel("RMS voltage difference from the converged reference [mV]")
    ax.set_ylabel("warm single solve [ms]")
    machine = data["machine"]
    ax.set_title(f"DFN, Chen2020, 1C discharge: {machine['cpu_model']}, {machine['cpu_count']} cores, "
                 f"one thread each", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
