"""`jaxcell age`: age a population of cells with stochastic SEI growth."""

from __future__ import annotations

import argparse
import sys

import numpy as np

AGE_DESCRIPTION = """Age a population of cells with stochastic SEI growth (docs/ageing.md).

  jaxcell age --n 500 --cycles 1000 --law diffusion --replicates 4 --seed 0 \\
      --output fade.csv --plot fan.png --checkups 0,500,1000 --model SPM

Each cell draws its SEI rate constant once (cell-to-cell heterogeneity) and grows its film
with an intrinsic Wiener term; --replicates noise paths per cell split the variance of the
capacity fade into heterogeneity and intrinsic parts (printed). The CSV has one row per cell
and checkpoint (replicate 0; --all-replicates for all): cell, replicate, cycle, rate
constant(s), thickness_m, fade_Ah, resistance_Ohm, and with --checkups the electrochemical
check-up capacity_Ah, energy_Wh and status. Time is in cycles. Exit status: 0, or 1 if a
check-up solve failed, or 2 for bad arguments."""


def _cycles_list(text: str) -> list[float]:
    try:
        return [float(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise ValueError(
            f"--checkups expects comma-separated cycles, e.g. 0,500,1000, got {text!r}"
        ) from None


def add_age_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `age` command to an `argparse` subparsers object; returns its parser."""
    from .. import models
    from ._laws import LAWS

    names = [m for m in ("SPM", "SPMe", "DFN") if hasattr(models, m)]
    p = subparsers.add_parser(
        "age",
        help="age a population of cells with stochastic SEI growth",
        description=AGE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n", type=int, default=500, help="number of cells (default 500)")
    p.add_argument(
        "--cycles", type=float, default=1000.0, help="number of cycles (default 1000)"
    )
    p.add_argument(
        "--law",
        default="diffusion",
        choices=tuple(LAWS),
        help="SEI growth law: diffusion (sqrt t), reaction (linear), mixed (default diffusion)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--replicates",
        type=int,
        default=4,
        help="noise paths per cell for the variance split (default 4; 1 skips the split)",
    )
    p.add_argument(
        "--parameters",
        default="Chen2020",
        help="parameter set: Chen2020, Marquis2019, Ecker2015, or a BPX .json file",
    )
    p.add_argument(
        "--output", default="fade.csv", help="CSV file to write (default fade.csv)"
    )
    p.add_argument(
        "--all-replicates", action="store_true", help="write every replicate to the CSV"
    )
    p.add_argument("--plot", default=None, metavar="PNG", help="also save a fan plot")
    p.add_argument(
        "--checkups",
        default=None,
        metavar="CYCLES",
        help="comma-separated cycles of electrochemical check-ups, e.g. 0,500,1000",
    )
    p.add_argument(
        "--model",
        default="SPM",
        choices=names,
        help="model for the check-ups (default SPM)",
    )
    p.add_argument(
        "--experiment",
        default=None,
        metavar="STEP",
        help='check-up protocol (default "Discharge at 1C until <lower cut-off> V")',
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="cells per check-up chunk (default all)",
    )
    p.set_defaults(func=cmd_age)
    return p


def cmd_age(args) -> int:
    """Run `jaxcell age` from parsed arguments; returns the exit code."""
    import jax

    from .. import models
    from ..parameters import ParameterSet, load_parameters
    from ._laws import LAWS
    from ._population import age_population

    try:
        if args.parameters.lower().endswith(".json"):
            params = ParameterSet.from_bpx(args.parameters)
        else:
            params = load_parameters(args.parameters)
        checkups = _cycles_list(args.checkups) if args.checkups else []
        cut = float(params["Lower voltage cut-off [V]"])
        experiment = args.experiment or f"Discharge at 1C until {cut:g} V"
        model = getattr(models, args.model)() if checkups else None
        res = age_population(
            params,
            LAWS[args.law](),
            n_cells=args.n,
            cycles=args.cycles,
            key=jax.random.key(args.seed),
            replicates=args.replicates,
            checkups=checkups,
            model=model,
            experiment=experiment,
            batch_size=args.batch_size,
        )
    except (ValueError, KeyError, OSError) as e:
        print(f"jaxcell: error: {e}", file=sys.stderr)
        return 2

    cyc = np.asarray(res.cycles)
    fade = np.asarray(res.fade)
    nominal = float(params.get("Nominal cell capacity [A.h]", np.nan))
    print(
        f"SEI ageing: {res.law}, {res.n_cells} cells x {res.n_replicates} replicates, "
        f"{args.cycles:g} cycles, seed {args.seed}, parameters {params.name}"
    )
    lo, med, hi = np.quantile(fade[:, :, -1], [0.05, 0.5, 0.95])
    print(
        f"fade at cycle {cyc[-1]:g}: median {med:.4f} A.h ({100 * med / nominal:.1f}% of "
        f"{nominal:g} A.h), 5-95% [{lo:.4f}, {hi:.4f}] A.h"
    )
    if res.n_cells >= 2 and res.n_replicates >= 2:
        split = res.variance_split()
        rows = np.unique(
            np.concatenate(
                [
                    np.searchsorted(cyc, np.quantile(cyc, [0.25, 0.5, 0.75, 1.0])),
                    np.searchsorted(cyc, np.asarray(res.checkup_cycles)),
                ]
            )
        )
        print("variance split of the fade (law of total variance) [(mA.h)^2]:")
        print(
            f"  {'cycle':>8} {'mean mA.h':>10} {'std mA.h':>9} {'heterog.':>10} {'intrinsic':>10} {'heterog. %':>10}"
        )
        for i in rows:
            het, intr, tot = (
                1e6 * float(x[i])
                for x in (split.heterogeneity, split.intrinsic, split.total)
            )
            frac = f"{100 * het / tot:10.1f}" if tot > 0 else f"{'-':>10}"
            print(
                f"  {cyc[i]:8g} {1e3 * fade[:, :, i].mean():10.2f} {np.sqrt(max(tot, 0.0)):9.2f} "
                f"{het:10.2f} {intr:10.2f} {frac}"
            )
    else:
        print("variance split: needs --n >= 2 and --replicates >= 2 (skipped)")
    status = 0
    if res.checkup_cycles.size:
        cap = np.asarray(res.checkup_capacity)
        energy = np.asarray(res.checkup_energy)
        print(f"check-ups ({args.model}, {experiment!r}), replicate 0 of each cell:")
        for c, cycle in enumerate(np.asarray(res.checkup_cycles)):
            ok = np.isfinite(cap[:, c])
            if ok.any():
                q = np.quantile(cap[ok, c], [0.05, 0.5, 0.95])
                print(
                    f"  cycle {cycle:g}: capacity median {q[1]:.4f} A.h [5-95%: {q[0]:.4f}, {q[2]:.4f}], "
                    f"energy median {np.median(energy[ok, c]):.4f} W.h, failed {int((~ok).sum())}"
                )
            else:
                print(f"  cycle {cycle:g}: every solve failed")
            if not ok.all():
                status = 1
    df = res.to_pandas(all_replicates=args.all_replicates)
    df.to_csv(args.output, index=False, float_format="%.10g")
    print(f"wrote     {args.output} ({len(df)} rows: {','.join(df.columns)})")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        res.plot().savefig(args.plot, dpi=120)
        print(f"plot      {args.plot}")
    return status
