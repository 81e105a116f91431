"""The judge of the demo (seed_demo): a small Qwen2.5-VL with random weights
(rewardmodel/core/demo_judge.py), built once into the demo models directory with
save_pretrained; reward-model runs start from it when no other base model is given."""
from django.dispatch import receiver

from onereward.demo import build_once, demo_models_dir, seeding_demo

SEED = 0
# The real base model, used when the demo judge has not been built (seed_demo builds it).
HUB_BASE_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"


def demo_judge_dir():
    return demo_models_dir() / "judge"


def default_base_model() -> str:
    """The base model of a new reward-model run: the demo judge once seed_demo has built it (the
    platform then runs on a machine with no model hub), else Qwen2.5-VL-7B-Instruct from the hub."""
    directory = demo_judge_dir()
    return str(directory) if (directory / "config.json").is_file() else HUB_BASE_MODEL


# A run of the demo judge starts from these (the field defaults are the 7B model's): a tiny model
# learns at a higher rate, and a few epochs of a demo dataset take a minute on two CPU cores.
DEMO_RUN_INITIAL = {"learning_rate": 1e-4, "batch_size": 8, "epochs": 3, "save_every": 50}


def is_demo_model(location: str) -> bool:
    return str(location) == str(demo_judge_dir())


@receiver(seeding_demo, dispatch_uid="rewardmodel-demo-judge")
def seed_demo_judge(sender, **kwargs) -> list[str]:
    # torch and transformers load here, when a demo is seeded, and never in the web processes.
    from .core.demo_judge import save_tiny_qwen

    directory, built = build_once("judge", "config.json", lambda path: save_tiny_qwen(path, seed=SEED))
    return [f"Demo judge {'built' if built else 'kept'} in {directory}: the default base model of reward-model runs."]
