"""How many judgments does uncertainty-first collection save over random order? The judge's
agreement with the brightness oracle against the number of judgments, for collection rounds
that open sets at random and rounds that open the sets the current judge is least sure of.

    .venv/bin/python bench/label_savings.py [--worlds 2] [--budgets 8,16,32,48] [--steps 120]
                                            [--svg docs/label_savings.svg] [--json FILE]

Per world (inputs, masks and candidates from one seed; tests/rl/oracle_world.py): a pool of
candidate sets to collect from and held-out sets to measure on. Each input's N candidates fill
the mask with smooth textures (oracle_world.canvas) at brightness levels drawn around the
input's own, with a spread drawn per input, so sets range from near-identical (the oracle's pick
is a hair's breadth) to plain; the oracle (annotation.core.oracles.Brightness, the simulated
annotators' rule through `pick`) judges best and worst per dimension, and every pair its pick
orders becomes training data (best_worst_all, preferences.core.pairing.relations).

Both strategies start from the same first round (the first budget, opened at random). Each later
round opens as many new sets as the next budget allows: random takes them in the seeded random
order; uncertainty asks the judge trained on the labels so far about every pair of every
unlabelled set in both orders (rl.core.set_scores, the round's scoring job) and takes the sets
with the highest uncertainty (rl.core.strategies, the round's rule). At every budget the demo judge
is trained afresh on the labels so far (same steps, seed and settings for both strategies), then
scored against the oracle on the held-out sets' pairs, in both orders (oracle_world.oracle_agreement).

Printed: per budget, the agreement (%, averaged over the two orders and the worlds) of each
strategy and their ratio; and, for each uncertainty budget, the random budget needed to reach the
same agreement (linear between measured budgets), which is the saving. No database: the round's
strategy and scoring code and the trainers' cores, as the workers run them; the collection round
tests cover the platform around them.
"""
import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from annotation.core.oracles import Brightness, pick  # noqa: E402
from preferences.core.pairing import relations  # noqa: E402
from rewardmodel.core.config import TrainingConfig  # noqa: E402
from rewardmodel.core.demo_judge import save_tiny_qwen  # noqa: E402
from rewardmodel.core.judge import Judge  # noqa: E402
from rewardmodel.core.training import train as train_judge  # noqa: E402
from rl.core import strategies  # noqa: E402
from rl.core.set_scores import SetToScore, score_set  # noqa: E402
from tests.rewardmodel.synthetic_pairs import row, save_image, write_dataset  # noqa: E402
from tests.rl import rl_taxonomy  # noqa: E402
from tests.rl.oracle_world import DIMENSIONS, canvas, oracle_agreement, oracle_inputs  # noqa: E402

CANDIDATES = 3
SPREAD = (0.01, 0.25)  # the half-width of a set's brightness levels, drawn per input (--spread)
JUDGE = {"learning_rate": 2e-3, "batch_size": 8, "warmup_steps": 3}


def candidate_sets(count: int, seed: int, spread_range=SPREAD) -> list[dict]:
    """`count` inputs with N candidates each: {"task", "prompt", "source", "mask", "candidates"
    (uint8 H x W x 3), "levels"}; the candidates are the source with the mask filled."""
    rng = np.random.default_rng(10_000 + seed)
    world = []
    for item in oracle_inputs(count, seed=seed):
        centre, spread = rng.uniform(0.3, 0.7), rng.uniform(*spread_range)
        levels = np.clip(centre + spread * rng.uniform(-1, 1, CANDIDATES), 0.05, 0.95)
        inside = item["mask"] >= 128
        candidates = []
        for level in levels:
            painted = item["source"].copy()
            painted[inside] = canvas(rng, float(level))[inside]
            candidates.append(painted)
        world.append({**item, "candidates": candidates, "levels": levels.tolist()})
    return world


def label(world: list[dict], index: int, rng: random.Random) -> list[tuple[str, int, int]]:
    """The simulated annotator's judgment of set `index`: (dimension, winner, loser) pairs."""
    item, oracle = world[index], Brightness()
    source = item["source"].astype(np.float32) / 255
    mask = item["mask"] >= 128
    shown = [c.astype(np.float32) / 255 for c in item["candidates"]]
    pairs = []
    for dimension in DIMENSIONS[item["task"]]:
        chosen = pick(oracle.scores(item["task"], dimension, source, mask, shown), 0.0, rng)
        if chosen is not None:
            pairs += [(dimension, w, l) for w, l in relations(chosen[0], chosen[1], CANDIDATES)]
    return pairs


