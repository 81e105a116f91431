"""Does the loop learn, and by how much from one world to the next: the loop test's settings
(tests/rl/oracle_world.py LOOP) repeated on independent worlds (inputs, masks, candidate seeds and
data order from one seed each), measured against the brightness oracle.

    .venv/bin/python bench/learning_loop.py [--seeds 5] [--first-seed 0]
    .venv/bin/python bench/learning_loop.py --judge-only --judge-orders 3 [--judge-setting learning_rate=1e-3]

Per world: the demo FLUX Fill (VAE fitted, candidates composited on the source, as the demo
generator delivers them) makes N candidates per input; the oracle's best/worst ranking gives every
pair it orders (best_worst_all); the demo judge trains on the train split and is scored against the
oracle on the test split's inputs, in both orders; RL of each algorithm trains against it on those
inputs, and the oracle compares the delivered (EMA) policy's fully sampled candidates on 16 held-out
inputs with the base's of the same seed, and the raw (last) weights' too. The baseline of every
gain is the base generator measured in the same run. No database: the trainers' cores, as the
worker's child processes run them (the loop test runs the same through the product).
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from generation.core.backends.base import CandidateSettings, GenerationRequest  # noqa: E402
from generation.core.backends.flux_fill import FluxFillBackend  # noqa: E402
from generation.core.demo_flux import save_tiny_flux_fill  # noqa: E402
from inputs.core.taxonomy import entry_effective_prompt  # noqa: E402
from rewardmodel.core.config import TrainingConfig  # noqa: E402
from rewardmodel.core.demo_judge import save_tiny_qwen  # noqa: E402
from rewardmodel.core.judge import Judge  # noqa: E402
from rewardmodel.core.training import train as train_judge  # noqa: E402
from rl.core.conditions import write_conditions  # noqa: E402
from rl.core.onereward import OneRewardTrainer  # noqa: E402
from tests.rewardmodel.synthetic_pairs import row, save_image, write_dataset  # noqa: E402
from tests.rl import rl_config, rl_taxonomy  # noqa: E402
from tests.rl.oracle_world import DIMENSIONS, LOOP, brightness, oracle_agreement, oracle_gain, oracle_inputs  # noqa: E402

TEST_SHARE = 0.2  # of the judge's inputs, by input, as the loop test's dataset split


def requests(inputs, seed: int, per_input: int, taxonomy: dict) -> list:
    """per_input candidates of each input, with the prompt the generator gets (a fixed-prompt task's
    own, as the platform's batches and RL's pool give it)."""
    rollout = LOOP["rollout"]
    return [GenerationRequest(image=Image.fromarray(item["source"]), mask=Image.fromarray(item["mask"]),
                              prompt=entry_effective_prompt(taxonomy["tasks"][item["task"]], item["prompt"]),
                              task=item["task"],
                              settings=CandidateSettings(seed=seed + 1000 * n + k, steps=rollout["steps"],
                                                         guidance=rollout["guidance"], true_cfg=rollout["true_cfg"],
                                                         negative_prompt=rollout["negative_prompt"]))
            for n, item in enumerate(inputs) for k in range(per_input)]


def oracle_dataset(folder: Path, backend, inputs, test: set, seed: int, taxonomy: dict,
                   judge_query) -> tuple[Path, list]:
    """Candidates ranked by the oracle -> best>other and other>worst pairs per dimension; returns the
    dataset and the test split's pairs for oracle_agreement."""
    n = LOOP["candidates"]
    arrays = backend.generate_arrays(requests(inputs, seed, n, taxonomy))
    rows, test_pairs = [], []
    for index, item in enumerate(inputs):
        candidates = [(np.clip(a, 0, 1) * 255).round().astype(np.uint8) for a in arrays[index * n:(index + 1) * n]]
        order = np.argsort([-brightness(c, item["mask"]) for c in candidates])
        best, worst = int(order[0]), int(order[-1])
        pairs = [(best, j) for j in range(n) if j != best] + [(j, worst) for j in range(n) if j not in (best, worst)]
        uris = [save_image(c, folder / "images" / f"{index}-{k}.png", False) for k, c in enumerate(candidates)]
        split = "test" if index in test else "train"
        for dimension in DIMENSIONS[item["task"]]:
            for winner, loser in pairs:
                rows.append(row(split=split, input_id=index, input_hash=f"h{index}", task=item["task"],
                                dimension=dimension, prompt=item["prompt"], candidate_set_id=index,
                                winner_index=winner, loser_index=loser, winner_image=uris[winner],
                                loser_image=uris[loser]))
                if split == "test":
                    test_pairs.append({"first": candidates[winner], "second": candidates[loser], "mask": item["mask"],
                                       "query": judge_query(item["task"], dimension, item["prompt"])})
    return write_dataset(folder, rows), test_pairs


