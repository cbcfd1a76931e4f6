"""`simulate_batch`: many cells in fixed-size chunks, each chunk sharded over the local devices."""

from __future__ import annotations

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .experiment import Experiment
from .parameters import ParameterSet
from .simulate import _prepare, _simulate
from .solution import Solution


CPU_CHUNK = 32  # default cells per chunk and CPU device (see simulate_batch)

# one compiled function per (model, protocol structure, options, chunk size): reused across calls
_simulate_chunk = eqx.filter_jit(eqx.filter_vmap(_simulate, in_axes=(None, 0, None, None, None, None)))


def simulate_batch(
    model,
    params: ParameterSet,
    experiment: Experiment | str | list,
    *,
    batch_size: int | None = None,
    progress: bool | None = None,
    **kwargs,
) -> Solution:
    """Simulate every cell of a batched `ParameterSet` (leading axis = cells).

    Cells run in chunks of `batch_size` to bound memory; every chunk has
    the same shape (the last one is padded with copies of the first cell), so the solve is
    compiled once per chunk size. Each chunk is split over all local devices along the cell axis with JAX
    sharding, so several GPUs (or `XLA_FLAGS=--xla_force_host_platform_device_count=N` CPU
    devices) are used without code changes. A failing cell gets its own `status` and does not
    affect the others. `progress` shows a progress bar over chunks (default: when there is more
    than one chunk). Other keyword arguments go to `simulate`.

    The default `batch_size` is all cells at once on accelerators and `CPU_CHUNK` cells per
    device on CPUs, where a large vmapped chunk is slower per cell than a small one (its working
    set leaves the caches; benchmarks/README.md has the measurements). With the default, a chunk
    that does not fit in the device's memory is halved (with a warning) until it does; with a
    `batch_size` given, it raises `MemoryError`.

    Returns a `Solution` whose arrays have the cells as leading axis.

    Example:
        >>> cells = jaxcell.stack([p.update({"Negative electrode thickness [m]": L}) for L in Ls])
        >>> sols = jaxcell.simulate_batch(jaxcell.SPM(), cells, "Discharge at 1C until 2.5 V", batch_size=256)
    """
    shape = params.batch_shape
    if len(shape) != 1:
        raise ValueError(f"simulate_batch needs parameters with one leading batch axis, got batch shape {shape}.")
    n = shape[0]
    if n == 0:
        raise ValueError("simulate_batch got a batch of 0 cells: its parameter arrays have an empty leading axis.")
    # broadcast scalars (parameters shared by every cell) to the batch, on the host: the
    # broadcast and each chunk's slice below are numpy operations instead of one eager JAX
    # dispatch per parameter and chunk
    params = jax.tree.map(lambda x: np.broadcast_to(x, (n,) + x.shape[1:] if x.ndim else (n,)), jax.device_get(params))
    devices = jax.local_devices()
    if batch_size is None:
        size = CPU_CHUNK * len(devices) if devices[0].platform == "cpu" else n
    elif isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool) and batch_size >= 1:
        size = int(batch_size)
    else:  # int() would truncate 2.5 to 2 silently
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}.")
    size = math.ceil(min(size, n) / len(devices)) * len(devices)  # whole cells per device
    mesh = Mesh(np.asarray(devices), ("cells",))
    sharding = NamedSharding(mesh, PartitionSpec("cells"))
    opts = dict(t_eval=None, rtol=1e-6, atol=1e-8, max_steps=20_000, solver=None, adjoint=None, initial_soc=None)
    unknown = set(kwargs) - set(opts)
    if unknown:
        raise TypeError(f"simulate_batch got unexpected keyword arguments {sorted(unknown)}; accepted: {sorted(opts)}.")
    opts.update(kwargs)
    model, params, table, modes, t_eval, options = _prepare(model, params, experiment, **opts, outputs_in_loop=True)
    params = jax.device_get(params)

    def run(size):
        n_chunks = math.ceil(n / size)
        chunks = range(n_chunks)
        if progress or (progress is None and n_chunks > 1):
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc=f"simulating {n} cells", unit="chunk")
        results = []
        try:
            for k in chunks:
                idx = np.arange(k * size, (k + 1) * size)
                idx = np.where(idx < n, idx, 0)  # pad the last chunk with cell 0
                chunk = jax.device_put(jax.tree.map(lambda x: x[idx], params), sharding)
                results.append(jax.device_get(_simulate_chunk(model, chunk, table, modes, t_eval, options)))
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        return results

    while True:
        try:
            results = run(size)
            break
        except Exception as err:  # jaxlib's error class has moved between versions
            if not _out_of_memory(err):
                raise
            where = f"the memory of {devices[0].device_kind}"
            if batch_size is not None:
                raise MemoryError(f"simulate_batch: a chunk of {size} cells (batch_size={batch_size}) did not fit in "
                                  f"{where}; pass a smaller batch_size, or fewer output times (t_eval).") from err
            if size <= len(devices):
                raise MemoryError(f"simulate_batch: one cell per device did not fit in {where}; ask for fewer output "
                                  "times (t_eval) or a coarser mesh.") from err
            smaller = math.ceil(size / 2 / len(devices)) * len(devices)  # halves, rounding up: less padding
            warnings.warn(f"simulate_batch: {size} cells at once did not fit in {where}; running chunks of "
                          f"{smaller} (set batch_size to choose).", stacklevel=2)
            size = smaller
    out = jax.tree.map(lambda *xs: np.concatenate(xs)[:n], *results)
    return jax.tree.map(jnp.asarray, out)


def _out_of_memory(err: Exception) -> bool:
    """Whether `err` is XLA's out-of-memory error (RESOURCE_EXHAUSTED), on any device."""
    text = str(err)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()
