"""Running a trainer's command line in child processes, as the worker does: one process, or
`accelerate launch --multi_gpu` over several (on a host without CUDA, torchrun and gloo on CPU)."""
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_module(module: str, arguments: list[str], processes: int = 1, timeout: int = 300):
    """`python -m module arguments` in `processes` processes; the output is captured."""
    if processes == 1:
        command = [sys.executable, "-m", module, *arguments]
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                   str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", str(free_port()), "-m", module, *arguments]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
