"""`sample_population`: a batched `ParameterSet` drawn from a `Variation`."""

from __future__ import annotations

import os
import sys
import warnings
import zlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import as_key, check_int
from ..parameters import ParameterSet
from ..parameters._parameter_set import _rule, solid_part_names
from ._distributions import (
    normal_cdf_pair,
    normal_quantile,
    pareto_tail_quantile,
    t_cdf_pair,
    t_quantile,
    truncate_uniform_pair,
    truncated_normal_quantile,
)
from ._spec import (
    DISTRIBUTIONS,
    AbstractCopula,
    StudentTCopula,
    Variation,
    VariationError,
)

ELECTRODES = ("Negative", "Positive")
TINY = float(np.finfo(np.float64).tiny)
HUGE = float(np.finfo(np.float64).max)
BELOW_ONE = float(np.nextafter(1.0, 0.0))


def _porosity_name(electrode: str) -> str:
    return f"{electrode} electrode porosity"


def _active_name(electrode: str) -> str:
    return f"{electrode} electrode active material volume fraction"


def _transform(name: str, params: ParameterSet) -> str:
    """``"log"``, ``"logit"``, ``"identity"`` or ``"solid_share"`` (an active material volume
    fraction varied as the active share of its electrode's solid, so porosity + active fraction
    stays below 1), from the parameter's physical range."""
    for e in ELECTRODES:
        if name == _active_name(e) and _porosity_name(e) in params.values:
            return "solid_share"
    rule = _rule(name)
    if rule is None:
        return "identity"
    ok = rule[1]
    if bool(ok(np.float64(0.5))) and not bool(ok(np.float64(1.5))):
        return "logit"
    if bool(ok(np.float64(1e300))) and not bool(ok(np.float64(-1.0))):
        return "log"
    return "identity"  # pragma: no cover - no other ranges exist


def _inactive_names(electrode: str, params: ParameterSet) -> list[str]:
    """The set's named inactive parts of an electrode's solid (binder, conductive additive)."""
    return [n for n in solid_part_names(electrode)[1:] if n in params.values]


def derived_parameters(params: ParameterSet, variation: Variation) -> dict[str, str]:
    """Parameters that follow a varied one: when an electrode's porosity varies, the parts of its
    solid the set names and the spec does not (the active material volume fraction, and binder
    and conductive additive fractions) follow it, the solid's composition kept: each part stays
    the same share of 1 - porosity. Returns ``{derived name: porosity name}``."""
    out = {}
    for e in ELECTRODES:
        por = _porosity_name(e)
        if por not in variation.names:
            continue
        for part in [_active_name(e)] + _inactive_names(e, params):
            if part not in variation.names and part in params.values:
                out[part] = por
    return out


def varied_parameter_names(params: ParameterSet, variation: Variation) -> list[str]:
    """The spec's parameters followed by the derived ones (`derived_parameters`)."""
    return list(variation.names) + list(derived_parameters(params, variation))


class _Plan(eqx.Module):
    """A variation resolved against a parameter set: arrays are leaves (new centres and spreads
    reuse the compiled sampler), the structure is static."""

    centers: jax.Array  # (K,) centres in the transformed space
    scales: (
        jax.Array
    )  # (3, K) scale per level (pack, module, cell) in the transformed space
    chols: tuple[jax.Array, ...]  # Cholesky factor of each group's correlation matrix
    porosity: jax.Array  # (K,) nominal porosity for "solid_share" entries (else unused)
    derived_share: jax.Array  # (D,) active share of the solid for derived entries
    natural: jax.Array  # (K, 4) truncated_normal: mean, sd, lower, upper (natural units)
    t_bounds: jax.Array  # (K, 2) bounds of a t entry, transformed space, relative to the center
    names: tuple[str, ...] = eqx.field(static=True)
    transforms: tuple[str, ...] = eqx.field(static=True)
    families: tuple[str, ...] = eqx.field(static=True)
    shapes: tuple[tuple[float, ...], ...] = eqx.field(static=True)  # df, or (p, index)
    bounded: tuple[bool, ...] = eqx.field(static=True)  # a t entry with lower or upper
    groups: tuple[tuple[str, float, tuple[int, ...], int], ...] = eqx.field(static=True)
    porosity_index: tuple[int, ...] = eqx.field(
        static=True
    )  # index of the porosity, or -1
    derived: tuple[tuple[str, int], ...] = eqx.field(static=True)
    levels: tuple[bool, bool, bool] = eqx.field(static=True)  # which levels vary at all
    modules_per_pack: int = eqx.field(static=True)
    cells_per_module: int = eqx.field(static=True)


