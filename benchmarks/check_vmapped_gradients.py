"""Reverse mode through measured records solved together under `vmap`, against the same records
solved one after another (`lax.map`) and against central differences: the check behind
`RecordSolver`'s choice of `lax.map` for the DFN (docs/inference.md, "Records in one call").

The loss is the sum of squared voltages of the LG M50 25 degC discharges (``--rates``, thinned to
``--points`` measured points), each record a drive cycle started at rest from its first voltage,
as `RecordSolver` solves them; the parameters are two of the DFN's (log scale).

    python benchmarks/check_vmapped_gradients.py [--model DFN] [--coarse] [--rates 0.1 0.5] [--fd]
        [--twin] [--dense] [--no-rule] [--forward-mode] [--rtol 1e-6 --atol 1e-8]

Also the gradient through `RecordSolver` itself, the library's path (its default solver; every
record differentiated in forward mode).

``--twin``: the first record twice, the second cell's negative electrode 5 % thicker (both run the
same length). ``--dense``: the dense linear solve; ``--no-rule``: JAX's own derivative of Rodas4's
stages instead of its reverse rule.

Writes results/vmapped_gradients_latest.json (``_twin``, ``_dense``, ``_no_rule`` in the name with those flags).
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxcell  # noqa: E402
from jaxcell._forward import forward_mode as with_forward_mode  # noqa: E402
from jaxcell.inference import RecordSolver, read_measurements, stack_records  # noqa: E402
from jaxcell.inference._hierarchy import initial_concentrations  # noqa: E402
from jaxcell.simulate import _simulate  # noqa: E402

HERE = Path(__file__).resolve().parent
NAMES = ["Negative electrode thickness [m]", "Positive particle diffusivity [m2.s-1]"]


def loss_fn(model, p, records, batching, scale=None, rtol=1e-6, atol=1e-8, solver=None, forward_mode=False):
    """loss(log values) with the records solved by `batching` ("vmap" or "map"); `scale`: per-record
    factors of the first parameter; `solver`: in place of `RecordSolver`'s default; `forward_mode`:
    diffrax's ForwardMode adjoint (for `jax.jacfwd`)."""
    s = RecordSolver(model, p, records, initial_soc=None, rtol=rtol, atol=atol)
    opts = s.opts if solver is None else dataclasses.replace(s.opts, solver=solver)
    if forward_mode:
        opts = with_forward_mode(opts)
    mask = jnp.asarray(records.mask)
    n = len(records)
    scale = jnp.ones(n) if scale is None else jnp.asarray(scale)

    def one(values, table, t, soc):
        q = initial_concentrations(p.update(values), s.soc_kind, soc)
        return _simulate(s.model, q, table, s.modes, t, opts).voltage

    def loss(logv):
        values = {k: jnp.full((n,), jnp.exp(logv[i])) * (scale if i == 0 else 1.0) for i, k in enumerate(NAMES)}
        args = (values, s.tables, s.t, s.soc)
        V = jax.vmap(one)(*args) if batching == "vmap" else jax.lax.map(lambda a: one(*a), args)
        return jnp.sum(jnp.where(mask, V, 0.0) ** 2)

    return loss


