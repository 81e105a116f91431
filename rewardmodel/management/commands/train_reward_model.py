from django.core.management.base import CommandError

from onereward.runs import TrainingRunCommand, field_default
from preferences.models import PreferenceDataset
from rewardmodel.execution import RewardModelTraining
from rewardmodel.models import MIXED_PRECISION, RewardModelRun


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


class Command(TrainingRunCommand):
    help = "Train the VLM judge (reward model) on a preference dataset version, on a GPU worker or here."
    model = RewardModelRun
    training = RewardModelTraining

    def add_run_arguments(self, parser):
        def default(name):
            return field_default(RewardModelRun, name)

        parser.add_argument("--dataset", required=True, help="NAME (latest version), NAME:vN or id")
        parser.add_argument("--base-model", default=default("base_model"), help="a directory or hub id")
        parser.add_argument("--lora-rank", type=int,
                            help="train a LoRA adapter of this rank (default: full fine-tune)")
        parser.add_argument("--lr", type=float, default=default("learning_rate"))
        parser.add_argument("--batch-size", type=int, default=default("batch_size"))
        parser.add_argument("--per-device-batch-size", type=int)
        parser.add_argument("--epochs", type=int, default=default("epochs"))
        parser.add_argument("--max-steps", type=int)
        parser.add_argument("--warmup-steps", type=int, default=default("warmup_steps"))
        parser.add_argument("--gradient-checkpointing", action="store_true")
        parser.add_argument("--mixed-precision", default=default("mixed_precision"), choices=MIXED_PRECISION)
        parser.add_argument("--no-zero-shot", action="store_true", help="skip evaluating the base model first")
        parser.add_argument("--eval-every", type=int, help="validation loss and accuracy every N steps")

    def run_fields(self, options) -> dict:
        return dict(
            dataset=find_dataset(options["dataset"]), base_model=options["base_model"],
            adapter_rank=options["lora_rank"], learning_rate=options["lr"], batch_size=options["batch_size"],
            per_device_batch_size=options["per_device_batch_size"], epochs=options["epochs"],
            max_steps=options["max_steps"], warmup_steps=options["warmup_steps"],
            gradient_checkpointing=options["gradient_checkpointing"], mixed_precision=options["mixed_precision"],
            zero_shot_eval=not options["no_zero_shot"], eval_every=options["eval_every"])

    def started_on(self, run) -> str:
        return f" on {run.dataset}"

    def report(self, run) -> None:
        version = run.version
        self.stdout.write(f"Registered {version} ({version.model_path}); loss {version.final_loss}")
        if version.evaluation.get("not_evaluated"):
            self.stdout.write(f"  {version.evaluation['not_evaluated']}")
        for row in version.evaluation.get("rows", []):
            self.stdout.write(f"  {row['task']} / {row['dimension']}: accuracy {row.get('accuracy')} % "
                              f"(forward {row.get('forward_accuracy')}, reversed {row.get('reversed_accuracy')}) "
                              f"over {row.get('pairs')} pairs")
