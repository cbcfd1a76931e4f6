"""Inference engines for numpyro models of cells: the maximum a posteriori point with a
Laplace approximation (fast default), SVI and NUTS (`_imh.py` samples around a MAP fit).

They work on numpyro's potential (the negative log joint density in the unconstrained space
numpyro maps every bounded site to), so they serve any model: `cell_model` or a user's own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import types
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
from jax.flatten_util import ravel_pytree
from numpyro.distributions.transforms import biject_to
from numpyro.infer import NUTS
from numpyro.infer.util import constrain_fn, initialize_model, potential_energy, transform_fn

from .._checks import check_int
from ._data import without_labels

# central differences of the gradient give the Laplace Hessian: second-order derivatives
# through the solver would need forward mode over Rodas4's reverse-mode rule, which a
# custom_vjp does not have. The step is in the unconstrained space (log or logit of the value).
HESSIAN_STEP = 1e-4


# Newton iterations (`_newton_batch`: fit_map's polish, calibrate's and profile's batched
# fits), and the decrement sqrt(g' H^-1 g) below which a point counts as converged
MAX_NEWTON = 30
TOL = 1e-2
# A Hessian (2 d batched gradients by central differences) serves this many Newton steps: the
# steps converge linearly instead of quadratically but cost one batched gradient each instead
# of 2 d + 1; convergence is always judged with a Hessian of the point itself
REFRESH = 3
# Step halvings per Newton step: each is one more batched gradient, and a row that cannot
# decrease (at its optimum within the solver's noise) would otherwise hold the whole batch
HALVINGS = 8
# The largest Newton step in any unconstrained coordinate
MAX_STEP = 1.0
# Draws per chain below which R-hat and effective sample sizes are not estimated (numpyro's
# split R-hat needs 4)
MIN_CHAIN_DRAWS = 4
# A fitted noise scale (a site named sigma...) below this, in the data's units (V, K), is one
# that went to zero: the data are fitted exactly, as noise-free synthetic data are
NOISE_FLOOR = 1e-9


@dataclasses.dataclass(frozen=True)
class MAPResult:
    """The maximum a posteriori point of a model and the Laplace approximation around it.

    Attributes:
        params: the sampled sites at the optimum, in natural units (name -> array).
        unconstrained: the same in numpyro's unconstrained space (flat vector `z`).
        hessian: Hessian of the negative log joint density with respect to `z` at the optimum.
        converged: whether the point is the optimum to within a small fraction of the
            posterior's width: the Hessian is positive definite and the Newton decrement
            sqrt(g' H^-1 g) (the distance to the quadratic model's minimum in posterior standard
            deviations) is below the fit's `tol`.
        decrement: that Newton decrement (inf where the Hessian is not positive definite).
        steps: the optimiser's number of steps; message: what it said when it stopped.
        potential: the negative log joint density at the optimum.
        optima: the potential each start of the fit ended at (`fit_map`'s `starts`; the first
            is the start from `init` or the priors' medians), NaN where a start did not
            converge. Starts that end at different potentials mean the posterior has several
            modes: the result is the lowest.
    """

    params: dict
    unconstrained: np.ndarray
    hessian: np.ndarray
    converged: bool
    steps: int
    potential: float
    decrement: float
    message: str
    _unravel: object = dataclasses.field(repr=False)
    _postprocess: object = dataclasses.field(repr=False)
    names: tuple = ()
    _potential: object = dataclasses.field(default=None, repr=False)
    optima: tuple = ()
    _value_and_grad: object = dataclasses.field(default=None, repr=False)

    @property
    def covariance(self) -> np.ndarray:
        """The Laplace covariance in the unconstrained space: the inverse Hessian."""
        return np.linalg.inv(self.hessian)

    def sample(self, key, n: int = 4000, importance: int = 0) -> dict:
        """Draws from the Laplace approximation (Gaussian in the unconstrained space), mapped to
        natural units: name -> array (n, ...). With `importance` = M > 0, draws from the exact
        posterior instead, by Pareto-smoothed importance sampling around the approximation
        (`importance_sample`, M potential evaluations); a warning says when its Pareto k is
        above min(1 - 1 / log10(M), 0.7) (weights unreliable)."""
        check_int(n, "n (the number of draws)")
        if importance is not None and importance != 0:
            check_int(importance, "importance (the number of proposals; 0 for none)", 2)
            draws, k = self.importance_sample(key, importance, n)
            limit = min(1.0 - 1.0 / np.log10(importance), 0.7) if importance > 10 else 0.0
            if not np.isfinite(k):
                warnings.warn("importance sampling found no proposal with a finite posterior density: the draws are "
                              "NaN; check the model at the optimum, or use NUTS (run_nuts).", stacklevel=2)
            elif k > limit:
                warnings.warn(f"importance sampling's Pareto k is {k:.2f}, above {limit:.2f} for {importance} proposals: "
                              "the weights are unreliable (the posterior reaches far beyond the Laplace "
                              "approximation); take more proposals, or use NUTS (run_nuts).", stacklevel=2)
            return draws
        return self._natural(self._unconstrained_draws(key, n))

    def _unconstrained_draws(self, key, n: int) -> np.ndarray:
        """n draws (n, d) of the Laplace approximation in the unconstrained space."""
        chol = self._cholesky()
        return self.unconstrained + np.asarray(jax.random.normal(key, (n, self.unconstrained.size))) @ chol.T

    def importance_sample(self, key, n_proposals: int = 500, n: int = 1000) -> tuple[dict, float]:
        """Draws from the exact posterior by Pareto-smoothed importance sampling
        (`jaxcell.inference.importance_resample`): `n_proposals` proposals from a Student-t
        around the Laplace approximation, each weighted by the exact posterior (one evaluation
        of the fit's compiled potential each), `n` resampled. Where the posterior is skewed
        (a parameter whose effect saturates, as fast kinetics or diffusion) the Laplace draws
        are too narrow on the flat side and these are not. Returns (name -> draws (n, ...) in
        natural units, Pareto k: below 0.7 the weights are reliable)."""
        from ._calibration import importance_resample

        if self._potential is None:
            raise ValueError("importance sampling needs the fit's potential: use a MAPResult made by fit_map.")
        self._cholesky()  # refuses a Hessian that is not positive definite

        z, k = importance_resample(lambda zs: np.asarray(self._potential(zs[0]))[None], self.unconstrained[None],
                                   self.hessian[None], n_proposals, n, key, chunk=IMPORTANCE_CHUNK)
        return self._natural(z[0]), float(k[0])

    def _check_finite(self):
        if not np.all(np.isfinite(self.hessian)):
            raise ValueError(
                f"no Laplace approximation: the Hessian at the end point is not finite (parameters {self.names}): "
                "the potential or its gradient is NaN there or next to it, e.g. a solve that failed; converged: "
                f"{self.converged}. Check the model at params, or start elsewhere (init=, starts=)."
            )

    def _cholesky(self):
        from ._calibration import _laplace_factor

        self._check_finite()
        ok, chol = _laplace_factor(self.hessian[None])
        if not ok[0]:
            w = np.linalg.eigvalsh(self.hessian)
            raise ValueError(
                f"no Laplace approximation: the Hessian at the optimum is not positive definite (eigenvalues "
                f"{np.array2string(w, precision=3)}, parameters {self.names}): the point is not a minimum, or the "
                f"data do not determine some direction (converged: {self.converged}; {self.message})"
            )
        return chol[0]

    def _natural(self, z):
        draws = jax.vmap(lambda zi: self._postprocess(self._unravel(zi)))(jnp.asarray(z))
        return {k: np.asarray(v) for k, v in draws.items() if k in self.names}

    def summary(self, key=None, n: int = 4000, importance: int = 0) -> dict:
        """name -> {"mean", "sd", "q05", "q95"} of the Laplace approximation in natural units
        (with `importance` = M > 0: of the importance-corrected draws, see `sample`)."""
        draws = self.sample(jax.random.key(0) if key is None else key, n, importance)
        return {k: _stats(v) for k, v in draws.items()}

    def identifiability(self) -> dict:
        """What the data determine: eigenvalues (ascending) and eigenvectors (columns) of the
        Hessian in the unconstrained space (log or logit of each parameter; a small eigenvalue is
        a sloppy direction the data barely constrain), and the Laplace correlation matrix.
        `names` orders the rows."""
        self._check_finite()
        w, v = np.linalg.eigh(self.hessian)
        cov = self.covariance
        sd = np.sqrt(np.diag(cov))
        return {"names": self.names, "eigenvalues": w, "eigenvectors": v, "correlation": cov / np.outer(sd, sd)}


# importance sampling evaluates the potential (no gradient) on this many proposals in one
# vmapped call: one more compile per fit, then a batched solve instead of a Python loop of them
IMPORTANCE_CHUNK = 250


def _stats(x) -> dict:
    x = np.asarray(x)
    return {"mean": x.mean(0), "sd": x.std(0, ddof=1), "q05": np.quantile(x, 0.05, axis=0), "q95": np.quantile(x, 0.95, axis=0)}


def _strategy(init=None, sample: bool = False):
    """numpyro's initialisation strategy: draws from the priors (`sample`), else `init` (name ->
    value in natural units; numpyro's `init_to_value` draws the sites it does not name
    uniformly in (-2, 2) in the unconstrained space), else the priors' medians."""
    from numpyro.infer.initialization import init_to_median, init_to_sample, init_to_value

    if sample:
        return init_to_sample()
    return init_to_value(values=init) if init else init_to_median()


def _start(model, key, args, kwargs, strategy, seen: dict):
    """The model's sampled sites at the strategy's point from `key` (a raw key), in the
    unconstrained space; their supports go to `seen`."""
    from numpyro import handlers

    key = jax.random.split(key)[1]  # as numpyro's `find_valid_initial_params` seeds the model's run
    with handlers.trace() as tr, handlers.substitute(substitute_fn=strategy), handlers.seed(rng_seed=key):
        model(*args, **kwargs)
    latent = {k: s for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}
    supports = {k: s["fn"].support for k, s in latent.items()}
    if any(c.is_discrete for c in supports.values()):
        raise _Untraceable
    # the bounds' kinds, decided while traced: afterwards, values among them are tracers
    seen.update(supports=supports, bounds_are_values=any(map(_bounds_are_values, supports.values())))
    return {k: biject_to(s["fn"].support).inv(s["value"]) for k, s in latent.items()}


@eqx.filter_jit
def _shared_start(model, key, args, kwargs, init, sample):
    """`_start` compiled once per model function and structure of the arguments (as
    `_shared_value_and_grad`), with the arguments' and `init`'s arrays traced."""
    return _start(model, key, args, kwargs, _strategy(init, sample), {})


def _starting_points(model, keys, args, kwargs, init=None, sample: bool = False):
    """The latent sites' starting points in the unconstrained space (name -> value; one per key
    of `keys`) and the map back to natural units; `init` and `sample` as `_strategy`.

    numpyro, given the model, runs it op by op to find a start: the solve with it, which
    compiles the forward solve (7-12 s on a record fit) for nothing else. Here the model is
    traced and only the sampled sites' values are compiled: the solve's results are unused, so
    the program holds no solve (a fraction of a second to compile), and it is shared by every
    fit of the same model and shapes (with the arguments as constants instead where they cannot
    be its inputs). Models that need concrete values of sampled sites while traced, or with
    discrete sites, go numpyro's way (`_numpyro_start`); so does a start where the potential
    is not finite (`_checked_start`), where numpyro would search on."""
    if init:
        init = {k: jnp.asarray(v, dtype=jnp.result_type(float)) for k, v in init.items()}
    raw = [_raw_key(k) for k in keys]
    seen = {}
    try:  # the sites and their supports, from a trace of the model
        jax.eval_shape(lambda k: _start(model, k, args, kwargs, _strategy(init, sample), seen), raw[0])
    except (TypeError, _Untraceable):  # JAX's concretisation errors are TypeErrors
        found = [_numpyro_start(model, k, args, kwargs, _strategy(init, sample)) for k in keys]
        return [z for z, _ in found], found[0][1]
    unknown = sorted(set(init or {}) - set(seen["supports"]))
    if unknown:
        raise ValueError(f"init names {unknown[0]!r}, which is not a sampled site of the model; its sites are "
                         f"{sorted(seen['supports'])}.")
    zs = None
    if _shareable(args, kwargs):
        try:
            zs = [_shared_start(model, k, *without_labels((args, kwargs)), init, sample) for k in raw]
        except TypeError:  # the model needs concrete values of an argument (a shape, an index)
            pass
    if zs is None:
        compiled = jax.jit(lambda k: _start(model, k, args, kwargs, _strategy(init, sample), {}))
        zs = [compiled(k) for k in raw]
    return zs, _to_natural(model, args, kwargs, seen["supports"], seen["bounds_are_values"])


class _Untraceable(Exception):
    """A model `_starting_points` leaves to numpyro's own search for a start."""


def _raw_key(key):
    """numpyro's samplers take raw uint32 keys, also from a typed `jax.random.key`."""
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


def _to_natural(model, args, kwargs, supports: dict, bounds_are_values: bool):
    """The map of a point in the unconstrained space to natural units: the supports' bijections,
    or, where a support's bounds are values (b ~ Uniform(0, a)), the model rerun at the point:
    only the model knows b's bounds there. numpyro's own postprocess_fn reruns the whole model
    (the solve included) for every draw, to get deterministic sites too."""
    if bounds_are_values:
        return functools.partial(constrain_fn, model, args, kwargs)
    return functools.partial(transform_fn, {k: biject_to(c) for k, c in supports.items()})


def _numpyro_start(model, key, args, kwargs, init_strategy):
    """numpyro's start: the model run op by op (the solve included), repeated from other keys
    while the potential there is not finite. Returns (z, map to natural units)."""
    info, _, _, trace = initialize_model(
        key, model, model_args=args, model_kwargs=kwargs, init_strategy=init_strategy, dynamic_args=False,
        validate_grad=False,  # numpyro would otherwise compile the gradient once more to check it
    )
    supports = {k: trace[k]["fn"].support for k in info.z}
    return info.z, _to_natural(model, args, kwargs, supports, any(map(_bounds_are_values, supports.values())))


def _checked_start(z, potential, model, key, args, kwargs, init_strategy):
    """`z` where `potential(z)` is finite, else numpyro's search from `key` (which raises when it
    finds no start)."""
    if np.isfinite(float(potential(z))):
        return z
    return _numpyro_start(model, key, args, kwargs, init_strategy)[0]


def _bounds_are_values(support) -> bool:
    """Whether a support holds a bound that is not a fixed Python number: an array, which may be
    another site's value (b ~ Uniform(0, a)), or a tracer where the support comes from a traced
    model. numpyro's rule for replaying the model, widened to any such bound, also inside a
    wrapped constraint (`independent`)."""
    return any(not isinstance(x, (int, float)) for x in jax.tree.leaves(support))


@eqx.filter_jit
def _shared_value_and_grad(model, z, args, kwargs):
    """numpyro's potential of `model(*args, **kwargs)` at the unconstrained point `z` (name ->
    value) and its gradient, with the arguments' arrays traced: compiled once per model function
    and structure of the arguments (`_value_and_grad_fn` says when that is safe)."""
    return jax.value_and_grad(lambda z_: potential_energy(model, args, kwargs, z_))(z)


def _shareable(args, kwargs) -> bool:
    """Whether a model's arguments can be the inputs of a program shared across fits: every
    non-array leaf hashes by value (`_hashed_by_value`)."""
    return all(_hashed_by_value(x) for x in jax.tree.leaves(eqx.filter((args, kwargs), eqx.is_array, inverse=True)))


def _hashed_by_value(leaf) -> bool:
    """Whether a non-array argument can key a compiled program: functions and classes (fixed
    code), or objects that compare by value. An object compared by identity (a user's own data
    container) would keep its data in the program as constants, stale if its arrays were
    changed in place, and would keep a program alive per object. (`StackedRecords` is a pytree:
    its arrays are the program's inputs.)"""
    if isinstance(leaf, (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return True
    return type(leaf).__hash__ not in (None, object.__hash__)


def _value_and_grad_fn(model, args, kwargs, z0):
    """z -> (potential, gradient) of the model. Where every argument is an array or compares by
    value (`cell_model`'s and `records_model`'s: a jaxcell model, a ParameterSet, an Experiment
    or records, times, voltages, priors), one compiled program serves every fit of the same
    model and shapes, with the data as its inputs: fitting the next record or cell compiles
    nothing. Otherwise, or where the model needs an argument's values while it is traced (a
    cell index that sets a shape), the potential is compiled for this fit with the arguments
    as constants, numpyro's way."""
    if _shareable(args, kwargs):
        bare_args, bare_kwargs = without_labels((args, kwargs))
        shared = functools.partial(_shared_value_and_grad, model, args=bare_args, kwargs=bare_kwargs)
        try:
            shared(z0)
            return shared
        except jax.errors.JAXTypeError:  # the model needs concrete values of an argument
            pass
    return jax.jit(jax.value_and_grad(lambda z_: potential_energy(model, args, kwargs, z_)))


@eqx.filter_jit
def _shared_potentials(model, zs, args, kwargs):
    """numpyro's potential of `model(*args, **kwargs)` at many unconstrained points (name ->
    values with a leading axis), vmapped; shared across fits as `_shared_value_and_grad`."""
    return jax.vmap(lambda z_: potential_energy(model, args, kwargs, z_))(zs)


def _potentials_fn(model, args, kwargs, unravel):
    """zs (m, d) flat unconstrained points -> their potentials (m,), one batched solve: compiled
    once per model function, structure of the arguments and m where the arguments allow
    (`_shareable`), else for this fit, with the arguments as constants."""
    own = jax.jit(jax.vmap(lambda zi: potential_energy(model, args, kwargs, unravel(zi))))
    if not _shareable(args, kwargs):
        return own
    use_own = []

    def potentials(zs):
        if not use_own:
            try:
                return _shared_potentials(model, jax.vmap(unravel)(jnp.asarray(zs)), *without_labels((args, kwargs)))
            except jax.errors.JAXTypeError:  # the model needs concrete values of an argument
                use_own.append(True)
        return own(zs)

    return potentials


def fit_map(model, *args, key=None, init=None, starts: int = 1, gtol: float = 1e-5, max_steps: int = 200,
            tol: float = 1e-2, **kwargs) -> MAPResult:
    """The maximum a posteriori point of the numpyro `model` (called as model(*args, **kwargs))
    by BFGS (scipy) on numpyro's potential in its unconstrained space, with gradients through
    the solver (`gtol`: the gradient norm at which it stops), and the Laplace approximation
    around it (Hessian by central differences of the gradient).

    The solver's tolerance puts noise on the gradient, so BFGS may stop short of `gtol` ("precision
    loss") at a point that is the optimum for every practical purpose. What counts is the distance
    to the optimum measured by the posterior's own width: damped Newton steps with the Laplace
    Hessian follow BFGS (at most MAX_NEWTON; they also leave a saddle point, where BFGS can stop),
    and the fit has converged when the Hessian is positive definite and the Newton decrement
    sqrt(g' H^-1 g) is below `tol` (the default 0.01: within a hundredth of a posterior standard
    deviation).

    `init`: name -> starting value in natural units (default: the priors' medians).

    `starts`: how many optimisations to run: the first from `init`, the others from draws of
    the priors (`key`); the result is the converged one with the lowest potential, and
    `MAPResult.optima` lists where each ended. A converged fit is a local optimum: a posterior
    with several modes can hold one far worse than the best (a discharge fitted from the
    priors' medians has ended at an 11 mV noise scale where the data's was 2 mV, for a
    diffusivity 36 times too small), which only another start reveals. Each start costs a fit.

    Example:
        >>> res = fit_map(cell_model, jaxcell.SPMe(), p, exp, t, v, priors=priors, starts=4)
        >>> res.summary()["Negative particle diffusivity [m2.s-1]"]
    """
    if not (isinstance(starts, (int, np.integer)) and not isinstance(starts, bool) and starts >= 1):
        raise ValueError(f"fit_map: starts must be a positive integer, got {starts!r}.")
    key = jax.random.key(0) if key is None else key
    (z0,), postprocess_fn = _starting_points(model, [key], args, kwargs, init)
    # BFGS on the host (scipy) around one compiled value_and_grad: optimistix would compile
    # its own loop around the solve again, and takes the derivative in forward mode, which
    # Rodas4's reverse-mode rule (a custom_vjp) does not have
    value_and_grad = _value_and_grad_fn(model, args, kwargs, z0)
    potential = lambda z: value_and_grad(z)[0]
    z0 = _checked_start(z0, potential, model, key, args, kwargs, _strategy(init))
    flat0, unravel = ravel_pytree(z0)
    firsts = [np.asarray(flat0, dtype=float)]
    if starts > 1:
        keys = jax.random.split(key, starts - 1)
        for k, z in zip(keys, _starting_points(model, keys, args, kwargs, sample=True)[0]):
            z = _checked_start(z, potential, model, k, args, kwargs, _strategy(sample=True))
            firsts.append(np.asarray(ravel_pytree(z)[0], dtype=float))

    def fun(z):
        value, grad = value_and_grad(unravel(jnp.asarray(z)))
        return float(value), np.asarray(ravel_pytree(grad)[0], dtype=float)

    sols = [scipy.optimize.minimize(fun, z, jac=True, method="BFGS", options=dict(gtol=gtol, maxiter=max_steps))
            for z in firsts]
    # Newton polish from where BFGS stopped (which may be short of the optimum, or a saddle)
    z, value, H, decrement, converged = _newton_batch(_rows(fun), np.stack([np.asarray(sol.x) for sol in sols]), tol=tol)
    optima = np.where(converged, value, np.nan)
    best = int(np.nanargmin(optima)) if converged.any() else 0
    sol = sols[best]
    message = str(sol.message)
    if starts > 1:
        ok = np.isfinite(optima)
        far = ok & (optima > optima[best] + 1.0)
        message += (f" {int(ok.sum())} of {starts} starts converged; {int(far.sum())} of them ended more than one unit "
                    "of potential above the best (other modes)" if far.any() else
                    f" {int(ok.sum())} of {starts} starts converged, all at the best optimum (within one unit of potential).")
    if not np.all(np.isfinite(H[best])):
        message += (" The potential's Hessian at the end point is not finite (the potential or its gradient is NaN "
                    "there or next to it: a solve that failed?): no Laplace approximation.")
    names = tuple(z0)
    post = postprocess_fn(unravel(jnp.asarray(z[best])))
    for k in names:  # a noise scale that went to zero: the data are fitted exactly
        if k.startswith("sigma") and np.all(np.asarray(post[k]) < NOISE_FLOOR):
            message += (f" The noise scale {k!r} went to {float(np.max(post[k])):.1e}: the model fits the data exactly "
                        "(noise-free synthetic data?), and a noise scale of zero has no finite posterior peak. Add "
                        "measurement noise to synthetic data, or give a noise prior bounded away from zero.")
    return MAPResult(
        params={k: np.asarray(post[k]) for k in names},
        unconstrained=z[best],
        hessian=H[best],
        converged=bool(converged[best]),
        steps=int(sol.nit),
        potential=float(value[best]),
        decrement=float(decrement[best]),
        message=message,
        _unravel=unravel,
        _postprocess=postprocess_fn,
        names=names,
        _potential=_potentials_fn(model, args, kwargs, unravel),
        optima=tuple(float(x) for x in optima),
        _value_and_grad=value_and_grad,
    )


def _hessian(fun, z):
    """Central differences of the gradient (the compiled value_and_grad again: no second
    compile). `fun(z)` returns (value, gradient); z is one point (d,) or a batch of them
    (..., d) that `fun` evaluates at once, giving Hessians (..., d, d), symmetrised."""
    d = z.shape[-1]
    H = np.zeros(z.shape + (d,))
    for i in range(d):
        e = np.zeros(d)
        e[i] = HESSIAN_STEP
        H[..., :, i] = (fun(z + e)[1] - fun(z - e)[1]) / (2 * HESSIAN_STEP)
    return 0.5 * (H + np.swapaxes(H, -1, -2))


def _newton_batch(fun, z, progress_bar=False, *, tol: float = TOL, max_steps: int = MAX_NEWTON):
    """Damped Newton on every row of z (B, d) at once; `fun(z)` gives the potentials (B,) and
    their gradients (B, d). The Hessian (central differences of the gradient) is renewed every
    REFRESH steps. A row whose Hessian is not positive definite takes a step with its negative
    and near-zero eigenvalues lifted (`_lift`); a step is shortened to at most MAX_STEP in every
    coordinate, then halved until the potential
    decreases (up to HALVINGS times; a row that does not decrease keeps its point). Returns
    (z, value, H, decrement, converged): the points, the potential there, the Hessian there,
    the Newton decrement sqrt(g' H^-1 g) (inf where H is not positive definite) and where it is
    below `tol`."""
    from tqdm.auto import tqdm

    from ._calibration import _positive_definite

    value, g = fun(z)
    if z.shape[1] == 0:  # nothing to fit (a profile of the model's only parameter)
        return z, value, np.zeros(z.shape + (0,)), np.zeros(z.shape[0]), np.ones(z.shape[0], bool)
    bar = tqdm(total=max_steps, desc="Laplace fits (Newton)", disable=not progress_bar, unit="step")
    age, fresh = REFRESH, False
    for _ in range(max_steps):
        if age >= REFRESH:
            H, age = _hessian(fun, z), 0
        age += 1
        # a row whose gradient or Hessian is not finite (a solve failed at or next to its point)
        # stays where it is, not converged
        finite = _finite_rows(H, g)
        w, V = np.linalg.eigh(np.where(finite[:, None, None], H, np.eye(H.shape[-1])))
        step = np.einsum("rij,rj,rkj,rk->ri", V, 1.0 / _lift(w), V, np.where(finite[:, None], g, 0.0))
        decrement = np.sqrt(np.maximum(np.einsum("ri,ri->r", g, step), 0.0))
        # far from the optimum a flat direction's Newton step can be huge: at most MAX_STEP in
        # every unconstrained coordinate (a log or logit: a factor e in a positive parameter)
        step *= np.minimum(1.0, MAX_STEP / np.maximum(np.abs(step).max(axis=1, keepdims=True), 1e-300))
        done = finite & np.all(w > 0, axis=1) & (decrement < tol)
        bar.update(1)
        bar.set_postfix(converged=f"{int(done.sum())}/{done.size}")
        if (done | ~finite).all():
            if age == 1:  # judged with a Hessian of this point
                fresh = True
                break
            age = REFRESH
            continue
        alpha = np.where(done | ~finite, 0.0, 1.0)
        for _ in range(HALVINGS):
            trial = z - alpha[:, None] * step
            v_new, g_new = fun(trial)
            # a decrease within the potential's own noise (the solver's tolerance) counts
            better = (v_new <= value + 1e-10 * np.abs(value)) | (alpha == 0)
            if better.all():
                break
            alpha = np.where(better, alpha, alpha / 2)
        keep = better & (alpha > 0)
        z = np.where(keep[:, None], trial, z)
        value, g = np.where(keep, v_new, value), np.where(keep[:, None], g_new, g)
    bar.close()
    if not fresh:
        H = _hessian(fun, z)
    ok = _positive_definite(H) & np.all(np.isfinite(g), axis=1)
    step = np.linalg.solve(np.where(ok[:, None, None], H, np.eye(z.shape[1])),
                           np.where(ok[:, None], g, 0.0)[:, :, None])[:, :, 0]
    decrement = np.where(ok, np.sqrt(np.maximum(np.einsum("ri,ri->r", g, step), 0.0)), np.inf)
    return z, value, H, decrement, ok & (decrement < tol)


def _finite_rows(H, g):
    """Rows (points) whose Hessian and gradient are finite."""
    return np.all(np.isfinite(H), axis=(1, 2)) & np.all(np.isfinite(g), axis=1)


def _lift(w):
    """Eigenvalues for a Newton step: positive ones as they are (an ill-conditioned but positive
    definite Hessian still gives the Newton step, whose convergence is quadratic), negative
    ones by their magnitude (the step then descends along them too), and those near zero
    relative to the largest (numerically singular, or noise of the finite differences) raised to
    1e-3 of it, which bounds the step along them."""
    scale = np.maximum(np.abs(w).max(axis=-1, keepdims=True), 1.0)
    return np.where(w > 1e-8 * scale, w, np.maximum(np.abs(w), 1e-3 * scale))


def _rows(fun):
    """`fun` of one point (d,) -> (value, gradient) as a function of a batch (B, d), row by row
    (`_newton_batch` for a single fit)."""

    def batched(z):
        out = [fun(zi) for zi in z]
        return np.array([v for v, _ in out]), np.array([g for _, g in out])

    return batched


class _PotentialNUTS(NUTS):
    """numpyro's NUTS on a model's potential (`potential_fn`) that still names the model as its
    own: arviz reads `sampler.model` for the observed data and the log likelihood."""

    def __init__(self, model, potential_fn, **kwargs):
        super().__init__(potential_fn=potential_fn, **kwargs)
        self._named_model = model

    @property
    def model(self):
        return self._named_model


def run_nuts(model, *args, key=None, num_warmup: int = 500, num_samples: int = 500, num_chains: int = 1,
             init=None, progress_bar: bool = True, target_accept_prob: float = 0.8, dense_mass: bool = False,
             chain_method: str = "sequential", adapt_mass_matrix: bool = True, deterministic: bool = False, **kwargs):
    """NUTS (numpyro) on `model(*args, **kwargs)`, gradients through the solver; `init`: name ->
    starting value in natural units (e.g. a `fit_map` result's `params`). `chain_method`:
    "sequential" (chains one after another), "vectorized" (all chains in one `vmap`ped
    program, as jaxcell solves a population: every leapfrog step solves all chains' cells at
    once, and a tree waits for the chains' longest; many chains pay where a solve is cheap
    per extra cell) or "parallel" (one chain per device). Returns the `numpyro.infer.MCMC`
    object (`get_samples()`, `print_summary()`); `diagnostics(mcmc)` has R-hat, effective
    sample sizes and divergences.

    Warm start: `init` may be a converged `fit_map` result of the same model and data. The
    chains then start at independent draws of its Laplace approximation and the sampler's
    (dense) inverse mass matrix is its covariance; with `adapt_mass_matrix=False` the warmup
    adapts the step size only, so a short one (a hundred or two) does.

    The sampler runs on the model's potential: the chains' starting points (each chain its own
    draw of `init_to_median`, `init` or the Laplace approximation) come with their potential
    and gradient from one compiled program (the MAP fit's own, for a warm start), where
    numpyro, given the model, would compile a search for valid starting points and the
    gradient at them once more, apart from the sampler (about a minute on an SPM fit).

    The draws are mapped to natural units site by site (by rerunning the model only where a
    site's bounds depend on another site). The model's deterministic sites (`cell_model`'s
    "V_model", a hierarchy's cell values, which `cell_values` also derives from the draws) are
    in `get_samples()` only with `deterministic=True`: that runs the model, solves included,
    once more for every draw, and puts another solve into the sampler's compiled program."""
    from numpyro.infer import MCMC
    from numpyro.infer.util import ParamInfo

    for name, value, low in (("num_samples", num_samples, 1), ("num_chains", num_chains, 1),
                             ("num_warmup", num_warmup, 0)):
        check_int(value, f"run_nuts: {name}", low)  # num_chains=0 failed inside numpyro (IndexError)
    key = jax.random.key(0) if key is None else key
    key, k_init = jax.random.split(key)
    warm = init if isinstance(init, MAPResult) else None
    mass = dict(dense_mass=dense_mass)
    if warm is not None:
        if not warm.converged:
            raise ValueError(f"run_nuts: init is a MAP fit that did not converge ({warm.message}); its Laplace "
                             "approximation cannot start the chains. Fit again (more steps, other starts) or give "
                             "init as name -> value.")
        starts = [warm._unravel(jnp.asarray(z)) for z in warm._unconstrained_draws(k_init, num_chains)]
        mass = dict(inverse_mass_matrix=jnp.asarray(warm.covariance), dense_mass=True)
        to_natural = warm._postprocess
    else:
        keys = jax.random.split(k_init, num_chains)
        starts, to_natural = _starting_points(model, keys, args, kwargs, init)
    if deterministic:
        to_natural = functools.partial(constrain_fn, model, args, kwargs, return_deterministic=True)
    value_and_grad = (warm and warm._value_and_grad) or _value_and_grad_fn(model, args, kwargs, starts[0])
    # one call of the compiled program per chain: a vmap over the chains would compile another
    at_starts = [ParamInfo(z, *value_and_grad(z)) for z in starts]
    if warm is None:  # numpyro's search where a start's potential is not finite (the one just computed)
        for i, (start, k) in enumerate(zip(at_starts, keys)):
            z = _checked_start(start.z, lambda _, u=start.potential_energy: u, model, k, args, kwargs, _strategy(init))
            if z is not start.z:
                at_starts[i] = ParamInfo(z, *value_and_grad(z))
    init_params = at_starts[0] if num_chains == 1 else jax.tree.map(lambda *x: jnp.stack(x), *at_starts)
    kernel = _PotentialNUTS(model, functools.partial(potential_energy, model, args, kwargs),
                            target_accept_prob=target_accept_prob, adapt_mass_matrix=adapt_mass_matrix, **mass)
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method=chain_method, progress_bar=progress_bar,
                postprocess_fn=to_natural)
    mcmc.run(key, *args, extra_fields=("diverging", "num_steps"), init_params=init_params, **kwargs)
    return mcmc


def diagnostics(mcmc) -> dict:
    """name -> {"mean", "sd", "q05", "q95", "r_hat", "ess"} of the sampled sites of a NUTS run
    (`run_nuts`) or of independence Metropolis-Hastings chains (`run_imh`); and for NUTS
    "divergences", the number of divergent transitions, for `run_imh` "acceptance", each
    chain's acceptance rate. R-hat and the effective sample size are NaN (unknown) with fewer
    than MIN_CHAIN_DRAWS draws per chain (the split R-hat needs them), and an effective sample
    size that the estimator puts below zero (short chains) is NaN."""
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    samples = mcmc.get_samples(group_by_chain=True)
    imh = _is_imh(mcmc)
    latent = set(mcmc.names if imh else mcmc.last_state.z)  # the sampled sites (not deterministic ones)
    out = {}
    for name, x in samples.items():
        if name not in latent:
            continue
        x = np.asarray(x)
        stats = _stats(x.reshape((-1,) + x.shape[2:]))
        if x.shape[1] < MIN_CHAIN_DRAWS:  # numpyro asserts
            stats["r_hat"] = stats["ess"] = np.full(x.shape[2:], np.nan)
        else:
            stats["r_hat"] = np.asarray(split_gelman_rubin(x))
            ess = np.asarray(effective_sample_size(x))
            stats["ess"] = np.where(ess > 0, ess, np.nan)
        out[name] = stats
    if imh:
        out["acceptance"] = np.asarray(mcmc.acceptance)
    else:
        out["divergences"] = int(np.sum(np.asarray(mcmc.get_extra_fields()["diverging"])))
    return out


def _is_imh(result) -> bool:
    from ._imh import IMHResult

    return isinstance(result, IMHResult)


def _is_mcmc(result) -> bool:
    """A numpyro MCMC run (`run_nuts`)."""
    return hasattr(result, "get_samples") and hasattr(result, "last_state")


@dataclasses.dataclass(frozen=True)
class SVIResult:
    """A variational fit (`fit_svi`): the guide, its fitted parameters and draws from it.

    Attributes:
        samples: name -> draws (n, ...) of the model's sampled sites in natural units.
        losses: the ELBO loss (negative evidence lower bound) at every step.
        converged: whether the loss had stopped falling: the mean of its last tenth differs from
            the tenth before by less than the standard deviation of the last tenth, and is finite
            (never for fewer than 200 steps: tenths of at least `MIN_WINDOW` steps).
        guide, params: the numpyro guide and its parameters (`guide.sample_posterior`).
    """

    samples: dict
    losses: np.ndarray
    converged: bool
    guide: object = dataclasses.field(repr=False)
    params: dict = dataclasses.field(repr=False)

    def summary(self) -> dict:
        """name -> {"mean", "sd", "q05", "q95"} of the draws."""
        return {k: _stats(v) for k, v in self.samples.items()}


# the windows `_loss_converged` compares hold at least this many steps: a shorter run cannot
# show a plateau from the noise of a one-sample ELBO
MIN_WINDOW = 20


def _loss_converged(losses: np.ndarray) -> bool:
    n = len(losses) // 10
    if n < MIN_WINDOW or not np.all(np.isfinite(losses[-2 * n:])):
        return False
    last, before = losses[-n:], losses[-2 * n:-n]
    return bool(abs(last.mean() - before.mean()) < last.std(ddof=1))


@contextlib.contextmanager
def _guide_setup_without_gradient_check():
    """An autoguide sets itself up on its first call (outside any `jit`) with numpyro's
    `initialize_model`, which evaluates the potential's gradient at the initial point to check
    that it is finite. Evaluated eagerly, that gradient compiles the solve's forward-mode
    derivative and its transpose as two programs of their own, which the fit never uses again
    (about 35 s on two cores for a record solve). Here the guide checks the potential alone, as
    `fit_map` does; a gradient that is not finite shows in the SVI loss, and such a fit is not
    converged (`_loss_converged`)."""
    import numpyro.infer.autoguide as autoguide

    original = autoguide.initialize_model
    autoguide.initialize_model = functools.partial(original, validate_grad=False)
    try:
        yield
    finally:
        autoguide.initialize_model = original


def fit_svi(model, *args, guide: str = "normal", key=None, num_steps: int = 2000, learning_rate: float = 0.01,
            num_samples: int = 1000, init=None, progress_bar: bool = True, **kwargs) -> SVIResult:
    """Stochastic variational inference (numpyro) on `model(*args, **kwargs)`: an autoguide,
    `guide="normal"` (`AutoNormal`, independent normals in the unconstrained space, default) or
    `"multivariate"` (`AutoMultivariateNormal`, with correlations), fitted by Adam at
    `learning_rate` for `num_steps` steps of the ELBO (gradients through the solver), then
    `num_samples` draws from it. `init`: name -> starting value in natural units (default: the
    priors' medians). A progress bar shows the loss.

    Example:
        >>> res = fit_svi(cell_model, jaxcell.SPMe(), p, exp, t, v, priors=priors, num_steps=1000)
        >>> res.summary()["Negative particle diffusivity [m2.s-1]"], res.converged
    """
    import numpyro.optim
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoMultivariateNormal, AutoNormal
    from numpyro.infer.initialization import init_to_median, init_to_value

    guides = {"normal": AutoNormal, "multivariate": AutoMultivariateNormal}
    if guide not in guides:
        raise ValueError(f"guide must be one of {sorted(guides)}, got {guide!r}.")
    for label, v in (("num_steps", num_steps), ("num_samples", num_samples)):
        if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1):
            raise ValueError(f"{label} must be a positive integer, got {v!r}.")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}.")
    key = jax.random.key(0) if key is None else key
    strategy = init_to_value(values=init) if init else init_to_median()
    g = guides[guide](model, init_loc_fn=strategy)
    svi = SVI(model, g, numpyro.optim.Adam(learning_rate), Trace_ELBO())
    k_fit, k_draw = jax.random.split(key)
    with _guide_setup_without_gradient_check():
        state = svi.init(k_fit, *args, **kwargs)
    run = svi.run(k_fit, num_steps, *args, progress_bar=progress_bar, init_state=state, **kwargs)
    draws = g.sample_posterior(k_draw, run.params, *args, sample_shape=(num_samples,), **kwargs)
    losses = np.asarray(run.losses)
    return SVIResult(samples={k: np.asarray(v) for k, v in draws.items()}, losses=losses,
                     converged=_loss_converged(losses), guide=g, params=run.params)


