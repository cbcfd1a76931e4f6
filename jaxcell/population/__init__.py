"""Populations of cells: manufacturing variation (distributions, pack -> module -> cell
hierarchy, copulas), sampling into a batched `ParameterSet`, per-cell tables, statistics and
plots. See docs/population.md."""

from importlib import resources as _resources

from ._sample import derived_parameters as derived_parameters
from ._sample import sample_population as sample_population
from ._sample import sample_values as sample_values
from ._sample import transformed_deviations as transformed_deviations
from ._sample import varied_parameter_names as varied_parameter_names
from ._spec import AbstractCopula as AbstractCopula
from ._spec import GaussianCopula as GaussianCopula
from ._spec import Hierarchy as Hierarchy
from ._spec import Levels as Levels
from ._spec import ParameterVariation as ParameterVariation
from ._spec import StudentTCopula as StudentTCopula
from ._spec import Variation as Variation
from ._spec import VariationError as VariationError
from ._summary import not_delivered as not_delivered
from ._summary import plot_population as plot_population
from ._summary import population_summary as population_summary
from ._summary import population_table as population_table


def default_variation() -> Variation:
    """jaxcell's default manufacturing variation (the package file ``default.toml``):
    lognormal coating thickness and particle radius and logit-normal porosity (spreads of a few
    percent: nearly Gaussian in the parameters' units) with most of their variance between
    production lots (packs), a lognormal tab-weld contact resistance with a rare bad-weld
    power-law tail, lognormal cooling variation, and copulas between thickness and porosity and
    between contact resistance and cooling. Parameter names are those of the published sets
    (Chen2020, Marquis2019, Ecker2015).

    Example:
        >>> v = default_variation()
        >>> v.names[:2]
        ('Negative electrode thickness [m]', 'Positive electrode thickness [m]')
    """
    text = (
        _resources.files(__name__).joinpath("default.toml").read_text(encoding="utf-8")
    )
    from ._spec import _toml_loads

    return Variation.from_dict(_toml_loads(text))
