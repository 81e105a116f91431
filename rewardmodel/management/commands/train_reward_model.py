import json

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError


from preferences.models import PreferenceDataset
from onereward.jobs import follow
from rewardmodel.execution import run_training
from rewardmodel.forms import start_run
from rewardmodel.models import DEFAULT_BASE_MODEL, RewardModelRun


def find_dataset(text: str) -> PreferenceDataset:
    """NAME (its latest built version), NAME:vN, or an id."""
    if text.isdigit():
        dataset = PreferenceDataset.objects.filter(pk=int(text)).first()
    elif ":v" in text:
        name, _, number = text.rpartition(":v")
        dataset = PreferenceDataset.objects.filter(name=name, version=int(number) if number.isdigit() else -1).first()
    else:
        dataset = PreferenceDataset.objects.filter(name=text, status="done").order_by("-version").first()
    if dataset is None:
        raise CommandError(f"no preference dataset {text!r} (give NAME, NAME:vN or an id; see export_preferences)")
    return dataset


class Command(BaseCommand):
    help = "Train the VLM judge (reward model) on a preference dataset version, on a GPU worker or here."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="NAME (latest version), NAME:vN or id")
        parser.add_argument("--name", default="")
        parser.add_argument("--base-model", default=DEFAULT_BASE_MODEL, help="a directory or hub id")
        parser.add_argument("--lora-rank", type=int, help="train a LoRA adapter of this rank (default: full fine-tune)")
        parser.add_argument("--lr", type=float, default=1e-6)
        parser.add_argument("--batch-size", type=int, default=16)
        parser.add_argument("--per-device-batch-size", type=int)
        parser.add_argument("--epochs", type=int, default=1)
        parser.add_argument("--max-steps", type=int)
        parser.add_argument("--warmup-steps", type=int, default=0)
        parser.add_argument("--gradient-checkpointing", action="store_true")
        parser.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "bf16", "fp16"])
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--save-every", type=int, default=200)
        parser.add_argument("--processes", type=int, default=1, help="processes for accelerate launch")
        parser.add_argument("--accelerate-config", default="", choices=["", "ddp", "fsdp", "deepspeed_zero3"])
        parser.add_argument("--no-zero-shot", action="store_true", help="skip evaluating the base model first")
        parser.add_argument("--eval-every", type=int, help="validation loss and accuracy every N steps")
        parser.add_argument("--extra", default="{}", help="more trainer settings as a JSON object")
        parser.add_argument("--user", help="username recorded as the starter")
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--here", action="store_true", help="train in this process's machine instead of a worker")
        where.add_argument("--wait", action="store_true", help="queue on a GPU worker and follow the run")

    def handle(self, *args, **options):
        user = get_user_model().objects.filter(username=options["user"]).first() if options["user"] else None
        try:
            extra = json.loads(options["extra"])
        except ValueError:
            raise CommandError("--extra takes a JSON object, e.g. '{\"log_every\": 5}'") from None
        fields = dict(
            name=options["name"], dataset=find_dataset(options["dataset"]), base_model=options["base_model"],
            adapter_rank=options["lora_rank"], learning_rate=options["lr"], batch_size=options["batch_size"],
            per_device_batch_size=options["per_device_batch_size"], epochs=options["epochs"],
            max_steps=options["max_steps"], warmup_steps=options["warmup_steps"],
            gradient_checkpointing=options["gradient_checkpointing"], mixed_precision=options["mixed_precision"],
            seed=options["seed"], save_every=options["save_every"], processes=options["processes"],
            accelerate_config=options["accelerate_config"], zero_shot_eval=not options["no_zero_shot"], eval_every=options["eval_every"], extra=extra)
        try:
            if options["here"]:
                run = RewardModelRun(created_by=user, **fields)
                run.full_clean(exclude=["created_by"])
                run.save()
            else:
                run = start_run(user=user, **fields)
        except ValidationError as error:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())) from None
        self.stdout.write(f"{run} (id {run.pk}) on {run.dataset}: output in {run.output_dir}")
        if options["here"]:
            run_training(run, worker="command line")
        elif options["wait"]:
            follow(run, lambda r: f"{r.get_status_display()}: step {r.step}/{r.total_steps or '?'} loss {r.loss}", self.stdout.write, interval=2)
        else:
            return
        run.refresh_from_db()
        if run.status != "done":
            raise CommandError(f"{run} ended {run.get_status_display().lower()}: {run.error}")
        version = run.version
        self.stdout.write(f"Registered {version} ({version.model_path}); loss {version.final_loss}")
        for row in version.evaluation.get("rows", []):
            self.stdout.write(f"  {row['task']} / {row['dimension']}: accuracy {row.get('accuracy')} % "
                              f"(forward {row.get('forward_accuracy')}, reversed {row.get('reversed_accuracy')}) "
                              f"over {row.get('pairs')} pairs")
