"""Evaluate a saved judge on a preference dataset split from the command line.

    python -m rewardmodel.core.evaluate --model DIR --dataset DIR [--split test] [--batch-size 16] \
        [--output evaluation.json] [--scores test_scores.parquet]

Prints the accuracy table (per task x dimension, both orders, the paper's figures and the human
ceiling); exit code 2 when the model or the dataset cannot be read.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewardmodel.core.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved judge, or a base model (zero-shot)")
    parser.add_argument("--dataset", required=True, help="exported preference dataset folder")
    parser.add_argument("--split", default="test", choices=["train", "validation", "test"])
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per forward (both orders)")
    parser.add_argument("--adapter", help="a LoRA adapter directory applied on top of --model")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--max-pixels", type=int, help="judge resize bound in pixels per image")
    parser.add_argument("--output", help="write the evaluation as JSON here")
    parser.add_argument("--scores", help="write one row per pair (Parquet) here")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")

    from .evaluation import evaluate, format_table
    from .judge import Judge
    from .layout import read_manifest, split_shards

    try:
        read_manifest(args.dataset)
        if not split_shards(args.dataset, args.split):
            raise ValueError(f"{args.dataset} has no {args.split} split")
        judge = Judge.from_pretrained(args.model, dtype=args.dtype, device=args.device, adapter=args.adapter,
                                      max_pixels=args.max_pixels)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    evaluation = evaluate(judge, args.dataset, args.split, batch_size=args.batch_size, scores_path=args.scores)
    print(format_table(evaluation))
    if args.output:
        Path(args.output).write_text(json.dumps(evaluation, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
