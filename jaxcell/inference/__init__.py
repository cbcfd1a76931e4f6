"""Bayesian inference of cell parameters from measurements (numpyro, gradients through the
solver). See docs/inference.md.

- Measured data: `read_measurements` turns a table of time, current and voltage into `Record`s
  that `jaxcell.simulate` runs as drive cycles; `stack_records` pads them to one length.
- Building blocks for numpyro models: `default_prior` (natural units: log-normal for positive
  parameters, logit-normal for fractions), `check_prior`, `sample_parameters`,
  `voltage_likelihood` (Gaussian or Student-t noise), `ocv_likelihood` (a measured
  open-circuit-voltage curve as evidence on the stoichiometry window),
  `temperature_likelihood` (a measured temperature rise as a second channel), and the
  ready-made `cell_model`.
- Hierarchy over cells: `hierarchical_model` (population priors `population_prior`, non-centred
  cells, every record solved in one vmapped call, `group_records` for record -> cell), and
  `cell_values`, `population_summary`, `new_cell_values`, `predict_voltage` (posterior
  predictive, also for a new cell).
- Engines: `fit_map` (maximum a posteriori by BFGS, Laplace approximation, identifiability),
  `fit_svi` (numpyro autoguides), `run_nuts` and `run_imh` (independence Metropolis-Hastings
  around a MAP fit's Laplace approximation: batched forward solves, no gradient) with
  `diagnostics` (R-hat, effective sample sizes, divergences or acceptance); `posterior_samples`, `to_inference_data` (arviz) and `summary_table`.
- Calibration: `calibrate` (simulation-based calibration of the Laplace approximation, all
  replicates fitted in one compiled, vmapped program; optionally corrected by
  `importance_resample`, Pareto-smoothed importance sampling), `sbc_ranks`, `rank_uniformity`,
  `interval_coverage`. Identifiability: `MAPResult.identifiability()` (Hessian eigenvalues,
  sloppy directions, correlations) and `profile` (profile likelihood over a grid, all values
  fitted in one compiled call).
"""

from ._calibration import SBCResult as SBCResult
from ._calibration import calibrate as calibrate
from ._calibration import importance_resample as importance_resample
from ._calibration import interval_coverage as interval_coverage
from ._calibration import rank_uniformity as rank_uniformity
from ._calibration import sbc_ranks as sbc_ranks
from ._profile import ProfileResult as ProfileResult
from ._profile import profile as profile
from ._data import MeasurementError as MeasurementError
from ._data import MeasurementWarning as MeasurementWarning
from ._data import PAD_DT as PAD_DT
from ._data import Record as Record
from ._data import StackedRecords as StackedRecords
from ._data import read_measurements as read_measurements
from ._data import stack_records as stack_records
from ._fit import MAPResult as MAPResult
from ._fit import SVIResult as SVIResult
from ._fit import diagnostics as diagnostics
from ._fit import fit_map as fit_map
from ._fit import fit_svi as fit_svi
from ._fit import posterior_samples as posterior_samples
from ._fit import run_nuts as run_nuts
from ._fit import summary_table as summary_table
from ._fit import to_inference_data as to_inference_data
from ._imh import IMHResult as IMHResult
from ._imh import run_imh as run_imh
from ._hierarchy import PopulationPrior as PopulationPrior
from ._hierarchy import RecordSolver as RecordSolver
from ._hierarchy import cell_values as cell_values
from ._hierarchy import group_records as group_records
from ._hierarchy import hierarchical_model as hierarchical_model
from ._hierarchy import initial_concentrations as initial_concentrations
from ._hierarchy import loc_site as loc_site
from ._hierarchy import new_cell_values as new_cell_values
from ._hierarchy import offset_site as offset_site
from ._hierarchy import population_prior as population_prior
from ._hierarchy import population_summary as population_summary
from ._hierarchy import predict_voltage as predict_voltage
from ._hierarchy import records_model as records_model
from ._hierarchy import scale_site as scale_site
from ._model import cell_model as cell_model
from ._model import check_prior as check_prior
from ._model import default_prior as default_prior
from ._model import sample_parameters as sample_parameters
from ._model import hold_last_voltage as hold_last_voltage
from ._model import ocv_curve_voltage as ocv_curve_voltage
from ._model import ocv_likelihood as ocv_likelihood
from ._model import temperature_likelihood as temperature_likelihood
from ._model import voltage_likelihood as voltage_likelihood
