"""Shared fixtures. Compiles are the slow part of this suite on 2 cores, so tests reuse one
experiment structure and fixed-length t_eval arrays wherever they can: the solver is compiled
once per (model, parameter-set functions, experiment structure, t_eval length)."""

import contextlib
import functools
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

# XLA flags for this suite, whose time is mostly compiling (benchmarks/README.md has the figures):
# - XLA's CPU compiler with its classic code generators instead of its newer fusion emitters: the
#   same programs and the same results, compiled in a quarter to a half less time on one core when
#   first measured (a DFN discharge 15.7 -> 8.6 s, an SPMe gradient 37.4 -> 26.8 s); with jaxlib
#   0.10.2 on two cores, forward programs 8-15 % faster to compile and gradients no faster
#   (benchmarks/README.md).
# - No while-loop invariant code motion: most of that pass's time is spent working out the trip
#   counts of the solver's loops, a fifth of a gradient's compile (an SPM gradient 32.9 -> 25.8 s,
#   a DFN gradient 51.9 -> 39.6 s), for runs 8-10 % (an SPMe forward solve 46 %) slower, which
#   tests that run each program a few times do not feel. The same results to round-off.
# Set before JAX starts its backend, here in the controller (the workers, which also run the
# notebooks, and the command-line tests' processes inherit them), where this XLA knows the flags
# (an unknown flag would abort every process). A setting of either flag in XLA_FLAGS is kept.
_SUITE_FLAGS = {"xla_cpu_use_fusion_emitters": "--xla_cpu_use_fusion_emitters=false",
                "xla_disable_hlo_passes": "--xla_disable_hlo_passes=while-loop-invariant-code-motion"}
_given = os.environ.get("XLA_FLAGS", "")
_added = [f for k, f in _SUITE_FLAGS.items() if k not in _given]
if "PYTEST_XDIST_WORKER" not in os.environ and _added:
    _flags = " ".join([_given, *_added]).strip()
    _probe = subprocess.run([sys.executable, "-c", "import jax; jax.numpy.zeros(1).block_until_ready()"],
                            env=dict(os.environ, XLA_FLAGS=_flags, JAX_PLATFORMS="cpu"), capture_output=True)
    if _probe.returncode == 0:
        os.environ["XLA_FLAGS"] = _flags

# Python's full garbage collections (every 70,000 net allocations by default) walk every object
# alive, and JAX's tracing allocates millions: a fifth of a gradient's trace went to them (an SPM
# gradient 13.2 -> 10.5 s traced with full collections 100 times rarer; the young generations are
# collected as before, the peak memory the same)
gc.set_threshold(gc.get_threshold()[0], gc.get_threshold()[1], 1000)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jaxcell  # noqa: E402

jax.config.update("jax_enable_x64", True)

DATA = Path(__file__).parent / "data"
N_EVAL = 2001
# parameters whose gradients are checked against finite differences (SPMe and DFN)
GRAD_PARAMS = [
    "Negative electrode thickness [m]",
    "Positive electrode porosity",
    "Positive particle radius [m]",
    "Negative particle diffusivity [m2.s-1]",
    "Positive electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]",
]  # every reference file has at most 2001 rows


# XLA's lowest optimisation level, for tests that compare derivatives, not speed: compiles faster
FAST_XLA = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def rule_and_jax_gradients(loss, *args, argnums=0):
    """`jax.grad` of `loss(rule, *args)` with Rodas4's reverse-mode rule (rule True) and with JAX's
    derivative of the same stages (rule False), each compiled ahead of time with `FAST_XLA`;
    returns the two compiled functions of `args`."""
    return [
        jax.jit(jax.grad(functools.partial(loss, rule), argnums=argnums)).lower(*args).compile(compiler_options=FAST_XLA)
        for rule in (True, False)
    ]


