"""`jaxcell design`: optimise a cell design by gradient, deterministic or under manufacturing
variation."""

from __future__ import annotations

import argparse

import numpy as np

from ..cli import (
    MODELS,
    UsageError,
    _seed,
    check_output_path,
    default_discharge,
    user_input,
    write_json,
)

DESIGN_DESCRIPTION = """Optimise a cell design by gradient through the simulation (docs/design.md).

  jaxcell design --model SPMe --parameters Chen2020 \\
      --vary "Positive electrode thickness [m]=65e-6:100e-6" \\
      --vary "Positive particle radius [m]=2e-6:9e-6" --objective gravimetric \\
      --experiment "Discharge at 1C until 2.5 V" \\
      --experiment "Hold at 2.5 V for 30 minutes or until 10 mA" --output design.json

maximises the energy density (gravimetric [W.h.kg-1] or volumetric [W.h.m-3]; the cell mass and
volume of PyBOP's definitions) of the experiment from full charge over the --vary parameters
(PyBaMM names, bounds LO:HI in the parameter's units). --min-capacity alone asks the nominal cell
for at least that discharge capacity [A.h]; with --alpha it is a chance constraint,
P(capacity < min) <= alpha, over --n-samples cells of manufacturing variation (--variation
spec.toml, default jaxcell's). --check N simulates N fresh varied cells of the optimum and reports
their failure probability with its standard error. design.json holds "design", "objective",
"initial_objective", "capacity", "evaluations", "feasible", "message" and, with --check, "check".
Exit status: 0, 1 when the constraint cannot be met (the result says infeasible), 2 for bad input
(checked before anything is computed), 130 on Ctrl-C."""


def add_design_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `design` command to an `argparse` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "design", help="optimise a cell design (energy density) by gradient, optionally under variation",
        description=DESIGN_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default="SPMe", choices=MODELS, help="cell model (default SPMe)")
    p.add_argument("--parameters", default="Chen2020",
                   help="parameter set: Chen2020, Marquis2019, Ecker2015, or a BPX .json file")
    p.add_argument("--vary", action="append", default=[], metavar="NAME=LO:HI",
                   help='a design variable by its PyBaMM name with bounds, e.g. "Positive electrode thickness [m]=65e-6:100e-6"; repeat for several')
    p.add_argument("--objective", default="gravimetric", choices=("gravimetric", "volumetric"),
                   help="energy per mass [W.h.kg-1] or per volume [W.h.m-3] (default gravimetric)")
    p.add_argument("--experiment", action="append", metavar="STEP",
                   help='a PyBaMM-style step; repeat for several (default "Discharge at 1C until <lower cut-off> V")')
    p.add_argument("--min-capacity", type=float, default=None, metavar="AH",
                   help="minimum discharge capacity [A.h]: of the nominal cell, or with --alpha a chance constraint")
    p.add_argument("--alpha", type=float, default=None, metavar="A",
                   help="allowed probability of a cell below --min-capacity (robust design under variation)")
    p.add_argument("--confidence", type=float, default=None, metavar="C",
                   help="with --alpha: meet it by the sample's upper confidence bound at level C (e.g. 0.95), "
                        "a margin for the sample's own noise")
    p.add_argument("--thermal", default="isothermal", choices=("isothermal", "lumped"), help="thermal model")
    p.add_argument("--max-temperature", type=float, default=None, metavar="K",
                   help="with --alpha: also P(highest temperature > K) <= alpha (use --thermal lumped)")
    p.add_argument("--np-ratio", default=None, metavar="keep|X",
                   help="keep the N/P capacity ratio (the set's with 'keep', or X): the thickness of the electrode "
                        "whose thickness is not designed follows the design")
    p.add_argument("--chance", default="sigmoid", choices=("sigmoid", "cvar"),
                   help="with --alpha: the chance constraint as a sigmoid-smoothed probability (default) or the "
                        "sample's CVaR of the capacity shortfall (conservative)")
    p.add_argument("--variation", default=None, metavar="SPEC",
                   help="variation spec, .toml or .json (default jaxcell's built-in manufacturing variation)")
    p.add_argument("--n-samples", type=int, default=64, metavar="N",
                   help="cells in the robust design's sample average (default 64)")
    p.add_argument("--check", type=int, default=None, metavar="N",
                   help="check the optimum on N fresh varied cells (failure probability and its standard error)")
    p.add_argument("--method", default="L-BFGS-B", choices=("L-BFGS-B", "BFGS", "adam"),
                   help="optimiser (default L-BFGS-B on the bounded box)")
    p.add_argument("--max-evaluations", type=int, default=None, metavar="N",
                   help="gradient evaluations allowed (default 25; 40 for a robust design)")
    p.add_argument("--seed", type=_seed, default=0, help="random seed of the variation samples (default 0)")
    p.add_argument("--lithium", default="set", choices=("set", "formation"),
                   help="cyclable lithium: the set's initial concentrations (default) or a fixed share of the positive capacity")
    p.add_argument("--output", default="design.json", help="JSON file to write (default design.json)")
    p.set_defaults(func=cmd_design)
    return p