def main():
    import inference_lgm50 as lgm50
    from _common import cpu_model, git_info

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="DFN", choices=["SPM", "SPMe", "DFN"])
    ap.add_argument("--coarse", action="store_true", help="DFN mesh 8/4/8 with 6 shells (minutes less)")
    ap.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.5])
    ap.add_argument("--points", type=int, default=61)
    ap.add_argument("--fd", action="store_true", help="also central differences of the vmapped forward solve")
    ap.add_argument("--twin", action="store_true", help="the first record twice, the second 5 %% thicker")
    ap.add_argument("--dense", action="store_true", help="the dense linear solve")
    ap.add_argument("--no-rule", action="store_true", help="JAX's own derivative of the stages")
    ap.add_argument("--forward-mode", action="store_true",
                    help="also jax.jacfwd with diffrax's ForwardMode (the records one after another)")
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--atol", type=float, default=1e-8)
    args = ap.parse_args()
    kw = dict(n_x_n=8, n_x_s=4, n_x_p=8, n_r_n=6, n_r_p=6) if args.coarse and args.model == "DFN" else {}
    model = getattr(jaxcell, args.model)(**kw)
    p = jaxcell.load_parameters("Chen2020").update({"Lower voltage cut-off [V]": 2.0})
    solver = None
    if args.dense or args.no_rule:
        from jaxcell import solvers
        from jaxcell.simulate import default_solver

        linear = solvers.DenseSolve() if args.dense else None
        solver = solvers.Rodas4(linear or default_solver(model).linear_solve, reverse_rule=not args.no_rule)
    tables = lgm50.discharges(args.points)
    recs = [read_measurements(tables[r], "c_rate")[0] for r in args.rates]
    scale = None
    if args.twin:
        recs, scale = [recs[0], recs[0]], [1.0, 1.05]
    tol = dict(rtol=args.rtol, atol=args.atol)
    solve = dict(tol, solver=solver)
    x0 = jnp.log(jnp.array([float(p[k]) for k in NAMES]))
    out = {"model": args.model, "mesh": kw or "default", "rates": args.rates, "points": args.points,
           "parameters": NAMES, "twin": args.twin, "dense": args.dense, "no_rule": args.no_rule, **tol,
           "cpu": cpu_model(), "git": git_info()}
    for batching in ("vmap", "map"):
        t = time.time()
        value, grad = jax.jit(jax.value_and_grad(loss_fn(model, p, stack_records(recs), batching, scale, **solve)))(x0)
        out[batching] = {"loss": float(value), "gradient": np.asarray(grad).tolist(), "s": time.time() - t}
        print(batching, out[batching], flush=True)
    # the library's own path: `RecordSolver`, every record in forward mode (its default solver:
    # --dense and --no-rule do not apply)
    stacked = stack_records(recs)
    library = RecordSolver(model, p, stacked, initial_soc=None, **tol)
    mask = jnp.asarray(stacked.mask)
    n = len(recs)
    scale_ = jnp.ones(n) if scale is None else jnp.asarray(scale)

    def library_loss(logv):
        values = {k: jnp.exp(logv[i]) * (scale_ if i == 0 else jnp.ones(n)) for i, k in enumerate(NAMES)}
        return jnp.sum(jnp.where(mask, library(values), 0.0) ** 2)

    t = time.time()
    value, grad = jax.jit(jax.value_and_grad(library_loss))(x0)
    out["record_solver"] = {"loss": float(value), "gradient": np.asarray(grad).tolist(), "s": time.time() - t}
    print("RecordSolver", out["record_solver"], flush=True)
    if args.forward_mode:
        t = time.time()
        jf = jax.jit(jax.jacfwd(loss_fn(model, p, stack_records(recs), "map", scale, **solve, forward_mode=True)))(x0)
        out["forward_mode_map"] = {"gradient": np.asarray(jf).tolist(), "s": time.time() - t}
        print("forward mode, one after another", out["forward_mode_map"], flush=True)
    if not args.twin:
        own = np.zeros(2)
        for r in recs:
            own += np.asarray(jax.jit(jax.grad(loss_fn(model, p, stack_records([r]), "map", **solve)))(x0))
        out["sum_of_own"] = own.tolist()
        print("sum of the records' own", own, flush=True)
    if args.fd:
        f = jax.jit(loss_fn(model, p, stack_records(recs), "vmap", scale, **solve))
        h = 1e-5
        fd = [float((f(x0.at[i].add(h)) - f(x0.at[i].add(-h))) / (2 * h)) for i in range(2)]
        out["fd_vmapped_forward"] = fd
        print("central differences of the vmapped forward solve", fd, flush=True)
    variant = "".join(f"_{k}" for k, on in (("twin", args.twin), ("dense", args.dense), ("no_rule", args.no_rule)) if on)
    path = HERE / "results" / f"vmapped_gradients{variant}_latest.json"
    path.write_text(json.dumps(out, indent=1))
    print("written", path)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(HERE))
    main()
