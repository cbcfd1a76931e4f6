"""numpyro building blocks: priors on cell parameters in natural units, a voltage noise model,
and the likelihood of a measured voltage through `jaxcell.simulate`.

They are plain functions to call inside a numpyro model (STYLE: numpyro models are functions of
data), so a user can compose their own; `cell_model` is the ready-made one for one cell.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from .._forward import in_forward_mode
from ..parameters import ParameterSet
from ..parameters._parameter_set import _rule
from ..simulate import MAX_STEPS, _prepare, _simulate_jit
from ..soc import with_initial_soc
from ..solution import Status

# a measured point after the simulated cell stopped (it reached a cut-off before the measurement
# ended) is compared with the cut-off it stopped at: a large residual where the measurement goes
# on far from the cut-off, so such parameters are unlikely (a masked point would reward stopping
# early), and continuous in the parameters as the stop moves past a measured time, where the
# simulated voltage at that time tends to the cut-off (a fixed 0 V makes the posterior jump
# there by (V / sigma)^2 / 2, which neither BFGS nor a Hessian by finite differences survives).
# A record with no simulated point at all compares with this
UNREACHED_VOLTAGE = 0.0


def hold_last_voltage(predicted, cut_offs=None, status=None):
    """`predicted` (..., points) with the non-finite points (those after the simulation stopped)
    replaced by the voltage the cell stopped at. With `cut_offs` = (lower, upper) [V] and the
    solves' `status` (codes, `predicted.shape[:-1]`): the lower cut-off where the status is
    `Status.LOWER_CUTOFF`, the upper where it is `Status.UPPER_CUTOFF` (the voltage at the stop,
    exactly); otherwise, and for other stops, the last finite voltage before them. A row with no
    finite point becomes `UNREACHED_VOLTAGE`.

    The cut-off comes from the status, not from the last finite voltage: at the end of a
    discharge the voltage falls so steeply that the last measured time before the stop can still
    read 3.1 V or more, nearer the upper cut-off than the lower one."""
    predicted = jnp.asarray(predicted)
    finite = jnp.isfinite(predicted)
    index = jnp.where(finite, jnp.arange(predicted.shape[-1]), -1)
    last = jax.lax.cummax(index, axis=predicted.ndim - 1)
    held = jnp.take_along_axis(predicted, jnp.maximum(last, 0), axis=-1)
    if cut_offs is not None:
        if status is None:
            raise TypeError("hold_last_voltage: give the solves' `status` with `cut_offs`: it says which cut-off "
                            "each solve stopped at.")
        lower, upper = cut_offs
        status = jnp.asarray(status)[..., None]
        held = jnp.where(status == Status.LOWER_CUTOFF, lower, jnp.where(status == Status.UPPER_CUTOFF, upper, held))
    return jnp.where(finite, predicted, jnp.where(last >= 0, held, UNREACHED_VOLTAGE))


def voltage_limits(p: ParameterSet):
    """The set's (lower, upper) voltage cut-offs [V]: where a simulation stops early."""
    return p["Lower voltage cut-off [V]"], p["Upper voltage cut-off [V]"]


def _bounds(name: str) -> str:
    """"fraction" for a parameter in (0, 1) (porosities, volume fractions), "positive" for one
    that must be positive, "real" otherwise (the set's validation rules)."""
    rule = _rule(name)
    if rule is None:
        return "real"
    desc = rule[0]
    if "(0, 1)" in desc or "(0, 1]" in desc:
        return "fraction"
    if desc in ("positive", "non-negative"):
        return "positive"
    return "real"


def default_prior(name: str, nominal, spread: float = 0.5) -> dist.Distribution:
    """A weakly informative prior on parameter `name` around `nominal`, in natural units: a
    log-normal with log-standard deviation `spread` for a positive parameter (0.5: the 90 %
    interval spans a factor 2.3 either side), a logit-normal with logit-standard deviation
    `spread` for a fraction, a normal with standard deviation `spread` x |nominal| otherwise.

    Example:
        >>> default_prior("Negative particle diffusivity [m2.s-1]", 3.3e-14)
    """
    nominal = float(np.asarray(nominal))
    if not spread > 0:
        raise ValueError(f"spread must be positive, got {spread}.")
    kind = _bounds(name)
    if kind == "positive":
        if not nominal > 0:
            raise ValueError(f"{name!r} is positive; its prior's centre must be too, got {nominal}.")
        return dist.LogNormal(np.log(nominal), spread)
    if kind == "fraction":
        if not 0 < nominal < 1:
            raise ValueError(f"{name!r} lies in (0, 1); its prior's centre must too, got {nominal}.")
        return dist.TransformedDistribution(dist.Normal(np.log(nominal / (1 - nominal)), spread), dist.transforms.SigmoidTransform())
    return dist.Normal(nominal, spread * max(abs(nominal), 1e-12))


