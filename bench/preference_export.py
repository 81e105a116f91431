"""Preference dataset export on the full bench database: pairs per second and peak memory, the
streamed export against a naive ORM loop measured in the same run.

    .venv/bin/python bench/annotation_data.py           # once: 100k sets, 1M judgments (N=4, 4 dimensions)
    .venv/bin/python bench/preference_export.py         # about 10 min
    .venv/bin/python bench/preference_export.py --sizes 100000,1000000 --naive 20000
    .venv/bin/python bench/preference_export.py --sizes 1000000 --naive 0 --baseline 2942120

With --baseline REF the streamed export of that commit (checked out into a temporary worktree) is
measured too, at every size, in the same run: the ratio is the gain of the current code.

Every measurement runs in a fresh child process, so its peak resident memory (ru_maxrss) is its
own; "growth" is the peak minus the resident memory just before the export started (Django and
the libraries loaded). Sizes are cut by submission time: the first S judgments submitted (the
export's own date filter), so each size is a real export of a smaller platform.

- streamed: `write_dataset` (the code the admin, API and command run), Parquet files in a
  temporary folder, one row per annotator's best/worst pick (aggregation per_annotator, the same
  rows the naive loop makes) and with the default majority aggregation;
- naive: a loop over Judgment objects and their picks through the ORM (lazy relations, one query
  per judgment and per candidate), rows collected in a list and written with pyarrow at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from annotation_common import FULL_DB, bench_environment, require_filled, setup_django  # noqa: E402


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cutoff(size: int):
    from annotation.models import Judgment

    moments = Judgment.objects.order_by("submitted_at", "pk").values_list("submitted_at", flat=True)
    total = Judgment.objects.count()
    if size >= total:
        return None
    return moments[size]


def child(args) -> None:
    setup_django(args.database)
    from datetime import datetime

    from preferences.export import create_dataset, eligible_judgments, excluded_annotators, write_dataset

    until = datetime.fromisoformat(args.until) if args.until else None
    dataset = create_dataset(name="bench-export", queue=False, submitted_until=until, aggregation=args.aggregation,
                             train_fraction=0.9, validation_fraction=0.05, test_fraction=0.05)
    try:
        folder = Path(tempfile.mkdtemp(prefix="bench-export-"))
        before = rss_kib()
        start = time.perf_counter()
        if args.mode == "streamed":
            manifest = write_dataset(dataset, folder)
            pairs, judgments = manifest["pairs"], manifest["judgments"]
        else:
            judgments_qs = eligible_judgments(dataset, excluded_annotators(dataset))
            pairs, judgments = naive_export(judgments_qs, folder / "naive.parquet")
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    finally:
        dataset.delete()
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps({"seconds": seconds, "pairs": pairs, "judgments": judgments, "rss_before_kib": before,
                      "peak_kib": peak, "bytes": size}))


def naive_export(judgments, path: Path) -> tuple[int, int]:
    """What a first script would do: objects, lazy relations, a list of every row, one write."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from preferences.core.pairing import split_of

    rows = []
    count = 0
    for judgment in judgments.order_by("pk"):
        count += 1
        candidate_set = judgment.task.candidate_set
        item = candidate_set.input
        split = split_of(item.content_hash, 0, 0.9, 0.05, 0.05)
        for pick in judgment.picks.all():
            if pick.discarded:
                continue
            best, worst = pick.best, pick.worst
            rows.append(
                {
                    "input_id": item.pk,
                    "input_hash": item.content_hash,
                    "task": item.task.slug,
                    "dimension": pick.dimension.slug,
                    "prompt": item.effective_prompt,
                    "source": item.source.name,
                    "mask": item.mask.name,
                    "winner_candidate": str(best.public_id),
                    "loser_candidate": str(worst.public_id),
                    "winner_image": best.image.name,
                    "loser_image": worst.image.name,
                    "annotator": judgment.annotator_id,
                    "winner_generator": candidate_set.batch.generator.name,
                    "winner_settings": json.dumps(best.settings),
                    "loser_settings": json.dumps(worst.settings),
                    "split": split,
                }
            )
    pq.write_table(pa.Table.from_pylist(rows), path)
    return len(rows), count


