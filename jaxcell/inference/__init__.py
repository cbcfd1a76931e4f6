"""Bayesian inference of cell parameters from measurements (numpyro, gradients through the
solver). See docs/inference.md.

- Measured data: `read_measurements` turns a table of time, current and voltage into `Record`s
  that `jaxcell.simulate` runs as drive cycles; `stack_records` pads them to one length.
- Building blocks for numpyro models: `default_prior` (natural units: log-normal for positive
  parameters, logit-normal for fractions), `check_prior`, `sample_parameters`,
  `voltage_likelihood` (Gaussian or Student-t noise), and the ready-made `cell_model`.
- Engines: `fit_map` (maximum a posteriori by BFGS, Laplace approximation, identifiability) and
  `run_nuts` with `diagnostics` (R-hat, effective sample sizes, divergences).
"""

from ._data import MeasurementError as MeasurementError
from ._data import MeasurementWarning as MeasurementWarning
from ._data import PAD_DT as PAD_DT
from ._data import Record as Record
from ._data import StackedRecords as StackedRecords
from ._data import read_measurements as read_measurements
from ._data import stack_records as stack_records
from ._fit import MAPResult as MAPResult
from ._fit import diagnostics as diagnostics
from ._fit import fit_map as fit_map
from ._fit import run_nuts as run_nuts
from ._model import cell_model as cell_model
from ._model import check_prior as check_prior
from ._model import default_prior as default_prior
from ._model import sample_parameters as sample_parameters
from ._model import voltage_likelihood as voltage_likelihood