def check_prior(name: str, prior: dist.Distribution) -> None:
    """Raise `ValueError` if `prior`'s support reaches outside the range of parameter `name`
    (e.g. a normal prior on a diffusivity puts mass on negative values)."""
    kind = _bounds(name)
    outside = {"positive": (-1.0,), "fraction": (-0.5, 1.5)}.get(kind, ())
    with jax.ensure_compile_time_eval():
        inside = [jnp.all(prior.support.check(jnp.asarray(v))) for v in outside]
        if any(isinstance(c, jax.core.Tracer) for c in inside):  # a prior whose bounds are traced
            return
        bad = any(bool(c) for c in inside)
    if bad:
        raise ValueError(
            f"the prior on {name!r} has support {prior.support}, outside the parameter's range "
            f"({'positive' if kind == 'positive' else 'in (0, 1)'}): use a log-normal, a logit-normal or a "
            "distribution truncated to the range (jaxcell.inference.default_prior)."
        )


def sample_parameters(p: ParameterSet, priors: Mapping[str, dist.Distribution]) -> ParameterSet:
    """Inside a numpyro model: sample each named parameter from its prior (sites named as the
    parameters) and return the set with them in."""
    return p.update(_sample_values(p, priors))


def _sample_values(p: ParameterSet, priors: Mapping[str, dist.Distribution]) -> dict:
    values = {}
    for name, prior in priors.items():
        if name not in p:
            raise ValueError(f"unknown parameter {name!r} in the priors (parameter set {p.name!r}).")
        check_prior(name, prior)
        values[name] = numpyro.sample(name, prior)
    return values


def voltage_likelihood(predicted, observed, sigma, *, mask=None, noise: str = "gaussian", df: float = 4.0, name="V",
                       cut_offs=None, status=None):
    """Inside a numpyro model: the measured voltage given the simulated one, with noise of scale
    `sigma` [V], Gaussian or Student-t (`df` degrees of freedom; robust to outliers). Points the
    simulation did not reach (non-finite: it stopped early) count as the voltage it stopped at:
    the cut-off of `cut_offs` = (lower, upper) [V] that the solves' `status` names, else the last
    simulated voltage (`hold_last_voltage`); `mask` (boolean, same shape) leaves out padding.
    A measured point that is not finite (and not masked) is refused where `observed` is
    concrete: its density would be NaN for every parameter, and a fit would end in numpyro's
    "Cannot find valid initial parameters"."""
    _check_observed(observed, mask, name, predicted)
    predicted = hold_last_voltage(predicted, cut_offs, status)
    if noise == "gaussian":
        d = dist.Normal(predicted, sigma)
    elif noise == "student_t":
        d = dist.StudentT(df, predicted, sigma)
    else:
        raise ValueError(f"noise must be 'gaussian' or 'student_t', got {noise!r}.")
    if mask is not None:
        d = d.mask(jnp.asarray(mask, bool))
    # no observation (a prior predictive): one event per point, as np.ndim(None) = 0 gave (JAX's
    # ndim of None is deprecated)
    return numpyro.sample(name, d.to_event(0 if observed is None else jnp.ndim(observed)), obs=observed)


