"""The figure of `bench_design.py`'s deterministic run: PyBOP's grid of the gravimetric energy
density with jaxcell's design paths on it, and the objective along each path against gradient
evaluations (PyBOP's grid best and particle swarm for comparison). matplotlib only.

    python benchmarks/plot_design.py [results/design_latest.json] [results/design_latest.png]
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
L_P, R_P = "Positive electrode thickness [m]", "Positive particle radius [m]"


def main():
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results" / "design_latest.json"
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else src.with_suffix(".png")
    res = json.loads(src.read_text())
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.5))
    grid = res.get("pybop", {}).get("grid")
    if grid:
        n = grid["n"]
        Ls = np.linspace(65, 100, n)
        Rs = np.linspace(2, 9, n)
        cs = ax0.contourf(Rs, Ls, np.asarray(grid["values"]), levels=20, cmap="viridis")
        fig.colorbar(cs, ax=ax0, label="PyBOP: gravimetric energy density [W.h/kg]")
    pso = res.get("pybop", {}).get("pso")
    if pso:
        ax0.plot(pso["x"][1] * 1e6, pso["x"][0] * 1e6, "w*", ms=12, label=f"PyBOP PSO best ({pso['evaluations']} evals)")
    for method, run in res.get("jaxcell_deterministic", {}).items():
        L = [e["design"][L_P] * 1e6 for e in run["path"]]
        R = [e["design"][R_P] * 1e6 for e in run["path"]]
        ax0.plot(R, L, "o-", ms=3, label=f"jaxcell {method}")
        ax1.plot(np.arange(2, len(run["path"]) + 2), [e["objective"] for e in run["path"]], "o-", ms=3,
                 label=f"jaxcell {method}")
    ax0.set_xlabel("positive particle radius [um]")
    ax0.set_ylabel("positive electrode thickness [um]")
    ax0.legend(fontsize=8)
    if grid:
        ax1.axhline(grid["best"], color="k", lw=1, label=f"PyBOP grid best ({n * n} evals)")
        ax1.axhline(grid["best"] * 0.998, color="k", lw=1, ls=":", label="grid best - 0.2 %")
    if pso:
        ax1.axhline(pso["best"], color="grey", ls="--", lw=1, label=f"PyBOP PSO ({pso['evaluations']} evals)")
    ax1.set_xlabel("gradient evaluations (the first, at the start, scales the loss)")
    ax1.set_ylabel("gravimetric energy density [W.h/kg]")
    ax1.set_ylim(390, 420)
    ax1.legend(fontsize=8)
    fig.suptitle("PyBOP's design problem (SPMe, Chen2020, 1C + 2.5 V hold)")
    fig.tight_layout()
    fig.savefig(dst, dpi=110)
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
