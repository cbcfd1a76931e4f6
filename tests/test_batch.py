"""simulate_batch: chunks, padding, sharding over several (CPU) devices, statuses."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import jaxcell

EXP = "Discharge at 1C until 3.0 V"


def _cells(chen, n):
    L = np.linspace(70e-6, 95e-6, n)
    return jaxcell.stack([chen.update({"Negative electrode thickness [m]": l}) for l in L])


@pytest.mark.parametrize("batch_size", [2.5, 2.0, 0, -1, True, "2"])
def test_batch_size_must_be_a_positive_integer(chen, batch_size):
    """A batch size that is not a positive integer is refused (2.5 was truncated to 2) before
    anything is compiled."""
    with pytest.raises(ValueError, match=r"batch_size must be a positive integer or None, got "):
        jaxcell.simulate_batch(jaxcell.SPM(), _cells(chen, 2), EXP, batch_size=batch_size)


def test_chunks_equal_one_vmap(spm, chen):
    """5 cells in chunks of 2 (last chunk padded) give what one vmap over all 5 gives."""
    cells = _cells(chen, 5)
    whole = jax.vmap(lambda q: jaxcell.simulate(spm, q, EXP))(cells)
    chunked = jaxcell.simulate_batch(spm, cells, EXP, batch_size=2, progress=False)
    assert chunked.voltage.shape == whole.voltage.shape
    np.testing.assert_allclose(chunked.voltage, whole.voltage, rtol=1e-12)
    np.testing.assert_array_equal(chunked.status, whole.status)


def test_bad_arguments(spm, chen):
    with pytest.raises(ValueError, match="one leading batch axis"):
        jaxcell.simulate_batch(spm, chen, EXP)
    with pytest.raises(ValueError, match="batch_size"):
        jaxcell.simulate_batch(spm, _cells(chen, 2), EXP, batch_size=0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        jaxcell.simulate_batch(spm, _cells(chen, 2), EXP, tolerance=1e-3)


def test_sharded_over_four_cpu_devices():
    """With four host devices each chunk is split over all of them, and results are those of a
    single-device run (the subprocess sets XLA_FLAGS before JAX starts)."""
    code = textwrap.dedent(f"""
        import jax, numpy as np, jaxcell
        assert len(jax.devices()) == 4, jax.devices()
        p = jaxcell.load_parameters("Chen2020")
        cells = jaxcell.stack([p.update({{"Negative electrode thickness [m]": l}}) for l in np.linspace(70e-6, 95e-6, 6)])
        sols = jaxcell.simulate_batch(jaxcell.SPM(), cells, "{EXP}", batch_size=4, progress=False)
        single = jaxcell.simulate(jaxcell.SPM(), jax.tree.map(lambda x: x[5], cells), "{EXP}")
        np.testing.assert_allclose(sols.voltage[5], single.voltage, rtol=1e-12)
        assert (np.asarray(sols.status) == 0).all()
        print("OK", sols.voltage.shape)
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK (6," in out.stdout
