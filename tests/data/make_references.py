"""Regenerate the PyBaMM reference curves used by the jaxcell tests.

PyBaMM is used here only as an external reference; jaxcell itself does not
depend on it.  Running this script needs ``pip install pybamm==26.10.1.1``.

Usage::

    python tests/data/make_references.py [--out DIR] [GROUP ...]

GROUPS: spm_spme converged high_rate dfn_lumped tortuosity protocol resistance functions bpx initial_soc (default: all). With
``--out DIR`` the files go to DIR instead (to compare a regeneration with the committed files).

Writes into ``tests/data/pybamm/``:

* ``{MODEL}_{SET}_{RATE}C.csv`` -- isothermal constant-current discharges
  (columns ``t_s,V_V,Q_Ah``) for MODEL in (SPM, SPMe), SET in (Marquis2019,
  Ecker2015), RATE in (0.5, 1.0, 2.0).
* ``{MODEL}_lumped_{SET}_1.0C.csv`` -- lumped-thermal 1C discharges (Chen2020, Marquis2019)
  (columns ``t_s,V_V,Q_Ah,T_K``).
* ``DFNfine_lumped_{SET}_1.0C.csv`` -- the DFN with the lumped thermal model on the fine mesh
  below (Chen2020, Marquis2019; columns ``t_s,V_V,Q_Ah,T_K``).
* ``SPMe_tortuosity_Chen2020_1.0C.csv``, ``DFNfine_tortuosity_Chen2020_1.0C.csv`` -- isothermal
  1C discharges with the option ``"transport efficiency": "tortuosity factor"`` and the
  tortuosity factors ``TORTUOSITY`` (also written to ``tortuosity_Chen2020.json``), the SPMe on
  PyBaMM's default mesh, the DFN on the fine mesh.
* ``DFNfine_protocol_Chen2020.csv`` -- the DFN on the fine mesh under the dynamic protocol
  ``PROTOCOL`` (written to ``protocol_Chen2020.json``, with its drive cycle): CC, rests, 30 s
  pulses, a power step, a drive cycle, a CC-CV charge (columns ``t_s,V_V,I_A,step``, a row every
  2 s within each step, the step's index in the last column).
* ``SPM_resistance_Chen2020.csv`` -- group ``resistance``: the SPM on PyBaMM's default mesh
  under ``RESISTANCE_PROTOCOL`` (constant-resistance discharges and charge among CC steps and a
  rest; columns ``t_s,V_V,I_A,step``, a row every 10 s within each step).
* ``functions_{SET}.json`` -- parameter functions (OCPs, exchange-current
  densities, electrolyte and particle transport) evaluated on a grid; the
  layout is described in the file's ``"_doc"`` entry; the model-level OCPs also near the
  stoichiometry limits, where PyBaMM clips and adds its barrier.
* ``SPM_Chen2020_{RATE}C.csv``, ``SPMe_Chen2020_{RATE}C.csv``, ``SPMefine_Chen2020_{RATE}C.csv``
  and ``DFNfine_{SET}_{RATE}C.csv`` for SET in (Chen2020, Marquis2019, Ecker2015) -- group
  ``converged``: isothermal discharges written at full precision, the SPM and SPMe on PyBaMM's
  default mesh, ``SPMefine`` and the DFN on the fine mesh ``FINE`` (60 points per domain and
  particle, 30 in the separator); IDAKLU rtol 1e-8 and atol 1e-10, except Ecker2015's DFN at
  atol 1e-8, because at 1e-10 IDA's initial-condition line search fails on that set.
* ``DFNconverged_Chen2020_3.0C.csv`` and ``SPMe_Chen2020_3.0C_depletion.json`` -- group
  ``high_rate``: the DFN at 3C on the mesh ``CONVERGED`` (full precision, IDAKLU rtol 1e-8,
  atol 1e-10), where the electrolyte at the positive current collector runs out before the
  cut-off; at 3C the fine mesh is not converged (it ends 0.9 s early and lies 3.2 mV RMS from
  this curve; 120 and 240 x-points per electrode: 0.85 and 0.17 mV); and the time
  at which the SPMe's lowest electrolyte concentration crosses zero at 3C (PyBaMM's default
  mesh, output every 10 ms, interpolated linearly).
* ``bpx_{NAME}.json``, ``SPMe_bpx_{NAME}_1.0C.csv`` and ``SPMe_lumped_bpx_{NAME}_1.0C.csv`` --
  group ``bpx``: PyBaMM's import of ``tests/data/bpx_{NAME}.json`` (every scalar parameter, the
  functions on a grid) and its SPMe at 1C from the file's initial state.

* ``initial_soc_{SET}.json`` and ``DFNfine_Chen2020_soc0.5_1.0C.csv`` -- group ``initial_soc``:
  PyBaMM's initial concentrations at states of charge and rest voltages, and the fine-mesh DFN
  at 1C from 50 % (columns ``t_s,V_V,Q_Ah``).

Every file under ``tests/data/pybamm/`` is written by one of these groups.
"""

