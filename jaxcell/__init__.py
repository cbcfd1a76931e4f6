"""jaxcell: differentiable, batched physics-based lithium-ion cell models in JAX.

All physics runs in float64: jaxcell switches on `jax_enable_x64` when imported (the
electrochemistry spans concentrations of 1e4 mol/m3 against tolerances of 1e-6, diffusivities
of 1e-15 m2/s and exponential kinetics, which float32 cannot resolve).
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from .batch import simulate_batch as simulate_batch  # noqa: E402
from .experiment import (  # noqa: E402
    DriveCycle as DriveCycle,
    Experiment as Experiment,
    ExperimentError as ExperimentError,
)
from .models import AbstractCellModel as AbstractCellModel, DFN as DFN, SPM as SPM, SPMe as SPMe  # noqa: E402
from .parameters import (  # noqa: E402
    ParameterSet as ParameterSet,
    ParameterValueError as ParameterValueError,
    UnknownParameterError as UnknownParameterError,
    available_parameter_sets as available_parameter_sets,
    load_parameters as load_parameters,
    stack as stack,
)
from ._modal import ModalSolve as ModalSolve  # noqa: E402
from ._scan import ScanAdjoint as ScanAdjoint  # noqa: E402
from .simulate import simulate as simulate  # noqa: E402
from .soc import (  # noqa: E402
    initial_stoichiometries as initial_stoichiometries,
    soc_at_voltage as soc_at_voltage,
    stoichiometry_window as stoichiometry_window,
    with_initial_soc as with_initial_soc,
)
from . import ageing as ageing  # noqa: E402
from . import population as population  # noqa: E402
from .population import (  # noqa: E402
    ParameterVariation as ParameterVariation,
    Variation as Variation,
    default_variation as default_variation,
    population_summary as population_summary,
    population_table as population_table,
    sample_population as sample_population,
)
from .ageing import age_population as age_population, variance_split as variance_split  # noqa: E402
from .solution import Solution as Solution, Status as Status, StepEnd as StepEnd  # noqa: E402

__version__ = "0.1.0"
