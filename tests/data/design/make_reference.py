"""Regenerate tests/data/design/pybop_reference.json: PyBOP 26.3's cell mass, cell volume and
energy densities (on PyBaMM 26.10), the numbers `tests/test_design.py` compares jaxcell with.

Run in an environment with PyBaMM and PyBOP (never a jaxcell dependency):

    python tests/data/design/make_reference.py

What it stores:
- "mass": `pybop.pybamm.cell_mass()` and `cell_volume()` evaluated on Chen2020 with the density
  mapping of PyBOP's design example (electrolyte = separator density, active material and
  carbon-binder = electrode density), and on a variant with binder (active fractions lowered,
  so 1 - porosity - active > 0) and explicit, distinct densities, so every term of the mass
  model is exercised.
- "energy": PyBOP's problem examples/scripts/design_optimisation/maximising_energy.py (SPMe,
  Chen2020, set_formation_concentrations, initial SoC 1, "Discharge at 1C until 2.5 V" then
  "Hold at 2.5 V for 30 minutes or until 10 mA") evaluated at some designs (positive electrode
  thickness, positive particle radius): gravimetric and volumetric energy density as PyBOP's
  DesignCost reads them, the discharge capacity and the lithium in the particles at the start.
"""

import json
import pathlib
import time

import numpy as np
import pybamm
import pybop
from pybamm import Parameter

OUT = pathlib.Path(__file__).resolve().parent / "pybop_reference.json"
L_P, R_P = "Positive electrode thickness [m]", "Positive particle radius [m]"
DESIGNS = [(75.6e-6, 5.22e-6), (65e-6, 5.22e-6), (65e-6, 2e-6), (100e-6, 9e-6), (85e-6, 3.5e-6)]
STEPS = [
    "Discharge at 1C until 2.5 V (10 seconds period)",
    "Hold at 2.5 V for 30 minutes or until 10 mA (10 seconds period)",
]
EXAMPLE_DENSITIES = {
    "Electrolyte density [kg.m-3]": "Separator density [kg.m-3]",
    "Negative electrode active material density [kg.m-3]": "Negative electrode density [kg.m-3]",
    "Negative electrode carbon-binder density [kg.m-3]": "Negative electrode density [kg.m-3]",
    "Positive electrode active material density [kg.m-3]": "Positive electrode density [kg.m-3]",
    "Positive electrode carbon-binder density [kg.m-3]": "Positive electrode density [kg.m-3]",
}
BINDER_VARIANT = {
    "Negative electrode active material volume fraction": 0.68,
    "Positive electrode active material volume fraction": 0.6,
    "Electrolyte density [kg.m-3]": 1280.0,
    "Negative electrode active material density [kg.m-3]": 2260.0,
    "Negative electrode carbon-binder density [kg.m-3]": 1780.0,
    "Positive electrode active material density [kg.m-3]": 4750.0,
    "Positive electrode carbon-binder density [kg.m-3]": 1850.0,
}


def example_parameter_values():
    pv = pybamm.ParameterValues("Chen2020")
    pybop.pybamm.set_formation_concentrations(pv)
    pv.update({k: Parameter(v) for k, v in EXAMPLE_DENSITIES.items()}, check_already_exists=False)
    pv.update({"Cell mass [kg]": pybop.pybamm.cell_mass(), "Cell volume [m3]": pybop.pybamm.cell_volume()},
              check_already_exists=False)
    return pv


def example_problems():
    """PyBOP's maximising_energy.py problem, as the example builds it."""
    model = pybamm.lithium_ion.SPMe()
    pybop.pybamm.add_variable_to_model(model, "Gravimetric energy density [W.h.kg-1]")
    pybop.pybamm.add_variable_to_model(model, "Volumetric energy density [W.h.m-3]")
    pv = example_parameter_values()
    pv.update({
        L_P: pybop.Parameter(pybop.Gaussian(7.56e-05, 0.1e-05, truncated_at=[65e-06, 10e-05])),
        R_P: pybop.Parameter(pybop.Gaussian(5.22e-06, 0.1e-06, truncated_at=[2e-06, 9e-06])),
    })
    sim = pybop.pybamm.Simulator(model, parameter_values=pv, protocol=pybamm.Experiment(STEPS),
                                 initial_state={"Initial SoC": 1.0})
    grav = pybop.Problem(sim, pybop.DesignCost(target="Gravimetric energy density [W.h.kg-1]"))
    vol = pybop.Problem(sim, pybop.DesignCost(target="Volumetric energy density [W.h.m-3]"))
    return sim, grav, vol


def main():
    pv = example_parameter_values()
    mass = {
        "chen2020_example_mapping": {
            "cell_mass_kg": float(pv.evaluate(pybop.pybamm.cell_mass())),
            "cell_volume_m3": float(pv.evaluate(pybop.pybamm.cell_volume())),
        }
    }
    variant = pybamm.ParameterValues("Chen2020")
    variant.update(BINDER_VARIANT, check_already_exists=False)
    mass["chen2020_binder_variant"] = {
        "updates": BINDER_VARIANT,
        "cell_mass_kg": float(variant.evaluate(pybop.pybamm.cell_mass())),
        "cell_volume_m3": float(variant.evaluate(pybop.pybamm.cell_volume())),
    }

    sim, grav, vol = example_problems()
    energy = []
    for L, R in DESIGNS:
        t0 = time.perf_counter()
        sol = sim.solve(inputs={L_P: L, R_P: R})
        energy.append({
            "design": {L_P: L, R_P: R},
            "gravimetric_Wh_per_kg": float(grav([L, R])),
            "volumetric_Wh_per_m3": float(vol([L, R])),
            "capacity_Ah": float(sol["Discharge capacity [A.h]"].data[-1]),
            "energy_Wh": float(np.asarray(sol["Gravimetric energy density [W.h.kg-1]"].data)[-1]),
            "lithium_in_particles_mol": float(sol["Total lithium in particles [mol]"].data[0]),
            "seconds": time.perf_counter() - t0,
        })
        print(energy[-1])
    for row in energy:  # energy [W.h] = gravimetric x mass
        m = pv.copy()
        m.update(row["design"])
        row["energy_Wh"] = row["gravimetric_Wh_per_kg"] * float(m.evaluate(pybop.pybamm.cell_mass()))
        row["cell_mass_kg"] = float(m.evaluate(pybop.pybamm.cell_mass()))
    OUT.write_text(json.dumps({
        "generator": "tests/data/design/make_reference.py",
        "versions": {"pybamm": pybamm.__version__, "pybop": pybop.__version__},
        "protocol": STEPS,
        "mass": mass,
        "energy": energy,
    }, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
