from django.core.management.base import CommandError

from generation.models import Generator
from inputs.models import Tag
from onereward.runs import TrainingRunCommand, field_default
from rewardmodel.models import RewardModelVersion
from rl.execution import RLTraining
from rl.models import Algorithm, RLRun


def _one(model, field: str, value, what: str):
    found = model.objects.filter(**{field: value}).first()
    if found is None:
        raise CommandError(f"no {what} {value!r}")
    return found


class Command(TrainingRunCommand):
    help = "Optimise a FLUX Fill generator against a reward model with OneReward, on a GPU worker or here."
    model = RLRun
    training = RLTraining

    def add_run_arguments(self, parser):
        def default(name):
            return field_default(RLRun, name)

        parser.add_argument("--generator", required=True, help="the base generator's name (backend flux_fill)")
        parser.add_argument("--reward-model", required=True, help="a reward model version's name")
        parser.add_argument("--algorithm", choices=Algorithm.values, default=default("algorithm"))
        parser.add_argument("--task-probabilities", default="{}", help='JSON, e.g. {"image_fill": 0.5, ...}')
        parser.add_argument("--tag", action="append", dest="train_tags", help="condition pool: inputs with this tag")
        parser.add_argument("--eval-tag", action="append", dest="eval_tags", help="held-out inputs for evaluation")
        parser.add_argument("--reward-cap", type=float, default=default("reward_cap"), help="lambda")
        parser.add_argument("--t-range", default=f"{default('t_start')},{default('t_end')}",
                            help="t1,t2 as shares of the schedule")
        parser.add_argument("--ema-decay", type=float, default=default("ema_decay"), help="tau")
        parser.add_argument("--lr", type=float, default=default("learning_rate"))
        parser.add_argument("--batch-size", type=int, default=default("batch_size"))
        parser.add_argument("--max-steps", type=int, default=default("max_steps"))
        parser.add_argument("--lora-rank", type=int, default=default("lora_rank"), help="0 = full fine-tuning")
        parser.add_argument("--no-gradient-checkpointing", action="store_true")

    def run_fields(self, options) -> dict:
        probabilities = self.json_option(options, "task_probabilities", '{"image_fill": 0.5}')
        try:
            t_start, t_end = (float(part) for part in options["t_range"].split(","))
        except ValueError:
            raise CommandError(f"--t-range takes two shares T1,T2, e.g. 0.6,0.9; got {options['t_range']!r}") from None
        return dict(
            base_generator=_one(Generator, "name", options["generator"], "generator"),
            reward_model=_one(RewardModelVersion, "name", options["reward_model"], "reward model version"),
            algorithm=options["algorithm"], task_probabilities=probabilities, reward_cap=options["reward_cap"],
            t_start=t_start, t_end=t_end, ema_decay=options["ema_decay"], learning_rate=options["lr"],
            batch_size=options["batch_size"], max_steps=options["max_steps"],
            lora_rank=options["lora_rank"] or None, gradient_checkpointing=not options["no_gradient_checkpointing"],
            train_tags=[_one(Tag, "name", t, "tag") for t in options["train_tags"] or []],
            eval_tags=[_one(Tag, "name", t, "tag") for t in options["eval_tags"] or []])

    def describe(self, run) -> str:
        return f"{run.get_status_display()}: step {run.step}/{run.planned_steps} reward {run.reward_mean}"

    def report(self, run) -> None:
        self.stdout.write(f"Registered the generator {run.checkpoint.generator.name!r} "
                          f"(final reward {run.checkpoint.final_reward})")