import json
import pathlib
import sys

import numpy as np
import pybamm

DATA = pathlib.Path(__file__).resolve().parent
OUT = DATA / "pybamm"

MODELS = {"SPM": pybamm.lithium_ion.SPM, "SPMe": pybamm.lithium_ion.SPMe}
FINE = {"x_n": 60, "x_s": 30, "x_p": 60, "r_n": 60, "r_p": 60}  # as pybamm_reference.py --fine
CONVERGED = {"x_n": 480, "x_s": 240, "x_p": 480, "r_n": 120, "r_p": 120}  # the 3C reference (FINE is not converged there)
# tortuosity factors for the "transport efficiency": "tortuosity factor" references (Chen2020;
# Bruggeman's would be 2.0, 1.46 and 1.73 for the electrolyte and 0.75 and 0.665 for the solid)
TORTUOSITY = {
    "Negative electrode tortuosity factor (electrolyte)": 3.0,
    "Separator tortuosity factor (electrolyte)": 2.0,
    "Positive electrode tortuosity factor (electrolyte)": 2.5,
    "Negative electrode tortuosity factor (electrode)": 1.5,
    "Positive electrode tortuosity factor (electrode)": 1.2,
}
# a dynamic protocol: pulses, rests, power, a drive cycle (DRIVE_CYCLE, inserted at its index)
# and a CC-CV charge, ending on the hold (tests/test_dfn.py checks the current at its end)
PROTOCOL = [
    "Discharge at 1C for 20 minutes",
    "Rest for 10 minutes",
    "Discharge at 2C for 30 seconds",
    "Rest for 5 minutes",
    "Charge at 1C for 30 seconds",
    "Rest for 5 minutes",
    "Discharge at 10 W for 10 minutes",
    "DRIVE_CYCLE",
    "Charge at C/2 until 4.1 V",
    "Hold at 4.1 V until C/20",
]
# drive cycle: current [A] (discharge positive) at whole seconds, linear in between: levels in C
# (Chen2020: 5 A) held for a few seconds each, with 1 s ramps, regenerative pulses included
_LEVELS = [(20, 1.5), (10, -1.0), (30, 0.5), (10, 2.5), (20, 0.0), (30, -0.5), (60, 1.0)]
DRIVE_CURRENT = np.concatenate([np.full(n, 5.0 * c) for n, c in _LEVELS] + [[5.0 * _LEVELS[-1][1]]])
DRIVE_TIME = np.arange(DRIVE_CURRENT.size, dtype=float)
# constant-resistance steps (PyBaMM's "Ohm": the current is the voltage over the resistance)
RESISTANCE_PROTOCOL = [
    "Discharge at 1 Ohm until 3.3 V",
    "Rest for 10 minutes",
    "Discharge at 500 mOhm for 5 minutes",
    "Charge at 1C until 4.1 V",
    "Charge at 2 Ohm for 2 minutes",
]
SETS = ("Marquis2019", "Ecker2015")
RATES = (0.5, 1.0, 2.0)
N_OUT = 2001