def one_world(seed: int, flux: Path, judge_base: Path, work: Path, judge: dict, orders: int = 1,
              rl_too: bool = True) -> dict:
    # The demo generator's settings (generation/demo.py), on the CPU.
    settings = {"base": str(flux), "device": "cpu", "dtype": "float32", "composite_source": True}
    backend = FluxFillBackend.from_config(settings)
    world = oracle_inputs(LOOP["train_inputs"] + LOOP["held_out_inputs"], seed=seed)
    learn, held_out = world[:LOOP["train_inputs"]], world[LOOP["train_inputs"]:]
    rng = np.random.default_rng(seed)
    test = set(rng.choice(len(learn), size=round(TEST_SHARE * len(learn)), replace=False).tolist())
    taxonomy = rl_taxonomy({"image_fill": {"dimensions": DIMENSIONS["image_fill"], "rl_probability": 0.5},
                            "object_removal": {"rl_probability": 0.5}, "image_extend": {"rl_probability": 0.0}})
    started = time.perf_counter()
    base_judge = Judge.from_pretrained(str(judge_base))
    data, test_pairs = oracle_dataset(work / "data", backend, learn, test, seed, taxonomy,
                                      lambda *query: base_judge.query(taxonomy, *query))
    # The judge's data order (its training seed) is the one source of chance left once the world is
    # fixed; `orders` > 1 retrains it with the next seeds and keeps every agreement (the first is the
    # one RL trains against).
    agreements = []
    for order in range(orders):
        config = TrainingConfig(dataset_dir=str(data), output_dir=str(work / f"judge-{order}"),
                                base_model=str(judge_base), seed=seed + 100 * order, zero_shot_eval=False,
                                log_every=50, save_every=10_000, **judge)
        train_judge(config)
        agreements.append(oracle_agreement(Judge.from_pretrained(str(work / f"judge-{order}" / "model")), test_pairs))
    figures = {"seed": seed, "judge_seconds": (time.perf_counter() - started) / orders,
               "agreement": agreements[0], "agreements": agreements}
    if not rl_too:
        return figures

    conditions = write_conditions(work / "conditions", taxonomy,
                                  [{"id": f"in-{i}", **{k: item[k] for k in ("task", "prompt", "source", "mask")}}
                                   for i, item in enumerate(learn) if i not in test])
    held_requests = requests(held_out, 10_000 + seed, 1, taxonomy)
    masks = [item["mask"] for item in held_out]
    base_images = backend.generate_arrays(held_requests)
    for algorithm in ("fixed", "dynamic"):
        started = time.perf_counter()
        rl = {**LOOP["rl"], "rollout": LOOP["rollout"]}
        config = rl_config(flux, work / "judge-0" / "model", conditions, work / algorithm, algorithm=algorithm,
                           base_generator=settings, seed=seed, log_every=10, save_every=10_000, **rl)
        trainer = OneRewardTrainer(config)
        result = trainer.train()
        policy = FluxFillBackend.from_config(result["generator_settings"]).generate_arrays(held_requests)
        with torch.no_grad():
            raw = trainer.backend.generate_arrays(held_requests)  # the adapter's last weights, not the EMA
        figures[algorithm] = {"seconds": time.perf_counter() - started,
                              "delivered": oracle_gain(policy, base_images, masks),
                              "raw": oracle_gain(raw, base_images, masks)["mean_gain"],
                              "final_reward": result["final_reward"]}
    return figures


