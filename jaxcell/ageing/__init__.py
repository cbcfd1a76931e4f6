"""SEI ageing as a stochastic differential equation on the cycle time scale.

Per-cell SEI growth laws with quenched rate constants and an intrinsic Wiener term, solved with
diffrax under `vmap`; the capacity fade and film resistance that follow, fed back into the
electrochemical models for check-ups; and the law-of-total-variance split of the fade into
heterogeneity and intrinsic fluctuation. See docs/ageing.md.
"""

from ._film import SEIFilm as SEIFilm
from ._film import aged_parameters as aged_parameters
from ._film import capacity_fade as capacity_fade
from ._film import film_resistance as film_resistance
from ._film import lithium_lost as lithium_lost
from ._film import sei_surface_area as sei_surface_area
from ._laws import AbstractSEILaw as AbstractSEILaw
from ._laws import DiffusionLimited as DiffusionLimited
from ._laws import MixedLimited as MixedLimited
from ._laws import ReactionLimited as ReactionLimited
from ._laws import diffusion_limited_rate as diffusion_limited_rate
from ._laws import mixed_rate as mixed_rate
from ._laws import reaction_limited_rate as reaction_limited_rate
from ._population import AgeingResult as AgeingResult
from ._population import age_population as age_population
from ._population import fade_variance_split as fade_variance_split
from ._sde import Reflected as Reflected
from ._sde import SEIPaths as SEIPaths
from ._sde import simulate_sei as simulate_sei
from ._variance import VarianceSplit as VarianceSplit
from ._variance import variance_split as variance_split
