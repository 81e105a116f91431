"""How long the demo models' training takes on this machine, with the settings the admin's run
forms start from when the demo models are chosen (generation/demo.py DEMO_RL_INITIAL,
rewardmodel/demo.py DEMO_RUN_INITIAL): an RL run of the demo FLUX Fill against the demo judge on
the demo photographs (fill, removal and text inputs at their 512-pixel sizes).

    .venv/bin/python bench/demo_run.py [--steps N]

Prints seconds per RL step and the whole run's wall time. No database: the trainer's core, as the
worker's child process runs it.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from generation.core.demo_flux import save_tiny_flux_fill  # noqa: E402
from rewardmodel.core.demo_judge import save_tiny_qwen  # noqa: E402
from rl.core.conditions import write_conditions  # noqa: E402
from rl.core.config import OneRewardConfig  # noqa: E402
from rl.core.onereward import OneRewardTrainer  # noqa: E402


def demo_conditions(directory: Path) -> Path:
    """The demo photographs that carry a mask of their own (the extend ones need a canvas), with
    the seeded taxonomy (inputs/taxonomy_seed.py) in the export's shape."""
    from inputs.demo_inputs import demo_specs
    from tests.rl import rl_taxonomy

    inputs = [{"id": f"demo-{i}", "task": spec.task, "prompt": spec.prompt, "source": spec.source, "mask": spec.mask}
              for i, spec in enumerate(demo_specs()) if spec.mask]
    return write_conditions(directory, rl_taxonomy(), inputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="RL steps (default: the demo form's)")
    args = parser.parse_args()
    # The demo photographs and settings come from the apps (no query is made).
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "onereward.settings")
    import django

    django.setup()
    from generation.demo import DEMO_RL_INITIAL

    torch.set_num_threads(max(1, torch.get_num_threads()))
    root = Path(tempfile.mkdtemp(prefix="demo-run-"))
    start = time.perf_counter()
    flux, judge = save_tiny_flux_fill(root / "flux"), save_tiny_qwen(root / "judge")
    conditions = demo_conditions(root / "conditions")
    built = time.perf_counter() - start
    settings = {**DEMO_RL_INITIAL["extra"], **{k: v for k, v in DEMO_RL_INITIAL.items() if k != "extra"}}
    if args.steps:
        settings["max_steps"] = args.steps
    config = OneRewardConfig.from_dict({"conditions_dir": str(conditions), "output_dir": str(root / "run"),
                                        "base_generator": {"base": str(flux), "dtype": "float32"},
                                        "judge": str(judge), **settings})
    trainer = OneRewardTrainer(config)
    loaded = time.perf_counter() - start - built
    step_seconds = []
    for _ in range(config.max_steps):
        began = time.perf_counter()
        trainer.step()
        step_seconds.append(time.perf_counter() - began)
    total = time.perf_counter() - start
    print(f"threads {torch.get_num_threads()}; demo models built in {built:.1f} s, trainer loaded in {loaded:.1f} s")
    print(f"RL: {config.max_steps} steps of batch {config.batch_size}, {config.rollout.steps}-step rollouts: "
          f"median {sorted(step_seconds)[len(step_seconds) // 2]:.2f} s per step, whole run {total:.0f} s")


if __name__ == "__main__":
    main()
