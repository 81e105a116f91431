"""What the annotation benchmarks share: the bench databases, Django set-up against one of them,
the layout of the generated data, and figures (percentiles).

The bench databases are separate PostgreSQL databases on 127.0.0.1 (never the development one):
`onereward_bench` (100,000 candidate sets, 1,000,000 judgments) and `onereward_bench_small`
(1% of that, the baseline). BENCH_PG (default postgres://postgres@127.0.0.1:5432) names the server.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SERVER = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432").rstrip("/")
FULL_DB = "onereward_bench"
EMPTY_DB = "onereward_bench_empty"
# Stored files of the bench inputs and candidates (a handful of PNGs shared by all rows).
MEDIA_ROOT = REPO / "var" / "bench" / "media"
# The batch whose candidate sets the bench data are; its status "done" says the fill finished.
BATCH_NAME = "bench: annotation data"
USERNAME = "bench-annotator-{:04d}"
PASSWORD = "bench-annotator-password"


def database_url(name: str) -> str:
    return f"{SERVER}/{name}"


def bench_environment(name: str, debug: bool = False) -> dict:
    """Environment variables that point the platform at a bench database (for child processes)."""
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": database_url(name),
        "ONEREWARD_MEDIA_ROOT": str(MEDIA_ROOT),
        "DJANGO_SETTINGS_MODULE": "onereward.settings",
        "DJANGO_DEBUG": "1" if debug else "0",
        "LOG_LEVEL": env.get("LOG_LEVEL", "WARNING"),
    })
    # BENCH_CACHE_URL (redis://...): the platform's shared cache, with the sessions read from it,
    # as ONEREWARD_CACHE_URL gives production; unset, sessions are read from the database.
    if os.environ.get("BENCH_CACHE_URL"):
        env["ONEREWARD_CACHE_URL"] = os.environ["BENCH_CACHE_URL"]
    return env


def database_exists(name: str) -> bool:
    import psycopg

    with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def create_database(name: str, drop_first: bool = False) -> bool:
    """Create the bench database if it is missing (drop it first when asked). True if created."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None
        if exists and drop_first:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            exists = False
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    return False


def setup_django(name: str, debug: bool = False) -> None:
    """Configure Django for this process against the bench database `name`."""
    os.environ.update(
        {
            k: v
            for k, v in bench_environment(name, debug).items()
            if k in {"DATABASE_URL", "ONEREWARD_MEDIA_ROOT", "DJANGO_SETTINGS_MODULE", "DJANGO_DEBUG", "LOG_LEVEL",
                     "ONEREWARD_CACHE_URL"}
        }
    )
    import django

    django.setup()


def bench_batch_done() -> bool:
    from generation.models import GenerationBatch

    return GenerationBatch.objects.filter(name=BATCH_NAME, status="done").exists()


def require_filled(name: str) -> None:
    """Bring the bench database's schema up to date with the code, and stop unless it is filled."""
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if not bench_batch_done():
        sys.exit(f"database {name} is not filled; run: .venv/bin/python bench/annotation_data.py --database {name}")


@dataclass(frozen=True)
class Layout:
    """Where the generated rows go. Every id is computed from these numbers (ids start at 1 in a
    fresh database), so each loading stage can be run, or rerun, on its own.

    Tasks: one per candidate set; every `gold_every`-th one is a gold task. Regular tasks want k
    judgments each. The history is what the queue's order (task id, then slot id) would have left:
    the earliest regular tasks are complete, then one partly done, then the open tail; a few slots
    at the head of the tail hold leases that ran out (abandoned pages). Gold and repeat judgments
    (1% of all each) are spread over the annotators; gold tasks' regular slots stay open, as
    `create_annotation_task` makes them and the queue never hands them out.
    """

    sets: int = 100_000
    n: int = 4
    k: int = 11
    judgments: int = 1_000_000
    annotators: int = 500
    gold_every: int = 100
    gold_share: float = 0.01
    repeat_share: float = 0.01
    expired_leases: int = 200

    def is_gold(self, i: int) -> bool:
        return self.gold_every > 0 and i % self.gold_every == self.gold_every - 1

    @cached_property
    def gold_tasks(self) -> list[int]:
        return [i for i in range(self.sets) if self.is_gold(i)]

    @cached_property
    def regular_tasks(self) -> list[int]:
        return [i for i in range(self.sets) if not self.is_gold(i)]

    @cached_property
    def gold_judgments(self) -> int:
        return min(int(self.judgments * self.gold_share), len(self.gold_tasks) * self.annotators)

    @cached_property
    def repeat_judgments(self) -> int:
        return int(self.judgments * self.repeat_share)

    @cached_property
    def regular_judgments(self) -> int:
        return self.judgments - self.gold_judgments - self.repeat_judgments

    def check(self) -> None:
        if self.k >= self.annotators:
            raise ValueError("k must be below the number of annotators (one judgment per annotator and task)")
        if self.regular_judgments > len(self.regular_tasks) * self.k:
            raise ValueError(f"{self.regular_judgments} regular judgments do not fit in "
                             f"{len(self.regular_tasks)} regular tasks x k={self.k}")
        if self.gold_judgments and math.ceil(self.gold_judgments / self.annotators) > len(self.gold_tasks):
            raise ValueError("more gold judgments per annotator than gold tasks")
        if self.repeat_judgments > self.regular_judgments // 2:
            raise ValueError("too many repeats for the regular judgments")

    # ids (1-based, dense)
    def candidate_id(self, i: int, index: int) -> int:
        return i * self.n + index + 1

    def regular_slot_id(self, i: int, j: int) -> int:
        return i * self.k + j + 1

    def gold_slot_id(self, g: int) -> int:
        return self.sets * self.k + g + 1

    def repeat_slot_id(self, q: int) -> int:
        return self.sets * self.k + self.gold_judgments + q + 1


def careful_picks(kind: str, shown_order: list[int], gold_answers: dict, picks: dict) -> dict:
    """The picks a careful annotator gives: on a gold task, the expected answers (turned from
    candidate indices into screen positions through the order shown); elsewhere `picks` as given.
    The benchmarks answer gold tasks this way because random answers would soon get every bench
    annotator paused by the quality control (gold accuracy below the threshold)."""
    if kind != "gold" or not isinstance(gold_answers, dict):
        return picks
    careful = dict(picks)
    for slug, expected in gold_answers.items():
        if slug not in careful or not isinstance(expected, dict):
            continue
        if expected.get("discarded") is True:
            careful[slug] = {"discarded": True}
        elif expected.get("best") in shown_order and expected.get("worst") in shown_order:
            careful[slug] = {
                "best": shown_order.index(expected["best"]),
                "worst": shown_order.index(expected["worst"]),
            }
    return careful


def percentile(values, share: float) -> float:
    """Nearest-rank percentile (share in [0, 1]) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def summary_ms(seconds) -> dict:
    values = [s * 1000 for s in seconds]
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": percentile(values, 0.5),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "max": max(values),
        "mean": sum(values) / len(values),
    }