def cmd_design(args) -> int:
    """Run `jaxcell design` from parsed arguments; returns the exit code (`jaxcell.cli.main`
    turns a `UsageError` into exit 2 with its message)."""
    import jax

    import jaxcell
    from jaxcell.cli import _check_simulation, _load, _model
    from jaxcell.population import Variation, default_variation

    from . import DesignSpace, check_design, densities, optimise_design, optimise_robust_design
    from ._optimise import UndeliveredStart

    with user_input():
        check_output_path("--output", args.output, (".json",))
        if not args.vary:
            raise UsageError('give at least one design variable: --vary "NAME=LO:HI"')
        if args.alpha is not None and args.min_capacity is None:
            raise UsageError("--alpha needs --min-capacity (the chance constraint is P(capacity < min) <= alpha)")
        if args.alpha is not None and not 0.0 < args.alpha < 1.0:
            raise UsageError(f"--alpha must be a probability in (0, 1), got {args.alpha:g}")
        if args.confidence is not None and (args.alpha is None or not 0.5 <= args.confidence < 1.0):
            raise UsageError(f"--confidence needs --alpha and must be in [0.5, 1), got {args.confidence:g}")
        if args.max_temperature is not None and (args.alpha is None or not args.max_temperature > 0):
            raise UsageError(f"--max-temperature needs --alpha and must be a positive temperature [K], got {args.max_temperature:g}")
        if args.max_temperature is not None and args.thermal != "lumped":
            raise UsageError("--max-temperature needs --thermal lumped (an isothermal cell stays at the ambient temperature)")
        if args.chance == "cvar" and (args.alpha is None or args.confidence is not None):
            raise UsageError("--chance cvar needs --alpha, and takes no --confidence (CVaR is already conservative)")
        if args.min_capacity is not None and not (np.isfinite(args.min_capacity) and args.min_capacity > 0):
            raise UsageError(f"--min-capacity must be a positive capacity [A.h], got {args.min_capacity:g}")
        for name, low in (("n_samples", 1), ("check", 1), ("max_evaluations", 2)):
            v = getattr(args, name)
            if v is not None and v < low:
                raise UsageError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {v}")
        params = _load(args.parameters)
        densities(params)  # a missing density is bad input, named now
        space = DesignSpace.create(params, args.vary, np_ratio=args.np_ratio)
        steps = args.experiment or [default_discharge(params)]
        experiment = jaxcell.Experiment(steps)
        model = _model(args, params)
        _check_simulation(model, params, experiment)
        variation = None
        if args.alpha is not None or args.check:
            variation = Variation.from_file(args.variation) if args.variation else default_variation()
    common = dict(objective=args.objective, lithium=args.lithium)
    try:
        if args.alpha is None:
            res = optimise_design(model, params, experiment, space, min_capacity=args.min_capacity,
                                  method=args.method, max_evaluations=args.max_evaluations or 25, **common)
        else:
            res = optimise_robust_design(
                model, params, experiment, space, variation, min_capacity=args.min_capacity, alpha=args.alpha,
                n_samples=args.n_samples, key=jax.random.key(args.seed), method=args.method,
                max_evaluations=args.max_evaluations or 40, confidence=args.confidence, chance=args.chance,
                max_temperature=args.max_temperature,
                **common,
            )
    except UndeliveredStart as e:  # the protocol or start given, not a failure of the computation
        raise UsageError(str(e)) from None
    unit = "W.h.kg-1" if args.objective == "gravimetric" else "W.h.m-3"
    out = {
        "design": res.design,
        "objective": res.objective,
        "initial_objective": res.initial_objective,
        "objective_name": f"{args.objective} energy density [{unit}]" + (" (mean over the sample)" if args.alpha else ""),
        "capacity": res.capacity,
        "evaluations": res.evaluations,
        "feasible": res.feasible,
        "converged": res.converged,
        "message": res.message,
        "constraint": res.constraint,
        "method": res.method,
        "model": args.model, "parameters": params.name, "experiment": steps,
        "min_capacity": args.min_capacity, "alpha": args.alpha, "confidence": args.confidence,
        "chance": args.chance if args.alpha is not None else None,
        "max_temperature": args.max_temperature,
        "np_ratio": None if space.np_balance is None else space.np_balance[1],
        "followed": {k: float(space.apply_values(params, res.design)[k]) for k in space.derived_names},
        "n_samples": args.n_samples if args.alpha is not None else None,
        "seconds": res.seconds,
        "path": res.path,
    }
    print(f"design     {args.model}, {params.name}, {len(space.names)} variable(s), {args.method}, "
          f"{res.evaluations} gradient evaluations, {res.seconds:.1f} s")
    for k, v in res.design.items():
        print(f"  {k} = {v:.6g}")
    print(f"objective  {res.objective:.6g} {unit} (start {res.initial_objective:.6g}); capacity {res.capacity:.5g} A.h")
    print(f"result     {'feasible: ' if res.feasible else ''}{res.message}")
    if args.check:
        c = check_design(model, params, experiment, res.design, variation, args.check,
                         jax.random.fold_in(jax.random.key(args.seed), 1), min_capacity=args.min_capacity,
                         objective=args.objective, lithium=args.lithium, np_ratio=args.np_ratio,
                         max_temperature=args.max_temperature)
        out["check"] = {"n": c.n, "failure_probability": c.failure_probability, "stderr": c.stderr, "upper95": c.upper95,
                        "mean_objective": c.mean_objective, "mean_capacity": c.mean_capacity,
                        "not_delivered": c.not_delivered, "pack_failure_probability": c.pack_failure_probability,
                        "overheated": c.overheated}
        print(f"check      {c.n} fresh cells: P(fail) = {c.failure_probability:.4g} +- {c.stderr:.2g} (95 % upper bound "
              f"{c.upper95:.2g}), mean objective "
              f"{c.mean_objective:.6g} {unit}, mean capacity {c.mean_capacity:.5g} A.h, not delivered {c.not_delivered}")
    write_json("--output", args.output, out)
    print(f"wrote      {args.output}")
    return 0 if res.feasible else 1
