"""Oracles: ground-truth judges for simulated annotators (dry runs, load tests, and tests that
check learning against a truth the trainers do not compute).

An oracle scores the N candidates of one candidate set on one dimension from their pixels; the
simulated annotator picks the highest score as best and the lowest as worst (with noise, see
`pick`). The interface, for a plug-in:

    class MyOracle:
        name = "my-oracle"
        def scores(self, task: str, dimension: str, source, mask, candidates) -> list[float]: ...

`source` and each candidate are float arrays (H, W, 3) in [0, 1], `mask` a bool array (H, W), True
where the edit goes. Register a plug-in by its dotted path, "package.module:ClassName", wherever an
oracle name is asked for; the class is built with no arguments. Plain Python + numpy.
"""
from __future__ import annotations

import importlib
import random
from collections.abc import Sequence

import numpy as np


class Brightness:
    """Prefers the candidate whose masked area is brighter (mean over the mask, all channels), on
    every dimension: a truth a judge can learn from a few hundred pairs."""

    name = "brightness"

    def scores(self, task, dimension, source, mask, candidates) -> list[float]:
        return [float(candidate[mask].mean()) if mask.any() else float(candidate.mean()) for candidate in candidates]


class TargetColour:
    """Prefers the candidate whose masked area's mean colour is closest to a target colour (RGB in
    [0, 1], default a mid green), on every dimension."""

    name = "target-colour"

    def __init__(self, target: Sequence[float] = (0.2, 0.6, 0.3)):
        self.target = np.asarray(target, dtype=np.float64)

    def scores(self, task, dimension, source, mask, candidates) -> list[float]:
        def mean_colour(candidate):
            return candidate[mask].mean(axis=0) if mask.any() else candidate.reshape(-1, 3).mean(axis=0)

        return [-float(np.linalg.norm(mean_colour(candidate) - self.target)) for candidate in candidates]


class Random:
    """No preference: random scores (a floor for agreement, and a load generator)."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)

    def scores(self, task, dimension, source, mask, candidates) -> list[float]:
        return [self.rng.random() for _ in candidates]


BUILT_IN = {oracle.name: oracle for oracle in (Brightness, TargetColour, Random)}


class OracleError(ValueError):
    """An oracle name that names no built-in oracle and no importable class."""


def load_oracle(name: str):
    """A built-in oracle by name, or a plug-in by "package.module:ClassName"."""
    if name in BUILT_IN:
        return BUILT_IN[name]()
    module_name, _, class_name = name.partition(":")
    if not class_name:
        raise OracleError(f"unknown oracle {name!r}: use one of {', '.join(sorted(BUILT_IN))}, "
                          "or a plug-in as package.module:ClassName")
    try:
        oracle = getattr(importlib.import_module(module_name), class_name)()
    except (ImportError, AttributeError) as exc:
        raise OracleError(f"cannot load the oracle plug-in {name!r}: {exc}") from None
    if not callable(getattr(oracle, "scores", None)):
        raise OracleError(f"the oracle plug-in {name!r} has no scores(task, dimension, source, mask, candidates)")
    return oracle


def pick(scores: Sequence[float], noise: float, rng: random.Random) -> tuple[int, int] | None:
    """(best, worst) candidate indices from an oracle's scores: the highest and the lowest; with
    probability `noise`, two different candidates drawn at random instead (an annotator's slip).
    None when every score is equal (no clear difference)."""
    n = len(scores)
    if rng.random() < noise:
        best, worst = rng.sample(range(n), 2)
        return best, worst
    if max(scores) == min(scores):
        return None
    best = max(range(n), key=lambda i: (scores[i], -i))
    worst = min(range(n), key=lambda i: (scores[i], i))
    return best, worst