def discharge(model_name, set_name, rate, options=None, var_pts=None, update=None, atol=1e-10):
    """Constant-current discharge at `rate` C until the lower cut-off (`model_name` SPM, SPMe
    or DFN; `set_name` a PyBaMM set name or a `pybamm.ParameterValues`; `update`: parameters to
    set or add)."""
    model = getattr(pybamm.lithium_ion, model_name)(options=options or {})
    params = set_name.copy() if isinstance(set_name, pybamm.ParameterValues) else pybamm.ParameterValues(set_name)
    params.update(update or {}, check_already_exists=False)
    params["Current function [A]"] = rate * params["Nominal cell capacity [A.h]"]
    solver = pybamm.IDAKLUSolver(rtol=1e-8, atol=atol)
    sim = pybamm.Simulation(model, parameter_values=params, var_pts=var_pts, solver=solver)
    t_end = 3600.0 / rate * 1.2
    sol = sim.solve([0.0, t_end], t_interp=np.linspace(0.0, t_end, N_OUT))
    cols = [
        sol["Time [s]"].entries,
        sol["Voltage [V]"].entries,
        sol["Discharge capacity [A.h]"].entries,
    ]
    if options and options.get("thermal") == "lumped":
        cols.append(sol["Volume-averaged cell temperature [K]"].entries)
    v_cut = params["Lower voltage cut-off [V]"]
    return np.column_stack(cols), sol.termination, v_cut


def write_csv(path, data, header, fmt="%.10g"):
    np.savetxt(path, data, delimiter=",", header=header, comments="", fmt=fmt)
    print(
        f"{path.name}: t_end={data[-1, 0]:.6g} s, V_end={data[-1, 1]:.6g} V, "
        f"rows={len(data)}"
    )


# --------------------------------------------------------------------------
# parameter functions
# --------------------------------------------------------------------------
STO = np.linspace(0.01, 0.99, 50)
C_E = np.linspace(200.0, 2000.0, 10)
T = np.array([298.15, 318.15])
C_E_J0 = np.array([500.0, 1000.0, 1500.0])
# where PyBaMM's model-level OCP clips the stoichiometry (to [1e-10, 1 - 1e-10]) and adds its
# asymptotes (1 mV at 0.001 from either end, about 1 V at the end itself)
STO_LIMITS = np.array([0.0, 1e-12, 1e-10, 1e-9, 1e-6, 1e-4, 5e-4, 1e-3, 2e-3, 5e-3])
STO_LIMITS = np.concatenate([STO_LIMITS, 1.0 - STO_LIMITS[::-1]])

DOC = (
    "PyBaMM {version} parameter functions of set '{set}', evaluated through "
    "pybamm.ParameterValues.evaluate(pybamm.FunctionParameter(name, inputs)). "
    "Grids: 'sto' (stoichiometry), 'T' [K], 'c_e' [mol.m-3] (electrolyte "
    "functions), 'c_e_j0' [mol.m-3] (exchange-current densities), "
    "'c_max_negative'/'c_max_positive' [mol.m-3]. Every function entry is a "
    "dict {{'args': [grid names, in axis order], 'values': nested list with "
    "one axis per arg}}. E.g. values[i][k] of an entry with args ['sto', 'T'] "
    "is f(sto[i], T[k]). Raw entries (named exactly as the PyBaMM parameter) "
    "are the user-supplied functions with no model-side wrapping: OCP [V] is "
    "U_ref(sto) (no temperature argument), exchange-current density is "
    "j0(c_e, c_s_surf = sto*c_max, c_max, T) without PyBaMM's model-side "
    "clipping/regularisation, particle diffusivity is D(sto, T), electrolyte "
    "functions are f(c_e, T). A parameter given as a constant is repeated "
    "over the grid and marked 'constant': true. Entries with the prefix "
    "'model: ' are what PyBaMM's models actually use for the OCP: "
    "U(sto, T) = U_ref(sto') + (T - T_ref) * dUdT(sto') + asymptotes(sto), "
    "with sto' = sto clipped to [tol, 1 - tol]; 'T_ref' and the "
    "entropic-change functions dUdT(sto) are included as well. The model-level "
    "OCPs are also given on the grid 'sto_limits' (entries ending 'near the "
    "limits'), where the clipping and the asymptotes act."
)


def _eval(pv, name, inputs, shape):
    """Evaluate parameter `name` at flattened meshgrid `inputs`."""
    sym = pybamm.FunctionParameter(
        name, {k: pybamm.Vector(v.ravel()) for k, v in inputs.items()}
    )
    val = np.asarray(pv.evaluate(sym), dtype=float)
    const = not callable(pv[name])
    if val.size == 1:
        val = np.full(int(np.prod(shape)), val.item())
    return val.reshape(shape), const