def _check_observed(observed, mask, name: str, predicted=None) -> None:
    if observed is None:
        return
    if predicted is not None:
        try:
            np.broadcast_shapes(np.shape(observed), np.shape(predicted))
        except ValueError:
            raise ValueError(f"the observed values of {name!r} have shape {np.shape(observed)}, the simulated ones "
                             f"{np.shape(predicted)}: give one measured value per simulated one.") from None
    if any(isinstance(x, jax.core.Tracer) for x in (observed, mask)):
        return
    obs = np.asarray(observed)
    keep = np.ones(obs.shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), obs.shape)
    bad = np.argwhere(~np.isfinite(obs) & keep)
    if bad.size:
        at = ", ".join(map(str, bad[0])) if obs.ndim > 1 else str(bad[0][0])
        raise ValueError(f"the observed values of {name!r} are not finite at {len(bad)} point(s), the first at index "
                         f"{at} ({obs[tuple(bad[0])]}): leave those points out, or mask them (mask=).")


def temperature_likelihood(predicted, observed, sigma, *, mask=None, name: str = "T"):
    """Inside a numpyro model: a measured cell temperature [K] (..., points) given the simulated
    one, as rises from each row's first point (a thermocouple's offset from the cell's mean,
    and the set's initial temperature against the measured one, drop out), Gaussian with scale
    `sigma` [K]. Points after a solve stopped hold its last temperature (`hold_last_voltage`);
    `mask` (boolean, same shape) leaves out padding.

    Example:
        >>> temperature_likelihood(sol.temperature, rec.temperature, sigma_T)
    """
    _check_observed(observed, mask, name)
    predicted = hold_last_voltage(predicted)
    observed = jnp.asarray(observed)
    d = dist.Normal(predicted - predicted[..., :1], sigma)
    if mask is not None:
        d = d.mask(jnp.asarray(mask, bool))
    return numpyro.sample(name, d.to_event(jnp.ndim(observed)), obs=observed - observed[..., :1])


def ocv_curve_voltage(p: ParameterSet, soc, ends):
    """The set's open-circuit voltage [V] at the states of charge `soc` of a measured curve whose
    own scale runs from `ends[0]` (its voltage at 0 %) to `ends[1]` (at 100 %): the window
    between the stoichiometries where the set's open-circuit voltage equals those ends, with
    the set's cyclable lithium and electrode capacities (`jaxcell.soc`). Traceable, with
    derivatives through the window's root finds, so a fit can move the capacities and the
    lithium inventory to match the curve's shape. One cell's set; `ValueError` where the set
    (concrete) cannot reach an end voltage within the stoichiometries its lithium allows."""
    from ..soc import _check_window, _window_of, open_circuit_voltage

    if p.batch_shape:
        raise ValueError("ocv_curve_voltage: give one cell's set (this one is batched, shape "
                         f"{p.batch_shape}); map it over cells with jax.vmap.")
    q = p.update({"Open-circuit voltage at 0% SOC [V]": ends[0], "Open-circuit voltage at 100% SOC [V]": ends[1]})
    x_0, x_100, y_0, y_100 = _window_of(q)
    if not isinstance(x_0, jax.core.Tracer):  # where concrete: the ends must be reachable
        try:
            _check_window(q, x_0, x_100, y_0, y_100)
        except ValueError as e:
            raise ValueError(f"ocv_curve_voltage: the curve's ends ({float(ends[0]):g}, {float(ends[1]):g}) V: {e}") from None
    s = jnp.asarray(soc)
    return open_circuit_voltage(q, x_0 + s * (x_100 - x_0), y_0 - s * (y_0 - y_100))


def _check_ocv_curve(soc, voltage, ends):
    if soc.shape != voltage.shape or soc.ndim != 1 or soc.size < 2:
        raise ValueError(f"ocv_likelihood: soc and voltage must be 1-D of the same length (at least 2), got shapes "
                         f"{soc.shape} and {voltage.shape}.")
    if not (np.all(np.isfinite(soc)) and np.all(np.isfinite(voltage))):
        raise ValueError("ocv_likelihood: soc and voltage must be finite (no NaN).")
    if soc.min() < 0 or soc.max() > 1:
        raise ValueError(f"ocv_likelihood: soc must lie in [0, 1], got [{soc.min():g}, {soc.max():g}].")
    if not ends[0] < ends[1]:
        raise ValueError(f"ocv_likelihood: ends must be (voltage at 0 %, voltage at 100 %) with the first below the "
                         f"second, got ({ends[0]:g}, {ends[1]:g}) V.")


