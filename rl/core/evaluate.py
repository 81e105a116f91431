"""The judge's verdict on a trained policy against its base, on held-out inputs.

    python -m rl.core.evaluate --policy RESULT_OR_SETTINGS.json --base SETTINGS.json --judge DIR \
        --conditions DIR [--samples-per-input 1] [--seed 0] [--output evaluation.json]

For every input of a conditions directory (rl/core/conditions.py) and every sample k, the policy and the
base generate from the same seed with the same settings; for each dimension the task is judged on,
the judge is asked in both orders:

    forward  = P(Yes | first = policy, second = base, q_e)  -> the policy wins when > 0.5
    reversed = P(Yes | first = base, second = policy, q_e)  -> the policy wins when < 0.5

read renormalised over {Yes, No}, by the same rule as reward-model evaluation
(rewardmodel.core.evaluation.first_wins); a row (task x dimension) reports the policy's win rate in
each order and their mean, with counts, and the mean P(Yes) of each order (raw: the RL reward; and
renormalised).
A policy identical to its base wins exactly half of the averaged comparisons (one order or the
other, whichever way the judge leans on a tie), so 0.5 is "no change" whatever the judge's
position bias.

Images are judged as RL judges them: with the unmasked area taken from the source when the base
generator delivers its candidates that way (composite_source: None follows its setting).
Plain Python + torch: no Django.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mlcore.rundir import write_json_atomic
from rewardmodel.core.evaluation import first_wins

from .conditions import ConditionPool, ConditionsError
from .config import RolloutSettings

ALL = "all"


def evaluate_policy(generator_settings: dict, base_settings: dict, judge_dir, conditions_dir,
                    samples_per_input: int = 1, seed: int = 0, *, rollout=None, composite_source: bool | None = None,
                    output=None, batch_size: int = 16) -> dict:
    """Win rates of the policy against the base per task x dimension (see the module docstring).

    generator_settings, base_settings: FluxFillConfig dicts. judge_dir: a saved judge directory, or
    a loaded Judge (any object with Judge's `query` and `score`). rollout: RolloutSettings or a
    dict (steps, guidance, true_cfg, negative_prompt; default: RL's defaults). Sample k of the input
    at position i uses seed seed + i * samples_per_input + k for both generators. output: where to write the result as
    JSON (evaluation.json). Returns {"inputs", "samples", "comparisons", "rows": [...], "settings"}.
    """
    import torch

    from generation.core.backends.base import CandidateSettings, GenerationRequest
    from generation.core.backends.flux_fill import FluxFillConfig
    from rewardmodel.core.judge import Judge

    rollout = RolloutSettings.from_dict(rollout if rollout is not None else {})
    if composite_source is None:
        composite_source = FluxFillConfig.from_dict(base_settings).composite_source
    pool = ConditionPool(conditions_dir)
    requests, items = [], []
    for position, condition in enumerate(pool.inputs):
        source, mask = condition.load()
        for k in range(samples_per_input):
            settings = CandidateSettings(seed=seed + position * samples_per_input + k, steps=rollout.steps,
                                         guidance=rollout.guidance, true_cfg=rollout.true_cfg,
                                         negative_prompt=rollout.negative_prompt)
            requests.append(GenerationRequest(image=source, mask=mask, prompt=pool.prompt(condition),
                                              task=condition.task, settings=settings))
            items.append((condition, source, mask))

    policy_images = _generate(generator_settings, requests)
    base_images = _generate(base_settings, requests)

    loaded = not isinstance(judge_dir, (str, os.PathLike))
    judge = judge_dir if loaded else Judge.from_pretrained(os.fspath(judge_dir))
    first, second, queries, keys = [], [], [], []
    for (condition, source, mask), policy, base in zip(items, policy_images, base_images):
        if composite_source:
            policy, base = composite(policy, source, mask), composite(base, source, mask)
        policy_tensor = torch.from_numpy(np.ascontiguousarray(policy)).permute(2, 0, 1).float()
        base_tensor = torch.from_numpy(np.ascontiguousarray(base)).permute(2, 0, 1).float()
        for dimension in pool.dimensions(condition):
            first.append(policy_tensor)
            second.append(base_tensor)
            queries.append(judge.query(pool.taxonomy, condition.task, dimension, condition.prompt))
            keys.append((condition.task, dimension))
    scores = judge.score(first, second, queries, both_orders=True, batch_size=batch_size) if queries else {}

    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    rows_in = []
    for index, key in enumerate(keys):
        row = {name: float(scores[name][index]) for name in
               ("p_yes", "p_yes_renormalised", "p_yes_reversed", "p_yes_reversed_renormalised")}
        groups[key].append(row)
        rows_in.append(row)
    table = [_row(task, dimension, groups[(task, dimension)]) for task, dimension in sorted(groups)]
    table.append(_row(ALL, ALL, rows_in))
    result = {
        "inputs": len(pool.inputs),
        "samples": len(requests),
        "comparisons": len(keys),
        "rows": table,
        "settings": {"samples_per_input": samples_per_input, "seed": seed, "rollout": asdict(rollout),
                     "composite_source": composite_source, "conditions_dir": str(conditions_dir),
                     "judge": None if loaded else os.fspath(judge_dir)},
    }
    if output is not None:
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(output, result)
    return result


def _generate(settings: dict, requests) -> list[np.ndarray]:
    """Float (H, W, 3) arrays in [0, 1]; one generator in memory at a time."""
    import torch

    from generation.core.backends.flux_fill import FluxFillBackend

    backend = FluxFillBackend.from_config(settings)
    try:
        return backend.generate_arrays(requests)
    finally:
        del backend
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def composite(generated: np.ndarray, source, mask) -> np.ndarray:
    """generated float (H, W, 3) in [0, 1]; source RGB and mask "L" PIL images: the generated
    pixels where the mask is white (>= 128, the pipeline's binarisation), the source elsewhere."""
    keep = (np.asarray(mask, dtype=np.float32) / 255.0 >= 0.5)[..., None]
    return np.where(keep, generated, np.asarray(source, dtype=np.float32) / 255.0).astype(np.float32)


def _row(task: str, dimension: str, rows: list[dict]) -> dict:
    n = len(rows)
    forward, reversed_ = first_wins([row["p_yes_renormalised"] for row in rows],
                                    [row["p_yes_reversed_renormalised"] for row in rows])

    def mean(name):
        return sum(row[name] for row in rows) / n if n else None

    return {
        "task": task,
        "dimension": dimension,
        "comparisons": n,
        "forward_wins": forward,
        "reversed_wins": reversed_,
        "win_rate_forward": forward / n if n else None,
        "win_rate_reversed": reversed_ / n if n else None,
        "win_rate": (forward + reversed_) / (2 * n) if n else None,
        "mean_p_yes": mean("p_yes"),
        "mean_p_yes_reversed": mean("p_yes_reversed"),
        "mean_p_yes_renormalised": mean("p_yes_renormalised"),
        "mean_p_yes_reversed_renormalised": mean("p_yes_reversed_renormalised"),
    }


def format_table(evaluation: dict) -> str:
    headers = ["task", "dimension", "n", "forward win %", "reversed win %", "win %", "mean P fwd", "mean P rev"]
    lines = []
    for row in evaluation["rows"]:
        lines.append([row["task"], row["dimension"], str(row["comparisons"]), _cell(row["win_rate_forward"], 100),
                      _cell(row["win_rate_reversed"], 100), _cell(row["win_rate"], 100), _cell(row["mean_p_yes"]),
                      _cell(row["mean_p_yes_reversed"])])
    widths = [max(len(headers[i]), *(len(cells[i]) for cells in lines)) for i in range(len(headers))]

    def render(cells):
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([render(headers), render(["-" * w for w in widths]), *map(render, lines)])


def _cell(value, factor: float = 1.0) -> str:
    return "-" if value is None else f"{value * factor:.{2 if factor != 1.0 else 3}f}"


def _settings(path: str) -> dict:
    """A FluxFillConfig dict from a JSON file: the file itself, or an RL result.json's generator_settings."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict) and isinstance(data.get("generator_settings"), dict):
        return data["generator_settings"]
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of generator settings")
    return data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rl.core.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", required=True, help="generator settings JSON of the policy, or an RL result.json")
    parser.add_argument("--base", help="generator settings JSON of the base "
                                       "(default: the result.json's base_generator)")
    parser.add_argument("--judge", help="saved judge directory (default: the result.json's judge)")
    parser.add_argument("--conditions", required=True, help="conditions directory of held-out inputs")
    parser.add_argument("--samples-per-input", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rollout", help="JSON object: steps, guidance, true_cfg, negative_prompt (default: the "
                                          "result.json's rollout, else RL's defaults)")
    composite = parser.add_mutually_exclusive_group()
    composite.add_argument("--composite", dest="composite", action="store_const", const=True, default=None,
                           help="judge images with the unmasked area taken from the source")
    composite.add_argument("--no-composite", dest="composite", action="store_const", const=False,
                           help="judge whole decodes (default for both: as the base generator delivers them)")
    parser.add_argument("--output", default="evaluation.json", help="where to write the evaluation (JSON)")
    args = parser.parse_args(argv)
    if args.samples_per_input < 1:
        parser.error("--samples-per-input must be at least 1")
    try:
        policy_file = json.loads(Path(args.policy).read_text())
        run_config = policy_file.get("config", {}) if isinstance(policy_file, dict) else {}
        policy = _settings(args.policy)
        base = _settings(args.base) if args.base else run_config.get("base_generator")
        judge = args.judge or run_config.get("judge")
        rollout = json.loads(args.rollout) if args.rollout else run_config.get("rollout")
        if not base or not judge:
            raise ValueError("--base and --judge are needed unless --policy is an RL result.json")
        ConditionPool(args.conditions)
    except (OSError, ValueError, ConditionsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    evaluation = evaluate_policy(policy, base, judge, args.conditions, samples_per_input=args.samples_per_input,
                                 seed=args.seed, rollout=rollout, composite_source=args.composite,
                                 output=args.output)
    print(format_table(evaluation))
    return 0


if __name__ == "__main__":
    sys.exit(main())
