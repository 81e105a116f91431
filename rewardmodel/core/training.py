"""Training the judge on annotated pairs (METHOD.md §3), one process or many under `accelerate launch`.

For a pair (winner w, loser l) with query q the loss is

    L = -1/2 [ log P(Yes | w, l, q) + log P(No | l, w, q) ]

with both orders of every pair in one forward batch; a step's loss is the mean over its global
batch of `batch_size` pairs (or the `weight`-weighted mean with `weighted_loss`).

The loop, top to bottom:
1. one global batch = `batch_size` pairs = per-device batch x processes x accumulation steps.
   The order of the pairs is fixed by (seed, epoch) alone, and so is each global batch, whatever
   the number of processes: process p takes micro-batch (a * processes + p) of the global batch
   at accumulation step a. One process or two, a step sees the same pairs and the same mean loss.
2. AdamW, a linear schedule (warmup, then decay to zero at the last step), gradient clipping,
   accelerate's gradient accumulation, bf16 autocast where the device has it.
3. Every `save_every` steps and at the end, `accelerator.save_state` into
   output_dir/checkpoints/step-N (model, optimizer, schedule, every process's RNG) with
   trainer_state.json, then the pointer file output_dir/checkpoints/latest. A new call with the
   same output_dir loads the latest checkpoint and goes on from the next step: the data order is
   recomputed and the consumed batches skipped, so the loss curve continues as if uninterrupted.
4. Metrics: output_dir/metrics.jsonl and output_dir/tensorboard; output_dir/progress.json is
   rewritten (atomically) at every log step for a parent process to follow.
5. At the end, on the main process: the judge in output_dir/model, its test-split evaluation
   (and the base model's, with `zero_shot_eval`) in evaluation.json, one row per test pair in
   test_scores.parquet, and result.json.

Plain Python + torch + accelerate: no Django.
"""
from __future__ import annotations

import gc
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlcore.rundir import RunDirectory, check_resumable, write_json_atomic

from .config import TRAJECTORY_FIELDS, ConfigError, TrainingConfig
from .evaluation import evaluate, format_table
from .judge import Judge
from .layout import split_shards
from .pairs import PreferencePairs, collate_pairs
from .query import TEMPLATE_VERSION

log = logging.getLogger(__name__)

# --- layout of the steps -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchLayout:
    """How a global batch is cut: micro-batch (a * processes + p) goes to process p at accumulation
    step a. A step consumes `batch_size` pairs of the epoch's order; an epoch's last pairs that do not
    fill a global batch are left out of that epoch (the next epoch has another order)."""

    batch_size: int
    per_device: int
    processes: int
    accumulation: int
    steps_per_epoch: int
    total_steps: int

    @classmethod
    def plan(cls, config: TrainingConfig, processes: int, pairs: int) -> "BatchLayout":
        per_device = config.per_device_batch_size
        if per_device is None:
            if config.batch_size % processes:
                raise ConfigError("batch_size", f"{config.batch_size} pairs cannot be split evenly over {processes} "
                                                "processes; set per_device_batch_size or change the batch")
            per_device = config.batch_size // processes
        if config.batch_size % (per_device * processes):
            raise ConfigError("batch_size", f"{config.batch_size} is not a multiple of per_device_batch_size x "
                                            f"processes ({per_device} x {processes})")
        steps_per_epoch = pairs // config.batch_size
        if steps_per_epoch < 1:
            raise ConfigError("batch_size", f"the train split has {pairs} pairs, fewer than one batch of "
                                            f"{config.batch_size}")
        total = config.max_steps if config.max_steps is not None else config.epochs * steps_per_epoch
        return cls(config.batch_size, per_device, processes, config.batch_size // (per_device * processes),
                   steps_per_epoch, total)

    def global_batch(self, order: np.ndarray, step_in_epoch: int) -> np.ndarray:
        return order[step_in_epoch * self.batch_size:(step_in_epoch + 1) * self.batch_size]

    def micro_batches(self, global_batch: np.ndarray, process: int) -> list[list[int]]:
        size = self.per_device
        return [global_batch[(a * self.processes + process) * size:(a * self.processes + process + 1) * size].tolist()
                for a in range(self.accumulation)]


