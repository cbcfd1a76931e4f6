"""Smoke test of benchmarks/bench_gpu.py on the CPU: the script runs end to end, its batched
cells completed, and they agree with the same cells solved one at a time."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def test_bench_gpu_runs_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    cmd = [sys.executable, str(SCRIPT), "--models", "SPMe", "--sizes", "3", "--check", "2", "--probe", "0",
           "--n-out", "12", "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={"JAX_PLATFORMS": "cpu", **__import__("os").environ})
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["platform"] == "cpu" and result["x64"] is True
    (row,) = result["results"]
    assert row["model"] == "SPMe" and row["n"] == 3
    assert row["status_counts"] == {"COMPLETED": 3}
    assert row["cells_per_s"] > 0 and row["compile_s"] > 0
    # a vmapped chunk and single solves run the same arithmetic: they differ by rounding only
    assert row["cpu_check_cells"] == 2
    assert row["cpu_check_max_dV_mV"] < 1e-6 and row["cpu_check_max_dt_end_s"] < 1e-6
