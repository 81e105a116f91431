import json

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError


from inputs.models import Tag
from generation.models import Generator
from onereward.jobs import follow
from rewardmodel.models import RewardModelVersion
from rl.execution import run_training
from rl.forms import start_run
from rl.models import Algorithm, RLRun


def _one(model, field: str, value, what: str):
    found = model.objects.filter(**{field: value}).first()
    if found is None:
        raise CommandError(f"no {what} {value!r}")
    return found


class Command(BaseCommand):
    help = "Optimise a FLUX Fill generator against a reward model with OneReward, on a GPU worker or here."

    def add_arguments(self, parser):
        parser.add_argument("--generator", required=True, help="the base generator's name (backend flux_fill)")
        parser.add_argument("--reward-model", required=True, help="a reward model version's name")
        parser.add_argument("--name", default="")
        parser.add_argument("--algorithm", choices=Algorithm.values, default=Algorithm.DYNAMIC)
        parser.add_argument("--task-probabilities", default="{}", help='JSON, e.g. {"image_fill": 0.5, ...}')
        parser.add_argument("--tag", action="append", dest="train_tags", help="condition pool: inputs with this tag")
        parser.add_argument("--eval-tag", action="append", dest="eval_tags", help="held-out inputs for evaluation")
        parser.add_argument("--reward-cap", type=float, default=0.9, help="lambda")
        parser.add_argument("--t-range", default="0.6,0.75", help="t1,t2 as shares of the schedule")
        parser.add_argument("--ema-decay", type=float, default=0.99, help="tau")
        parser.add_argument("--lr", type=float, default=1e-5)
        parser.add_argument("--batch-size", type=int, default=8)
        parser.add_argument("--max-steps", type=int, default=8000)
        parser.add_argument("--lora-rank", type=int, default=32, help="0 = full fine-tuning")
        parser.add_argument("--no-gradient-checkpointing", action="store_true")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--save-every", type=int, default=200)
        parser.add_argument("--processes", type=int, default=1)
        parser.add_argument("--accelerate-config", default="", choices=["", "ddp", "fsdp"])
        parser.add_argument("--extra", default="{}", help="more trainer settings as a JSON object")
        parser.add_argument("--user")
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--here", action="store_true", help="train on this machine instead of a worker")
        where.add_argument("--wait", action="store_true", help="queue on a GPU worker and follow the run")

    def handle(self, *args, **options):
        try:
            probabilities, extra = json.loads(options["task_probabilities"]), json.loads(options["extra"])
        except ValueError:
            raise CommandError("--task-probabilities and --extra take JSON objects") from None
        try:
            t_start, t_end = (float(part) for part in options["t_range"].split(","))
        except ValueError:
            raise CommandError(f"--t-range takes two shares T1,T2, e.g. 0.6,0.9; got {options['t_range']!r}") from None
        user = get_user_model().objects.filter(username=options["user"]).first() if options["user"] else None
        fields = dict(
            name=options["name"], base_generator=_one(Generator, "name", options["generator"], "generator"),
            reward_model=_one(RewardModelVersion, "name", options["reward_model"], "reward model version"),
            algorithm=options["algorithm"], task_probabilities=probabilities, reward_cap=options["reward_cap"],
            t_start=t_start, t_end=t_end, ema_decay=options["ema_decay"], learning_rate=options["lr"],
            batch_size=options["batch_size"], max_steps=options["max_steps"],
            lora_rank=options["lora_rank"] or None, gradient_checkpointing=not options["no_gradient_checkpointing"],
            seed=options["seed"], save_every=options["save_every"], processes=options["processes"],
            accelerate_config=options["accelerate_config"], extra=extra,
            train_tags=[_one(Tag, "name", t, "tag") for t in options["train_tags"] or []],
            eval_tags=[_one(Tag, "name", t, "tag") for t in options["eval_tags"] or []])
        try:
            if options["here"]:
                train_tags, eval_tags = fields.pop("train_tags"), fields.pop("eval_tags")
                run = RLRun(created_by=user, **fields)
                run.full_clean(exclude=["created_by"])
                run.save()
                run.train_tags.set(train_tags)
                run.eval_tags.set(eval_tags)
            else:
                run = start_run(user=user, **fields)
        except ValidationError as error:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())) from None
        self.stdout.write(f"{run} (id {run.pk}): output in {run.output_dir}")
        if options["here"]:
            run_training(run, worker="command line")
        elif options["wait"]:
            follow(run, lambda r: f"{r.get_status_display()}: step {r.step}/{r.total_steps or r.max_steps} reward {r.reward_mean}", self.stdout.write, interval=2)
        else:
            return
        run.refresh_from_db()
        if run.status != "done":
            raise CommandError(f"{run} ended {run.get_status_display().lower()}: {run.error}")
        self.stdout.write(f"Registered the generator {run.checkpoint.generator.name!r} "
                          f"(final reward {run.checkpoint.final_reward})")
