"""Reward model throughput: pairs scored per second (both orders) and training pairs per second.

    .venv/bin/python bench/reward_model.py                        # tiny model, CPU
    .venv/bin/python bench/reward_model.py --image-size 112 --pairs 128 --train-steps 30
    .venv/bin/python bench/reward_model.py --full-size            # Qwen2.5-VL-7B layout, CUDA, bf16
    .venv/bin/python bench/reward_model.py --full-size --dry-run  # the same code path, shrunk, on CPU
    .venv/bin/python bench/reward_model.py --dimensions           # image fill's four dimensions, shared images

Tiny model (rewardmodel/core/demo_judge.py, saved and loaded through Judge.from_pretrained):
- scoring: `Judge.score(..., both_orders=True)` over N pairs, batched 16 pairs (32 sequences) per
  forward, against the baseline of one pair (2 sequences) per forward;
- training: the real trainer (`rewardmodel.core.training.train`) on a synthetic dataset of PNG files,
  batch 16, with gradient checkpointing against without; pairs/s from its metrics.jsonl, the
  first logged interval (warm-up) left out.

--full-size builds Qwen2.5-VL-7B's layout (28 layers of 3584, 32 vision blocks of 1280; 8.3 B
parameters) with random weights in bf16 directly on the GPU, and at batch 16 pairs (both orders:
32 sequences) prints scoring pairs/s, training pairs/s (forward, backward, AdamW step) and peak
GPU memory, with and without gradient checkpointing. An out-of-memory step is reported, not fatal.
Prints figures; never judges them.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import timed_alternately  # noqa: E402
from rewardmodel.core.config import TrainingConfig  # noqa: E402
from rewardmodel.core.demo_judge import build_tokenizer, save_tiny_qwen  # noqa: E402
from rewardmodel.core.judge import Judge  # noqa: E402
from rewardmodel.core.preprocessing import VisionGeometry  # noqa: E402
from rewardmodel.core.query import build_query  # noqa: E402
from rewardmodel.core.training import both_orders, pair_loss, train  # noqa: E402
from tests.rewardmodel.synthetic_pairs import brightness_pairs, taxonomy  # noqa: E402

QUERY = build_query(taxonomy(), "image_fill", "aesthetics", "")


def random_pairs(count: int, size: int, device="cpu", seed: int = 0) -> tuple[list, list, list]:
    generator = torch.Generator().manual_seed(seed)
    winners = [torch.rand(3, size, size, generator=generator).to(device) for _ in range(count)]
    losers = [torch.rand(3, size, size, generator=generator).to(device) for _ in range(count)]
    return winners, losers, [QUERY] * count


# --- tiny model, CPU ----------------------------------------------------------------------------------


def bench_scoring(judge: Judge, pairs: int, size: int, batch: int, repeats: int) -> None:
    winners, losers, queries = random_pairs(pairs, size)

    def one_at_a_time():
        parts = [judge.score([w], [l], [q], both_orders=True) for w, l, q in zip(winners, losers, queries)]
        return torch.cat([part["p_yes_renormalised"] for part in parts])

    def batched():
        return judge.score(winners, losers, queries, both_orders=True, batch_size=batch)["p_yes_renormalised"]

    seconds, results = timed_alternately({"one pair per forward": one_at_a_time,
                                          f"{batch} pairs per forward": batched}, judge.device, repeats)
    difference = float((results["one pair per forward"] - results[f"{batch} pairs per forward"]).abs().max())
    print(f"\nScoring {pairs} pairs of {size}x{size} images, both orders (median of {repeats})")
    baseline = pairs / seconds["one pair per forward"]
    for name, value in seconds.items():
        rate = pairs / value
        print(f"  {name:<24} {rate:9.1f} pairs/s   ({value * 1000:8.1f} ms)   x{rate / baseline:.2f}")
    print(f"  largest difference between the two: {difference:.2e}")


def bench_training(model_dir: Path, work: Path, size: int, steps: int, batch: int, repeats: int) -> None:
    data = brightness_pairs(work / "data", {"train": steps * batch}, size=size, seed=0)
    log_every = max(1, steps // 5)
    rates: dict[str, list[float]] = {"without checkpointing": [], "with gradient checkpointing": []}
    for repeat in range(repeats):
        for name, checkpointing in (("without checkpointing", False), ("with gradient checkpointing", True)):
            output = work / f"run-{repeat}-{int(checkpointing)}"
            train(TrainingConfig(dataset_dir=str(data), output_dir=str(output), base_model=str(model_dir),
                                 learning_rate=1e-4, batch_size=batch, max_steps=steps, log_every=log_every,
                                 save_every=10**6, gradient_checkpointing=checkpointing, zero_shot_eval=False))
            lines = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
            rates[name].append(statistics.mean(line["samples_per_second"] for line in lines[1:]))
    print(f"\nTraining (rewardmodel.core.training.train), {steps} steps of {batch} pairs, {size}x{size} images, "
          f"CPU, median of {repeats}")
    baseline = statistics.median(rates["without checkpointing"])
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"  {name:<28} {rate:8.1f} pairs/s   x{rate / baseline:.2f}")


# --- full size, CUDA -------------------------------------------------------------------------------------


def qwen25_vl_7b_config(tokenizer, shrink: bool = False):
    """Qwen2.5-VL-7B-Instruct's layout (its config.json), with the special token ids of `tokenizer`.
    shrink: the same structure at toy widths and depths, for a dry run on CPU."""
    from transformers import Qwen2_5_VLConfig

    token_id = tokenizer.convert_tokens_to_ids
    text = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=128000, rms_norm_eps=1e-6,
                rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]})
    vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, in_channels=3, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
                  out_hidden_size=3584, hidden_act="silu")
    if shrink:
        text.update(
            vocab_size=2048,
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            rope_parameters={**text["rope_parameters"], "mrope_section": [4, 6, 6]},
        )
        vision.update(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, fullatt_block_indexes=[1],
                      out_hidden_size=128)
    text.update(bos_token_id=token_id("<|endoftext|>"), eos_token_id=token_id("<|im_end|>"),
                pad_token_id=token_id("<|endoftext|>"))
    return Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, tie_word_embeddings=False,
        image_token_id=token_id("<|image_pad|>"), video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"), vision_end_token_id=token_id("<|vision_end|>"),
    )


def scaled_7b_config(tokenizer, divisor: int):
    """Qwen2.5-VL-7B's layout with every width divided by `divisor` and the depths kept, so that the
    vision tower's share of the work per image against the language model's per token stays about
    the 7B's (both scale by 1/divisor^2), at a size a CPU runs."""
    config = qwen25_vl_7b_config(tokenizer)
    text, vision = config.text_config, config.vision_config
    text.hidden_size //= divisor
    text.intermediate_size //= divisor
    # Heads of 16: the rotary embeddings split a head into (time, height, width) sections.
    text.num_attention_heads = text.hidden_size // 16
    text.num_key_value_heads = 2 if text.num_attention_heads % 2 == 0 else 1
    text.vocab_size = len(tokenizer)
    text.rope_parameters = {**text.rope_parameters, "mrope_section": [2, 3, 3]}
    vision.hidden_size //= divisor
    vision.intermediate_size //= divisor
    vision.num_heads = vision.hidden_size // 16
    vision.out_hidden_size = text.hidden_size
    return type(config)(text_config=text.to_dict(), vision_config=vision.to_dict(), tie_word_embeddings=False,
                        image_token_id=config.image_token_id, video_token_id=config.video_token_id,
                        vision_start_token_id=config.vision_start_token_id,
                        vision_end_token_id=config.vision_end_token_id)


