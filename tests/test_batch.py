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


def _out_of_memory_above(limit, monkeypatch):
    """Make simulate_batch's chunk function fail as XLA does when a chunk has more than `limit`
    cells (nothing is compiled for those); smaller chunks run as usual."""
    from jaxcell import batch

    real, sizes = batch._simulate_chunk, []

    def chunk_fn(model, chunk, *args):
        sizes.append(jax.tree.leaves(chunk)[0].shape[0])
        if sizes[-1] > limit:
            raise RuntimeError(f"RESOURCE_EXHAUSTED: Out of memory while trying to allocate {sizes[-1]} cells")
        return real(model, chunk, *args)

    monkeypatch.setattr(batch, "_simulate_chunk", chunk_fn)
    return sizes


def test_default_chunk_is_halved_until_it_fits(spm, chen, monkeypatch):
    """With the default batch_size, a chunk that runs out of device memory is halved (with a
    warning) until it fits, and the cells' results are those of chunks of that size."""
    cells = _cells(chen, 5)
    expected = jaxcell.simulate_batch(spm, cells, EXP, batch_size=2, progress=False)
    sizes = _out_of_memory_above(2, monkeypatch)
    with pytest.warns(UserWarning) as caught:
        got = jaxcell.simulate_batch(spm, cells, EXP, progress=False)
    assert sizes == [5, 3, 2, 2, 2]  # 5 -> 3 (halved, rounded up) -> 2
    assert [str(w.message).split(";")[1] for w in caught] == [" running chunks of 3 (set batch_size to choose).",
                                                               " running chunks of 2 (set batch_size to choose)."]
    np.testing.assert_array_equal(got.voltage, expected.voltage)
    np.testing.assert_array_equal(got.status, expected.status)


def test_a_chosen_chunk_that_does_not_fit_says_so(spm, chen, monkeypatch):
    """A batch_size the user chose is not changed behind their back: MemoryError naming it."""
    sizes = _out_of_memory_above(2, monkeypatch)
    with pytest.raises(MemoryError, match=r"a chunk of 4 cells \(batch_size=4\) did not fit .*; pass a smaller batch_size"):
        jaxcell.simulate_batch(spm, _cells(chen, 5), EXP, batch_size=4, progress=False)
    assert sizes == [4]
    # with the default, down to one cell that still does not fit: MemoryError, not a loop
    sizes = _out_of_memory_above(0, monkeypatch)
    with pytest.raises(MemoryError, match="one cell per device did not fit"), pytest.warns(UserWarning):
        jaxcell.simulate_batch(spm, _cells(chen, 5), EXP, progress=False)
    assert sizes == [5, 3, 2, 1]


def test_other_errors_pass_through(spm, chen, monkeypatch):
    """Only out-of-memory errors change the chunk size; anything else reaches the caller as is."""
    from jaxcell import batch

    def broken(*args):
        raise ValueError("not a memory problem")

    monkeypatch.setattr(batch, "_simulate_chunk", broken)
    with pytest.raises(ValueError, match="not a memory problem"):
        jaxcell.simulate_batch(spm, _cells(chen, 5), EXP, progress=False)


def test_bad_arguments(spm, chen):
    with pytest.raises(ValueError, match="one leading batch axis"):
        jaxcell.simulate_batch(spm, chen, EXP)
    with pytest.raises(ValueError, match="batch_size"):
        jaxcell.simulate_batch(spm, _cells(chen, 2), EXP, batch_size=0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        jaxcell.simulate_batch(spm, _cells(chen, 2), EXP, tolerance=1e-3)
    empty = chen.update({"Negative electrode thickness [m]": np.zeros(0)})
    with pytest.raises(ValueError, match="a batch of 0 cells"):
        jaxcell.simulate_batch(spm, empty, EXP)


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
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"
    env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK (6," in out.stdout