def _concrete(x) -> float | None:
    return None if isinstance(x, jax.core.Tracer) else float(x)


def _transform_center(tr: str, c, eps0):
    """The center in the transformed space and the slope of the transform there (the
    derivative of the transformed value with respect to the parameter's value)."""
    if tr == "log":
        return jnp.log(c), 1.0 / c
    if tr == "logit":
        return jnp.log(c) - jnp.log1p(-c), 1.0 / (c * (1 - c))
    if (
        tr == "solid_share"
    ):  # active fraction A = s (1 - porosity), s in (0, 1) on a logit
        s = c / (1 - eps0)
        return jnp.log(s) - jnp.log1p(-s), 1.0 / (c * (1 - s))
    return c, jnp.asarray(1.0)


# the physical range of each transform, in the parameter's units
RANGES = {"log": (0.0, np.inf), "logit": (0.0, 1.0), "identity": (-np.inf, np.inf)}
KIND = {"log": "a positive parameter", "logit": "a fraction in (0, 1)", "identity": "unconstrained"}
SPACE_OF = {"log": ("log",), "logit": ("logit", "solid_share")}


def _warn_deprecated(message: str) -> None:
    """A DeprecationWarning attributed to the first caller outside this package."""
    frame, level, here = sys._getframe(1), 2, os.path.dirname(__file__)
    while frame is not None and frame.f_code.co_filename.startswith(here):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, DeprecationWarning, stacklevel=level)


def _check_distribution(pv, tr: str) -> None:
    """Errors for a distribution that does not fit the parameter's range, and the deprecation
    warning of ``"normal"`` and ``"student_t"`` on a positive parameter or a fraction (where they
    are the log- and logit-space distributions)."""
    where = f"variation of {pv.name!r}"
    space = DISTRIBUTIONS[pv.distribution][1]
    kind = KIND["logit" if tr == "solid_share" else tr]
    if space in SPACE_OF and tr not in SPACE_OF[space]:
        what = {"log": "positive quantities", "logit": "fractions in (0, 1)"}[space]
        raise VariationError(
            f"{where}: the {pv.distribution} distribution is for {what}; this parameter is "
            f"{'a fraction' if kind.startswith('a fraction') else kind}."
        )
    if space == "natural" and tr == "solid_share":
        raise VariationError(
            f"{where}: truncated_normal cannot vary an active material volume fraction, whose "
            f"range (0, 1 - porosity) changes with the porosity; use logit_normal (varies the "
            f"active share of the solid) or vary the porosity."
        )
    if pv.distribution in ("normal", "student_t") and tr != "identity":
        log = tr == "log"
        new = {
            ("normal", True): "lognormal",
            ("normal", False): "logit_normal",
            ("student_t", True): "log_student_t",
            ("student_t", False): "logit_student_t",
        }[pv.distribution, log]
        if pv.distribution == "normal":
            what = (
                "a lognormal (Gaussian in log space, skewed to the right in the parameter's units)"
                if log
                else "a logit-normal (Gaussian in logit space)"
            )
        else:
            what = (
                "a log-t (Student t in log space), whose mean and variance in the parameter's "
                "units are infinite for every df: values many times the center occur"
                if log
                else "a logit-t (Student t in logit space)"
            )
        _warn_deprecated(
            f"{where}: distribution {pv.distribution!r} on {kind} is not a "
            f"{'Gaussian' if pv.distribution == 'normal' else 'Student t'} in the parameter's "
            f"units but {what}. This name is deprecated there: use {new!r} (the same "
            f"distribution), or 'truncated_normal' for a Gaussian in the parameter's units "
            f"truncated to its range."
        )


