"""Reranking: a quality layer over an existing generator, chosen by the judge.

For each request the wrapped generator makes M inner candidates, the judge compares them, and the
best one is returned as the request's image, with a record of every score.

Inner candidates: candidate k (k = 0 .. M-1) has seed `seed * M + k` (`inner_seed`) and otherwise
the request's settings, so the same request always makes the same M images, and requests with
different seeds never share an inner candidate.

The ranking rule, per request:
- the dimensions: those the request's task is judged on for this input (inputs.core.taxonomy's
  rule: a prompt-only dimension only when the user gave a prompt), weighted by the settings'
  weights for the task (dimensions left out weigh 0) or equally when the task has no weights;
  the weights are normalised to sum to 1 over the judged dimensions;
- for every dimension d and every pair i < j, the judge is asked in both orders, with the query
  the trainer uses (rewardmodel.core.query, through Judge.query), read renormalised over {Yes, No}:
      f = P(Yes | first = i, second = j, q_d),   r = P(Yes | first = j, second = i, q_d)
      win_d(i, j) = (f + 1 - r) / 2,   win_d(j, i) = 1 - win_d(i, j)
  (averaging the orders cancels the judge's position bias);
- score(i) = sum_d w_d * mean_{j != i} win_d(i, j): the weighted mean win probability of i in a
  round robin against the other M - 1 candidates, in [0, 1];
- the candidate with the highest score is kept; a tie goes to the lowest k.

The record of each returned image (`RankedRequest.record`) holds the seeds, every candidate's score
(overall and per dimension), the weights used, every P(Yes) asked (per dimension an M x M matrix,
row = first image, column = second, diagonal None) and which candidate was kept.

RerankSettings, the settings a reranking generator is saved with, is torch-free (checked in web
processes); the rest imports torch when it runs. Plain Python + torch: no Django.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from generation.core.backends.base import GeneratedImage
from inputs.core import taxonomy as taxonomy_rules

from .query import TEMPLATE_VERSION

JUDGE_FILE = "judge.json"  # the file Judge.save_pretrained writes (rewardmodel.core.judge.JUDGE_FILE)
MIN_CANDIDATES = 2
MAX_CANDIDATES = 64
RULE = ("round-robin mean win probability; P(Yes) renormalised over Yes/No, both orders averaged; "
        "weighted over dimensions")


class RerankConfigError(ValueError):
    """A reranking setting is wrong; the message names it."""


@dataclass(frozen=True)
class RerankSettings:
    """The settings of a reranking generator.

    generator: the name of the generator whose candidates are reranked.
    candidates: M, inner candidates per request (at least 2).
    judge: a saved judge directory (Judge.save_pretrained), or empty when reward_model names one.
    reward_model: the name of a registered reward model version, or empty when judge is given.
    weights: {task slug: {dimension slug: weight >= 0}}; a task left out weighs its judged
        dimensions equally.
    device, dtype: where and how the judge runs (Judge.from_pretrained's values).
    batch_size: pairs per judge forward.
    """

    generator: str
    candidates: int = 4
    judge: str = ""
    reward_model: str = ""
    weights: dict = field(default_factory=dict)
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 16

    KEYS = ("generator", "candidates", "judge", "reward_model", "weights", "device", "dtype", "batch_size")
    DTYPES = ("auto", "float32", "bfloat16", "float16")

    @classmethod
    def from_dict(cls, raw: dict) -> "RerankSettings":
        """Check the settings' shape (RerankConfigError names the first bad one); what needs the
        platform's records (the generator, the reward model, the tasks) is checked by the caller."""
        if not isinstance(raw, dict):
            raise RerankConfigError("reranking settings must be a JSON object")
        unknown = sorted(set(raw) - set(cls.KEYS))
        if unknown:
            raise RerankConfigError(f"unknown setting {unknown[0]!r}; known: {', '.join(cls.KEYS)}")
        generator = raw.get("generator")
        if not isinstance(generator, str) or not generator.strip():
            raise RerankConfigError("generator: required, the name of the generator whose candidates are reranked")
        candidates = raw.get("candidates", cls.candidates)
        if not _is_int(candidates) or not MIN_CANDIDATES <= candidates <= MAX_CANDIDATES:
            raise RerankConfigError(f"candidates: M must be a whole number from {MIN_CANDIDATES} to {MAX_CANDIDATES} "
                                    f"(the judge compares M candidates), got {candidates!r}")
        judge, reward_model = raw.get("judge") or "", raw.get("reward_model") or ""
        if not isinstance(judge, str) or not isinstance(reward_model, str):
            raise RerankConfigError("judge and reward_model must be strings")
        judge, reward_model = judge.strip(), reward_model.strip()
        if bool(judge) == bool(reward_model):
            raise RerankConfigError("give exactly one of judge (a saved judge directory) and reward_model "
                                    "(the name of a reward model version)")
        if judge:
            check_judge_dir(judge, "judge")
        device = raw.get("device") or "auto"
        if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
            raise RerankConfigError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
        dtype = raw.get("dtype") or "auto"
        if dtype not in cls.DTYPES:
            raise RerankConfigError(f"dtype {dtype!r}: expected one of {', '.join(cls.DTYPES)}")
        batch_size = raw.get("batch_size", cls.batch_size)
        if not _is_int(batch_size) or batch_size < 1:
            raise RerankConfigError(f"batch_size {batch_size!r}: a positive whole number of pairs")
        return cls(generator=generator.strip(), candidates=candidates, judge=judge, reward_model=reward_model,
                   weights=_check_weights_shape(raw.get("weights") or {}), device=device, dtype=dtype,
                   batch_size=batch_size)

    def as_dict(self) -> dict:
        return {key: getattr(self, key) for key in self.KEYS}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_weights_shape(weights) -> dict:
    if not isinstance(weights, dict):
        raise RerankConfigError("weights: must be an object {task: {dimension: weight}}")
    checked = {}
    for task, per_dimension in weights.items():
        if not isinstance(per_dimension, dict) or not per_dimension:
            raise RerankConfigError(f"weights.{task}: must be a non-empty object {{dimension: weight}}")
        for dimension, weight in per_dimension.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                    or weight < 0:
                raise RerankConfigError(f"weights.{task}.{dimension}: must be a number >= 0, got {weight!r}")
        if not any(weight > 0 for weight in per_dimension.values()):
            raise RerankConfigError(f"weights.{task}: at least one dimension must weigh more than 0")
        checked[task] = {dimension: float(weight) for dimension, weight in per_dimension.items()}
    return checked


def check_weights(weights: dict, taxonomy: dict) -> None:
    """Refuse weights for a task the taxonomy lacks or for a dimension the task is not judged on.
    taxonomy: the manifest shape (tasks with their "dimensions" lists; inputs.core.taxonomy)."""
    tasks = taxonomy.get("tasks") or {}
    for task, per_dimension in weights.items():
        if task not in tasks:
            raise RerankConfigError(f"weights: unknown task {task!r}; tasks: {', '.join(sorted(tasks))}")
        entry = tasks[task]
        judged = list(entry.get("dimensions") or ())
        lacking = [dimension for dimension in per_dimension if dimension not in judged]
        if lacking:
            raise RerankConfigError(f"weights.{task}: task {task!r} is not judged on {', '.join(map(repr, lacking))}; "
                                    f"its dimensions: {', '.join(judged) or 'none'}")
        prompt_only = set(entry.get("dimensions_with_prompt_only") or ())
        if entry.get("prompt_mode") != taxonomy_rules.REQUIRED and all(
                dimension in prompt_only for dimension, weight in per_dimension.items() if weight > 0):
            raise RerankConfigError(f"weights.{task}: only dimensions judged when the user gives a prompt weigh more "
                                    f"than 0 ({', '.join(sorted(prompt_only & set(per_dimension)))}); an input of "
                                    f"{task!r} without a prompt would have nothing to be judged on")


def check_judge_dir(location: str, setting: str = "judge") -> None:
    """Refuse a judge location that is not a saved judge or model directory, or one trained with
    another version of the query template."""
    path = Path(os.path.expanduser(location))
    if not path.is_dir():
        raise RerankConfigError(f"{setting} {location!r}: no such directory")
    if not (path / JUDGE_FILE).is_file() and not (path / "config.json").is_file():
        raise RerankConfigError(f"{setting} {location!r}: not a judge directory (no {JUDGE_FILE} or config.json)")
    if (path / JUDGE_FILE).is_file():
        try:
            version = json.loads((path / JUDGE_FILE).read_text()).get("template_version", TEMPLATE_VERSION)
        except (OSError, ValueError, AttributeError) as exc:
            raise RerankConfigError(f"{setting} {location!r}: unreadable {JUDGE_FILE} ({exc})") from None
        if version != TEMPLATE_VERSION:
            raise RerankConfigError(f"{setting} {location!r}: trained with query template version {version}, the code "
                                    f"asks version {TEMPLATE_VERSION}")


# --- the rule -------------------------------------------------------------------------------------


def inner_seed(seed: int, index: int, candidates: int) -> int:
    """The seed of inner candidate `index` (0 .. candidates - 1) of a request with `seed`."""
    return seed * candidates + index


def prompt_given(entry: dict, request) -> bool:
    """Whether the request's user gave a prompt: the request says so when it knows; otherwise a
    prompt that is not the task's default counts as given."""
    if request.prompt_given is not None:
        return bool(request.prompt_given)
    if entry.get("prompt_mode") == taxonomy_rules.FIXED:
        return False
    prompt = (request.prompt or "").strip()
    return bool(prompt) and prompt != (entry.get("default_prompt") or "").strip()


def dimension_weights(entry: dict, task: str, given: bool, weights: dict) -> dict[str, float]:
    """{dimension: weight} over the dimensions judged for this input (entry: the task's manifest
    entry), normalised to sum to 1; the settings' weights for `task` when it has some (dimensions
    left out weigh 0), else equal. Empty when no judged dimension weighs more than 0."""
    judged = taxonomy_rules.judged_dimensions(entry.get("dimensions") or (),
                                              set(entry.get("dimensions_with_prompt_only") or ()), given)
    task_weights = weights.get(task)
    raw = {d: float(task_weights.get(d, 0.0)) if task_weights else 1.0 for d in judged}
    total = sum(raw.values())
    return {d: w / total for d, w in raw.items() if w > 0} if total > 0 else {}


@dataclass
class Ranking:
    """The judge's verdict on M candidates. scores: (M,) weighted mean win probability;
    per_dimension: {dimension: (M,) mean win probability}; p_yes: {dimension: M x M, [i][j] =
    P(Yes | first = i, second = j) renormalised, diagonal None}; kept: the index of the best."""

    scores: list[float]
    per_dimension: dict[str, list[float]]
    p_yes: dict[str, list[list[float | None]]]
    kept: int


def rank(judge, images: Sequence, queries: dict[str, str], weights: dict[str, float], batch_size: int = 16) -> Ranking:
    """Rank M images (float tensors (3, H, W) in [0, 1]) by the rule of the module docstring.

    queries: {dimension: the judge's question}; weights: {dimension: weight}, summing to 1, over
    the same dimensions. judge: a Judge (anything with its `score`)."""
    count = len(images)
    pairs = [(i, j) for i in range(count) for j in range(i + 1, count)]
    dimensions = list(weights)
    first, second, asked = [], [], []
    for dimension in dimensions:
        for i, j in pairs:
            first.append(images[i])
            second.append(images[j])
            asked.append(queries[dimension])
    answers = judge.score(first, second, asked, both_orders=True, batch_size=batch_size) if asked else {}
    forward = [float(v) for v in answers.get("p_yes_renormalised", [])]
    reversed_ = [float(v) for v in answers.get("p_yes_reversed_renormalised", [])]

    per_dimension, p_yes, row = {}, {}, 0
    for dimension in dimensions:
        matrix: list[list[float | None]] = [[None] * count for _ in range(count)]
        wins = [0.0] * count
        for i, j in pairs:
            f, r = forward[row], reversed_[row]
            row += 1
            matrix[i][j], matrix[j][i] = f, r
            win = (f + 1.0 - r) / 2.0
            wins[i] += win
            wins[j] += 1.0 - win
        per_dimension[dimension] = [w / (count - 1) for w in wins]
        p_yes[dimension] = matrix
    scores = [sum(weights[d] * per_dimension[d][i] for d in dimensions) for i in range(count)]
    kept = max(range(count), key=lambda i: (scores[i], -i))
    return Ranking(scores=scores, per_dimension=per_dimension, p_yes=p_yes, kept=kept)


# --- the backend ----------------------------------------------------------------------------------


def to_tensor(image):
    """A PIL image as the judge takes it: float (3, H, W) in [0, 1]."""
    import numpy as np
    import torch

    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)


