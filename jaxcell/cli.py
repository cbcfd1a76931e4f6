"""The `jaxcell` command."""

from __future__ import annotations

import argparse
import sys

MODELS = ("SPM", "SPMe")

DESCRIPTION = """jaxcell: physics-based lithium-ion cell simulation in JAX.

  jaxcell simulate --model SPMe --parameters Chen2020 \\
      --experiment "Discharge at 1C until 2.5 V" --output out.csv --plot out.png

writes a CSV with columns t_s,V_V,I_A,Q_Ah,T_K (time [s], voltage [V], current [A, positive
on discharge], discharged capacity [A.h], temperature [K]) and prints capacity, energy and why
the experiment ended."""


def _parse_set(item: str) -> tuple[str, float]:
    if "=" not in item:
        raise SystemExit(f"jaxcell: --set expects NAME=VALUE, got {item!r}")
    name, value = item.rsplit("=", 1)
    try:
        return name.strip(), float(value)
    except ValueError:
        raise SystemExit(f"jaxcell: --set {item!r}: value {value!r} is not a number") from None


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
    sim.add_argument("--output", default="out.csv", help="CSV file to write (default out.csv)")
    sim.add_argument("--plot", default=None, metavar="PNG", help="also save a plot of voltage, current, temperature")
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
            params = params.update(dict(_parse_set(s) for s in args.set))
        steps = args.experiment or [f"Discharge at 1C until {float(params['Lower voltage cut-off [V]']):g} V"]
        experiment = jaxcell.Experiment(steps)
    except (ValueError, KeyError, OSError) as e:
        print(f"jaxcell: error: {e}", file=sys.stderr)
        return 2
    model = getattr(jaxcell, args.model)(thermal=args.thermal)
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


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "simulate":
        return cmd_simulate(args)
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