def _bounds(pv, tr: str) -> tuple[float, float]:
    """The physical range of the parameter intersected with the spec's `lower` and `upper`."""
    low, high = RANGES["logit" if tr == "solid_share" else tr]
    where = f"variation of {pv.name!r}"
    for key, value in (("lower", pv.lower), ("upper", pv.upper)):
        if value is not None and not low <= value <= high:
            raise VariationError(
                f"{where}: {key} = {value} is outside the physical range [{low}, {high}] of "
                f"{KIND['logit' if tr == 'solid_share' else tr]}."
            )
    return (
        low if pv.lower is None else pv.lower,
        high if pv.upper is None else pv.upper,
    )


def _check_center(pv, tr: str, c, eps0, set_name: str) -> None:
    """Errors for a center outside the transform's domain (concrete values only)."""
    where = f"variation of {pv.name!r}"
    cc = _concrete(c)
    if cc is None:
        return
    if pv.lower is not None or pv.upper is not None:
        low, high = _bounds(pv, tr)
        if not low < cc < high:
            raise VariationError(
                f"{where}: the center {cc} (parameter set {set_name!r}) must lie in "
                f"(lower, upper) = ({low}, {high})."
            )
    if tr == "log" and cc <= 0:
        hint = (
            " (set a positive `center`, e.g. the median)" if pv.center is None else ""
        )
        raise VariationError(
            f"{where}: the center must be positive for a positive quantity, got {cc} "
            f"in parameter set {set_name!r}{hint}."
        )
    if tr == "logit" and not 0 < cc < 1:
        raise VariationError(f"{where}: the center must be in (0, 1), got {cc}.")
    if tr == "solid_share":
        share, por = cc / (1 - _concrete(eps0)), _porosity_name(pv.name.split()[0])
        if not 0 < share < 1 - 1e-9:
            raise VariationError(
                f"{where}: the active material fills a share {share:.6g} of the solid "
                f"(active fraction {cc} / (1 - porosity {_concrete(eps0)})); it can vary "
                f"only if that share is in (0, 1), i.e. the electrode has some inactive "
                f"solid (binder, carbon). Vary {por!r} instead: the active fraction then "
                f"follows it."
            )
    if tr == "identity" and pv.spread_kind == "rel_std" and cc == 0:
        raise VariationError(
            f"{where}: rel_std needs a nonzero center; give std or sigma."
        )


def _check_inactive_solid(params: ParameterSet, names) -> None:
    """Refuse to vary a part of an electrode's solid on its own (the active material fraction, as
    its share of 1 - porosity, or a binder or additive fraction) where the set names other parts:
    the others would stay as they are, and porosity + solid fractions could pass 1 (`sample_values`
    returned such cells without a word). Varying the porosity is fine: every named part follows
    it (`derived_parameters`)."""
    for e in ELECTRODES:
        parts = [_active_name(e)] + _inactive_names(e, params)
        varied = [n for n in parts if n in names]
        named = [n for n in parts if n in params.values]
        if varied and len(named) > 1:
            raise VariationError(
                f"{', '.join(map(repr, varied))} cannot vary on its own in parameter set {params.name!r}, which names "
                f"{', '.join(map(repr, [n for n in named if n not in varied] or named))} too: the other parts of the "
                f"solid would stay as they are, and the porosity and solid fractions could add up to more than 1. Vary "
                f"{_porosity_name(e)!r} instead (every part of the solid follows it), or use a set without the other parts."
            )