def _entry(args, values, const):
    out = {"args": args, "values": values.tolist()}
    if const:
        out["constant"] = True
    return out


def functions(pv, label, sto=STO, T=T, c_e=C_E, c_e_j0=C_E_J0):
    """The parameter functions of `pv` (a `pybamm.ParameterValues` called `label`) on the given
    grids, and the model-level OCPs also on `STO_LIMITS`; the layout is described in `DOC`."""
    res = {
        "_doc": DOC.format(version=pybamm.__version__, set=label),
        "sto": sto.tolist(),
        "T": T.tolist(),
        "c_e": c_e.tolist(),
        "c_e_j0": c_e_j0.tolist(),
        "sto_limits": STO_LIMITS.tolist(),
    }
    # electrolyte: f(c_e, T)
    ce, tt = np.meshgrid(c_e, T, indexing="ij")
    for name in ("Electrolyte diffusivity [m2.s-1]", "Electrolyte conductivity [S.m-1]"):
        vals, const = _eval(
            pv,
            name,
            {"Electrolyte concentration [mol.m-3]": ce, "Temperature [K]": tt},
            ce.shape,
        )
        res[name] = _entry(["c_e", "T"], vals, const)

    s1 = sto
    s2, t2 = np.meshgrid(sto, T, indexing="ij")
    param = pybamm.LithiumIonParameters()
    res["T_ref"] = float(pv.evaluate(param.T_ref))
    for dom, Dom in (("negative", "Negative"), ("positive", "Positive")):
        c_max = float(pv[f"Maximum concentration in {dom} electrode [mol.m-3]"])
        res[f"c_max_{dom}"] = c_max
        sto_name = f"{Dom} particle stoichiometry"
        # raw OCP U_ref(sto)
        name = f"{Dom} electrode OCP [V]"
        vals, const = _eval(pv, name, {sto_name: s1}, s1.shape)
        res[name] = _entry(["sto"], vals, const)
        # entropic change dUdT(sto)
        name = f"{Dom} electrode OCP entropic change [V.K-1]"
        if name in pv.keys():
            vals, const = _eval(pv, name, {sto_name: s1}, s1.shape)
            res[name] = _entry(["sto"], vals, const)
        # model-level OCP U(sto, T) as used inside PyBaMM's models, on the grid and at the limits
        dparam = getattr(param, dom[0]).prim
        for key, grid in (("", "sto"), (" near the limits", "sto_limits")):
            sg, tg = np.meshgrid(res[grid], T, indexing="ij")
            sym = dparam.U(pybamm.Vector(sg.ravel()), pybamm.Vector(tg.ravel()))
            vals = np.asarray(pv.evaluate(sym), dtype=float).reshape(sg.shape)
            res[f"model: {Dom} electrode OCP [V]{key}"] = _entry([grid, "T"], vals, False)
        # particle diffusivity D(sto, T)
        name = f"{Dom} particle diffusivity [m2.s-1]"
        vals, const = _eval(
            pv, name, {sto_name: s2, "Temperature [K]": t2}, s2.shape
        )
        res[name] = _entry(["sto", "T"], vals, const)
        # exchange-current density j0(c_e, c_s_surf, c_max, T)
        ce3, s3, t3 = np.meshgrid(c_e_j0, sto, T, indexing="ij")
        name = f"{Dom} electrode exchange-current density [A.m-2]"
        vals, const = _eval(
            pv,
            name,
            {
                "Electrolyte concentration [mol.m-3]": ce3,
                f"{Dom} particle surface concentration [mol.m-3]": s3 * c_max,
                f"Maximum {dom} particle surface concentration [mol.m-3]": np.full(
                    s3.shape, c_max
                ),
                "Temperature [K]": t3,
            },
            s3.shape,
        )
        res[name] = _entry(["c_e_j0", "sto", "T"], vals, const)
    return res


def spm_spme():
    for model_name in MODELS:
        for set_name in SETS:
            for rate in RATES:
                data, term, v_cut = discharge(model_name, set_name, rate)
                print(f"  termination: {term} (cut-off {v_cut} V)")
                write_csv(
                    OUT / f"{model_name}_{set_name}_{rate:.1f}C.csv",
                    data,
                    "t_s,V_V,Q_Ah",
                )
    # Chen2020 has no entropic terms; Marquis2019 has, so it checks the reversible heat too
    for set_name in ("Chen2020", "Marquis2019"):
        for model_name in MODELS:
            data, term, v_cut = discharge(
                model_name, set_name, 1.0, options={"thermal": "lumped"}
            )
            print(f"  termination: {term} (cut-off {v_cut} V)")
            write_csv(
                OUT / f"{model_name}_lumped_{set_name}_1.0C.csv", data, "t_s,V_V,Q_Ah,T_K"
            )


