"""The condition pool of an RL run: inputs (source, mask, prompt) grouped by task, sampled per step.

A conditions directory, written by `write_conditions` (for the platform's runs, the benchmarks and
the tests alike) and read by `ConditionPool`:

    manifest.json
        {"format": 1,
         "taxonomy": {
            "tasks": {slug: {"name", "description", "default_prompt", "prompt_mode",
                             "rl_probability",                    # P(task) in an RL step
                             "dimensions": [slug, ...],           # judged for the task, in order
                             "dimensions_with_prompt_only": [slug, ...]}},  # judged only when the
                                                                  # input has its own prompt
            "dimensions": {slug: {"name", "definition", "uses_prompt"}}},
         "inputs": [{"id", "task", "prompt", "source": "inputs/7-source.png", "mask": "inputs/7-mask.png"}]}
    inputs/*.png

Paths in "inputs" are relative to the directory. A source is an RGB canvas (for outpainting the
source already sits on its larger canvas); a mask is a greyscale image of the same size, white
(>= 128) = generate. The taxonomy has the shape of a preference dataset's manifest (the judge's
query is built from it) plus the two RL fields of a task.

Sampling (METHOD.md §4): task k ~ Categorical(p) over the tasks that have inputs, then a condition
uniformly from k's pool. Tasks are data: no slug is special here.

Plain Python: no Django, no torch.
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from inputs.core import taxonomy

MANIFEST = "manifest.json"
FORMAT = 1


class ConditionsError(ValueError):
    """A conditions directory that cannot be used; the message names the entry at fault."""


@dataclass(frozen=True)
class Condition:
    """One input of the pool. prompt: the input's own prompt ("" = none given); source, mask:
    absolute paths of its PNG files."""

    id: str
    task: str
    prompt: str
    source: Path
    mask: Path

    def load(self) -> tuple[Image.Image, Image.Image]:
        """(RGB source canvas, mode "L" mask), same size; 255 = generate."""
        with Image.open(self.source) as source, Image.open(self.mask) as mask:
            source, mask = source.convert("RGB"), mask.convert("L")
        if source.size != mask.size:
            raise ConditionsError(f"input {self.id}: source is {source.size} but its mask is {mask.size}")
        return source, mask


class ConditionPool:
    """The inputs of a conditions directory, grouped by task, with the taxonomy they are judged on."""

    def __init__(self, directory):
        self.directory = Path(directory)
        path = self.directory / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except OSError as exc:
            raise ConditionsError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise ConditionsError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(manifest, dict):
            raise ConditionsError(f"{path}: must hold a JSON object")
        self.taxonomy = check_taxonomy(manifest.get("taxonomy"))
        self.tasks: dict[str, dict] = self.taxonomy["tasks"]
        self.inputs: list[Condition] = []
        seen = set()
        for index, entry in enumerate(manifest.get("inputs") or []):
            condition = self._condition(index, entry)
            if condition.id in seen:
                raise ConditionsError(f"inputs[{index}]: duplicate id {condition.id!r}")
            seen.add(condition.id)
            self.inputs.append(condition)
        if not self.inputs:
            raise ConditionsError(f"{path}: no inputs")
        self.by_task: dict[str, list[Condition]] = {}
        for condition in self.inputs:
            self.by_task.setdefault(condition.task, []).append(condition)

    def _condition(self, index: int, entry) -> Condition:
        if not isinstance(entry, dict):
            raise ConditionsError(f"inputs[{index}]: must be an object with id, task, prompt, source, mask")
        missing = [key for key in ("id", "task", "source", "mask") if entry.get(key) in (None, "")]
        if missing:
            raise ConditionsError(f"inputs[{index}]: missing {', '.join(missing)}")
        task = entry["task"]
        if task not in self.tasks:
            raise ConditionsError(f"inputs[{index}]: task {task!r} is not in the taxonomy "
                                  f"({', '.join(sorted(self.tasks))})")
        prompt = entry.get("prompt") or ""
        if not isinstance(prompt, str):
            raise ConditionsError(f"inputs[{index}]: prompt must be text")
        files = {}
        for key in ("source", "mask"):
            file = self.directory / str(entry[key])
            if not file.is_file():
                raise ConditionsError(f"inputs[{index}]: {key} {entry[key]!r} is not a file in {self.directory}")
            files[key] = file.resolve()
        return Condition(id=str(entry["id"]), task=task, prompt=prompt.strip(), **files)

    # --- what an input is judged on ---------------------------------------------------------------

    def dimensions(self, condition: Condition) -> list[str]:
        """The dimensions judged for this input, in the task's order; those listed as
        dimensions_with_prompt_only only when the input has a prompt of its own."""
        return taxonomy.entry_judged_dimensions(self.tasks[condition.task], condition.prompt)

    def prompt(self, condition: Condition) -> str:
        """The prompt the generator gets (and a prompt-quoting query quotes): a fixed-prompt task's
        default, else the input's prompt, else the task's default."""
        return taxonomy.entry_effective_prompt(self.tasks[condition.task], condition.prompt)

    # --- sampling -------------------------------------------------------------------------------

    def probabilities(self, overrides: dict | None = None) -> dict[str, float]:
        """P(task) for an RL step, summing to 1, over tasks with inputs.

        overrides: {slug: weight} (normalised here; tasks left out get 0). Without it the taxonomy's
        rl_probability is used, and tasks that have no inputs in this pool are left out (the
        others renormalised). Raises ConditionsError when nothing can be sampled, or when an
        override names an unknown task or gives weight to a task with no inputs.
        """
        if overrides:
            if not isinstance(overrides, dict):
                raise ConditionsError("task_probabilities: must be an object {task: probability}")
            unknown = sorted(set(overrides) - set(self.tasks))
            if unknown:
                raise ConditionsError(f"task_probabilities: unknown task {unknown[0]!r}; the taxonomy has "
                                      f"{', '.join(sorted(self.tasks))}")
            weights = {}
            for slug, value in overrides.items():
                number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                if not number or value < 0:
                    raise ConditionsError(f"task_probabilities[{slug!r}]: must be a non-negative number, "
                                          f"got {value!r}")
                if value > 0 and slug not in self.by_task:
                    raise ConditionsError(f"task_probabilities[{slug!r}] = {value} but the pool has no input "
                                          "of that task")
                weights[slug] = float(value)
        else:
            weights = {slug: float(task.get("rl_probability") or 0.0) for slug, task in self.tasks.items()
                       if slug in self.by_task}
        total = sum(weights.values())
        if total <= 0:
            have = ", ".join(f"{slug} ({len(pool)})" for slug, pool in sorted(self.by_task.items()))
            raise ConditionsError(f"no task with inputs has a positive RL probability (inputs per task: {have}); "
                                  "set rl_probability in the taxonomy or task_probabilities in the config")
        return {slug: weights[slug] / total for slug in sorted(weights) if weights[slug] > 0}

    def sample(self, rng: np.random.Generator, probabilities: dict[str, float], count: int) -> list[Condition]:
        """`count` conditions: for each, a task from `probabilities`, then an input of that task,
        both drawn from `rng` (a numpy Generator: the same state gives the same conditions)."""
        slugs = list(probabilities)
        p = np.array([probabilities[slug] for slug in slugs], dtype=np.float64)
        tasks = rng.choice(len(slugs), size=count, p=p / p.sum())
        picks = []
        for task in tasks:
            pool = self.by_task[slugs[task]]
            picks.append(pool[int(rng.integers(len(pool)))])
        return picks


def check_taxonomy(taxonomy) -> dict:
    """The taxonomy of a conditions manifest, checked (ConditionsError names the entry at fault)."""
    if not isinstance(taxonomy, dict):
        raise ConditionsError("taxonomy: must be an object with tasks and dimensions")
    tasks, dimensions = taxonomy.get("tasks"), taxonomy.get("dimensions")
    if not isinstance(tasks, dict) or not tasks:
        raise ConditionsError("taxonomy.tasks: must be a non-empty object {slug: task}")
    if not isinstance(dimensions, dict) or not dimensions:
        raise ConditionsError("taxonomy.dimensions: must be a non-empty object {slug: dimension}")
    for slug, dimension in dimensions.items():
        if not isinstance(dimension, dict) or not isinstance(dimension.get("name"), str):
            raise ConditionsError(f"taxonomy.dimensions[{slug!r}]: must be an object with name, definition, "
                                  "uses_prompt")
    for slug, task in tasks.items():
        where = f"taxonomy.tasks[{slug!r}]"
        if not isinstance(task, dict) or not isinstance(task.get("name"), str):
            raise ConditionsError(f"{where}: must be an object with name, description, default_prompt, prompt_mode, "
                                  "rl_probability, dimensions")
        judged = task.get("dimensions")
        if not isinstance(judged, list) or not judged:
            raise ConditionsError(f"{where}.dimensions: must list the dimensions judged for the task")
        unknown = [d for d in judged if d not in dimensions]
        if unknown:
            raise ConditionsError(f"{where}.dimensions: {unknown[0]!r} is not in taxonomy.dimensions")
        prompt_only = task.get("dimensions_with_prompt_only") or []
        if not isinstance(prompt_only, list) or any(d not in judged for d in prompt_only):
            raise ConditionsError(f"{where}.dimensions_with_prompt_only: must be a subset of the task's dimensions")
        probability = task.get("rl_probability", 0.0)
        if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 <= probability:
            raise ConditionsError(f"{where}.rl_probability: must be a non-negative number, got {probability!r}")
    return taxonomy


def write_conditions(directory, taxonomy: dict, inputs: Iterable[dict]) -> Path:
    """Write a conditions directory (manifest.json + inputs/*.png); returns the directory.

    taxonomy: as in the module docstring. inputs: {"id", "task", "prompt", "source", "mask"} each,
    read one at a time (a generator keeps one input's images in memory). source: an RGB PIL image,
    a uint8 (H, W, 3) array, a path to an image file, or the bytes of an image file (copied as they
    are); mask: the same kinds, greyscale, white / True = generate. id: an int or a plain file-name
    part, kept as given in the manifest. The manifest is written last, atomically, and read back.
    """
    directory = Path(directory)
    (directory / "inputs").mkdir(parents=True, exist_ok=True)
    check_taxonomy(taxonomy)
    entries = []
    for entry in inputs:
        identifier = entry["id"]
        text = str(identifier)
        if not text or any(c in text for c in "/\\") or text.startswith("."):
            raise ConditionsError(f"input id {identifier!r}: must be a plain file-name part")
        names = {"source": f"inputs/{text}-source.png", "mask": f"inputs/{text}-mask.png"}
        sizes = [_save(entry[key], mode, directory / names[key])
                 for key, mode in (("source", "RGB"), ("mask", "L"))]
        if sizes[0] != sizes[1]:
            raise ConditionsError(f"input {text}: source is {sizes[0]} but its mask is {sizes[1]}")
        entries.append({"id": identifier if isinstance(identifier, int) else text, "task": entry["task"],
                        "prompt": entry.get("prompt") or "", **names})
    manifest = {"format": FORMAT, "taxonomy": taxonomy, "inputs": entries}
    partial = directory / f".{MANIFEST}.partial"
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    partial.replace(directory / MANIFEST)
    ConditionPool(directory)  # what was written must read back
    return directory


def _save(value, mode: str, path: Path) -> tuple[int, int]:
    """Write one image of an input to `path`; returns its (width, height)."""
    if isinstance(value, (bytes, bytearray)):
        path.write_bytes(value)
        with Image.open(io.BytesIO(value)) as image:
            return image.size
    image = _image(value, mode)
    image.save(path)
    return image.size


def _image(value, mode: str) -> Image.Image:
    if isinstance(value, Image.Image):
        return value.convert(mode)
    if isinstance(value, np.ndarray):
        if value.dtype == bool:
            value = value.astype(np.uint8) * 255
        return Image.fromarray(value.astype(np.uint8)).convert(mode)
    with Image.open(value) as image:
        return image.convert(mode)