def _resolve(params: ParameterSet, variation: Variation) -> _Plan:
    if not isinstance(params, ParameterSet):
        raise TypeError(f"params must be a ParameterSet, got {type(params).__name__}.")
    if not isinstance(variation, Variation):
        raise TypeError(
            f"variation must be a Variation (Variation.from_file(...) or default_variation()), got {type(variation).__name__}."
        )
    if params.batch_shape != ():
        raise ValueError(
            f"sample_population needs an unbatched ParameterSet (one cell), got batch shape {params.batch_shape}."
        )
    names = variation.names
    value = {}
    for pv in variation.parameters:
        try:
            v = params[pv.name]
        except KeyError as e:
            raise type(e)(f"In the variation: {e}") from None
        if callable(v):
            raise VariationError(
                f"{pv.name!r} is a function in parameter set {params.name!r}; only numbers can be varied."
            )
        value[pv.name] = v

    _check_inactive_solid(params, names)
    centers, scales, transforms, families, shapes, por_index, porosity = (
        [] for _ in range(7)
    )
    natural, t_bounds, bounded = [], [], []
    for pv in variation.parameters:
        tr = _transform(pv.name, params)
        _check_distribution(pv, tr)
        c = value[pv.name] if pv.center is None else jnp.asarray(pv.center, jnp.float64)
        p_idx, eps0 = -1, jnp.asarray(0.0)
        if tr == "solid_share":
            por = _porosity_name(pv.name.split()[0])
            if por in names:
                p_idx = names.index(por)
                pc = variation[por].center
                eps0 = value[por] if pc is None else jnp.asarray(pc, jnp.float64)
            else:
                eps0 = params[por]
            if pv.lower is not None or pv.upper is not None:
                raise VariationError(
                    f"variation of {pv.name!r}: lower and upper cannot bound an active material "
                    f"volume fraction, whose range (0, 1 - porosity) changes with the porosity."
                )
        _check_center(pv, tr, c, eps0, params.name)
        low, high = _bounds(pv, tr)
        family, space = DISTRIBUTIONS[pv.distribution]
        spread = jnp.asarray(pv.spread.as_tuple(), jnp.float64)
        if space == "natural":
            # the levels' normal scores add up to one standard normal score of the cell, mapped
            # through the truncated Gaussian's quantile (`_draw`); each level's share of the
            # score's variance is its share of the parent Gaussian's variance
            sd = spread * (1.0 if pv.spread_kind == "std" else jnp.abs(c))
            total = jnp.sqrt(jnp.sum(sd**2))
            t_center, level_scale = jnp.asarray(0.0), sd / jnp.where(total > 0, total, 1.0)
            tr = "truncated_normal"
            natural.append(jnp.stack([jnp.asarray(c, jnp.float64), total, low, high]))
        else:
            t_center, slope = _transform_center(tr, c, eps0)
            # spread -> scale in the transformed space, to first order at the center
            factor = {"sigma": 1.0, "std": slope, "rel_std": jnp.abs(c) * slope}[
                pv.spread_kind
            ]
            level_scale = spread * factor
            natural.append(jnp.zeros(4))
        t_low, t_high = (
            _transform_center(tr, jnp.asarray(b, jnp.float64), eps0)[0] - t_center
            if tr in ("log", "logit", "identity")
            else jnp.asarray(0.0)
            for b in (low, high)
        )
        bounded.append(family == "student_t" and (pv.lower, pv.upper) != (None, None))
        t_bounds.append(jnp.stack([t_low, t_high]))
        centers.append(t_center)
        scales.append(level_scale)
        transforms.append(tr)
        families.append(family)
        if family == "student_t":
            shapes.append((pv.df,))
        elif family == "pareto_tail":
            shapes.append((pv.tail_probability, pv.tail_index))
        else:
            shapes.append(())
        por_index.append(p_idx)
        porosity.append(eps0)

    derived, shares = [], []
    for part, por in derived_parameters(params, variation).items():
        total = _concrete(params[part] + params[por])
        if total is not None and total > 1 + 1e-9:
            raise VariationError(
                f"parameter set {params.name!r}: {por!r} + {part!r} = {total:.6g} > 1."
            )
        derived.append((part, names.index(por)))
        shares.append(jnp.minimum(params[part] / (1 - params[por]), 1.0))

    # groups: each copula, then every other parameter on its own (its family's native scores)
    groups, chols, coupled = [], [], set()
    for cop in variation.copulas:
        cop: AbstractCopula
        members = tuple(names.index(n) for n in cop.parameters)
        coupled.update(members)
        df = cop.df if isinstance(cop, StudentTCopula) else 0.0
        groups.append((cop.kind, df, members, _seed(cop.parameters)))
        chols.append(jnp.asarray(np.linalg.cholesky(np.asarray(cop.correlation))))
    for j, pv in enumerate(variation.parameters):
        if j not in coupled:
            kind, df = ("t", pv.df) if families[j] == "student_t" else ("gaussian", 0.0)
            groups.append((kind, df, (j,), _seed((pv.name,))))
            chols.append(jnp.ones((1, 1)))

    return _Plan(
        centers=jnp.stack(centers).astype(jnp.float64),
        scales=jnp.stack(scales, axis=1).astype(jnp.float64),
        chols=tuple(chols),
        porosity=jnp.stack(porosity).astype(jnp.float64),
        natural=jnp.stack(natural).astype(jnp.float64),
        t_bounds=jnp.stack(t_bounds).astype(jnp.float64),
        derived_share=jnp.stack(shares).astype(jnp.float64)
        if shares
        else jnp.zeros((0,)),
        names=names,
        transforms=tuple(transforms),
        families=tuple(families),
        shapes=tuple(shapes),
        bounded=tuple(bounded),
        groups=tuple(groups),
        porosity_index=tuple(por_index),
        derived=tuple(derived),
        levels=tuple(
            any(pv.spread.as_tuple()[i] > 0 for pv in variation.parameters)
            for i in range(3)
        ),
        modules_per_pack=variation.hierarchy.modules_per_pack,
        cells_per_module=variation.hierarchy.cells_per_module,
    )