def posterior_samples(result, key=None, n: int = 1000, importance: int = 0) -> dict:
    """name -> draws (n_draws, ...) of the sampled sites from any engine's result: a `MAPResult`
    (`n` draws of its Laplace approximation, importance-corrected with `importance` proposals
    if given), an `SVIResult`, a NUTS run (`numpyro.infer.MCMC`) or `run_imh`'s chains (chains
    concatenated)."""
    if isinstance(result, MAPResult):
        return result.sample(jax.random.key(0) if key is None else key, n, importance)
    if isinstance(result, SVIResult):
        return dict(result.samples)
    if _is_imh(result):
        return result.get_samples()
    if _is_mcmc(result):
        latent = set(result.last_state.z)
        return {k: np.asarray(v) for k, v in result.get_samples().items() if k in latent}
    raise TypeError(f"expected a MAPResult, an SVIResult, a numpyro MCMC or an IMHResult, got {type(result).__name__}.")


def to_inference_data(result, key=None, n: int = 1000):
    """The result of `fit_map` (Laplace draws), `fit_svi`, `run_nuts` or `run_imh` as an arviz
    `InferenceData` (posterior group; for NUTS and IMH chains kept, for NUTS also the sample
    statistics)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # arviz announces its 1.0 refactor on import
        import arviz as az
    if _is_mcmc(result):
        return az.from_numpyro(result)
    if _is_imh(result):
        return az.from_dict(posterior=result.get_samples(group_by_chain=True))
    draws = posterior_samples(result, key, n)
    return az.from_dict(posterior={k: np.asarray(v)[None] for k, v in draws.items()})


def summary_table(result, key=None, n: int = 1000, importance: int = 0):
    """A pandas table, one row per scalar parameter (vector sites get one row per element,
    "name[i]"): mean, sd, q05, q95, and for NUTS and IMH chains r_hat and ess, with the
    divergences (NUTS) or the chains' acceptance rates (IMH) in `table.attrs`. `importance`:
    see `MAPResult.sample`."""
    import pandas as pd

    chains = _is_mcmc(result) or _is_imh(result)
    stats = diagnostics(result) if chains else {
        k: _stats(v) for k, v in posterior_samples(result, key, n, importance).items()}
    extra = {k: stats.pop(k) for k in ("divergences", "acceptance") if chains and k in stats}
    rows = {}
    for name, st in stats.items():
        shape = np.shape(st["mean"])
        for i in np.ndindex(shape):
            label = name if not shape else f"{name}[{','.join(map(str, i))}]"
            rows[label] = {k: float(np.asarray(v)[i]) for k, v in st.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.attrs.update(extra)
    return table
