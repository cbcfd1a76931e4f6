"""SEI ageing on the cycle time scale, as a monotone stochastic process.

Per-cell SEI growth laws with quenched rate constants, run on a gamma-process ageing clock
(the intrinsic noise: exact, and the film never shrinks), sampled under `vmap`; the lithium,
capacity and film resistance that follow, bounded by the cell's lithium inventory and fed back
into the electrochemical models for check-ups; and the law-of-total-variance split of the fade
into heterogeneity and intrinsic fluctuation. See docs/ageing.md.
"""

from ._film import SEIFilm as SEIFilm
from ._film import aged_parameters as aged_parameters
from ._film import capacity_fade as capacity_fade
from ._film import film_resistance as film_resistance
from ._film import lithium_inventory as lithium_inventory
from ._film import lithium_lost as lithium_lost
from ._film import max_thickness as max_thickness
from ._film import sei_surface_area as sei_surface_area
from ._laws import AbstractSEILaw as AbstractSEILaw
from ._laws import DiffusionLimited as DiffusionLimited
from ._laws import MixedLimited as MixedLimited
from ._laws import ReactionLimited as ReactionLimited
from ._laws import diffusion_limited_rate as diffusion_limited_rate
from ._laws import mixed_rate as mixed_rate
from ._laws import reaction_limited_rate as reaction_limited_rate
from ._population import DEPLETED as DEPLETED
from ._population import AgeingResult as AgeingResult
from ._population import age_population as age_population
from ._population import fade_variance_split as fade_variance_split
from ._sde import SEIPaths as SEIPaths
from ._sde import ageing_clock as ageing_clock
from ._sde import simulate_sei as simulate_sei
from ._variance import VarianceSplit as VarianceSplit
from ._variance import variance_split as variance_split