def measure(database: str, mode: str, aggregation: str, until, tree: Path | None = None) -> dict:
    """One export in a fresh child process; `tree`: a checkout of another commit to run instead."""
    script = Path(__file__) if tree is None else tree / "bench" / "preference_export.py"
    command = [sys.executable, str(script), "--child", mode, "--database", database, "--aggregation", aggregation]
    if tree is not None:
        # The project is installed in editable mode: its import finder would load this checkout's
        # modules whatever sys.path says. The other commit's child runs without it.
        command[1:2] = ["-c", RUN_FROM_TREE, str(script)]
    if until is not None:
        command += ["--until", until.isoformat()]
    result = subprocess.run(command, env=bench_environment(database), capture_output=True, text=True,
                            cwd=script.parent.parent)
    if result.returncode:
        sys.exit(f"{mode} export failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def line(label: str, size: int, figures: dict) -> str:
    rate = figures["pairs"] / figures["seconds"]
    growth = (figures["peak_kib"] - figures["rss_before_kib"]) / 1024
    return (f"{label:<26} {size:>9,} {figures['judgments']:>10,} {figures['pairs']:>10,} {figures['seconds']:>9.1f} "
            f"{rate:>11,.0f} {figures['peak_kib'] / 1024:>9.0f} {growth:>9.0f}")


RUN_FROM_TREE = """
import runpy, sys
sys.meta_path = [finder for finder in sys.meta_path if "editable" not in repr(finder).lower()]
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def baseline_tree(ref: str) -> Path:
    """A detached worktree of `ref` (removed at the end of the run)."""
    tree = Path(tempfile.mkdtemp(prefix="bench-baseline-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), ref], cwd=Path(__file__).parent.parent,
                   check=True, capture_output=True)
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default=FULL_DB)
    parser.add_argument("--sizes", default="100000,300000,1000000", help="judgments submitted, comma-separated")
    parser.add_argument("--naive", type=int, default=20000, help="size at which the naive loop is measured too")
    parser.add_argument("--baseline", help="a commit whose streamed export is measured beside this one")
    parser.add_argument("--aggregations", default="per_annotator,majority", help="comma-separated")
    parser.add_argument("--child", choices=["streamed", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--until", help=argparse.SUPPRESS)
    parser.add_argument("--aggregation", default="per_annotator", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.mode = args.child
        child(args)
        return

    setup_django(args.database)
    require_filled(args.database)
    print(f"database {args.database}; load average {os.getloadavg()[0]:.2f}", flush=True)
    header = (f"{'export':<26} {'size':>9} {'judgments':>10} {'pairs':>10} {'seconds':>9} {'pairs/s':>11} "
              f"{'peak MiB':>9} {'growth':>9}")
    print(header)
    print("-" * len(header), flush=True)
    if args.naive:
        base = measure(args.database, "streamed", "per_annotator", cutoff(args.naive))
        print(line("streamed, per annotator", args.naive, base), flush=True)
        naive = measure(args.database, "naive", "per_annotator", cutoff(args.naive))
        print(line("naive ORM loop", args.naive, naive), flush=True)
    tree = baseline_tree(args.baseline) if args.baseline else None
    results, gains = [], []
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            until = cutoff(size)
            for aggregation in args.aggregations.split(","):
                label = aggregation.replace("_", " ")
                figures = measure(args.database, "streamed", aggregation, until)
                print(line(f"streamed, {label}", size, figures), flush=True)
                if aggregation == "per_annotator":
                    results.append((size, figures))
                if tree is not None:
                    old = measure(args.database, "streamed", aggregation, until, tree)
                    print(line(f"  {args.baseline[:10]}, {label}", size, old), flush=True)
                    gains.append((size, label, old["seconds"] / figures["seconds"]))
    finally:
        if tree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=Path(__file__).parent.parent,
                           capture_output=True)
    if args.naive:
        speedup = (base["pairs"] / base["seconds"]) / (naive["pairs"] / naive["seconds"])
        print(f"\nstreamed vs naive at {args.naive:,} judgments: {speedup:.1f}x pairs/s; "
              f"peak growth {(base['peak_kib'] - base['rss_before_kib']) / 1024:.0f} vs "
              f"{(naive['peak_kib'] - naive['rss_before_kib']) / 1024:.0f} MiB")
    for size, label, gain in gains:
        print(f"this code vs {args.baseline} at {size:,} judgments, {label}: {gain:.2f}x pairs/s")
    first, last = results[0][1], results[-1][1]
    print(f"streamed peak growth from {results[0][0]:,} to {results[-1][0]:,} judgments: "
          f"{(first['peak_kib'] - first['rss_before_kib']) / 1024:.0f} -> "
          f"{(last['peak_kib'] - last['rss_before_kib']) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
