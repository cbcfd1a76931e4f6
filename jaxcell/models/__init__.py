"""Cell models as equinox modules."""

from ._base import AbstractCellModel as AbstractCellModel
from ._spm import SPM as SPM, SPMe as SPMe
from ._dfn import DFN as DFN, DFNStructure as DFNStructure