def _seed(names) -> int:
    """A stable stream number for a group of parameters: adding or removing other parameters
    does not change this group's draws."""
    return zlib.crc32("\n".join(names).encode()) & 0x7FFFFFFF


def _stream(unit_key, seed, what: int):
    """The key of one random variable of a unit: a parameter's normal score (what = 0) or a
    t group's chi-square (what = 1)."""
    return jax.random.fold_in(jax.random.fold_in(unit_key, seed), what)


def _deviations(plan: _Plan, key, level: jax.Array, unit: jax.Array) -> jax.Array:
    """Deviations (U, K) in the transformed space of the units ``(level, unit)`` (packs,
    modules and cells stacked: one compiled graph for all three levels)."""
    names = plan.names
    # one stream per (level, unit, parameter): cell i draws the same numbers whatever the
    # population size, and a parameter's draws do not depend on which others are varied
    seeds = jnp.asarray([_seed((name,)) for name in names], dtype=jnp.uint32)

    def normals(lv, i):
        k = jax.random.fold_in(jax.random.fold_in(key, lv), i)
        return jax.vmap(
            lambda s: jax.random.normal(_stream(k, s, 0), dtype=jnp.float64)
        )(seeds)

    z = jax.vmap(normals)(level, unit)
    scale = plan.scales[level]  # (U, K)
    out = [None] * len(names)
    for (kind, df, members, seed), chol in zip(plan.groups, plan.chols):
        scores = z[:, members] @ chol.T
        if kind == "t":

            def chi2(lv, i, seed=seed, df=df):
                k = _stream(jax.random.fold_in(jax.random.fold_in(key, lv), i), seed, 1)
                return jax.random.chisquare(k, df, dtype=jnp.float64) / df

            scores = scores / jnp.sqrt(jax.vmap(chi2)(level, unit))[:, None]
        pair = None
        for col, j in enumerate(members):
            family, shape, sc = plan.families[j], plan.shapes[j], scale[:, j]
            s = scores[:, col]
            if plan.bounded[j]:
                # exact truncation to the bounds: the t quantile of the uniform rescaled onto the
                # probabilities between them (one level varies, so `sc` is the t scale)
                if pair is None:
                    pair = (
                        t_cdf_pair(scores, df)
                        if kind == "t"
                        else normal_cdf_pair(scores)
                    )
                safe = jnp.where(sc > 0, sc, 1.0)
                lo, hi = (plan.t_bounds[j, i] / safe for i in (0, 1))
                u, u_c = truncate_uniform_pair(
                    pair[0][:, col],
                    pair[1][:, col],
                    t_cdf_pair(lo, shape[0]),
                    t_cdf_pair(hi, shape[0]),
                )
                d = sc * t_quantile(u, u_c, shape[0])
            elif (
                family == "normal"
                and kind == "gaussian"
                or family == "student_t"
                and kind == "t"
                and shape[0] == df
            ):
                d = sc * s
            else:
                if (
                    pair is None
                ):  # uniforms of the scores (the t CDF is the costly part)
                    pair = (
                        t_cdf_pair(scores, df)
                        if kind == "t"
                        else normal_cdf_pair(scores)
                    )
                u, u_c = pair[0][:, col], pair[1][:, col]
                if family == "normal":
                    d = sc * normal_quantile(u, u_c)
                elif family == "student_t":
                    d = sc * t_quantile(u, u_c, shape[0])
                else:
                    z_body = s if kind == "gaussian" else normal_quantile(u, u_c)
                    d = pareto_tail_quantile(z_body, u_c, shape[0], shape[1], sc)
            out[j] = jnp.where(sc > 0, d, 0.0)
    return jnp.stack(out, axis=1)


