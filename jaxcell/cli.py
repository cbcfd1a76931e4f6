"""The `jaxcell` command."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import tempfile
import threading
import warnings
from pathlib import Path

MODELS = ("SPM", "SPMe", "DFN")
SEED_MAX = 2**63 - 1  # jax.random.key takes a 64-bit signed integer (jaxcell runs in float64/int64)
MAX_MEMORY_GIB = 2.0  # default of --max-memory (`population`, `age`)
OUTPUT_FIELDS = 6  # a Solution's series at each output point: t, voltage, current, charge, temperature, step

DESCRIPTION = """jaxcell: physics-based lithium-ion cell simulation in JAX.

  jaxcell simulate --model SPMe --parameters Chen2020 \\
      --experiment "Discharge at 1C until 2.5 V" --output out.csv --plot out.png

writes a CSV with columns t_s,V_V,I_A,Q_Ah,T_K,step (time [s], voltage [V], current [A, positive
on discharge], net discharged charge [A.h], temperature [K], the step's index from 0; -1 at rest before a first step that did not run) and prints
the charge and energy delivered on discharge and taken in on charge, why the experiment ended,
and for several steps how each ended. Exit status: 0, 1 if the simulation failed, 2 for bad input (checked
before anything is computed, output paths included), 130 on Ctrl-C.

  jaxcell population --model SPM --parameters Chen2020 --n 200 --seed 0 --output cells.csv

samples a population of cells with manufacturing variation (jaxcell's default, or --variation
spec.toml), simulates every cell in one compiled batch and writes one row per cell (sampled
parameters, capacity [A.h], energy [W.h], status)."""

POPULATION_HELP = """Sample a population of cells with manufacturing variation, simulate all of them in one
compiled batch and summarise the spread of capacity and energy.

Writes a CSV with one row per cell: cell, pack, module, the sampled parameters (PyBaMM names),
capacity [A.h] and energy [W.h] delivered on discharge, status (COMPLETED, LOWER_CUTOFF, ...,
SOLVER_FAILURE), success, delivered and outcome. Prints mean, standard deviation and quantiles of
capacity and energy over the cells that delivered the experiment (every step ended on its own
condition), and how many did not, by reason (stopped at a cut-off or stoichiometry limit, a step
skipped, a solver failure). The exit status is 0 when the population ran (cells that did not
deliver are reported, not fatal), 2 for bad input, 130 on Ctrl-C. A population whose outputs would
exceed --max-memory is refused before it is sampled. The variation file format is in docs/population.md."""


class UsageError(Exception):
    """A mistake in the command line or in a file it names: `main` prints the message (no
    traceback) and exits with status 2."""


@contextlib.contextmanager
def user_input():
    """Turns the library's errors about its inputs (ValueError, TypeError, KeyError, OSError,
    which include ExperimentError, ParameterValueError and UnknownParameterError) into
    `UsageError`. Only reading and checking the command line's inputs runs inside it, so an
    error in the computation itself keeps its traceback."""
    try:
        yield
    except UsageError:
        raise
    except KeyError as e:  # a bare KeyError says only the key; UnknownParameterError has a message
        raise UsageError(f"missing {e}" if type(e).__str__ is KeyError.__str__ else str(e)) from None
    except (ValueError, TypeError, OSError) as e:
        raise UsageError(str(e)) from None


def _parse_set(item: str) -> tuple[str, float]:
    if "=" not in item:
        raise UsageError(f"--set expects NAME=VALUE, e.g. --set \"Negative electrode porosity=0.2\", got {item!r}")
    name, value = item.rsplit("=", 1)
    try:
        return name.strip(), float(value)
    except ValueError:
        raise UsageError(f"--set {item!r}: value {value!r} is not a number") from None


def check_output_path(option: str, path: str, suffixes: tuple[str, ...]) -> None:
    """Raise `UsageError` unless `path` can be written: its extension is one of `suffixes`, its
    directory exists and a file can be created in it, and it is not a directory or a read-only
    file. Run before any computation, so that a bad path does not cost a whole run."""
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise UsageError(f"{option} {path!r}: the file name must end in {', '.join(suffixes)}")
    parent = p.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path!r}: directory {str(parent)!r} does not exist")
    if p.is_dir():
        raise UsageError(f"{option} {path!r} is a directory")
    try:  # creating a file is the one reliable test (permissions, read-only file systems, root)
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{p.name}.", suffix=".probe")
    except OSError as e:
        raise UsageError(f"{option} {path!r}: cannot create a file in directory {str(parent)!r}: {e.strerror or e}") from None
    os.close(fd)
    os.unlink(probe)
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"{option} {path!r}: the file exists and is read-only")


def _plot_suffixes() -> tuple[str, ...]:
    from matplotlib.backend_bases import FigureCanvasBase

    return tuple(sorted("." + ext for ext in FigureCanvasBase.get_supported_filetypes()))


@contextlib.contextmanager
def atomic_path(path: str):
    """A temporary path in the directory of `path`, moved onto `path` (`os.replace`) when the
    body finishes, removed if it fails: `path` is either left as it was or replaced by a
    complete file, never half-written. The file gets the mode a new file would get (or the mode
    of the file it replaces)."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".part" + p.suffix)
    os.close(fd)
    try:
        yield tmp
        if p.exists():
            mode = p.stat().st_mode & 0o7777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write(option: str, path: str, write) -> None:
    """`write(tmp_path)` through `atomic_path`; an OSError (disk full, directory removed
    meanwhile) becomes a `UsageError` naming the option."""
    try:
        with atomic_path(path) as tmp:
            write(tmp)
    except OSError as e:
        raise UsageError(f"{option} {path!r}: cannot write the file: {e.strerror or e}") from None


