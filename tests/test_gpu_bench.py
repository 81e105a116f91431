"""bench/gpu.sh --dry-run: the prepared GPU benchmark's code path (full-size layouts built in place,
then generation, judge and RL figures) with tiny models on the CPU, so that the script that gets a
few minutes of a GPU has run before it meets one."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_gpu_benchmark_runs_its_whole_path_dry():
    result = subprocess.run(["bash", "bench/gpu.sh", "--dry-run"], cwd=REPO, capture_output=True, text=True,
                            timeout=1500, env={**os.environ, "PYTHON": sys.executable})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "no CUDA device (CPU); torch" in output
    assert "FluxFillBackend.generate, batched" in output and "ratio (batched / one-by-one" in output
    assert "scoring, both orders" in output and "training, with gradient checkpointing" in output
    for case in ("64x64, Algorithm 1", "64x64, Algorithm 2", "96x96, Algorithm 1", "96x96, Algorithm 2"):
        assert case in output and "s/step" in output, output[-3000:]
    assert "!!" not in output