def tensor(pixels: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(pixels.astype(np.float32) / 255)).permute(2, 0, 1)


class World:
    def __init__(self, seed: int, pool: int, held_out: int, folder: Path, judge_base: Path, spread=SPREAD):
        self.seed, self.folder, self.judge_base = seed, folder, judge_base
        everything = candidate_sets(pool + held_out, seed, spread)
        self.pool, self.held_out = everything[:pool], everything[pool:]
        self.taxonomy = rl_taxonomy()
        self.query = Judge.from_pretrained(str(judge_base)).query
        self.uris = {(i, k): save_image(c, folder / "images" / f"{i}-{k}.png", False)
                     for i, item in enumerate(self.pool) for k, c in enumerate(item["candidates"])}
        self.labels: dict[int, list] = {}
        rng = random.Random(seed)
        for index in range(pool):
            self.labels[index] = label(self.pool, index, rng)
        self.test_pairs = [
            {"first": item["candidates"][i], "second": item["candidates"][j], "mask": item["mask"],
             "query": self.ask(item, dimension)}
            for item in self.held_out for dimension in DIMENSIONS[item["task"]]
            for i in range(CANDIDATES) for j in range(i + 1, CANDIDATES)]

    def ask(self, item: dict, dimension: str) -> str:
        return self.query(self.taxonomy, item["task"], dimension, item["prompt"])

    def train(self, labelled: list[int], name: str, steps: int) -> Judge:
        rows = [row(split="train", input_id=index, input_hash=f"h{index}", task=self.pool[index]["task"],
                    dimension=dimension, prompt=self.pool[index]["prompt"], candidate_set_id=index,
                    winner_index=w, loser_index=l, winner_image=self.uris[(index, w)],
                    loser_image=self.uris[(index, l)])
                for index in labelled for dimension, w, l in self.labels[index]]
        data = write_dataset(self.folder / f"data-{name}", rows)
        config = TrainingConfig(dataset_dir=str(data), output_dir=str(self.folder / f"judge-{name}"),
                                base_model=str(self.judge_base), max_steps=steps, seed=self.seed, log_every=1000,
                                save_every=100_000, zero_shot_eval=False, **JUDGE)
        train_judge(config)
        return Judge.from_pretrained(str(self.folder / f"judge-{name}" / "model"))

    def uncertain_first(self, judge: Judge, unlabelled: list[int]) -> list[int]:
        figures = {}
        for index in unlabelled:
            item = self.pool[index]
            to_score = SetToScore(index, [tensor(c) for c in item["candidates"]],
                                  {dimension: self.ask(item, dimension) for dimension in DIMENSIONS[item["task"]]})
            figures[index] = strategies.uncertainty(score_set(judge, to_score))
        return strategies.order_sets(strategies.UNCERTAINTY, unlabelled, figures=figures)

    def gap(self, indices: list[int]) -> float:
        """Mean difference in brightness level between the brightest and darkest candidate of the sets."""
        return float(np.mean([max(self.pool[i]["levels"]) - min(self.pool[i]["levels"]) for i in indices]))

    def run(self, budgets: list[int], steps: int) -> dict:
        """{strategy: [agreement % per budget]}, the level gap of the sets each strategy opened after
        the first round, and the seconds spent."""
        order = strategies.order_sets(strategies.RANDOM, range(len(self.pool)), seed=self.seed)
        first = order[:budgets[0]]
        started = time.perf_counter()
        shared = self.train(first, f"{budgets[0]}-first", steps)
        first_agreement = oracle_agreement(shared, self.test_pairs)["averaged"]
        figures = {"random": [first_agreement], "uncertainty": [first_agreement]}
        for strategy in ("random", "uncertainty"):
            labelled, judge = list(first), shared
            for budget in budgets[1:]:
                unlabelled = [index for index in order if index not in labelled]
                ranked = unlabelled if strategy == "random" else self.uncertain_first(judge, unlabelled)
                labelled += ranked[:budget - len(labelled)]
                judge = self.train(labelled, f"{budget}-{strategy}", steps)
                figures[strategy].append(oracle_agreement(judge, self.test_pairs)["averaged"])
            figures[f"{strategy}_gap"] = self.gap(labelled[len(first):])
        figures["seconds"] = time.perf_counter() - started
        figures["pairs_per_set"] = float(np.mean([len(pairs) for pairs in self.labels.values()]))
        return figures


