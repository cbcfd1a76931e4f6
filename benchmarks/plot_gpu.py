"""Plot population throughput on a GPU against the number of cells.

Reads ``bench_gpu.py`` results (default: the H200 runs ``results/gpu_h200.json``,
``gpu_h200_large.json`` and ``gpu_h200_1001_outputs.json``) and draws cells/s against the
population size, one line per model, setting and number of output times, on log axes. PyBaMM's
population throughput at the same accuracy on one CPU core (the ``population`` medians of
``results/spme_latest.json`` and ``dfn_latest.json``; 1001 output times) is drawn as horizontal
lines for scale: a different machine, so the figure compares what a user gets, not solvers.
Needs matplotlib only (no JAX, no PyBaMM).

Usage::

    python benchmarks/plot_gpu.py [--json FILE ...] [--out results/gpu_h200.png]
"""

import argparse
import json
import pathlib
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULT_JSON = [RESULTS / f for f in ("gpu_h200.json", "gpu_h200_large.json", "gpu_h200_1001_outputs.json")]
COLOURS = {"SPMe": "tab:orange", "DFN": "tab:blue"}
PYBAMM = {"SPMe": "spme_latest.json", "DFN": "dfn_latest.json"}


def pybamm_cells_per_s(name):
    """PyBaMM's population throughput in the CPU benchmark's headline run (the median where that
    run timed several, as spme_latest.json did; dfn_latest.json timed one)."""
    pop = json.loads((RESULTS / PYBAMM[name]).read_text())["population"]["pybamm"]
    return float(pop["cells_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=pathlib.Path, nargs="+", default=DEFAULT_JSON)
    ap.add_argument("--out", type=pathlib.Path, default=RESULTS / "gpu_h200.png")
    args = ap.parse_args()

    lines = defaultdict(dict)  # (model, setting, n_out) -> {n: best cells/s over runs}
    kinds = set()
    for path in args.json:
        run = json.loads(path.read_text())
        kinds.add(run.get("device_kind") or run["platform"])
        n_out = run["settings"]["n_out"]
        for row in run["results"]:
            if "cells_per_s" in row:
                key = (row["model"], row["setting"], n_out)
                lines[key][row["n"]] = max(lines[key].get(row["n"], 0.0), row["cells_per_s"])

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for (model, setting, n_out), pts in sorted(lines.items()):
        n = sorted(pts)
        style = {"headline": "-", "default": "--"}[setting] if n_out <= 100 else ":"
        label = f"{model}, {'1 mV setting' if setting == 'headline' else 'defaults'}, {n_out} outputs"
        marker = "o" if n_out <= 100 else "D"
        ax.plot(n, [pts[k] for k in n], style, marker=marker, ms=5 if n_out <= 100 else 8, color=COLOURS[model], label=label)
    for model in COLOURS:
        try:
            rate = pybamm_cells_per_s(model)
        except (OSError, KeyError):
            continue
        ax.axhline(rate, color=COLOURS[model], lw=0.8, alpha=0.6)
        ax.annotate(f"PyBaMM {model}, one CPU core, 1001 outputs: {rate:.0f} cells/s",
                    (1.1e3, rate * (1.12 if model == "SPMe" else 1 / 1.4)), color=COLOURS[model], fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(bottom=40)
    ax.set_xlabel("cells in one call")
    ax.set_ylabel("cells per second")
    ax.set_title(f"Populations on one {', '.join(sorted(kinds))} (float64, 1C discharge, Chen2020)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
