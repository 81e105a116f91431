"""Timing shared by the benchmarks: functions measured in turns, so a load change hits all alike."""
import statistics
import time

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_alternately(functions: dict, device, repeats: int, warm_up: bool = True) -> tuple[dict, dict]:
    """Median seconds per call of each function, and its last result. One warm-up call each (unless
    already warm), then the functions take turns, so that a load change on a shared machine hits
    every one alike."""
    results = {name: fn() for name, fn in functions.items()} if warm_up else {}
    seconds = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            synchronize(device)
            start = time.perf_counter()
            results[name] = fn()
            synchronize(device)
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}, results