def write_json(option: str, path: str, obj) -> None:
    """Write `obj` as JSON to `path` atomically (`_write`): numpy and JAX numbers as Python ones,
    and NaN or infinities, which JSON has no literal for, as null (a strict reader such as
    JavaScript's refuses a bare NaN)."""
    text = json.dumps(_json_ready(obj), indent=1, allow_nan=False, default=float)
    _write(option, path, lambda tmp: Path(tmp).write_text(text + "\n"))


def _json_ready(x):
    """`x` (dicts, lists, numbers) with numpy and JAX scalars as Python numbers and non-finite
    floats as None."""
    import numpy as np  # once per call, not per element (fit.json's draws are thousands)

    def ready(x):
        if isinstance(x, dict):
            return {str(k): ready(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [ready(v) for v in x]
        if isinstance(x, np.generic) or getattr(x, "ndim", None) == 0:  # numpy or JAX scalars
            x = np.asarray(x).item()
        if isinstance(x, float) and not math.isfinite(x):
            return None
        return x

    return ready(x)


def _seed(text: str) -> int:
    """argparse type of --seed: an integer in [0, SEED_MAX]."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63 - 1], got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63 - 1] = [0, {SEED_MAX}], got {text}")
    return value


def _max_memory(text: str) -> float:
    """argparse type of --max-memory: a positive finite number of GiB."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number of GiB, got {text!r}")
    return value


def max_memory_argument(parser) -> None:
    """Add --max-memory [GiB] (`population`, `age`): the limit of the memory estimate made from
    the sizes on the command line, checked before anything is sampled or compiled."""
    parser.add_argument("--max-memory", type=_max_memory, default=MAX_MEMORY_GIB, metavar="GIB",
                        help=f"refuse runs whose outputs need more memory than this, in GiB (default {MAX_MEMORY_GIB:g})")


def _check_population_memory(args, params, experiment) -> None:
    """Refuse (before sampling) a population whose outputs exceed --max-memory: --n cells x the
    output points x `OUTPUT_FIELDS` x 8 bytes, and the sampled parameters (8 bytes each)."""
    import jax
    import numpy as np

    from .ageing._sde import require_memory
    from .simulate import N_OUT_PER_STEP

    points = N_OUT_PER_STEP * len(experiment)
    n_params = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    require_memory(
        8.0 * args.n * (points * OUTPUT_FIELDS + n_params), args.max_memory * 2**30,
        f"--n {args.n} cells x {points} output points x {OUTPUT_FIELDS} fields x 8 bytes, and {n_params} sampled "
        "parameters a cell", "--max-memory",
    )


def _interrupted() -> None:
    """Ctrl-C: say so and end the process at once (status 130, 128 + SIGINT). `os._exit` skips
    the interpreter's teardown, which can crash while XLA's compiler threads are still running."""
    if _interrupt_lock.acquire(blocking=False):
        with contextlib.suppress(OSError):
            os.write(2, b"\njaxcell: interrupted\n")
        _exit(130)
        _interrupt_lock.release()  # only reached when a test replaces _exit


_exit = os._exit
_interrupt_lock = threading.Lock()


def _on_sigint(signum, frame) -> None:
    _interrupted()


def _watch(fd: int) -> None:
    """Reads the signal numbers that Python's C-level handler writes to the wakeup file
    descriptor, as they arrive. The main thread runs Python's handler only between bytecodes,
    which a long XLA compile (C++) postpones; this thread runs as soon as the signal arrives,
    since the compiler releases the interpreter lock while it works."""
    with open(fd, "rb", buffering=0) as f:
        while data := f.read(64):
            if signal.SIGINT in data:
                _interrupted()


@contextlib.contextmanager
def exit_on_interrupt():
    """Within the block, Ctrl-C prints "jaxcell: interrupted" and exits with status 130 straight
    away, also during a compile. Left as it is when SIGINT is ignored (a background job) or
    handled by someone else, or outside the main thread."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    r, w = os.pipe()
    os.set_blocking(w, False)
    previous_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    previous = signal.signal(signal.SIGINT, _on_sigint)
    watcher = threading.Thread(target=_watch, args=(r,), name="jaxcell-sigint", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.set_wakeup_fd(previous_fd)
        os.close(w)  # the watcher reads end-of-file and returns
        watcher.join()


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
        raise UsageError("--transport-efficiency applies to the SPMe and the DFN; the SPM has no electrolyte or solid transport.")
    missing = missing_parameters(args.transport_efficiency, params)
    if missing:
        raise UsageError(f"--transport-efficiency 'tortuosity factor' reads {', '.join(repr(k) for k in missing)}, which "
                         f"parameter set {params.name!r} does not have: add them with --set \"NAME=VALUE\".")
    return cls(thermal=args.thermal, transport_efficiency=args.transport_efficiency)


def _with_overrides(params, items, transport_efficiency="Bruggeman"):
    """`params` with the --set NAME=VALUE values (shared by `simulate` and `population`). The
    tortuosity factors (PyBaMM's five names) may be added to a set that has none, with
    --transport-efficiency "tortuosity factor" only."""
    from .physics.transport import TORTUOSITY_PARAMETERS

    new = dict(_parse_set(s) for s in items)
    added = {k: v for k, v in new.items() if k in TORTUOSITY_PARAMETERS and k not in params}
    if added and transport_efficiency != "tortuosity factor":
        raise UsageError(f"--set {next(iter(added))!r}: tortuosity factors are read only with "
                         "--transport-efficiency \"tortuosity factor\".")
    params = params.update({k: v for k, v in new.items() if k not in added})
    return params.update(added, check_already_exists=False)


def _set_argument(parser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help='override a parameter by its PyBaMM name, e.g. --set "Negative electrode porosity=0.2"; '
                             "repeat for several")


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
    _set_argument(sim)
    sim.add_argument("--thermal", default="isothermal", choices=("isothermal", "lumped"), help="thermal model")
    _add_transport_argument(sim)
    sim.add_argument("--output", default="out.csv", help="CSV file to write (default out.csv); its directory must exist")
    sim.add_argument("--plot", default=None, metavar="PNG", help="also save a plot of voltage, current, temperature (.png, .pdf, .svg, ...)")
    from .ageing._cli import add_age_parser

    add_age_parser(sub)
    from .inference._cli import add_inference_parsers
    add_inference_parsers(sub)
    from .design._cli import add_design_parser
    add_design_parser(sub)
    pop = sub.add_parser(
        "population", help="simulate a population of cells with manufacturing variation",
        description=POPULATION_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pop.add_argument("--model", default="SPM", choices=MODELS, help="cell model (default SPM)")
    pop.add_argument("--parameters", default="Chen2020",
                     help="parameter set: Chen2020, Marquis2019, Ecker2015 (case-insensitive), or a BPX .json file")
    pop.add_argument("--n", type=int, default=200, help="number of cells (default 200)")
    pop.add_argument("--seed", type=_seed, default=0,
                     help="random seed, an integer in [0, 2**63 - 1] (default 0); the same seed gives the same cells")
    pop.add_argument("--variation", default=None, metavar="SPEC",
                     help="variation spec, .toml or .json (default: jaxcell's built-in manufacturing variation)")
    pop.add_argument("--experiment", action="append", metavar="STEP",
                     help='a PyBaMM-style step; repeat for several (default: "Discharge at 1C until <lower cut-off> V")')
    _set_argument(pop)
    pop.add_argument("--batch-size", type=int, default=None, metavar="N",
                     help="cells per compiled chunk, to bound memory (default: all at once)")
    max_memory_argument(pop)
    pop.add_argument("--thermal", default="isothermal", choices=("isothermal", "lumped"), help="thermal model")
    pop.add_argument("--output", default="cells.csv", help="CSV file to write (default cells.csv); its directory must exist")
    pop.add_argument("--plot", default=None, metavar="PNG",
                     help="also save histograms of capacity and energy and a parameter-capacity scatter")
    return parser


def _load(name: str):
    import jaxcell

    if name.lower().endswith(".json"):
        return jaxcell.ParameterSet.from_bpx(name)
    return jaxcell.load_parameters(name)


def _check_paths(args) -> None:
    """--output and --plot, checked before anything is computed."""
    check_output_path("--output", args.output, (".csv",))
    if args.plot:
        check_output_path("--plot", args.plot, _plot_suffixes())


def _check_simulation(model, params, experiment) -> None:
    """The checks that `simulate` and `simulate_batch` make before compiling (voltage cut-offs
    in order, holds inside them, ...), run while the inputs are being read so that they are
    reported as bad input."""
    from .simulate import _prepare

    _prepare(model, params, experiment, t_eval=None, rtol=1e-6, atol=1e-8, max_steps=20_000, solver=None, adjoint=None)


def default_discharge(params) -> str:
    """The commands' default step: a 1C discharge to the set's lower cut-off, written exactly
    (repr): rounded (":g"), 2.500001 V became 2.5 V, below the cut-off, and every cell stopped
    at the cut-off instead of on the step's own limit."""
    return f"Discharge at 1C until {float(params['Lower voltage cut-off [V]'])!r} V"


def _default_steps(args, params) -> list[str]:
    return args.experiment or [default_discharge(params)]


def _savefig(fig, option: str, path: str) -> None:
    fmt = Path(path).suffix[1:].lower()
    _write(option, path, lambda tmp: fig.savefig(tmp, dpi=120, format=fmt))


def cmd_simulate(args) -> int:
    import jaxcell

    with user_input():
        _check_paths(args)
        params = _load(args.parameters)
        if args.set:
            params = _with_overrides(params, args.set, args.transport_efficiency)
        experiment = jaxcell.Experiment(_default_steps(args, params))
        model = _model(args, params)
        _check_simulation(model, params, experiment)
    sol = jaxcell.simulate(model, params, experiment)
    df = sol.to_pandas()
    _write("--output", args.output, lambda tmp: df.to_csv(tmp, index=False, float_format="%.10g"))
    print(f"model {args.model} ({args.thermal}), parameters {params.name}, {len(experiment)} step(s)")
    print(f"capacity  {float(sol.capacity):.4f} A.h discharged, {float(sol.charged_capacity):.4f} A.h charged, "
          f"net {float(sol.net_charge):.4f} A.h")
    print(f"energy    {float(sol.energy):.4f} W.h discharged, {float(sol.charged_energy):.4f} W.h charged")
    # a solve that failed at its start has no output row
    last = f"final voltage {df.V_V.iloc[-1]:.4f} V" if len(df) else "no output: the solve stopped at the start"
    print(f"duration  {float(sol.step_end_time[-1]) / 3600:.4f} h, {last}")
    print(f"end       {sol.message}")
    if len(experiment.descriptions) > 1:
        print("steps     (how each ended, its duration, the net charge it discharged)")
        for row, text in zip(sol.steps().itertuples(), experiment.descriptions):
            print(f"  {row.step + 1:>3}  {text[:44]:<44} {row.ended.lower():<12} {row.duration_s:10.1f} s "
                  f"{row.discharged_Ah - row.charged_Ah:+9.4f} A.h")
    print(f"wrote     {args.output} ({len(df)} rows: {','.join(df.columns)})")
    _warn_sparse_steps(sol, df, experiment)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        _savefig(sol.plot(), "--plot", args.plot)
        print(f"plot      {args.plot}")
    return 0 if bool(sol.success) else 1


SPARSE_ROWS = 10  # a step that ran with fewer output rows than this is announced


def _warn_sparse_steps(sol, df, experiment) -> None:
    """Warn about each step that ran but has fewer than SPARSE_ROWS output rows: a step's output
    times are spread over the longest it could run (its stated duration, or an estimate from the
    capacity), so one that ends long before it ("Discharge at 1C for 1e9 hours") left two rows
    and no curve. The capacity and energy come from the solve, whatever the output times."""
    from .simulate import N_OUT_PER_STEP

    counts = df.groupby("step").size() if len(df) else {}
    for row in sol.steps().itertuples():
        n = int(counts.get(row.step, 0))
        if row.duration_s > 0 and n < SPARSE_ROWS:
            warnings.warn(
                f"step {row.step + 1} ({experiment.descriptions[row.step]!r}) ran {row.duration_s:.6g} s but has "
                f"{n} output row(s): its {N_OUT_PER_STEP} output times were spread over the longest it could run. "
                "State a duration nearer its length for a finer curve (the capacity and energy printed are the "
                "solver's own, exact whatever the output times).",
                stacklevel=2,
            )


def cmd_population(args) -> int:
    import time

    import jax
    import pandas as pd

    import jaxcell
    from jaxcell.population import (
        Variation,
        default_variation,
        not_delivered,
        plot_population,
        population_summary,
        population_table,
        sample_population,
    )

    with user_input():
        if args.n < 1:
            raise UsageError(f"--n must be a positive integer, got {args.n}")
        if args.batch_size is not None and args.batch_size < 1:
            raise UsageError(f"--batch-size must be a positive integer, got {args.batch_size}")
        _check_paths(args)
        params = _load(args.parameters)
        if args.set:
            params = _with_overrides(params, args.set)
        variation = Variation.from_file(args.variation) if args.variation else default_variation()
        steps = _default_steps(args, params)
        experiment = jaxcell.Experiment(steps)
        model = _model(args, params)
        _check_simulation(model, params, experiment)
        _check_population_memory(args, params, experiment)
        t0 = time.perf_counter()
        cells = sample_population(params, variation, args.n, jax.random.key(args.seed))
        # the sampled cells too: a variation may draw a cell outside a rule the nominal set meets
        # (inverted cut-offs), bad input (exit status 2), not a traceback from `simulate_batch`
        _check_simulation(model, cells, experiment)
    t1 = time.perf_counter()
    sols = jax.block_until_ready(jaxcell.simulate_batch(model, cells, experiment, batch_size=args.batch_size))
    t2 = time.perf_counter()
    table = population_table(cells, sols, variation)
    _write("--output", args.output, lambda tmp: table.to_csv(tmp, index=False, float_format="%.10g"))
    source = args.variation or "built-in default"
    print(f"population {args.n} cells, model {args.model} ({args.thermal}), parameters {params.name}, seed {args.seed}")
    if args.set:
        print(f"set        {'; '.join(args.set)}")
    print(f"variation  {source}: {len(variation.names)} parameters, "
          f"{variation.hierarchy.cells_per_module} cells/module, {variation.hierarchy.modules_per_pack} modules/pack")
    print(f"experiment {'; '.join(steps)}")
    print(f"time       sampling {t1 - t0:.2f} s, simulation {t2 - t1:.2f} s (including compilation)")
    summary = population_summary(table)
    with pd.option_context("display.float_format", "{:.5g}".format):
        print(summary.to_string())
    delivered = int(table["delivered"].sum())
    print(f"delivered  {delivered} of {args.n} cells (the statistics above count these only)")
    for reason, count in not_delivered(table).items():
        print(f"  {count} cell{'s' if count > 1 else ''}: {reason}")
    print(f"wrote      {args.output} ({len(table)} rows, {len(table.columns)} columns)")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        _savefig(plot_population(table), "--plot", args.plot)
        print(f"plot       {args.plot}")
    return 0


@contextlib.contextmanager
def _warnings_as_lines():
    """Warnings (a step limit outside the voltage cut-offs, ...) printed as one line each,
    "jaxcell: warning: ...", and each message once: the inputs are checked before the run and
    again by `simulate` itself."""
    seen = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if text not in seen:
            seen.add(text)
            print(f"jaxcell: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def main(argv=None) -> int:
    """Run the `jaxcell` command with `argv` (default: the process's arguments); returns the
    exit status: 0, 1 when a simulation failed, 2 for bad input (argparse's code too), 130 on
    Ctrl-C."""
    with exit_on_interrupt(), _warnings_as_lines():  # Ctrl-C while the parser imports is clean too
        args = build_parser().parse_args(argv)
        try:
            if args.command == "simulate":
                return cmd_simulate(args)
            if args.command == "population":
                return cmd_population(args)
            return args.func(args)  # age
        except UsageError as e:
            print(f"jaxcell: error: {e}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