def ocv_likelihood(p: ParameterSet, soc, voltage, sigma, *, ends, name: str = "OCV"):
    """Inside a numpyro model: a measured open-circuit-voltage curve (`voltage` [V] against
    `soc` in [0, 1], e.g. the mean of a slow charge and discharge) as evidence on the set's
    stoichiometry window: Gaussian residuals of scale `sigma` [V] around `ocv_curve_voltage`.
    `ends` = (voltage at 0 %, voltage at 100 %) of the curve's own state-of-charge scale (its
    first and last points when it spans 0 to 1). A rate test alone fixes where a discharge
    ends, not how the two electrodes share it; the curve's shape does.

    Example:
        >>> o = pd.read_csv("ocv_25degC.csv")
        >>> ocv_likelihood(q, o.soc, o.ocv_V, sigma, ends=(o.ocv_V.iloc[0], o.ocv_V.iloc[-1]))
    """
    if not any(isinstance(a, jax.core.Tracer) for a in (soc, voltage, *ends)):  # checked where concrete
        _check_ocv_curve(np.asarray(soc, dtype=np.float64), np.asarray(voltage, dtype=np.float64),
                         [float(np.asarray(e)) for e in ends])
    soc, voltage = jnp.asarray(soc), jnp.asarray(voltage)
    model = ocv_curve_voltage(p, soc, ends)
    return numpyro.sample(name, dist.Normal(model, sigma).to_event(1), obs=voltage)


def cell_model(model, p: ParameterSet, experiment, t_eval, observed=None, *, priors, noise_prior=None,
               noise: str = "gaussian", mask=None, initial_soc=None, rtol: float = 1e-6, atol: float = 1e-8):
    """A numpyro model of one cell's measured voltage: parameters from `priors` (name ->
    distribution in natural units), the voltage at `t_eval` from `simulate`, and measurement
    noise of unknown scale `sigma` [V] (prior `noise_prior`, default a half-normal of scale 10 mV).
    Derivatives (MAP, NUTS) are taken in forward mode with respect to the sampled parameters
    (`simulate_voltage`): exact for the discrete solve, and for a few parameters about the cost
    of reverse mode.

    Example:
        >>> priors = {k: default_prior(k, p[k]) for k in names}
        >>> mcmc = numpyro.infer.MCMC(numpyro.infer.NUTS(cell_model), num_warmup=200, num_samples=200)
        >>> mcmc.run(key, jaxcell.SPMe(), p, experiment, t, v, priors=priors)
    """
    if observed is not None and np.shape(observed) != np.shape(t_eval):  # before the solve is traced
        raise ValueError(f"observed has shape {np.shape(observed)} and t_eval {np.shape(t_eval)}: give one measured "
                         "voltage per time of t_eval.")
    values = _sample_values(p, priors)
    sigma = numpyro.sample("sigma", noise_prior if noise_prior is not None else dist.HalfNormal(0.01))
    voltage, status = simulate_voltage(model, p, values, experiment, t_eval, initial_soc=initial_soc, rtol=rtol,
                                       atol=atol)
    numpyro.deterministic("V_model", voltage)
    return voltage_likelihood(voltage, observed, sigma, mask=mask, noise=noise, cut_offs=voltage_limits(p.update(values)),
                              status=status)


def simulate_voltage(model, p: ParameterSet, values, experiment, t_eval, *, initial_soc=None, rtol: float = 1e-6,
                     atol: float = 1e-8):
    """The voltage at `t_eval` and the status of `simulate(model, p.update(values), experiment,
    t_eval=t_eval, initial_soc=initial_soc, ...)`, differentiable with respect to `values` (name ->
    value) in forward mode, whatever transformation asks (`jax.grad` included): exact for the
    discrete solution, where reverse mode recomputes steps (`jaxcell._forward`). Derivatives
    with respect to anything else (`p`, the times) raise NotImplementedError."""
    model, _, table, modes, t_eval, opts = _prepare(model, p.update(values), experiment, t_eval, rtol, atol,
                                                     MAX_STEPS, None, None)

    def solve(opts_, vals, others):
        model_, p_, table_, t_ = others
        q = p_.update(vals)
        q = q if initial_soc is None else with_initial_soc(q, initial_soc)
        sol = _simulate_jit(model_, q, table_, modes, t_, opts_)
        return sol.voltage, sol.status

    return in_forward_mode(solve, opts, values, (model, p, table, t_eval))
