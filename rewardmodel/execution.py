"""Training a reward model run on a GPU worker.

The run's dataset version is copied from storage into the run's directory, and the trainer
(`rewardmodel.core.train`) runs as a child process (onereward/runs.py) that resumes from its last
checkpoint there; when it ends well the reward model version is registered from its result file.

Retrying is safe: the dataset copy is skipped when complete, the trainer resumes from its last
checkpoint in the same directory, and the version is keyed by the run.
"""
from pathlib import Path

from django.core.files.storage import default_storage

from onereward.runs import RunTraining, thin
from preferences.export import stored_files

from .models import RewardModelRun, RewardModelVersion


def copy_dataset(run: RewardModelRun) -> Path:
    """The dataset version's files in the run's directory, as the trainer reads them."""
    return copy_dataset_files(run.dataset, run.output_dir / "dataset")


def copy_dataset_files(dataset, target: Path) -> Path:
    """A dataset version's files copied from storage into `target` (skipped when a complete copy
    is there: `.complete` holds the content hash once every file is written)."""
    done = target / ".complete"
    if done.exists():
        return target
    for name in stored_files(dataset):
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with default_storage.open(f"{dataset.storage_prefix}/{name}", "rb") as source, open(path, "wb") as sink:
            for block in iter(lambda: source.read(1 << 20), b""):
                sink.write(block)
    done.write_text(dataset.content_hash)
    return target


def register_version(run: RewardModelRun, result: dict) -> RewardModelVersion:
    version, _ = RewardModelVersion.objects.update_or_create(run=run, defaults={
        "name": f"{run.name or 'reward-model'}-run{run.pk}",
        "model_path": str(run.output_dir / "model"),
        "base_model": run.base_model,
        "template_version": result.get("template_version", 0),
        "evaluation": result.get("evaluation") or {},
        "zero_shot": result.get("zero_shot") or {},
        "steps": result.get("steps") or run.step,
        "final_loss": result.get("final_loss"),
    })
    return version


class RewardModelTraining(RunTraining):
    preparing = "could not copy dataset {run.dataset}"
    registering = "the trained judge could not be registered"

    def prepare(self, output: Path) -> None:
        copy_dataset(self.run)

    def histories(self, metrics: list[dict]) -> dict:
        return {
            "loss_history": thin([[r["step"], r["loss"]] for r in metrics
                                  if r.get("step") is not None and r.get("loss") is not None]),
            "validation_history": thin([[r["step"], r["validation/forward_accuracy"],
                                         r["validation/reversed_accuracy"], r["validation/accuracy"]]
                                        for r in metrics if r.get("validation/accuracy") is not None]),
        }

    def register(self, result: dict) -> None:
        register_version(self.run, result)
