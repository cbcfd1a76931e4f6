"""`jaxcell age`: age a population of cells with stochastic SEI growth."""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np

from ..cli import (
    _check_paths,
    _savefig,
    _seed,
    _write,
    default_discharge,
    max_memory_argument,
    user_input,
)

AGE_DESCRIPTION = """Age a population of cells with stochastic SEI growth (docs/ageing.md).

  jaxcell age --n 500 --cycles 1000 --law diffusion --replicates 4 --seed 0 \\
      --output fade.csv --plot fan.png --checkups 0,500,1000 --model SPM

Each cell draws its SEI rate constant once (cell-to-cell heterogeneity) and grows its film
on its own random ageing clock (intrinsic noise, a gamma process: the film never shrinks);
--replicates noise paths per cell split the variance of the capacity fade into heterogeneity
and intrinsic parts (printed). The film stops growing when it holds the cell's whole lithium
inventory (the fade never exceeds it); the cells at end of life (--end-of-life) and those with
no lithium left are counted. The CSV has one row per cell and checkpoint (101 checkpoints;
replicate 0, --all-replicates for all): cell, replicate, cycle, rate constant(s),
thickness_m, fade_Ah, resistance_Ohm, end_of_life, depleted, and with --checkups the
electrochemical check-up capacity_Ah, energy_Wh, status and delivered (the summary counts the
delivered check-ups). Time is in cycles; the cost does
not grow with --cycles. A run whose output would exceed --max-memory is refused before it
starts. Exit status: 0, or 1 if a check-up solve failed, or 2 for bad arguments (output paths
included, checked before anything is computed)."""


def _cycles_list(text: str) -> list[float]:
    """The check-up cycles of `--checkups`: numbers separated by commas, each once (an empty
    entry, "0,,5", or a repeated one, "0,0", is refused rather than passed over)."""
    usage = f"--checkups expects comma-separated cycles, e.g. 0,500,1000, got {text!r}"
    try:
        cycles = [float(c) for c in text.split(",")]
    except ValueError:
        raise ValueError(usage) from None
    repeated = sorted({c for c in cycles if cycles.count(c) > 1})
    if repeated:
        raise ValueError(f"{usage}: cycle {repeated[0]:g} is named more than once")
    return cycles


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
    p.add_argument(
        "--seed",
        type=_seed,
        default=0,
        help="random seed, an integer in [0, 2**63 - 1] (default 0)",
    )
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
        "--output",
        default="fade.csv",
        help="CSV file to write (default fade.csv); its directory must exist",
    )
    p.add_argument(
        "--all-replicates", action="store_true", help="write every replicate to the CSV"
    )
    p.add_argument(
        "--plot", default=None, metavar="PNG", help="also save a fan plot (.png, .pdf, .svg, ...)"
    )
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
        "--end-of-life",
        type=float,
        default=0.8,
        metavar="FRACTION",
        help="remaining fraction of the nominal capacity at end of life (default 0.8)",
    )
    max_memory_argument(p)
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="cells per check-up chunk (default all)",
    )
    p.set_defaults(func=cmd_age)
    return p


