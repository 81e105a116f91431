"""Training an RL run on a GPU worker, and what a finished run leaves: a policy checkpoint that is
a generator, and on request a human study of it against its base.

The condition pool (the chosen inputs' images, masks and prompts, with the taxonomy) is written
into the run's directory, and the trainer (`rl.core.train`) runs as a child process
(onereward/runs.py). When it ends well, the checkpoint is registered as a Generator whose settings
load the trained policy, so the next generation batch can use it.
"""
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import transaction

from evaluation.studies import create_study
from generation.models import GenerationBatch, Generator
from inputs.models import Input
from onereward.jobs import JobStatus
from onereward.runs import RunTraining, thin
from preferences.export import taxonomy

from .core import conditions
from .core.config import RolloutSettings
from .models import PolicyCheckpoint, RLRun


def inputs_for(tags) -> list[Input]:
    inputs = Input.objects.select_related("task").order_by("pk")
    if tags:
        inputs = inputs.filter(tags__in=tags).distinct()
    return list(inputs)


def write_conditions(directory: Path, inputs: list[Input]) -> Path:
    """The condition pool as rl/core/conditions.py reads it (written by its write_conditions): the
    taxonomy and the inputs' PNGs, copied from storage (so S3 works as well as local files)."""
    done = directory / ".complete"
    if done.exists():
        return directory

    def read(field) -> bytes:
        with default_storage.open(field.name, "rb") as source:
            return source.read()

    conditions.write_conditions(directory, taxonomy(), (
        {"id": item.pk, "task": item.task.slug, "prompt": item.prompt, "source": read(item.source),
         "mask": read(item.mask)} for item in inputs))
    done.write_text(str(len(inputs)))
    return directory


def register_checkpoint(run: RLRun, result: dict) -> PolicyCheckpoint:
    """The trained policy as a generator (idempotent: keyed by the run)."""
    existing = PolicyCheckpoint.objects.filter(run=run).select_related("generator").first()
    settings = result.get("generator_settings") or {}
    if existing is not None:
        return existing
    name = f"{run.base_generator.name} + OneReward run {run.pk}"
    generator = Generator(name=name, backend="flux_fill", settings=settings,
                          description=f"Policy of {run} ({run.get_algorithm_display()}), trained against "
                                      f"{run.reward_model} from {run.base_generator}.")
    generator.full_clean()
    generator.save()
    return PolicyCheckpoint.objects.create(
        run=run, generator=generator, path=str(run.output_dir / "policy"), steps=result.get("steps") or run.step,
        final_reward=result.get("final_reward"), evaluation=result.get("evaluation") or {})


class RLTraining(RunTraining):
    preparing = "could not write the condition pool"
    registering = "the trained policy could not be registered as a generator"

    def prepare(self, output: Path) -> None:
        train_inputs = inputs_for(list(self.run.train_tags.all()))
        if not train_inputs:
            raise ValueError("no input matches the run's training tags")
        write_conditions(output / "conditions", train_inputs)
        if self.run.eval_tags.exists():
            write_conditions(output / "eval-conditions", inputs_for(list(self.run.eval_tags.all())))

    def histories(self, metrics: list[dict]) -> dict:
        """(step, {"task/dimension": reward}) and (step, loss, hinge share, gradient norm) by step."""
        rewards_by_step, training = [], []
        for record in metrics:
            if record.get("step") is None:
                continue
            rewards = {key.removeprefix("reward/"): value for key, value in record.items()
                       if key.startswith("reward/") and isinstance(value, (int, float))}
            if rewards:
                rewards_by_step.append([record["step"], rewards])
            if record.get("loss") is not None:
                training.append([record["step"], record["loss"], record.get("hinge_share"), record.get("grad_norm")])
        return {"reward_history": thin(rewards_by_step), "training_history": thin(training)}

    def register(self, result: dict) -> None:
        register_checkpoint(self.run, result)


# --- a human study of a checkpoint against its base ------------------------------------------------


def rollout_ranges(run: RLRun) -> dict:
    """Generation ranges that hold every candidate to the run's rollout settings (steps, guidance,
    true CFG, negative prompt; strength 1): the policy generates as it was trained to."""
    rollout = RolloutSettings.from_dict((run.extra or {}).get("rollout") or {})
    return {"steps": [rollout.steps] * 2, "guidance": [rollout.guidance] * 2, "true_cfg": [rollout.true_cfg] * 2,
            "strength": [1.0, 1.0], "negative_prompts": [rollout.negative_prompt]}


def start_human_study(checkpoint: PolicyCheckpoint, *, inputs, judgments_per_item: int = 3, user=None,
                      ranges: dict | None = None) -> list:
    """One click: launch evaluation batches of the policy and of its base on the same held-out
    inputs (one candidate each, same seed, same settings: by default the run's rollout settings,
    `rollout_ranges`); the study is created when both have finished."""
    inputs = list(inputs)
    ranges = rollout_ranges(checkpoint.run) if ranges is None else ranges
    if not inputs:
        raise ValidationError("choose held-out inputs for the study (for instance the run's evaluation tags)")
    if checkpoint.study_batches.exists():
        raise ValidationError(f"a human study of {checkpoint} is already started")
    base = checkpoint.run.base_generator
    with transaction.atomic():
        batches = [
            GenerationBatch.launch(generator=generator, inputs=inputs, candidates_per_input=1, ranges=ranges,
                                   seed=checkpoint.run.seed, name=f"study: {generator.name}", user=user,
                                   for_annotation=False)
            for generator in (checkpoint.generator, base)
        ]
        checkpoint.study_batches.set(batches)
        PolicyCheckpoint.objects.filter(pk=checkpoint.pk).update(study_judgments_per_item=judgments_per_item)
    return batches


def create_pending_studies(batch: GenerationBatch) -> None:
    """Called when a batch finishes: a checkpoint whose study batches are now all done gets its study."""
    for checkpoint in PolicyCheckpoint.objects.filter(study_batches=batch, study__isnull=True):
        batches = list(checkpoint.study_batches.select_related("generator"))
        if any(b.status != JobStatus.DONE for b in batches):
            continue
        labels = {checkpoint.generator_id: "policy", checkpoint.run.base_generator_id: "base"}
        with transaction.atomic():
            locked = PolicyCheckpoint.objects.select_for_update().get(pk=checkpoint.pk)
            if locked.study_id is not None:
                continue
            study = create_study(f"{checkpoint} vs base", [(b, labels[b.generator_id]) for b in batches],
                                 judgments_per_item=checkpoint.study_judgments_per_item,
                                 description=f"Human evaluation of {checkpoint} against "
                                             f"{checkpoint.run.base_generator}.")
            PolicyCheckpoint.objects.filter(pk=checkpoint.pk).update(study=study)