class _ProcessBatches(torch.utils.data.Sampler):
    """This process's micro-batches of one epoch, from step `start` on."""

    def __init__(self, layout: BatchLayout, order: np.ndarray, process: int, start: int):
        self.layout, self.order, self.process, self.start = layout, order, process, start

    def __iter__(self):
        for step in range(self.start, self.layout.steps_per_epoch):
            yield from self.layout.micro_batches(self.layout.global_batch(self.order, step), self.process)

    def __len__(self):
        return (self.layout.steps_per_epoch - self.start) * self.layout.accumulation


def linear_schedule(warmup_steps: int, total_steps: int):
    """lr multiplier of step s: rises linearly over the warmup, then falls linearly to 0 at the last step."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def pair_loss(log_yes: torch.Tensor, log_no: torch.Tensor, n: int) -> torch.Tensor:
    """Per-pair loss (n,) from answer log-probs of the 2n rows [(w, l) x n, (l, w) x n]."""
    return -0.5 * (log_yes[:n] + log_no[n:])


def both_orders(batch: dict) -> tuple[list, list, list]:
    """(first, second, queries) of 2B rows: every pair as (winner, loser), then as (loser, winner)."""
    winners, losers, queries = batch["winner"], batch["loser"], batch["query"]
    return winners + losers, losers + winners, queries + queries


# --- the trainer ----------------------------------------------------------------------------------------


def resolve_mixed_precision(value: str) -> str:
    if value == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return value


def train(config: TrainingConfig, progress=None) -> dict:
    """Train the judge as `config` says; returns result.json's content on the main process (other
    processes get {"main_process": False}). progress(dict) is called on the main process at every
    log step with {"step", "total_steps", "loss", "eta_seconds", "samples_per_second"}."""
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DistributedType, set_seed

    manifest = config.check_inputs()
    output = Path(config.output_dir)
    run_dir = RunDirectory(output)
    # Processes started by `accelerate launch --multi_gpu` on a host without CUDA: gloo on CPU.
    cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    train_pairs = PreferencePairs(config.dataset_dir, "train")
    layout = BatchLayout.plan(config, state.num_processes, len(train_pairs))
    accelerator = Accelerator(cpu=cpu, mixed_precision=resolve_mixed_precision(config.mixed_precision),
                              gradient_accumulation_steps=layout.accumulation)
    main = accelerator.is_main_process
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    if main:
        (output / "checkpoints").mkdir(parents=True, exist_ok=True)

    resume_from = run_dir.latest_checkpoint()
    saved_state = run_dir.read_state(resume_from) if resume_from else None
    if saved_state:
        _check_resumable(config, saved_state, manifest)

    set_seed(config.seed)
    judge = Judge.from_pretrained(config.base_model, dtype=config.model_dtype,
                                  device="cpu" if sharded else accelerator.device,
                                  gradient_checkpointing=config.gradient_checkpointing, max_pixels=config.max_pixels)
    if config.adapter_rank is not None:
        judge.add_lora(rank=config.adapter_rank, alpha=config.adapter_alpha or 2 * config.adapter_rank,
                       dropout=config.adapter_dropout)
    else:
        judge.model.requires_grad_(True)
    trainable = [(name, p) for name, p in judge.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for name, p in trainable if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for name, p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW([group for group in groups if group["params"]], lr=config.learning_rate)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        # No DataLoader goes through prepare(), so DeepSpeed learns the micro-batch here; clipping is its own.
        deepspeed_config = accelerator.state.deepspeed_plugin.deepspeed_config
        deepspeed_config["train_micro_batch_size_per_gpu"] = layout.per_device
        if deepspeed_config.get("gradient_clipping", "auto") == "auto":
            deepspeed_config["gradient_clipping"] = config.max_grad_norm or 0.0
    model, optimizer = accelerator.prepare(judge, optimizer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(config.warmup_steps, layout.total_steps))
    accelerator.register_for_checkpointing(scheduler)

    step, elapsed, pending = 0, 0.0, {"loss_sum": 0.0, "steps": 0}
    if saved_state:
        accelerator.load_state(str(resume_from))
        step, elapsed, pending = saved_state["step"], saved_state["elapsed"], saved_state["pending_log"]
        log.info("resuming from %s (step %d of %d)", resume_from, step, layout.total_steps)

    tensorboard = None
    if main:
        run_dir.truncate_metrics(step)
        from torch.utils.tensorboard import SummaryWriter

        tensorboard = SummaryWriter(str(output / "tensorboard"), purge_step=step + 1 if step else None)
        (output / "config.resolved.json").write_text(json.dumps(
            {**config.as_dict(), "processes": layout.processes, "per_device_batch_size": layout.per_device,
             "accumulation_steps": layout.accumulation, "total_steps": layout.total_steps,
             "mixed_precision": accelerator.mixed_precision}, indent=2))

    def save_checkpoint(at_step: int) -> None:
        directory = run_dir.checkpoint(at_step)
        accelerator.save_state(str(directory))
        if main:
            run_dir.commit_checkpoint(directory, {
                "step": at_step, "elapsed": elapsed, "pending_log": pending, "last_loss": last_loss,
                "config": config.as_dict(),
                "content_hash": manifest.get("content_hash"), "total_steps": layout.total_steps,
            }, config.keep_checkpoints)
        accelerator.wait_for_everyone()

    def report(values: dict) -> None:
        if not main:
            return
        run_dir.append_metrics(values)
        for key, value in values.items():
            if key != "step" and isinstance(value, (int, float)) and value is not None:
                tensorboard.add_scalar(key if "/" in key else f"train/{key}", value, values["step"])

    weights = train_pairs.weights
    model.train()
    started, steps_this_call = time.monotonic(), 0
    interval_start, interval_samples = time.monotonic(), 0
    last_loss = saved_state.get("last_loss") if saved_state else None
    stopped = False
    while step < layout.total_steps and not stopped:
        # The epoch's order is recomputed from the seed, so a resumed call skips the consumed
        # batches without reading them.
        epoch, first_step = divmod(step, layout.steps_per_epoch)
        order = train_pairs.order(config.seed, epoch)
        batches = torch.utils.data.DataLoader(
            train_pairs, batch_sampler=_ProcessBatches(layout, order, accelerator.process_index, first_step),
            collate_fn=collate_pairs, num_workers=config.num_workers)
        micro = iter(batches)
        for step_in_epoch in range(first_step, layout.steps_per_epoch):
            step_started = time.monotonic()
            global_batch = layout.global_batch(order, step_in_epoch)
            total_weight = float(weights[global_batch].sum()) if config.weighted_loss else float(len(global_batch))
            if total_weight <= 0:
                raise ValueError(f"step {step + 1}: the pairs of the batch all have weight 0")
            step_loss = torch.zeros((), dtype=torch.float64, device=accelerator.device)
            for _ in range(layout.accumulation):
                batch = next(micro)
                with accelerator.accumulate(model):
                    first, second, queries = both_orders(batch)
                    log_yes, log_no = model(first, second, queries)
                    losses = pair_loss(log_yes.float(), log_no.float(), len(batch["query"]))
                    if config.weighted_loss:
                        losses = losses * batch["weight"].to(losses.device)
                    share = losses.sum() / total_weight  # this micro-batch's part of the step's mean loss
                    # accelerate divides by the accumulation steps, the gradient reduction by the
                    # processes: scaled back up, the summed gradient is that of the global mean.
                    accelerator.backward(share * layout.processes * layout.accumulation)
                    step_loss += share.detach().double()
            grad_norm = None
            if config.max_grad_norm is not None:
                grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            learning_rate = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            steps_this_call += 1
            loss = float(accelerator.reduce(step_loss, reduction="sum"))
            last_loss = loss
            now = time.monotonic()
            elapsed += now - step_started
            interval_samples += layout.batch_size
            pending["loss_sum"] += loss
            pending["steps"] += 1

            if step % config.log_every == 0 or step == layout.total_steps:
                interval = max(now - interval_start, 1e-9)
                seconds_per_step = (now - started) / steps_this_call
                values = {
                    "step": step,
                    "epoch": epoch,
                    "loss": pending["loss_sum"] / pending["steps"],
                    "lr": learning_rate,
                    "samples_per_second": interval_samples / interval,
                    "elapsed": elapsed,
                }
                if grad_norm is not None:
                    values["grad_norm"] = float(grad_norm)
                pending = {"loss_sum": 0.0, "steps": 0}
                interval_start, interval_samples = now, 0
                report(values)
                if main:
                    update = {"step": step, "total_steps": layout.total_steps, "loss": values["loss"],
                              "eta_seconds": seconds_per_step * (layout.total_steps - step),
                              "samples_per_second": values["samples_per_second"]}
                    run_dir.write_progress({**update, "phase": "training"})
                    if progress is not None:
                        progress(update)
            if config.eval_every and step % config.eval_every == 0:
                validation = _validate(model, accelerator, config)
                if validation:
                    report({"step": step, **validation})
                model.train()
            if step % config.save_every == 0 or step == layout.total_steps or step == config.stop_at_step:
                save_checkpoint(step)
            if step == config.stop_at_step and step < layout.total_steps:
                stopped = True
            if step >= layout.total_steps or stopped:
                break

    if tensorboard is not None:
        tensorboard.flush()
    if stopped:
        if tensorboard is not None:
            tensorboard.close()
        return {"stopped_at": step, "total_steps": layout.total_steps, "main_process": main}

    # --- the final model and its evaluation ------------------------------------------------------------
    final = _final_judge(accelerator, model, judge, config, sharded)
    del optimizer, scheduler, model
    accelerator.free_memory()
    if not main:
        return {"main_process": False}
    run_dir.write_progress({"step": step, "total_steps": layout.total_steps, "loss": last_loss, "eta_seconds": 0.0,
                            "samples_per_second": None, "phase": "evaluating"})
    result = _evaluate_and_record(final, accelerator, config, run_dir, step, last_loss, TEMPLATE_VERSION, layout)
    tensorboard.close()
    return result


def _check_resumable(config: TrainingConfig, saved: dict, manifest: dict) -> None:
    other = {}
    before, now = saved.get("content_hash"), manifest.get("content_hash")
    if before and now and before != now:
        other["dataset_dir"] = "dataset (content hash)"
    check_resumable(saved.get("config", {}), config.as_dict(), TRAJECTORY_FIELDS, config.output_dir, other)


@torch.no_grad()
def _validate(model, accelerator, config: TrainingConfig) -> dict:
    """Loss and accuracy (both orders) on the validation split, every process scoring its share;
    every process runs the same number of forwards (padded with masked rows), as sharded models need."""
    if not split_shards(config.dataset_dir, "validation"):
        return {}
    pairs = PreferencePairs(config.dataset_dir, "validation")
    model.eval()
    mine = list(range(accelerator.process_index, len(pairs), accelerator.num_processes))
    per_process = -(-len(pairs) // accelerator.num_processes)
    size = config.eval_batch_size
    totals = torch.zeros(4, dtype=torch.float64, device=accelerator.device)  # loss sum, forward, reversed, pairs
    for start in range(0, per_process, size):
        indices = mine[start:start + size]
        real = len(indices)
        indices = indices + [0] * (min(size, per_process - start) - real)  # padding, masked out below
        batch = collate_pairs([pairs[i] for i in indices])
        first, second, queries = both_orders(batch)
        log_yes, log_no = model(first, second, queries)
        n = len(indices)
        losses = pair_loss(log_yes.float(), log_no.float(), n)[:real]
        p_yes = torch.sigmoid(log_yes.float() - log_no.float())
        totals += torch.stack([losses.sum().double(), (p_yes[:real] > 0.5).sum().double(),
                               (p_yes[n:n + real] < 0.5).sum().double(),
                               torch.tensor(float(real), dtype=torch.float64, device=totals.device)])
    totals = accelerator.reduce(totals, reduction="sum")
    count = max(float(totals[3]), 1.0)
    return {"validation/loss": float(totals[0]) / count,
            "validation/forward_accuracy": 100 * float(totals[1]) / count,
            "validation/reversed_accuracy": 100 * float(totals[2]) / count,
            "validation/accuracy": 50 * float(totals[1] + totals[2]) / count}


def _final_judge(accelerator, model, judge, config: TrainingConfig, sharded: bool):
    """The trained judge, saved into output_dir/model; the in-memory one on the main process, or,
    for a sharded model (FSDP, DeepSpeed ZeRO-3), a fresh copy given the gathered weights."""
    directory = Path(config.output_dir) / "model"
    if not sharded:
        accelerator.wait_for_everyone()
        trained = accelerator.unwrap_model(model)
        if accelerator.is_main_process:
            trained.eval()
            trained.save_pretrained(directory)
        accelerator.wait_for_everyone()
        return trained if accelerator.is_main_process else None
    weights = accelerator.get_state_dict(model)  # collective: every process takes part
    if not accelerator.is_main_process:
        return None
    fresh = Judge.from_pretrained(config.base_model, dtype=config.model_dtype, device="cpu",
                                  max_pixels=config.max_pixels)
    if config.adapter_rank is not None:
        fresh.add_lora(rank=config.adapter_rank, alpha=config.adapter_alpha or 2 * config.adapter_rank,
                       dropout=config.adapter_dropout)
    fresh.load_state_dict(weights)
    del weights
    fresh.save_pretrained(directory)
    return fresh.to(accelerator.device).eval()


def _evaluate_and_record(judge, accelerator, config, run_dir: RunDirectory, step: int, last_loss, template_version,
                         layout):
    output = run_dir.path
    with accelerator.autocast():
        evaluation = evaluate(judge, config.dataset_dir, "test", batch_size=config.eval_batch_size,
                              scores_path=output / "test_scores.parquet", num_workers=config.num_workers)
    del judge
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    zero_shot = None
    if config.zero_shot_eval and not evaluation.get("not_evaluated"):
        # Measured after training rather than before, so that no process waits at a barrier while
        # the main process evaluates; the base model is the same either way.
        base = Judge.from_pretrained(config.base_model, dtype=config.model_dtype, device=accelerator.device,
                                     max_pixels=config.max_pixels)
        with accelerator.autocast():
            zero_shot = evaluate(base, config.dataset_dir, "test", batch_size=config.eval_batch_size,
                                 num_workers=config.num_workers)
        del base
    write_json_atomic(output / "evaluation.json", {"test": evaluation, "zero_shot": zero_shot})
    (output / "evaluation.txt").write_text(format_table(evaluation, zero_shot) + "\n")
    result = {
        "config": config.as_dict(),
        "template_version": template_version,
        "steps": step,
        "final_loss": last_loss,
        "evaluation": evaluation,
        "zero_shot": zero_shot,
        "model": str(output / "model"),
        "processes": layout.processes,
        "accumulation_steps": layout.accumulation,
    }
    run_dir.write_result(result)
    run_dir.write_progress({"step": step, "total_steps": layout.total_steps, "loss": last_loss, "eta_seconds": 0.0,
                            "samples_per_second": None, "phase": "done"})
    return result
