"""Profile likelihood: one parameter fixed on a grid, the others at their best for each value.
A flat profile is a direction the data do not determine; the others' values along it show
what trades off against it (a ridge)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ._calibration import _batched_fit


@dataclasses.dataclass(frozen=True)
class ProfileResult:
    """The profile of `name` over `values`.

    Attributes:
        name, values: the fixed parameter and its grid (natural units).
        log_likelihood: (n,) the log joint density maximised over every other parameter, without
            the fixed parameter's own prior: the profile log-likelihood (times the others'
            priors, which a broad prior makes negligible).
        others: name -> (n,) the other parameters at their best for each value.
        converged: (n,) whether each inner fit converged.
    """

    name: str
    values: np.ndarray
    log_likelihood: np.ndarray
    others: dict
    converged: np.ndarray

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """The grid's range where the profile is within chi2_1(level) / 2 of its maximum (the
        likelihood-ratio interval; 1.92 for 95 %), or an end of the grid where the profile does
        not fall that far (the data do not bound the parameter there)."""
        import scipy.stats

        drop = scipy.stats.chi2.ppf(level, 1) / 2
        ok = self.log_likelihood >= np.nanmax(self.log_likelihood) - drop
        inside = self.values[ok]
        return float(inside.min()), float(inside.max())

    def plot(self, path=None):
        """The profile (relative to its maximum) and, below it, the other parameters along it
        (relative to their values at the profile's maximum). Returns the figure."""
        import matplotlib.pyplot as plt

        best = int(np.nanargmax(self.log_likelihood))
        fig, (a, b) = plt.subplots(2, 1, figsize=(5, 5), sharex=True)
        a.plot(self.values, self.log_likelihood - self.log_likelihood[best], "o-")
        a.axhline(-1.92, color="0.6", ls="--", lw=1, label="95 % (likelihood ratio)")
        a.set_ylabel("profile log-likelihood")
        a.legend(fontsize=8)
        for k, v in self.others.items():
            b.plot(self.values, v / v[best], ".-", label=k.split(" [")[0])
        b.set_ylabel("others / at the best")
        b.set_xlabel(self.name)
        b.legend(fontsize=7)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


def profile(model, *args, name: str, values, key=None, init=None, progress_bar: bool = True,
            **kwargs) -> ProfileResult:
    """The profile likelihood of the sample site `name` of the numpyro `model` (called as
    model(*args, **kwargs), data included) over `values` (natural units): for every value the
    model is conditioned on it and the remaining sites are fitted, all values at once (numpyro's
    potential vmapped over the grid and compiled once; the damped Newton method of `calibrate`).
    `init`: name -> starting value of the other sites (default: the priors' medians).

    Example:
        >>> pr = profile(cell_model, jaxcell.SPMe(), p, exp, t, v, priors=priors,
        ...              name="Positive electrode porosity", values=np.linspace(0.25, 0.45, 11))
        >>> pr.interval(), pr.plot("profile.png")
    """
    import numpyro

    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"values must be a 1D grid of at least 2 values of {name!r}, got shape {values.shape}.")
    key = jax.random.key(0) if key is None else key
    sites = _latent_sites(model, key, args, kwargs)
    if name not in sites:
        raise ValueError(f"{name!r} is not a latent sample site of the model (latent sites: {sorted(sites)}).")
    try:  # a prior built outside the model has concrete parameters; one built inside, tracers
        outside = ~np.asarray(sites[name].support(jnp.asarray(values)))
    except jax.errors.UnexpectedTracerError:
        outside = np.zeros(values.shape, bool)
    if outside.any():
        raise ValueError(f"values of {name!r} outside its prior's support: {values[outside].tolist()}.")

    def fixed(value, *a, **kw):
        # the site takes the value (condition) and is hidden from the potential (block): the
        # value's own prior is left out, so the potential is a profile of the likelihood
        with numpyro.handlers.block(hide=[name]), numpyro.handlers.condition(data={name: value}):
            return model(*a, **kw)

    fit = _batched_fit(fixed, (values[0], *args), kwargs, lambda v: ((v, *args), kwargs), values, key, init,
                       progress_bar)
    return ProfileResult(name=name, values=values, log_likelihood=-fit.value, others=fit.modes,
                         converged=fit.converged)


def _latent_sites(model, key, args, kwargs) -> dict:
    """The model's latent sample sites (name -> distribution), from an abstract trace: no
    solve is run or compiled."""
    import numpyro

    sites = {}

    def run():
        trace = numpyro.handlers.trace(numpyro.handlers.seed(model, key)).get_trace(*args, **kwargs)
        sites.update({k: s["fn"] for k, s in trace.items() if s["type"] == "sample" and not s["is_observed"]})
        return jnp.zeros(())

    jax.eval_shape(run)
    return sites