@contextlib.contextmanager
def compiled_names():
    """The names of the functions XLA compiles inside the block (a list, filled as they come)."""
    names = []

    def listener(event, duration, fun_name=None, **kw):
        if event == "/jax/core/compile/backend_compile_duration":
            names.append(fun_name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def load_reference(name: str):
    """PyBaMM reference curve: columns t_s, V_V, Q_Ah (and T_K for thermal files)."""
    return np.loadtxt(DATA / "pybamm" / name, delimiter=",", skiprows=1)


def padded_times(t: np.ndarray, n: int = N_EVAL) -> np.ndarray:
    """Pad an increasing time array to length n by repeating its last value."""
    return np.concatenate([t, np.full(n - t.size, t[-1])])


def rms_after_first_second(sol, ref):
    """RMS voltage difference [mV] on the reference's times after t = 1 s (the double layers
    charge within microseconds, so at t = 0 the voltage is still the open-circuit one) up to
    the earlier end, and the relative difference of the end times. `sol` was evaluated at the
    (padded) reference times."""
    n = ref.shape[0]
    V = np.asarray(sol.voltage)[:n]
    t_end = float(sol.step_end_time[-1])
    mask = (ref[:, 0] > 1.0) & (ref[:, 0] <= t_end) & np.isfinite(V)
    d = V[mask] - ref[mask, 1]
    return 1e3 * np.sqrt(np.mean(d**2)), t_end / ref[-1, 0] - 1.0


@pytest.fixture(scope="session")
def chen():
    return jaxcell.load_parameters("Chen2020")


@pytest.fixture(scope="session")
def spm():
    return jaxcell.SPM()


@pytest.fixture(scope="session")
def spme():
    return jaxcell.SPMe()


# Compiled functions are released when the process holds more memory mappings than this (the
# kernel's limit, vm.max_map_count, is 65530 by default; one test module adds up to a few
# thousand). Checked after every test, so compiled functions are shared across modules until then.
MAX_MAPPINGS = 24_000
_mappings = {"peak": 0, "largest test": 0, "releases": 0}


def _count_mappings():
    """The number of memory mappings of this process, or None where /proc is not there."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return None


def _release():
    jax.clear_caches()
    gc.collect()


@pytest.fixture(autouse=True)
def _release_compiled_code():
    """Drop JAX's compiled functions once the process holds MAX_MAPPINGS memory mappings. Every
    compiled function keeps its machine code mapped, and a whole suite's worth of compiles in one
    process exceeded the kernel's limit on memory mappings (vm.max_map_count, 65530 here): XLA's
    next compile then crashed with a segmentation fault late in the suite. Below the threshold,
    tests share compiled functions, also across modules. Without /proc, caches are dropped
    after each module (`_release_per_module`)."""
    before = _count_mappings()
    yield
    after = _count_mappings()
    if after is None:
        return
    _mappings["peak"] = max(_mappings["peak"], after)
    _mappings["largest test"] = max(_mappings["largest test"], after - before)
    if after > MAX_MAPPINGS:
        _release()
        _mappings["releases"] += 1


@pytest.fixture(autouse=True, scope="module")
def _release_per_module():
    yield
    if _count_mappings() is None:
        _release()


# The suite runs on two processes, one module at a time each (`-n 2 --dist loadfile
# --no-loadscope-reorder`, the README's command): the longest modules start first, so that the
# longest (test_dfn, about a third of the whole) is not left to run alone at the end.
LONGEST_FIRST = ("test_dfn.py", "test_autodiff_batch.py", "test_notebooks.py", "test_inference_hierarchy.py",
                 "test_inference_cli.py", "test_reference.py", "test_design_optimise.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each module keeps its own order


def pytest_terminal_summary(terminalreporter):
    totals = dict.fromkeys(_compile, 0.0)
    for f in STATS.glob("compile-stats-*.json"):
        for k, v in json.loads(f.read_text()).items():
            totals[k] += v
    terminalreporter.write_line(
        f"XLA compiles: {totals['compiles']:.0f}, {totals['seconds']:.0f} s in all processes; JAX's tracing "
        f"{totals['tracing']:.0f} s and lowering {totals['lowering']:.0f} s besides"
    )
    if _mappings["peak"]:
        terminalreporter.write_line(
            f"memory mappings: peak {_mappings['peak']} (limit {MAX_MAPPINGS} then released, "
            f"{_mappings['releases']} releases; largest growth in one test {_mappings['largest test']})"
        )


# Compile time, summed over the suite's processes: each process sums its own and leaves it in a
# file; the summary prints the totals. (JAX's persistent compilation cache does not help here: with
# diffrax's checks made callback-free, EQX_ON_ERROR=nan, both workers sharing one fresh cache hit
# it 802 times in 3949 compiles and saved nothing measurable: the suite's large programs are each
# compiled once. benchmarks/README.md has the figures.)
STATS = Path(__file__).parent.parent / ".pytest_cache"
_compile = {"seconds": 0.0, "compiles": 0, "tracing": 0.0, "lowering": 0.0}
_EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "tracing",
           "/jax/core/compile/jaxpr_to_mlir_module_duration": "lowering"}


# JAXCELL_COMPILE_LOG=FILE: one line per XLA compile (test, function, seconds, tab-separated),
# appended by every process, to see which tests compile what
_COMPILE_LOG = os.environ.get("JAXCELL_COMPILE_LOG")
_current_test = {"id": "(collection)"}


def _on_duration(event, duration, fun_name=None, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
        _compile["seconds"] += duration
        _compile["compiles"] += 1
        if _COMPILE_LOG:
            with open(_COMPILE_LOG, "a") as f:
                f.write(f"{_current_test['id']}\t{fun_name}\t{duration:.3f}\n")
    elif event in _EVENTS:
        _compile[_EVENTS[event]] += duration


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """The compile log's test: set for the test's setup (its module's fixtures too), call and
    teardown."""
    _current_test["id"] = item.nodeid
    yield
    _current_test["id"] = "(between tests)"


def pytest_configure(config):
    STATS.mkdir(exist_ok=True)
    jax.monitoring.register_event_duration_secs_listener(_on_duration)
    for f in STATS.glob("compile-stats-*.json"):
        if not hasattr(config, "workerinput"):  # the controller (or the only process) starts afresh
            f.unlink()


def pytest_sessionfinish(session):
    worker = getattr(session.config, "workerinput", {}).get("workerid", "main")
    (STATS / f"compile-stats-{worker}.json").write_text(json.dumps(_compile))
