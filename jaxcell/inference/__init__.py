"""Bayesian inference of cell parameters from measurements. This first piece reads measured
data: `read_measurements` turns a table of time, current and voltage into `Record`s that
`jaxcell.simulate` runs as drive cycles, and `stack_records` pads them to one length for
batches. See docs/inference.md."""

from ._data import MeasurementError as MeasurementError
from ._data import MeasurementWarning as MeasurementWarning
from ._data import PAD_DT as PAD_DT
from ._data import Record as Record
from ._data import StackedRecords as StackedRecords
from ._data import read_measurements as read_measurements
from ._data import stack_records as stack_records
