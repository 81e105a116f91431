"""The generator leaderboard: Bradley-Terry strengths of generators (policy checkpoints included)
from the best/worst picks of human evaluation studies, per task and dimension, with bootstrap
intervals that resample whole study items.

Outcomes come from the study picks (`evaluation.studies.study_outcomes`): on one item and
dimension the best candidate beats every other candidate and every other candidate beats the
worst (candidates in the middle are not compared). The fit itself is `evaluation.core.bradley_terry`;
this module turns the rows into its inputs and names the players after the generators.
"""
import math
from collections import defaultdict
from dataclasses import dataclass

from generation.models import Generator
from inputs.models import Dimension, Task, TaskDimension

from .core import bradley_terry
from .studies import study_outcomes

ALL_DIMENSIONS = "all"
ALL_DIMENSIONS_NAME = "All dimensions"
DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class LeaderboardRow:
    """One generator in one table. score, ci_low, ci_high: centred log-strengths (0 = the table's
    average generator); rating: the Elo-like scale (1000 = average, +400 per tenfold odds)."""

    rank: int
    generator_id: int
    generator: str
    score: float
    ci_low: float | None  # None when no resample was drawn
    ci_high: float | None
    rating: float
    rating_low: float | None
    rating_high: float | None
    wins: int
    losses: int
    comparisons: int


@dataclass(frozen=True)
class LeaderboardTable:
    """The generators met on one task and dimension (or on all its dimensions pooled), best first."""

    task_slug: str
    task_name: str
    dimension_slug: str  # ALL_DIMENSIONS for the pooled table
    dimension_name: str
    outcomes: int
    items: int
    level: float
    n_resamples: int
    rows: list[LeaderboardRow]

    @property
    def pooled(self) -> bool:
        return self.dimension_slug == ALL_DIMENSIONS


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _table(task: Task, dimension_slug: str, dimension_name: str, outcomes: list[tuple[int, int, int]],
           names: dict[int, str], n_resamples: int, seed: int, level: float) -> LeaderboardTable:
    players = sorted({generator for _, winner, loser in outcomes for generator in (winner, loser)})
    encoded = bradley_terry.encode(outcomes, players)
    ratings = bradley_terry.bootstrap(encoded, players, n_resamples=n_resamples, seed=seed, level=level)
    ratings.sort(key=lambda r: (-r.score, names.get(r.player, ""), r.player))
    rows = [
        LeaderboardRow(rank=rank, generator_id=r.player, generator=names.get(r.player, f"#{r.player}"),
                       score=r.score, ci_low=_finite(r.ci_low), ci_high=_finite(r.ci_high), rating=r.rating,
                       rating_low=_finite(r.rating_low), rating_high=_finite(r.rating_high), wins=r.wins,
                       losses=r.losses, comparisons=r.comparisons)
        for rank, r in enumerate(ratings, start=1)
    ]
    return LeaderboardTable(
        task_slug=task.slug, task_name=task.name, dimension_slug=dimension_slug, dimension_name=dimension_name,
        outcomes=int(encoded.count.sum()), items=encoded.clusters, level=level, n_resamples=n_resamples, rows=rows)


def leaderboard(task: Task | str | None = None, dimension: str | None = None, n_resamples: int = DEFAULT_RESAMPLES,
                seed: int = 0, level: float = DEFAULT_LEVEL) -> list[LeaderboardTable]:
    """Per task (in the taxonomy's order): the pooled table over all its dimensions, then one
    table per dimension (in the task's order), each with the generators sorted by score.

    task: a Task or a slug (None: every task). dimension: a slug, ALL_DIMENSIONS for the pooled
    tables alone, or None for both. Tasks and dimensions without outcomes have no table. The same
    seed gives the same intervals."""
    task_slug = getattr(task, "slug", task)
    grouped: dict[tuple[str, str], list[tuple[int, int, int]]] = defaultdict(list)
    pooled: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    want_pooled = dimension in (None, ALL_DIMENSIONS)
    for task_of, dimension_of, item_id, winner, loser in study_outcomes(task_slug):
        if want_pooled:
            pooled[task_of].append((item_id, winner, loser))
        if dimension is None or dimension == dimension_of:
            grouped[task_of, dimension_of].append((item_id, winner, loser))
    if not grouped and not pooled:
        return []

    task_slugs = {slug for slug, _ in grouped} | set(pooled)
    tasks = list(Task.objects.filter(slug__in=task_slugs))
    dimension_order = {
        (link.task_id, link.dimension.slug): link.order
        for link in TaskDimension.objects.filter(task__in=tasks).select_related("dimension")
    }
    dimensions = {d.slug: d for d in Dimension.objects.filter(slug__in={slug for _, slug in grouped})}
    generator_ids = {g for rows in (*grouped.values(), *pooled.values()) for _, w, l in rows for g in (w, l)}
    names = dict(Generator.objects.filter(pk__in=generator_ids).values_list("pk", "name"))

    tables = []
    for task_row in tasks:  # Task's Meta ordering: the taxonomy's order
        if task_row.slug in pooled:
            tables.append(_table(task_row, ALL_DIMENSIONS, ALL_DIMENSIONS_NAME, pooled[task_row.slug], names,
                                 n_resamples, seed, level))
        slugs = [slug for task_of, slug in grouped if task_of == task_row.slug]
        slugs.sort(key=lambda slug: (dimension_order.get((task_row.pk, slug), 10_000),
                                     dimensions[slug].order if slug in dimensions else 0, slug))
        for slug in slugs:
            name = dimensions[slug].name if slug in dimensions else slug
            tables.append(_table(task_row, slug, name, grouped[task_row.slug, slug], names, n_resamples, seed, level))
    return tables