def summary(values: list[float]) -> str:
    values = np.asarray(values)
    return f"mean {values.mean():+.3f}, sd {values.std(ddof=1) if len(values) > 1 else 0:.3f}, " \
           f"min {values.min():+.3f}, max {values.max():+.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="how many worlds")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--judge-orders", type=int, default=1,
                        help="train the judge this many times per world, each with its own data order")
    parser.add_argument("--judge-only", action="store_true", help="stop after the judge (no RL)")
    parser.add_argument("--judge-setting", action="append", default=[], metavar="KEY=VALUE",
                        help="override one of LOOP['judge'] (learning_rate, max_steps, ...); repeatable")
    parser.add_argument("--json", help="also write every figure here")
    args = parser.parse_args()
    judge = dict(LOOP["judge"])
    for setting in args.judge_setting:
        key, _, value = setting.partition("=")
        if key not in TrainingConfig.__dataclass_fields__:
            parser.error(f"--judge-setting {setting}: {key!r} is not a judge training setting")
        judge[key] = type(judge[key])(value) if key in judge else float(value)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    root = Path(tempfile.mkdtemp(prefix="learning-loop-"))
    flux = save_tiny_flux_fill(root / "flux", seed=0, fit_vae_steps=LOOP["vae_steps"])  # the demo model
    judge_base = save_tiny_qwen(root / "judge-base", seed=0)  # the demo judge
    print("judge settings:", judge)
    worlds = []
    if args.judge_only:
        print("seed  pairs | judge forward % / reversed % / averaged %, one per data order")
    else:
        print("seed  judge fwd %  rev %  pairs | fixed: delivered gain (sd, won)  raw | "
              "dynamic: delivered gain (sd, won)  raw | base brightness")
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        figures = one_world(seed, flux, judge_base, root / f"world-{seed}", judge, args.judge_orders,
                            rl_too=not args.judge_only)
        worlds.append(figures)
        a = figures["agreement"]
        if args.judge_only:
            print(f"{seed:4d}  {a['pairs']:5d} | " + "  ".join(
                f"{x['forward']:.1f}/{x['reversed']:.1f}/{x['averaged']:.1f}" for x in figures["agreements"]),
                flush=True)
            continue
        f, d = figures["fixed"], figures["dynamic"]
        print(f"{seed:4d}  {a['forward']:10.1f}  {a['reversed']:5.1f}  {a['pairs']:5d} | "
              + " | ".join(f"{x['delivered']['mean_gain']:+.3f} ({x['delivered']['sd_gain']:.3f}, "
                           f"{x['delivered']['policy_wins']:.0%})  {x['raw']:+.3f}" for x in (f, d))
              + f" | {f['delivered']['base_mean']:.3f} +- {f['delivered']['base_sd']:.3f}", flush=True)
    print()
    every = [x for w in worlds for x in w["agreements"]]
    for order in ("forward", "reversed", "averaged"):
        print(f"judge agreement, {order} (every world and data order):",
              summary([x[order] for x in every]).replace("+", ""))
    print(f"judge seconds per training: {np.mean([w['judge_seconds'] for w in worlds]):.0f}")
    if not args.judge_only:
        for algorithm in ("fixed", "dynamic"):
            print(f"{algorithm}: delivered gain {summary([w[algorithm]['delivered']['mean_gain'] for w in worlds])}; "
                  f"pairs won min {min(w[algorithm]['delivered']['policy_wins'] for w in worlds):.0%}; "
                  f"raw gain {summary([w[algorithm]['raw'] for w in worlds])}; "
                  f"seconds per run {np.mean([w[algorithm]['seconds'] for w in worlds]):.0f}")
        print(f"base candidates' brightness spread (sd over held-out inputs): "
              f"{np.mean([w['fixed']['delivered']['base_sd'] for w in worlds]):.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(worlds, indent=2))


if __name__ == "__main__":
    main()
