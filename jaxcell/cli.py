"""The `jaxcell` command."""

from __future__ import annotations

import argparse
import sys

MODELS = ("SPM", "SPMe", "DFN")

DESCRIPTION = """jaxcell: physics-based lithium-ion cell simulation in JAX.

  jaxcell simulate --model SPMe --parameters Chen2020 \\
      --experiment "Discharge at 1C until 2.5 V" --output out.csv --plot out.png

writes a CSV with columns t_s,V_V,I_A,Q_Ah,T_K (time [s], voltage [V], current [A, positive
on discharge], discharged capacity [A.h], temperature [K]) and prints capacity, energy and why
the experiment ended.

  jaxcell population --model SPM --parameters Chen2020 --n 200 --seed 0 --output cells.csv

samples a population of cells with manufacturing variation (jaxcell's default, or --variation
spec.toml), simulates every cell in one compiled batch and writes one row per cell (sampled
parameters, capacity [A.h], energy [W.h], status)."""

POPULATION_HELP = """Sample a population of cells with manufacturing variation, simulate all of them in one
compiled batch and summarise the spread of capacity and energy.

Writes a CSV with one row per cell: cell, pack, module, the sampled parameters (PyBaMM names),
capacity [A.h], energy [W.h], status (COMPLETED, LOWER_CUTOFF, ..., SOLVER_FAILURE) and success.
Prints mean, standard deviation and quantiles of capacity and energy over the cells that did not
fail, and the number of failed cells. The exit status is 0 when the population ran (failed cells
are reported, not fatal), 2 for bad input. The variation file format is in docs/population.md."""


def _parse_set(item: str) -> tuple[str, float]:
    if "=" not in item:
        raise SystemExit(f"jaxcell: --set expects NAME=VALUE, got {item!r}")
    name, value = item.rsplit("=", 1)
    try:
        return name.strip(), float(value)
    except ValueError:
        raise SystemExit(f"jaxcell: --set {item!r}: value {value!r} is not a number") from None


def _add_transport_argument(parser) -> None:
    from .physics.transport import TRANSPORT_EFFICIENCY_OPTIONS

    parser.add_argument(
        "--transport-efficiency", default="Bruggeman", choices=TRANSPORT_EFFICIENCY_OPTIONS,
        help="effective transport of the SPMe and DFN (PyBaMM's option \"transport efficiency\"; default "
             "Bruggeman). \"tortuosity factor\" reads \"... tortuosity factor (electrolyte)\" and \"(electrode)\", "
             "which --set may add to the set (PyBaMM's names)",
    )


def _model(args, params):
    """The model of --model with --thermal and --transport-efficiency (whose parameters `params`
    must have)."""
    import jaxcell
    from .physics.transport import missing_parameters

    cls = getattr(jaxcell, args.model)
    if getattr(args, "transport_efficiency", "Bruggeman") == "Bruggeman":
        return cls(thermal=args.thermal)
    if args.model == "SPM":
        raise ValueError("--transport-efficiency applies to the SPMe and the DFN; the SPM has no electrolyte or solid transport.")
    missing = missing_parameters(args.transport_efficiency, params)
    if missing:
        raise ValueError(f"--transport-efficiency 'tortuosity factor' reads {', '.join(repr(k) for k in missing)}, which "
                         f"parameter set {params.name!r} does not have: add them with --set \"NAME=VALUE\".")
    return cls(thermal=args.thermal, transport_efficiency=args.transport_efficiency)