def converged():
    """The Chen2020 SPM and SPMe on PyBaMM's default mesh, the Chen2020 SPMe and the DFN of every
    set on the fine mesh `FINE`, isothermal, at `RATES`: what ``pybamm_reference.py`` writes (full precision).
    Ecker2015's DFN is solved with atol 1e-8: at 1e-10 IDA's initial-condition line search
    fails on that set."""
    runs = [(m, "Chen2020", None, m, 1e-10) for m in MODELS]
    runs += [("SPMe", "Chen2020", FINE, "SPMefine", 1e-10)]
    runs += [("DFN", s, FINE, "DFNfine", 1e-8 if s == "Ecker2015" else 1e-10) for s in ("Chen2020",) + SETS]
    for model_name, set_name, var_pts, tag, atol in runs:
        for rate in RATES:
            data, term, v_cut = discharge(model_name, set_name, rate, var_pts=var_pts, atol=atol)
            print(f"  termination: {term} (cut-off {v_cut} V)")
            write_csv(OUT / f"{tag}_{set_name}_{rate:.1f}C.csv", data, "t_s,V_V,Q_Ah", fmt="%.18e")


def high_rate():
    """The Chen2020 DFN on the converged mesh at 3C: the electrolyte near the positive current
    collector is depleted for the last ~10 s before the cut-off."""
    data, term, v_cut = discharge("DFN", "Chen2020", 3.0, var_pts=CONVERGED)
    print(f"  termination: {term} (cut-off {v_cut} V)")
    write_csv(OUT / "DFNconverged_Chen2020_3.0C.csv", data, "t_s,V_V,Q_Ah", fmt="%.18e")

    params = pybamm.ParameterValues("Chen2020")
    params["Current function [A]"] = 3.0 * params["Nominal cell capacity [A.h]"]
    sim = pybamm.Simulation(pybamm.lithium_ion.SPMe(), parameter_values=params,
                            solver=pybamm.IDAKLUSolver(rtol=1e-8, atol=1e-10))
    t = np.linspace(0.0, 59.0, 5901)
    sol = sim.solve([0.0, 120.0], t_interp=t)
    c_min = sol["Electrolyte concentration [mol.m-3]"].entries.min(axis=0)
    t = sol["Time [s]"].entries
    k = int(np.argmax(c_min < 0))
    t_zero = t[k - 1] + (t[k] - t[k - 1]) * c_min[k - 1] / (c_min[k - 1] - c_min[k])
    out = {"_doc": "PyBaMM's SPMe, Chen2020, 3C from full: time [s] at which the lowest electrolyte "
                   "concentration crosses zero (linear between outputs 10 ms apart)",
           "t_zero_s": float(t_zero), "pybamm": pybamm.__version__}
    (OUT / "SPMe_Chen2020_3.0C_depletion.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"SPMe_Chen2020_3.0C_depletion.json: t_zero={t_zero:.4f} s")


def dfn_lumped():
    """The DFN's lumped thermal model, on PyBaMM's fine mesh."""
    for set_name in ("Chen2020", "Marquis2019"):
        data, term, v_cut = discharge("DFN", set_name, 1.0, options={"thermal": "lumped"}, var_pts=FINE)
        print(f"  termination: {term} (cut-off {v_cut} V)")
        write_csv(OUT / f"DFNfine_lumped_{set_name}_1.0C.csv", data, "t_s,V_V,Q_Ah,T_K")


def tortuosity():
    """Tortuosity factors instead of Bruggeman exponents: the SPMe on PyBaMM's default mesh, the
    DFN on the fine one."""
    with open(OUT / "tortuosity_Chen2020.json", "w") as f:
        json.dump(TORTUOSITY, f, indent=1)
        f.write("\n")
    for model_name, var_pts, tag in (("SPMe", None, "SPMe"), ("DFN", FINE, "DFNfine")):
        data, term, v_cut = discharge(model_name, "Chen2020", 1.0, options={"transport efficiency": "tortuosity factor"},
                                      var_pts=var_pts, update=TORTUOSITY)
        print(f"  termination: {term} (cut-off {v_cut} V)")
        write_csv(OUT / f"{tag}_tortuosity_Chen2020_1.0C.csv", data, "t_s,V_V,Q_Ah")


def protocol():
    """The DFN under `PROTOCOL` on the fine mesh (Chen2020, isothermal, IDAKLU rtol 1e-8)."""
    steps = [pybamm.step.current(np.column_stack([DRIVE_TIME, DRIVE_CURRENT])) if s == "DRIVE_CYCLE" else s
             for s in PROTOCOL]
    sim = pybamm.Simulation(pybamm.lithium_ion.DFN(), parameter_values=pybamm.ParameterValues("Chen2020"),
                            var_pts=FINE, solver=pybamm.IDAKLUSolver(rtol=1e-8, atol=1e-10),
                            experiment=pybamm.Experiment(steps, period="2 seconds"))
    rows = step_rows(sim.solve(), PROTOCOL)
    with open(OUT / "protocol_Chen2020.json", "w") as f:
        json.dump({"steps": PROTOCOL, "drive_time_s": DRIVE_TIME.tolist(), "drive_current_A": DRIVE_CURRENT.tolist()}, f)
        f.write("\n")
    write_csv(OUT / "DFNfine_protocol_Chen2020.csv", rows, "t_s,V_V,I_A,step")


def step_rows(sol, steps):
    """An experiment's solution as rows t, V, I and the step's index (`steps`: the step strings,
    for the printout), step after step."""
    rows = []
    for k, step in enumerate(s for cycle in sol.cycles for s in cycle.steps):
        t, V, I = (step[name].entries for name in ("Time [s]", "Voltage [V]", "Current [A]"))
        rows.append(np.column_stack([t, V, I, np.full(t.size, k)]))
        print(f"  step {k} {steps[k]}: {t[0]:.3f}-{t[-1]:.3f} s")
    return np.concatenate(rows)


def resistance():
    """The SPM under `RESISTANCE_PROTOCOL` on PyBaMM's default mesh (Chen2020, isothermal, IDAKLU
    rtol 1e-8)."""
    sim = pybamm.Simulation(pybamm.lithium_ion.SPM(), parameter_values=pybamm.ParameterValues("Chen2020"),
                            solver=pybamm.IDAKLUSolver(rtol=1e-8, atol=1e-10),
                            experiment=pybamm.Experiment(RESISTANCE_PROTOCOL, period="10 seconds"))
    write_csv(OUT / "SPM_resistance_Chen2020.csv", step_rows(sim.solve(), RESISTANCE_PROTOCOL), "t_s,V_V,I_A,step",
              fmt="%.15g")


def parameter_functions():
    for set_name in ("Chen2020", "Marquis2019", "Ecker2015"):
        path = OUT / f"functions_{set_name}.json"
        with open(path, "w") as f:
            json.dump(functions(pybamm.ParameterValues(set_name), set_name), f, indent=1)
            f.write("\n")
        print(f"{path.name}: {path.stat().st_size} bytes")


# BPX: PyBaMM's own import of the BPX files below (tests/data/), its parameters and functions,
# and its SPMe from the file's initial state
BPX_FILES = ("bpx_example.json",)
BPX_STO = np.linspace(0.0, 1.0, 41)
BPX_T = np.array([273.15, 298.15, 318.15])
BPX_C_E = np.linspace(100.0, 3000.0, 12)
BPX_DOC = (
    " This file: pybamm.ParameterValues.create_from_bpx('{file}'); 'scalars' holds every "
    "parameter that is a number (PyBaMM's names), the functions are those of that set."
)


def bpx_parameters(path):
    """PyBaMM's parameter values of the BPX file `path` and their JSON record (the scalars, and
    the functions on the BPX grids)."""
    pv = pybamm.ParameterValues.create_from_bpx(path)
    res = functions(pv, path.name, sto=BPX_STO, T=BPX_T, c_e=BPX_C_E)
    res["_doc"] += BPX_DOC.format(file=path.name)
    res["scalars"] = {
        k: float(pv[k]) for k in sorted(pv.keys())
        if isinstance(pv[k], (int, float, np.number)) and not isinstance(pv[k], bool)
    }
    return pv, res


def bpx():
    """For each of `BPX_FILES`: ``bpx_{stem}.json`` (parameters) and PyBaMM's SPMe on its default
    mesh at 1C from the file's initial state until the lower cut-off, isothermal
    (``SPMe_bpx_{stem}_1.0C.csv``) and lumped (``SPMe_lumped_bpx_{stem}_1.0C.csv``)."""
    for name in BPX_FILES:
        path = DATA / name
        stem = path.stem.removeprefix("bpx_")
        pv, res = bpx_parameters(path)
        out = OUT / f"bpx_{stem}.json"
        with open(out, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
        print(f"{out.name}: {len(res['scalars'])} scalars")
        for options, tag, header in (({}, "SPMe", "t_s,V_V,Q_Ah"), ({"thermal": "lumped"}, "SPMe_lumped", "t_s,V_V,Q_Ah,T_K")):
            data, term, v_cut = discharge("SPMe", pv, 1.0, options=options)
            print(f"  termination: {term} (cut-off {v_cut} V)")
            write_csv(OUT / f"{tag}_bpx_{stem}_1.0C.csv", data, header, fmt="%.18e")


SOCS = (0.0, 0.05, 0.3, 0.5, 0.9, 1.0, "3.3 V", "3.8 V", "4.0 V")


def initial_soc():
    """PyBaMM's ``ParameterValues.set_initial_state`` for every set at the states of charge and
    rest voltages `SOCS` (its initial particle concentrations), and the Chen2020 DFN on the fine
    mesh discharged at 1C from 50 % (``Simulation.solve(initial_soc=0.5)``)."""
    for set_name in ("Chen2020", "Marquis2019", "Ecker2015"):
        pv = pybamm.ParameterValues(set_name)
        out = {"_doc": "PyBaMM's set_initial_state(value): initial concentrations [mol.m-3] (negative, positive)"}
        for value in SOCS:
            if isinstance(value, str) and not (pv["Open-circuit voltage at 0% SOC [V]"] <= float(value[:-2]) <= pv["Open-circuit voltage at 100% SOC [V]"]):
                continue
            q = pv.set_initial_state(value, inplace=False)
            out[str(value)] = [q["Initial concentration in negative electrode [mol.m-3]"],
                               q["Initial concentration in positive electrode [mol.m-3]"]]
        (OUT / f"initial_soc_{set_name}.json").write_text(json.dumps(out, indent=1))
    model = pybamm.lithium_ion.DFN()
    params = pybamm.ParameterValues("Chen2020")
    params["Current function [A]"] = params["Nominal cell capacity [A.h]"]
    sim = pybamm.Simulation(model, parameter_values=params, var_pts=FINE, solver=pybamm.IDAKLUSolver(rtol=1e-8, atol=1e-10))
    t_end = 0.6 * 3600.0
    sol = sim.solve([0.0, t_end], t_interp=np.linspace(0.0, t_end, N_OUT), initial_soc=0.5)
    print(f"  termination: {sol.termination}")
    data = np.column_stack([sol["Time [s]"].entries, sol["Voltage [V]"].entries, sol["Discharge capacity [A.h]"].entries])
    write_csv(OUT / "DFNfine_Chen2020_soc0.5_1.0C.csv", data, "t_s,V_V,Q_Ah", fmt="%.18e")


GROUPS = {"spm_spme": spm_spme, "converged": converged, "high_rate": high_rate, "dfn_lumped": dfn_lumped, "tortuosity": tortuosity, "protocol": protocol, "resistance": resistance,
          "functions": parameter_functions, "bpx": bpx, "initial_soc": initial_soc}


def main():
    global OUT
    args = sys.argv[1:]
    if args[:1] == ["--out"]:  # write elsewhere, e.g. to compare with the committed files
        OUT, args = pathlib.Path(args[1]).resolve(), args[2:]
    OUT.mkdir(parents=True, exist_ok=True)
    names = args or list(GROUPS)
    unknown = set(names) - set(GROUPS)
    if unknown:
        raise SystemExit(f"unknown groups {sorted(unknown)}; choose from {list(GROUPS)}")
    for name in names:
        GROUPS[name]()


if __name__ == "__main__":
    main()