def bench_dimensions(args) -> None:
    """Image fill's four dimensions for one pair, as the RL step asks them (one call, gradient to the
    first image) and as evaluation scores them (both orders, no gradient): each image encoded once
    (the same tensor in every row) against today's layout of a copy per row."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    tokenizer = build_tokenizer()
    config = scaled_7b_config(tokenizer, args.width_divisor)
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.float32).eval()
    size = args.image_size
    judge = Judge(model, tokenizer, VisionGeometry.from_model_config(config, max_pixels=size ** 2))
    dimensions = ("text_alignment", "consistency", "structure", "aesthetics")
    queries = [build_query(taxonomy(), "image_fill", d, "a red cup on a wooden table") for d in dimensions]
    (first,), (second,), _ = random_pairs(1, size)
    n = len(queries)
    parameters = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for p in model.model.visual.parameters())
    print(f"\nImage fill's {n} dimensions of one pair: Qwen2.5-VL-7B layout, widths / {args.width_divisor}, "
          f"depths kept ({parameters / 1e6:.1f} M parameters, vision tower {vision / 1e6:.1f} M); {size}x{size} "
          f"images ({judge.geometry.tokens_for(size, size)} tokens each), float32, CPU (median of {args.repeats})")

    def reward(shared: bool):
        image = first.clone().requires_grad_(True)
        rows = [image] * n if shared else [image.clone() for _ in range(n)]  # copies: encoded per row
        log_yes, _ = judge.answer_logprobs(rows, [second] * n if shared else [second.clone() for _ in range(n)],
                                           queries)
        (gradient,) = torch.autograd.grad(log_yes.exp().sum(), image)
        return log_yes.detach(), gradient

    def score(shared: bool):
        a = [first] * n if shared else [first.clone() for _ in range(n)]
        b = [second] * n if shared else [second.clone() for _ in range(n)]
        result = judge.score(a, b, queries, both_orders=True, batch_size=n)
        return torch.cat([result["p_yes_renormalised"], result["p_yes_reversed_renormalised"]])

    for title, fn in (("RL reward (forward + gradient to the first image)", reward),
                      ("scoring, both orders (no gradient)", score)):
        seconds, results = timed_alternately({"a copy per row (before)": lambda: fn(False),
                                              "each image once": lambda: fn(True)}, torch.device("cpu"),
                                             args.repeats)
        before, after = results["a copy per row (before)"], results["each image once"]
        pairs = zip(before, after) if isinstance(before, tuple) else [(before, after)]
        difference = max(float((x - y).abs().max() / y.abs().max().clamp_min(1e-12)) for x, y in pairs)
        print(f"  {title}")
        for name, value in seconds.items():
            print(f"    {name:<26} {value * 1000:9.1f} ms   x{seconds['a copy per row (before)'] / value:.2f}")
        print(f"    largest relative difference: {difference:.1e}")


def bench_full_size(args) -> None:
    from transformers import Qwen2_5_VLForConditionalGeneration

    dry = args.dry_run
    device = torch.device("cpu" if dry else "cuda")
    dtype = torch.float32 if dry else torch.bfloat16
    if not dry and not torch.cuda.is_available():
        sys.exit("--full-size needs a CUDA GPU (--dry-run runs the same code shrunk on CPU)")
    tokenizer = build_tokenizer()
    config = qwen25_vl_7b_config(tokenizer, shrink=dry)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    parameters = sum(p.numel() for p in model.parameters())
    judge = Judge(model, tokenizer, VisionGeometry.from_model_config(config, max_pixels=args.image_size ** 2))
    batch, size = args.batch, args.image_size
    tokens = judge.geometry.tokens_for(size, size)
    print(f"\nQwen2.5-VL-7B layout{' (shrunk, dry run)' if dry else ''}: {parameters / 1e9:.3f} B parameters, "
          f"{dtype}, {device}; {size}x{size} images ({tokens} tokens each), "
          f"batch {batch} pairs = {2 * batch} sequences")
    weights_gb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
    if device.type == "cuda":
        print(f"  weights: {weights_gb:.1f} GiB on the GPU")

    winners, losers, queries = random_pairs(batch, size, device=device)
    model.eval()
    seconds, _ = timed_alternately({"score": lambda: judge.score(winners, losers, queries, both_orders=True,
                                                                 batch_size=batch)}, device, args.repeats)
    print(f"  scoring, both orders:           {batch / seconds['score']:8.2f} pairs/s   peak {peak_memory(device)}")

    optimizer = torch.optim.AdamW([p for p in model.parameters()], lr=1e-6, foreach=False) \
        if args.optimizer == "adamw" else None
    micro = args.micro_batch or batch
    for checkpointing in (False, True):
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_disable()
        model.train()
        reset_peak(device)

        def step():
            for start in range(0, batch, micro):
                part = {"winner": winners[start:start + micro], "loser": losers[start:start + micro],
                        "query": queries[start:start + micro]}
                first, second, texts = both_orders(part)
                log_yes, log_no = judge.answer_logprobs(first, second, texts)
                loss = pair_loss(log_yes, log_no, len(part["query"])).mean() * len(part["query"]) / batch
                loss.backward()
            if optimizer is not None:
                optimizer.step()
            for parameter in model.parameters():
                parameter.grad = None

        name = "with gradient checkpointing" if checkpointing else "without checkpointing"
        try:
            seconds, _ = timed_alternately({"step": step}, device, args.repeats)
        except torch.OutOfMemoryError:
            for parameter in model.parameters():
                parameter.grad = None
            print(f"  training, {name:<28} out of memory   (peak before failing {peak_memory(device)})")
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        print(f"  training, {name:<28} {batch / seconds['step']:8.2f} pairs/s   peak {peak_memory(device)}"
              f"   (micro-batch {micro}, optimizer {args.optimizer})")


def reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device) -> str:
    if device.type != "cuda":
        return "n/a on CPU"
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=64, help="pairs scored (tiny model)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="image side in pixels (default 56 for the tiny model and --dry-run, 448 for --full-size)")
    parser.add_argument("--batch", type=int, default=16, help="pairs per forward / training batch")
    parser.add_argument("--train-steps", type=int, default=20, help="training steps per run (tiny model)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-size", action="store_true", help="Qwen2.5-VL-7B layout on CUDA in bf16")
    parser.add_argument("--dry-run", action="store_true", help="with --full-size: shrunk config on CPU")
    parser.add_argument("--micro-batch", type=int, default=None, help="--full-size: pairs per forward/backward")
    parser.add_argument("--optimizer", choices=["adamw", "none"], default="adamw",
                        help="--full-size: AdamW step (bf16 states) or gradients only")
    parser.add_argument("--dimensions", action="store_true",
                        help="image fill's four dimensions of one pair: each image encoded once against a copy per "
                             "row, on the 7B layout at reduced widths (CPU)")
    parser.add_argument("--width-divisor", type=int, default=16, help="--dimensions: widths of the 7B layout / this")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' renamed checkpointing calls
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    if args.full_size:
        args.image_size = args.image_size or (56 if args.dry_run else 448)
        bench_full_size(args)
        return
    if args.dimensions:
        args.image_size = args.image_size or 448
        bench_dimensions(args)
        return
    args.image_size = args.image_size or 56
    with tempfile.TemporaryDirectory(prefix="bench-reward-model-") as work:
        work = Path(work)
        model_dir = save_tiny_qwen(work / "tiny", seed=0)
        judge = Judge.from_pretrained(str(model_dir), device="cpu", dtype="float32")
        print(f"tiny Qwen2.5-VL judge: {sum(p.numel() for p in judge.parameters()) / 1e6:.2f} M parameters")
        bench_scoring(judge, args.pairs, args.image_size, args.batch, args.repeats)
        bench_training(model_dir, work, args.image_size, args.train_steps, args.batch, max(1, args.repeats - 1))


if __name__ == "__main__":
    main()