class Reranker:
    """The generator backend (generation.core.backends.base.GeneratorBackend) that keeps the best
    of M candidates of another backend, by the judge's ranking (see the module docstring).

    generator: the wrapped backend; judge: a loaded Judge; taxonomy: the manifest-shaped taxonomy
    (tasks with their dimensions, dimensions with their names), or a function returning it (read
    at every call, so edits in the admin apply); candidates: M; weights: {task: {dimension:
    weight}}; about: facts copied into every record (the wrapped generator's and judge's names).
    """

    def __init__(self, generator, judge, taxonomy: dict | Callable[[], dict], *, candidates: int,
                 weights: dict | None = None, batch_size: int = 16, about: dict | None = None):
        if candidates < MIN_CANDIDATES:
            raise ValueError(f"reranking needs at least {MIN_CANDIDATES} candidates, got {candidates}")
        self.generator = generator
        self.judge = judge
        self._taxonomy = taxonomy
        self.candidates = candidates
        self.weights = weights or {}
        self.batch_size = batch_size
        self.about = dict(about or {})

    def taxonomy(self) -> dict:
        return self._taxonomy() if callable(self._taxonomy) else self._taxonomy

    def inner_requests(self, request) -> list:
        """The M requests made for one request: its settings with the inner seeds."""
        return [replace(request, settings=replace(request.settings,
                                                  seed=inner_seed(request.settings.seed, k, self.candidates)))
                for k in range(self.candidates)]

    def generate(self, requests) -> list:
        return [made.image for made in self.generate_recorded(requests)]

    def generate_recorded(self, requests) -> list:
        """One GeneratedImage per request: the kept inner candidate and its record."""
        requests = list(requests)
        inner = [self.inner_requests(request) for request in requests]
        images = self.generator.generate([r for group in inner for r in group])
        if len(images) != self.candidates * len(requests):
            raise ValueError(f"the wrapped generator returned {len(images)} images for "
                             f"{self.candidates * len(requests)} requests")
        taxonomy = self.taxonomy()
        out = []
        for position, (request, group) in enumerate(zip(requests, inner)):
            own = images[position * self.candidates:(position + 1) * self.candidates]
            ranking, weights = self.rank_request(request, own, taxonomy)
            record = {
                **self.about,
                "rule": RULE,
                "weights": weights,
                "candidates": [
                    {"index": k, "seed": r.settings.seed, "score": ranking.scores[k],
                     "dimensions": {d: ranking.per_dimension[d][k] for d in weights}}
                    for k, r in enumerate(group)
                ],
                "p_yes": ranking.p_yes,
                "kept": ranking.kept,
                "kept_seed": group[ranking.kept].settings.seed,
            }
            out.append(GeneratedImage(own[ranking.kept], record))
        return out

    def rank_request(self, request, images: Sequence, taxonomy: dict) -> tuple[Ranking, dict[str, float]]:
        """The ranking of one request's M images, and the dimension weights it used."""
        tasks = taxonomy.get("tasks") or {}
        if request.task not in tasks:
            raise ValueError(f"task {request.task!r} is not in the taxonomy; tasks: {', '.join(sorted(tasks))}")
        entry = tasks[request.task]
        weights = dimension_weights(entry, request.task, prompt_given(entry, request), self.weights)
        if not weights:
            raise ValueError(f"no dimension of task {request.task!r} judged for this input weighs more than 0; "
                             "give a weight to one it is judged on")
        queries = {d: self.judge.query(taxonomy, request.task, d, request.prompt) for d in weights}
        tensors = [to_tensor(image) for image in images]
        return rank(self.judge, tensors, queries, weights, self.batch_size), weights
