"""Running an RL run on a GPU worker, and what a finished run leaves: a policy checkpoint that is
a generator, and on request a human study of it against its base.

The Celery task writes the condition pool (the chosen inputs' images, masks and prompts, with the
taxonomy) into the run's directory, writes the trainer's configuration, and runs the trainer
(`rl.core.train`) as a child process (onereward/trainer_process.py), copying its progress and reward
curves onto the run row. When the trainer ends well, the checkpoint is registered as a Generator
whose settings load the trained policy, so the next generation batch can use it.
"""
import json
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from inputs.models import Input
from preferences.export import taxonomy
from generation.models import GenerationBatch, Generator
from onereward.jobs import JobStatus
from onereward.trainer_process import read_metrics, resume_job, run_trainer, thin, trainer_command

from .models import PolicyCheckpoint, RLRun

ACCELERATE_DIR = Path(__file__).resolve().parent / "accelerate"


def inputs_for(tags) -> list[Input]:
    inputs = Input.objects.select_related("task").order_by("pk")
    if tags:
        inputs = inputs.filter(tags__in=tags).distinct()
    return list(inputs)


def write_conditions(directory: Path, inputs: list[Input]) -> Path:
    """The condition pool as rl/conditions.py reads it: manifest.json (taxonomy + inputs) and the
    inputs' PNGs, copied from storage (so S3 works as well as local files)."""
    done = directory / ".complete"
    if done.exists():
        return directory
    (directory / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for item in inputs:
        names = {}
        for kind, field in (("source", item.source), ("mask", item.mask)):
            relative = f"images/{item.pk}-{kind}.png"
            with default_storage.open(field.name, "rb") as source, open(directory / relative, "wb") as sink:
                sink.write(source.read())
            names[kind] = relative
        entries.append({"id": item.pk, "task": item.task.slug, "prompt": item.prompt, **names})
    (directory / "manifest.json").write_text(json.dumps({"taxonomy": taxonomy(), "inputs": entries}, indent=2))
    done.write_text(str(len(entries)))
    return directory


def training_config(run: RLRun) -> dict:
    """The trainer's configuration (rl.core.onereward.OneRewardConfig fields)."""
    output = run.output_dir
    config = {
        "conditions_dir": str(output / "conditions"),
        "output_dir": str(output),
        "base_generator": run.base_generator.settings,
        "judge": run.reward_model.model_path,
        "algorithm": run.algorithm,
        "reward_cap": run.reward_cap,
        "t_range": [run.t_start, run.t_end],
        "ema_decay": run.ema_decay,
        "learning_rate": run.learning_rate,
        "batch_size": run.batch_size,
        "max_steps": run.max_steps,
        "lora_rank": run.lora_rank,
        "gradient_checkpointing": run.gradient_checkpointing,
        "seed": run.seed,
        "save_every": run.save_every,
    }
    if run.task_probabilities:
        config["task_probabilities"] = run.task_probabilities
    if run.eval_tags.exists():
        config["eval_inputs"] = str(output / "eval-conditions")
    config.update(run.extra or {})
    return config


def _copy_progress(run: RLRun, progress: dict) -> None:
    history = list(run.reward_history)
    step = progress.get("step")
    if step is not None and progress.get("rewards") and (not history or history[-1][0] != step):
        history = thin([*history, [step, progress["rewards"]]])
    fields = {"step": step or 0, "total_steps": progress.get("total_steps") or run.total_steps,
              "loss": progress.get("loss"), "reward_mean": progress.get("reward_mean"),
              "eta_seconds": progress.get("eta_seconds"), "reward_history": history}
    run._update(progress_done=fields["step"], progress_total=fields["total_steps"], **fields)


def _histories(output: Path) -> tuple[list, list]:
    """From every logged step of the trainer's metrics: (step, {"task/dimension": reward}) and
    (step, loss, hinge share, gradient norm)."""
    rewards_by_step, training = [], []
    for record in read_metrics(output):
        if record.get("step") is None:
            continue
        rewards = {key.removeprefix("reward/"): value for key, value in record.items()
                   if key.startswith("reward/") and isinstance(value, (int, float))}
        if rewards:
            rewards_by_step.append([record["step"], rewards])
        if record.get("loss") is not None:
            training.append([record["step"], record["loss"], record.get("hinge_share"), record.get("grad_norm")])
    return thin(rewards_by_step), thin(training)


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


def run_training(run: RLRun, worker: str = "") -> None:
    if run.status in (JobStatus.CANCELLED, JobStatus.DONE):
        return
    run.mark_running()
    run._update(worker=worker)
    output = run.output_dir
    output.mkdir(parents=True, exist_ok=True)
    try:
        train_inputs = inputs_for(list(run.train_tags.all()))
        if not train_inputs:
            raise ValueError("no input matches the run's training tags")
        write_conditions(output / "conditions", train_inputs)
        if run.eval_tags.exists():
            write_conditions(output / "eval-conditions", inputs_for(list(run.eval_tags.all())))
    except Exception as exc:  # noqa: BLE001 - recorded on the run
        run.mark_failed(f"could not write the condition pool: {type(exc).__name__}: {exc}")
        return
    config_path = output / "config.json"
    config_path.write_text(json.dumps(training_config(run), indent=2))
    accelerate_config = ACCELERATE_DIR / f"{run.accelerate_config}.yaml" if run.accelerate_config else None
    outcome = run_trainer(run, trainer_command("rl.core.train", config_path, run.processes, accelerate_config),
                          output, lambda progress: _copy_progress(run, progress))
    if outcome.cancelled:
        return
    rewards, training = _histories(output)
    if rewards or training:
        run._update(reward_history=rewards, training_history=training)
    if outcome.result is None:
        run.mark_failed(f"the trainer exited with code {outcome.returncode}; the end of its log:\n{outcome.log_tail}")
        return
    try:
        with transaction.atomic():
            register_checkpoint(run, outcome.result)
            run.finish()
    except ValidationError as exc:
        run.mark_failed(f"the trained policy could not be registered as a generator: {'; '.join(exc.messages)}")


def resume(run: RLRun) -> bool:
    return resume_job(run)


# --- a human study of a checkpoint against its base ------------------------------------------------


def start_human_study(checkpoint: PolicyCheckpoint, *, inputs, judgments_per_item: int = 3, user=None) -> list:
    """One click: launch evaluation batches of the policy and of its base on the same held-out
    inputs (one candidate each, same seed); the study is created when both have finished."""
    inputs = list(inputs)
    if not inputs:
        raise ValidationError("choose held-out inputs for the study (for instance the run's evaluation tags)")
    if checkpoint.study_batches.exists():
        raise ValidationError(f"a human study of {checkpoint} is already started")
    base = checkpoint.run.base_generator
    with transaction.atomic():
        batches = [
            GenerationBatch.launch(generator=generator, inputs=inputs, candidates_per_input=1, seed=checkpoint.run.seed,
                                   name=f"study: {generator.name}", user=user, for_annotation=False)
            for generator in (checkpoint.generator, base)
        ]
        checkpoint.study_batches.set(batches)
        PolicyCheckpoint.objects.filter(pk=checkpoint.pk).update(study_judgments_per_item=judgments_per_item)
    return batches


def create_pending_studies(batch: GenerationBatch) -> None:
    """Called when a batch finishes: a checkpoint whose study batches are now all done gets its study."""
    from evaluation.studies import create_study

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
                                 description=f"Human evaluation of {checkpoint} against {checkpoint.run.base_generator}.")
            PolicyCheckpoint.objects.filter(pk=checkpoint.pk).update(study=study)
