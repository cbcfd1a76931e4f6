"""Cell design: mass and volume, energy densities, design variables with bounds, and design
optimisation by gradient, deterministic and under manufacturing variation (docs/design.md)."""

from ._design import optimise_design as optimise_design
from ._mass import (
    DENSITY_NAMES as DENSITY_NAMES,
    MissingDensityError as MissingDensityError,
    cell_mass as cell_mass,
    cell_volume as cell_volume,
    densities as densities,
    electrode_area as electrode_area,
    mass_breakdown as mass_breakdown,
)
from ._objective import (
    Outcome as Outcome,
    design_cell as design_cell,
    design_objective as design_objective,
    formation_ratio as formation_ratio,
    gravimetric_energy_density as gravimetric_energy_density,
    volumetric_energy_density as volumetric_energy_density,
    with_formation_lithium as with_formation_lithium,
)
from ._optimise import DesignResult as DesignResult, augmented_lagrangian as augmented_lagrangian
from ._variables import (
    DesignSpace as DesignSpace,
    DesignVariable as DesignVariable,
    DesignVariableError as DesignVariableError,
    np_ratio as np_ratio,
)
from ._robust import (
    CheckResult as CheckResult,
    CommonDraws as CommonDraws,
    cell_alpha as cell_alpha,
    check_design as check_design,
    common_draws as common_draws,
    cvar_shortfall as cvar_shortfall,
    optimise_robust_design as optimise_robust_design,
    population_cells as population_cells,
    robust_objective as robust_objective,
    smoothed_failure as smoothed_failure,
)