def budget_to_reach(agreement: float, budgets: list[int], curve: list[float]) -> float | None:
    """The budget at which `curve` (measured at `budgets`) first reaches `agreement`, linear
    between measured points; None when it never does."""
    if curve[0] >= agreement:
        return float(budgets[0])
    for (b0, a0), (b1, a1) in zip(zip(budgets, curve), zip(budgets[1:], curve[1:])):
        if a1 >= agreement:
            return b0 + (agreement - a0) / (a1 - a0) * (b1 - b0) if a1 > a0 else float(b1)
    return None


def write_plot(path: Path, budgets: list[int], mean: dict) -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure()
        django.setup()
    from onereward.charts import line_chart

    chart = line_chart({f"{name} (agreement %)": list(zip(budgets, mean[name])) for name in ("random", "uncertainty")},
                       title="Judge agreement with the oracle by number of judgments (held-out pairs, both orders)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<?xml version="1.0" encoding="utf-8"?>\n{chart}\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--pool", type=int, default=96, help="candidate sets to collect from per world")
    parser.add_argument("--held-out", type=int, default=32, help="held-out sets per world")
    parser.add_argument("--spread", default=f"{SPREAD[0]},{SPREAD[1]}",
                        help="LOW,HIGH: the range of a set's half-width in brightness level")
    parser.add_argument("--budgets", default="8,16,32,48",
                        help="judgments (sets judged) at which the judge is trained, comma-separated")
    parser.add_argument("--steps", type=int, default=120, help="training steps of the judge at every budget")
    # One thread: on a small shared machine torch's default (a thread per core) spins against the
    # other work and runs this tiny model over ten times slower (0.14 s against 2.2 s for the forward
    # and backward of 16 pairs, 2 cores, measured).
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--svg", help="write the curves here (SVG)")
    parser.add_argument("--json", help="also write every figure here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    budgets = [int(b) for b in args.budgets.split(",")]
    spread = tuple(float(v) for v in args.spread.split(","))
    if budgets != sorted(set(budgets)) or budgets[-1] > args.pool:
        parser.error("budgets must increase and stay within the pool")
    root = Path(tempfile.mkdtemp(prefix="label-savings-"))
    judge_base = save_tiny_qwen(root / "judge-base", seed=0)  # the demo judge
    runs = []
    for seed in range(args.first_seed, args.first_seed + args.worlds):
        world = World(seed, args.pool, args.held_out, root / f"world-{seed}", judge_base, spread)
        figures = world.run(budgets, args.steps)
        runs.append(figures)
        print(f"world {seed}: {len(world.test_pairs)} held-out pairs, {figures['pairs_per_set']:.1f} pairs per "
              f"judgment, {figures['seconds']:.0f} s; random "
              + " ".join(f"{a:.1f}" for a in figures["random"]) + "; uncertainty "
              + " ".join(f"{a:.1f}" for a in figures["uncertainty"])
              + f"; level gap of the sets opened after the first round: random {figures['random_gap']:.3f}, "
                f"uncertainty {figures['uncertainty_gap']:.3f}", flush=True)
    mean = {name: [float(np.mean([r[name][k] for r in runs])) for k in range(len(budgets))]
            for name in ("random", "uncertainty")}
    sd = {name: [float(np.std([r[name][k] for r in runs])) for k in range(len(budgets))]
          for name in ("random", "uncertainty")}
    print()
    print("judgments | agreement random % | agreement uncertainty % | ratio | random judgments for the same agreement")
    for k, budget in enumerate(budgets):
        needed = budget_to_reach(mean["uncertainty"][k], budgets, mean["random"])
        saving = "beyond the budgets measured" if needed is None else f"{needed:.1f}"
        print(f"{budget:9d} | {mean['random'][k]:8.1f} +- {sd['random'][k]:4.1f} | "
              f"{mean['uncertainty'][k]:8.1f} +- {sd['uncertainty'][k]:4.1f} | "
              f"{mean['uncertainty'][k] / mean['random'][k]:.3f} | {saving}")
    gaps = {name: np.mean([r[f"{name}_gap"] for r in runs]) for name in ("random", "uncertainty")}
    print(f"\nlevel gap (brightest - darkest) of the sets opened after the first round: random "
          f"{gaps['random']:.3f}, uncertainty {gaps['uncertainty']:.3f}")
    print(f"{args.worlds} world(s), {args.steps} training steps per budget, set spread {spread[0]:g}-{spread[1]:g}, "
          f"{sum(r['seconds'] for r in runs):.0f} s in all")
    if args.svg:
        write_plot(Path(args.svg), budgets, mean)
        print(f"plot: {args.svg}")
    if args.json:
        Path(args.json).write_text(json.dumps({"budgets": budgets, "runs": runs, "mean": mean}, indent=2))


if __name__ == "__main__":
    main()