def cmd_age(args) -> int:
    """Run `jaxcell age` from parsed arguments; returns the exit code (`jaxcell.cli.main` turns
    a `UsageError` into exit 2 with its message)."""
    import jax

    from .. import models
    from ..experiment import Experiment
    from ..parameters import ParameterSet, load_parameters
    from ._laws import LAWS
    from ._population import DEPLETED, age_population
    from ._sde import require_memory

    with user_input():
        _check_paths(args)
        for name, value in (("--n", args.n), ("--replicates", args.replicates)):
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}.")
        if not (np.isfinite(args.cycles) and args.cycles > 0):
            raise ValueError(f"--cycles must be a positive finite number, got {args.cycles:g}.")
        if not 0.0 < args.end_of_life < 1.0:
            raise ValueError(
                f"--end-of-life must be the remaining fraction of the nominal capacity, in "
                f"(0, 1), got {args.end_of_life:g}."
            )
        limit = args.max_memory * 2**30
        checkups = _cycles_list(args.checkups) if args.checkups is not None else []
        n_checkpoints = np.union1d(np.linspace(0.0, args.cycles, 101), checkups).size
        # the population's arrays (40 bytes a value) and the CSV table (about 10 columns of
        # 8 bytes a row), before anything is loaded or compiled
        rows = args.n * (args.replicates if args.all_replicates else 1) * n_checkpoints
        require_memory(
            40.0 * args.n * args.replicates * n_checkpoints + 80.0 * rows,
            limit,
            f"--n {args.n} x --replicates {args.replicates} x {n_checkpoints} checkpoints x 40 bytes, "
            f"and a CSV table of {rows:,} rows",
            "--max-memory",
        )
        if args.parameters.lower().endswith(".json"):
            params = ParameterSet.from_bpx(args.parameters)
        else:
            params = load_parameters(args.parameters)
        experiment = args.experiment or default_discharge(params)
        Experiment(experiment)  # checked also without --checkups, which alone run it
        model = getattr(models, args.model)() if checkups else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
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
                end_of_life=args.end_of_life,
                max_output_bytes=limit,
            )
    for w in caught:
        print(f"jaxcell: warning: {w.message}", file=sys.stderr)

    cyc = np.asarray(res.cycles)
    fade = np.asarray(res.fade)
    nominal = float(params.get("Nominal cell capacity [A.h]", np.nan))
    print(
        f"SEI ageing: {res.law}, {res.n_cells} cells x {res.n_replicates} replicates, "
        f"{args.cycles:g} cycles, seed {args.seed}, parameters {params.name}"
    )
    lo, med, hi = np.quantile(fade[:, :, -1], [0.05, 0.5, 0.95])
    print(
        f"fade at cycle {cyc[-1]:g}: median {med:.4f} A.h ({100 * med / nominal:.1f}% of the "
        f"nominal {nominal:g} A.h), 5-95% [{lo:.4f}, {hi:.4f}] A.h"
    )
    paths = res.n_cells * res.n_replicates
    for label, at in (
        (f"end of life ({100 * args.end_of_life:g}% of nominal capacity left)", res.end_of_life_cycle),
        (
            f"lithium inventory ({float(np.max(res.inventory_capacity)):.4g} A.h) exhausted, film growth stopped",
            res.depleted_cycle,
        ),
    ):
        at = np.asarray(at)
        hit = np.isfinite(at)
        # resolved to the checkpoints: the first checkpoint at or after the event
        when = f", median first checkpoint {np.median(at[hit]):g}" if hit.any() else ""
        print(f"{label}: {int(hit.sum())} of {paths} paths{when}")
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
        negative = False
        for i in rows:
            het, intr, tot = (
                1e6 * float(x[i])
                for x in (split.heterogeneity, split.intrinsic, split.total)
            )
            negative |= het < 0
            frac = f"{100 * het / tot:10.1f}" if tot > 0 else f"{'-':>10}"
            print(
                f"  {cyc[i]:8g} {1e3 * fade[:, :, i].mean():10.2f} {np.sqrt(max(tot, 0.0)):9.2f} "
                f"{het:10.2f} {intr:10.2f} {frac}"
            )
        if negative:
            print("  a negative heterogeneity is the unbiased estimator's sampling error (not clipped, which would "
                  "bias it): the cells differ less than the noise paths resolve; more --n and --replicates narrow it")
    else:
        print("variance split: needs --n >= 2 and --replicates >= 2 (skipped)")
    status = 0
    if res.checkup_cycles.size:
        cap = np.asarray(res.checkup_capacity)
        energy = np.asarray(res.checkup_energy)
        print(f"check-ups ({args.model}, {experiment!r}), replicate 0 of each cell:")
        delivered = np.asarray(res.checkup_delivered)
        codes = np.asarray(res.checkup_status)
        for c, cycle in enumerate(np.asarray(res.checkup_cycles)):
            # the statistics count the check-ups that ran as asked, and the cells without lithium
            # (capacity 0, their real one): a skipped step (its limit held at the start) or a stop
            # at a cut-off completes with a capacity that is not the cell's
            depleted = codes[:, c] == DEPLETED
            ok, failed = delivered[:, c] | depleted, ~np.isfinite(cap[:, c])
            others = int((~ok & ~failed).sum())
            counts = (f"delivered {int(delivered[:, c].sum())} of {ok.size}, failed {int(failed.sum())}"
                      + (f", depleted {int(depleted.sum())} (capacity 0, counted)" if depleted.any() else "")
                      + (f", not delivered otherwise {others} (a step skipped or a cut-off reached: see the "
                         "output's status and delivered columns)" if others else ""))
            if ok.any():
                q = np.quantile(cap[ok, c], [0.05, 0.5, 0.95])
                print(
                    f"  cycle {cycle:g}: capacity median {q[1]:.4f} A.h [5-95%: {q[0]:.4f}, {q[2]:.4f}], "
                    f"energy median {np.median(energy[ok, c]):.4f} W.h; {counts}"
                )
            else:
                print(f"  cycle {cycle:g}: no check-up delivered the experiment; {counts}")
            if failed.any():
                status = 1
    df = res.to_pandas(all_replicates=args.all_replicates)
    _write("--output", args.output, lambda tmp: df.to_csv(tmp, index=False, float_format="%.10g"))
    print(f"wrote     {args.output} ({len(df)} rows: {','.join(df.columns)})")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        _savefig(res.plot(), "--plot", args.plot)
        print(f"plot      {args.plot}")
    return status
