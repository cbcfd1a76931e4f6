"""Shared fixtures. Compiles are the slow part of this suite on 2 cores, so tests reuse one
experiment structure and fixed-length t_eval arrays wherever they can: the solver is compiled
once per (model, parameter-set functions, experiment structure, t_eval length)."""

from pathlib import Path

import jax
import numpy as np
import pytest

import jaxcell

jax.config.update("jax_enable_x64", True)

DATA = Path(__file__).parent / "data"
N_EVAL = 2001
# parameters whose gradients are checked against finite differences (SPMe and DFN)
GRAD_PARAMS = [
    "Negative electrode thickness [m]",
    "Positive electrode porosity",
    "Positive particle radius [m]",
    "Negative particle diffusivity [m2.s-1]",
    "Positive electrode reaction rate constant [A.m-2.(m3.mol-1)1.5]",
]  # every reference file has at most 2001 rows


def load_reference(name: str):
    """PyBaMM reference curve: columns t_s, V_V, Q_Ah (and T_K for thermal files)."""
    return np.loadtxt(DATA / "pybamm" / name, delimiter=",", skiprows=1)


def padded_times(t: np.ndarray, n: int = N_EVAL) -> np.ndarray:
    """Pad an increasing time array to length n by repeating its last value."""
    return np.concatenate([t, np.full(n - t.size, t[-1])])


@pytest.fixture(scope="session")
def chen():
    return jaxcell.load_parameters("Chen2020")


@pytest.fixture(scope="session")
def spm():
    return jaxcell.SPM()


@pytest.fixture(scope="session")
def spme():
    return jaxcell.SPMe()
