"""The porosity-tortuosity ridge, measured with profile likelihoods (`jaxcell.inference.profile`).

The SPMe's electrolyte sees the positive electrode's porosity eps through its volume (eps dc/dt)
and its effective transport (D eps^b, b the Bruggeman coefficient), and sees the tortuosity only
through eps^b: from a voltage curve, porosity and Bruggeman coefficient trade off along a ridge.
Synthetic data: Chen2020's SPMe (porosity 0.335, b = 1.5; the positive active material fraction
0.6 instead of 0.665, so that porosities up to 0.4 fit in the electrode), voltage at 121 times,
Gaussian noise 2 mV (seeded). Unknowns: the porosity (profiled
over a grid), the Bruggeman coefficient (log-normal prior around 1.5, log-sd 0.5) and the noise
scale. Two protocols:

* "1C": a 1C discharge for 20 minutes, then 10 minutes' rest;
* "1C + 2C": the same, then 2C for 4 minutes and 6 minutes' rest (a second rate, whose
  electrolyte gradients are twice as steep; with 3C the cells of the grid's lowest porosity
  deplete their electrolyte and the fit has no finite starting point).

Reported for each: the profile's likelihood-ratio 95 % interval of the porosity and the
Bruggeman coefficient's best value along the profile (the ridge).

    python benchmarks/identifiability_ridge.py

Writes benchmarks/results/identifiability_ridge_latest.json and .png.
"""

from __future__ import annotations

import json
import time

import jax

jax.config.update("jax_enable_x64", True)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import numpyro.distributions as dist  # noqa: E402

import _common as C  # noqa: E402
import jaxcell  # noqa: E402
from jaxcell.inference import cell_model, default_prior, profile  # noqa: E402

EPS = "Positive electrode porosity"
BRUG = "Positive electrode Bruggeman coefficient (electrolyte)"
PROTOCOLS = {
    "1C": (["Discharge at 1C for 20 minutes", "Rest for 10 minutes"], 1800.0),
    "1C + 2C": (["Discharge at 1C for 20 minutes", "Rest for 10 minutes", "Discharge at 2C for 4 minutes",
                 "Rest for 6 minutes"], 2400.0),
}
NOISE = 0.002
GRID = np.linspace(0.20, 0.40, 11)


def main():
    p = jaxcell.load_parameters("Chen2020").update({"Positive electrode active material volume fraction": 0.6})
    model = jaxcell.SPMe()
    rng = np.random.default_rng(0)
    out = {"machine": C.machine_info(), "settings": {"model": "SPMe", "truth": {EPS: float(p[EPS]), BRUG: float(p[BRUG])},
           "noise_V": NOISE, "grid": GRID.tolist(), "protocols": {k: v[0] for k, v in PROTOCOLS.items()}}, "results": {}}
    fig, axes = plt.subplots(2, 1, figsize=(5.5, 6), sharex=True)
    for name, (steps, t_end) in PROTOCOLS.items():
        exp = jaxcell.Experiment(steps)
        t = np.linspace(0.0, t_end, 121)
        v = np.asarray(jaxcell.simulate(model, p, exp, t_eval=t).voltage) + NOISE * rng.standard_normal(t.size)
        priors = {BRUG: default_prior(BRUG, p[BRUG])}
        t0 = time.perf_counter()
        pr = profile(cell_model, model, p, exp, t, v, priors={EPS: default_prior(EPS, p[EPS]), **priors},
                     noise_prior=dist.HalfNormal(0.01), name=EPS, values=GRID)
        wall = time.perf_counter() - t0
        lo, hi = pr.interval(0.95)
        best = int(np.argmax(pr.log_likelihood))
        res = {"interval_95": [lo, hi], "best_porosity": float(GRID[best]), "converged": int(pr.converged.sum()),
               "log_likelihood": pr.log_likelihood.tolist(), "bruggeman_along": pr.others[BRUG].tolist(),
               "wall_s": wall}
        out["results"][name] = res
        print(f"{name}: 95 % interval of the porosity [{lo:.3f}, {hi:.3f}] (grid {GRID[0]:.2f}-{GRID[-1]:.2f}), "
              f"best {GRID[best]:.3f}; Bruggeman along the profile {pr.others[BRUG].min():.2f}-"
              f"{pr.others[BRUG].max():.2f}; {res['converged']}/{GRID.size} converged; {wall:.0f} s")
        axes[0].plot(GRID, pr.log_likelihood - pr.log_likelihood[best], "o-", label=name)
        axes[1].plot(GRID, pr.others[BRUG], "o-", label=name)
    axes[0].axhline(-1.92, color="0.6", ls="--", lw=1, label="95 % (likelihood ratio)")
    axes[0].axvline(float(p[EPS]), color="k", lw=0.8)
    axes[0].set_ylabel("profile log-likelihood")
    axes[0].set_ylim(-15, 1)
    axes[0].legend(fontsize=8)
    axes[1].axhline(float(p[BRUG]), color="k", lw=0.8)
    axes[1].set_ylabel("best Bruggeman coefficient")
    axes[1].set_xlabel("positive electrode porosity (fixed)")
    axes[1].legend(fontsize=8)
    fig.suptitle("SPMe, Chen2020: porosity against tortuosity", fontsize=10)
    fig.tight_layout()
    png = str(C.RESULTS / "identifiability_ridge_latest.png")
    fig.savefig(png, dpi=120)
    with open(str(C.RESULTS / "identifiability_ridge_latest.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {png}")


if __name__ == "__main__":
    main()