def _inverse(transform: str, z: jax.Array) -> jax.Array:
    """Back from the transformed space, kept strictly inside the physical range."""
    if transform == "log":
        return jnp.clip(jnp.exp(z), TINY, HUGE)
    if transform in ("logit", "solid_share"):
        return jnp.clip(jax.nn.sigmoid(z), TINY, BELOW_ONE)
    return jnp.clip(z, -HUGE, HUGE)


@eqx.filter_jit
def _draw(plan: _Plan, n: int, key) -> tuple[dict[str, jax.Array], jax.Array]:
    n_modules = -(-n // plan.cells_per_module)
    n_packs = -(-n_modules // plan.modules_per_pack)
    module = jnp.arange(n) // plan.cells_per_module
    index = (module // plan.modules_per_pack, module, jnp.arange(n))
    # the units of every level that varies, stacked: one compiled graph for all levels
    counts = [c if on else 0 for c, on in zip((n_packs, n_modules, n), plan.levels)]
    level = jnp.concatenate([jnp.full(c, lv) for lv, c in enumerate(counts)])
    unit = jnp.concatenate([jnp.arange(c) for c in counts])
    dev = _deviations(plan, key, level, unit)
    total = jnp.zeros((n, len(plan.names)))
    offset = 0
    for lv in range(3):
        if counts[lv]:
            total = total + dev[offset + index[lv]]
            offset += counts[lv]
    z = plan.centers + total
    values = {}
    for j, name in enumerate(plan.names):
        if plan.transforms[j] == "truncated_normal":
            loc, sd, low, high = plan.natural[j]
            x = truncated_normal_quantile(
                *normal_cdf_pair(z[:, j]), loc, jnp.where(sd > 0, sd, 1.0), low, high
            )
            values[name] = jnp.where(sd > 0, x, loc)
        else:
            values[name] = _inverse(plan.transforms[j], z[:, j])
    for j, name in enumerate(plan.names):
        if plan.transforms[j] == "solid_share":
            i = plan.porosity_index[j]
            eps = values[plan.names[i]] if i >= 0 else plan.porosity[j]
            values[name] = jnp.clip(values[name] * (1 - eps), TINY, BELOW_ONE)
    for (name, i), share in zip(plan.derived, plan.derived_share):
        values[name] = jnp.clip(share * (1 - values[plan.names[i]]), TINY, BELOW_ONE)
    return values, z


def _check_n(n) -> int:
    return check_int(n, "n", why="(number of cells)")


def sample_values(
    params: ParameterSet, variation: Variation, n: int, key
) -> dict[str, jax.Array]:
    """The sampled values of the varied parameters (and of those that follow them, see
    `derived_parameters`): ``{name: array of shape (n,)}``, the numbers `sample_population`
    puts into the batched `ParameterSet` for the same arguments, without building it.

    Example:
        >>> v = sample_values(p, default_variation(), 1000, jax.random.key(0))
        >>> v["Contact resistance [Ohm]"].max()
    """
    values, _ = _draw(_resolve(params, variation), _check_n(n), as_key(key))
    return values


def sample_population(
    params: ParameterSet, variation: Variation, n: int, key
) -> ParameterSet:
    """Draw `n` cells from `variation` around `params`: a `ParameterSet` whose numbers all
    have a leading axis of length `n` (ready for `simulate_batch` or `jax.vmap`).

    Each varied parameter's value is ``inverse_transform(transform(center) + d_pack + d_module +
    d_cell)`` with independent deviations per pack, module and cell (laid out by
    ``variation.hierarchy``; `Hierarchy.layout` gives each cell's pack and module), coupled
    across parameters by the spec's copulas; for ``"truncated_normal"`` the transform is the
    truncated Gaussian's normal score (its CDF followed by the standard normal quantile), so each
    cell's value is exactly truncated-Gaussian. Values stay inside each parameter's physical
    range and the spec's bounds (docs/population.md). The names ``"normal"`` and
    ``"student_t"`` on a positive parameter or a fraction (the log- and logit-space
    distributions) give a DeprecationWarning. An electrode's active material volume fraction follows its porosity
    when only the porosity varies, so the solid's composition is unchanged. Parameters that do
    not vary are repeated for every cell.

    Sampling is a pure function of `key` (a `jax.random` key or an integer seed): the same key
    gives bit-identical cells. Each pack, module and cell has its own random stream, so cell
    ``i`` is the same whatever `n` is, and a parameter's draws do not change when other
    parameters are added to or removed from the spec (unless they share a copula). Works under
    `jax.jit` (`n` static); the sampler is compiled once per spec structure and `n`.

    Example:
        >>> p = jaxcell.load_parameters("Chen2020")
        >>> cells = sample_population(p, default_variation(), 200, jax.random.key(0))
        >>> cells["Negative electrode thickness [m]"].shape
        (200,)
        >>> sols = jaxcell.simulate_batch(jaxcell.SPM(), cells, "Discharge at 1C until 2.5 V")
        >>> table = population_table(cells, sols, default_variation())
    """
    n = _check_n(n)
    batched = params.update(sample_values(params, variation, n, key))
    return jax.tree.map(
        lambda x: x if x.shape[:1] == (n,) else jnp.broadcast_to(x, (n,) + x.shape),
        batched,
    )


def transformed_deviations(
    params: ParameterSet, variation: Variation, n: int, key
) -> dict[str, jax.Array]:
    """Each varied parameter's total deviation ``d_pack + d_module + d_cell`` in its transformed
    space (log, logit, ...), for the same draw as `sample_population` with these arguments:
    ``{name: array of shape (n,)}``. Its variance is the sum of the levels' variances. For a
    ``"truncated_normal"`` parameter it is the cell's standard normal score (variance 1, each
    level contributing its share of the parent Gaussian's variance).

    Example:
        >>> d = transformed_deviations(p, default_variation(), 10_000, 0)
        >>> float(d["Negative electrode thickness [m]"].std())  # about sqrt(0.01**2 + 2 * 0.003**2)
    """
    plan = _resolve(params, variation)
    _, z = _draw(plan, _check_n(n), as_key(key))
    return {name: z[:, j] - plan.centers[j] for j, name in enumerate(plan.names)}