def _with_overrides(params, items, transport_efficiency="Bruggeman"):
    """`params` with the --set values. The tortuosity factors (PyBaMM's five names) may be added
    to a set that has none, with --transport-efficiency "tortuosity factor" only."""
    from .physics.transport import TORTUOSITY_PARAMETERS

    new = dict(_parse_set(s) for s in items)
    added = {k: v for k, v in new.items() if k in TORTUOSITY_PARAMETERS and k not in params}
    if added and transport_efficiency != "tortuosity factor":
        raise ValueError(f"--set {next(iter(added))!r}: tortuosity factors are read only with "
                         "--transport-efficiency \"tortuosity factor\".")
    params = params.update({k: v for k, v in new.items() if k not in added})
    return params.update(added, check_already_exists=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxcell", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser(
        "simulate", help="simulate one cell under an experiment", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim.add_argument("--model", default="SPMe", choices=MODELS, help="cell model (default SPMe)")
    sim.add_argument("--parameters", default="Chen2020",
                     help="parameter set: Chen2020, Marquis2019, Ecker2015 (case-insensitive), or a BPX .json file")
    sim.add_argument("--experiment", action="append", metavar="STEP",
                     help='a PyBaMM-style step, e.g. "Discharge at 1C until 2.5 V"; repeat for several steps '
                          '(default: "Discharge at 1C until <lower cut-off> V")')
    sim.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                     help='override a parameter by its PyBaMM name, e.g. --set "Negative electrode porosity=0.3"')
    sim.add_argument("--thermal", default="isothermal", choices=("isothermal", "lumped"), help="thermal model")
    _add_transport_argument(sim)
    sim.add_argument("--output", default="out.csv", help="CSV file to write (default out.csv)")
    sim.add_argument("--plot", default=None, metavar="PNG", help="also save a plot of voltage, current, temperature")
    from .ageing._cli import add_age_parser

    add_age_parser(sub)
    pop = sub.add_parser(
        "population", help="simulate a population of cells with manufacturing variation",
        description=POPULATION_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pop.add_argument("--model", default="SPM", choices=MODELS, help="cell model (default SPM)")
    pop.add_argument("--parameters", default="Chen2020",
                     help="parameter set: Chen2020, Marquis2019, Ecker2015 (case-insensitive), or a BPX .json file")
    pop.add_argument("--n", type=int, default=200, help="number of cells (default 200)")
    pop.add_argument("--seed", type=int, default=0, help="random seed (default 0); the same seed gives the same cells")
    pop.add_argument("--variation", default=None, metavar="SPEC",
                     help="variation spec, .toml or .json (default: jaxcell's built-in manufacturing variation)")
    pop.add_argument("--experiment", action="append", metavar="STEP",
                     help='a PyBaMM-style step; repeat for several (default: "Discharge at 1C until <lower cut-off> V")')
    pop.add_argument("--batch-size", type=int, default=None, metavar="N",
                     help="cells per compiled chunk, to bound memory (default: all at once)")
    pop.add_argument("--thermal", default="isothermal", choices=("isothermal", "lumped"), help="thermal model")
    pop.add_argument("--output", default="cells.csv", help="CSV file to write (default cells.csv)")
    pop.add_argument("--plot", default=None, metavar="PNG",
                     help="also save histograms of capacity and energy and a parameter-capacity scatter")
    return parser


def _load(name: str):
    import jaxcell

    if name.lower().endswith(".json"):
        return jaxcell.ParameterSet.from_bpx(name)
    return jaxcell.load_parameters(name)


def cmd_simulate(args) -> int:
    import jaxcell

    try:
        params = _load(args.parameters)
        if args.set:
            params = _with_overrides(params, args.set, args.transport_efficiency)
        steps = args.experiment or [f"Discharge at 1C until {float(params['Lower voltage cut-off [V]']):g} V"]
        experiment = jaxcell.Experiment(steps)
        model = _model(args, params)
    except (ValueError, KeyError, OSError) as e:
        print(f"jaxcell: error: {e}", file=sys.stderr)
        return 2
    sol = jaxcell.simulate(model, params, experiment)
    df = sol.to_pandas()
    df.to_csv(args.output, index=False, float_format="%.10g")
    print(f"model {args.model} ({args.thermal}), parameters {params.name}, {len(experiment)} step(s)")
    dq = df.Q_Ah.diff().fillna(0.0)
    de = (0.5 * (df.V_V * df.I_A + (df.V_V * df.I_A).shift()) * df.t_s.diff()).fillna(0.0) / 3600
    print(f"capacity  {dq[dq > 0].sum():.4f} A.h discharged, {-dq[dq < 0].sum():.4f} A.h charged")
    print(f"energy    {de[de > 0].sum():.4f} W.h delivered, {-de[de < 0].sum():.4f} W.h absorbed")
    print(f"duration  {df.t_s.iloc[-1] / 3600:.4f} h, final voltage {df.V_V.iloc[-1]:.4f} V")
    print(f"end       {sol.message}")
    print(f"wrote     {args.output} ({len(df)} rows: t_s,V_V,I_A,Q_Ah,T_K)")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        sol.plot().savefig(args.plot, dpi=120)
        print(f"plot      {args.plot}")
    return 0 if bool(sol.success) else 1


def cmd_population(args) -> int:
    import time

    import jax
    import pandas as pd

    import jaxcell
    from jaxcell.population import (
        Variation,
        default_variation,
        plot_population,
        population_summary,
        population_table,
        sample_population,
    )

    try:
        if args.n < 1:
            raise ValueError(f"--n must be a positive integer, got {args.n}")
        if args.batch_size is not None and args.batch_size < 1:
            raise ValueError(f"--batch-size must be a positive integer, got {args.batch_size}")
        params = _load(args.parameters)
        variation = Variation.from_file(args.variation) if args.variation else default_variation()
        steps = args.experiment or [f"Discharge at 1C until {float(params['Lower voltage cut-off [V]']):g} V"]
        experiment = jaxcell.Experiment(steps)
        t0 = time.perf_counter()
        cells = sample_population(params, variation, args.n, jax.random.key(args.seed))
        model = _model(args, params)
    except (ValueError, KeyError, OSError) as e:
        print(f"jaxcell: error: {e}", file=sys.stderr)
        return 2
    t1 = time.perf_counter()
    sols = jax.block_until_ready(jaxcell.simulate_batch(model, cells, experiment, batch_size=args.batch_size))
    t2 = time.perf_counter()
    table = population_table(cells, sols, variation)
    table.to_csv(args.output, index=False, float_format="%.10g")
    source = args.variation or "built-in default"
    print(f"population {args.n} cells, model {args.model} ({args.thermal}), parameters {params.name}, seed {args.seed}")
    print(f"variation  {source}: {len(variation.names)} parameters, "
          f"{variation.hierarchy.cells_per_module} cells/module, {variation.hierarchy.modules_per_pack} modules/pack")
    print(f"experiment {'; '.join(steps)}")
    print(f"time       sampling {t1 - t0:.2f} s, simulation {t2 - t1:.2f} s (including compilation)")
    summary = population_summary(table)
    with pd.option_context("display.float_format", "{:.5g}".format):
        print(summary.to_string())
    failed = int((~table["success"]).sum())
    print(f"failed     {failed} of {args.n} cells" + (" (see the status column)" if failed else ""))
    print(f"wrote      {args.output} ({len(table)} rows, {len(table.columns)} columns)")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        plot_population(table).savefig(args.plot, dpi=120)
        print(f"plot       {args.plot}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "simulate":
        return cmd_simulate(args)
    if args.command == "population":
        return cmd_population(args)
    if args.command == "age":
        return args.func(args)
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
