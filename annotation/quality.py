"""Quality control of annotation: how well each annotator judges, and how well annotators agree.

Every figure is a handful of aggregate queries, or one stream of narrow rows (values_list +
iterator) where the arithmetic has to happen in Python, so the page stays usable with millions of
judgments; nothing here loops over annotators or tasks issuing queries.

Conventions shared by the functions below:
- A "pick" is one DimensionPick: one dimension of one judgment (best + worst, or discarded).
- `since` (an aware datetime or None) keeps only judgments submitted at or after it.
- Candidates are compared by candidate (index within the set), never by screen position, except in
  the position-bias figures, which are about screen positions (0 = leftmost).
- Shares are None where their denominator is 0, so "no data" never reads as 0 %.
"""
import statistics
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time

from django.db import connection, transaction
from django.db.models import Aggregate, Count, Exists, F, FloatField, Func, IntegerField, Max, Min, OuterRef, Q, Sum
from django.db.models.functions import Least, TruncDate
from django.utils import timezone
from scipy import stats

from generation.models import CandidateSet, GenerationBatch
from inputs.models import Dimension, Input, Task

from .models import (
    AnnotationTask,
    AnnotatorStatus,
    DimensionPick,
    Judgment,
    QualityControlSettings,
    SimulatedAnnotator,
    SlotKind,
)

STREAM_CHUNK = 5000
DISCARDED = "discarded"  # the category a discarded pick takes in agreement figures


def _share(part: int | float, whole: int | float) -> float | None:
    return part / whole if whole else None


def _judgments(since: datetime | None = None, kind: str | None = None):
    judgments = Judgment.objects.order_by()
    if since is not None:
        judgments = judgments.filter(submitted_at__gte=since)
    if kind is not None:
        judgments = judgments.filter(kind=kind)
    return judgments


def _picks(since: datetime | None = None, kind: str | None = None):
    picks = DimensionPick.objects.order_by()
    if since is not None:
        picks = picks.filter(judgment__submitted_at__gte=since)
    if kind is not None:
        picks = picks.filter(judgment__kind=kind)
    return picks


# --- gold accuracy ------------------------------------------------------------------------------


@dataclass
class GoldAccuracy:
    """An annotator's gold picks against the expected answers.

    `total` counts scored picks: gold judgments' dimensions that the task's gold answers cover.
    A pick is correct when best and worst are both the expected candidates, or when the expected
    answer is "discarded" and the pick is discarded too. Best-only and worst-only figures count
    only picks whose expected answer names a best and a worst (a discarded pick there is wrong).
    """

    annotator_id: int
    total: int = 0
    correct: int = 0
    ranked_total: int = 0  # scored picks whose expected answer is a best and a worst
    best_correct: int = 0
    worst_correct: int = 0

    @property
    def share(self) -> float | None:
        return _share(self.correct, self.total)

    @property
    def best_share(self) -> float | None:
        return _share(self.best_correct, self.ranked_total)

    @property
    def worst_share(self) -> float | None:
        return _share(self.worst_correct, self.ranked_total)

    def score(self, expected: dict, discarded: bool, best: int | None, worst: int | None) -> None:
        self.total += 1
        if expected.get("discarded") is True:
            self.correct += discarded
            return
        self.ranked_total += 1
        best_ok = not discarded and best == expected.get("best")
        worst_ok = not discarded and worst == expected.get("worst")
        self.best_correct += best_ok
        self.worst_correct += worst_ok
        self.correct += best_ok and worst_ok


def _usable_answer(answer) -> bool:
    if not isinstance(answer, dict):
        return False
    if answer.get("discarded") is True:
        return True
    return isinstance(answer.get("best"), int) and isinstance(answer.get("worst"), int)


def gold_accuracy(since: datetime | None = None, annotator=None) -> dict[int, GoldAccuracy]:
    """Per annotator id: gold judgments scored against the gold answers of tasks that are gold now
    (unmarking a task whose answers were wrong takes it out of every figure). Two queries: the gold
    answers, then a stream of the gold picks."""
    answers = {
        task_id: value for task_id, value in
        AnnotationTask.objects.filter(is_gold=True).order_by().values_list("pk", "gold_answers")
        if isinstance(value, dict)
    }
    picks = _picks(since, SlotKind.GOLD).filter(judgment__task__is_gold=True)
    if annotator is not None:
        picks = picks.filter(judgment__annotator=annotator)
    rows = picks.values_list("judgment__annotator_id", "judgment__task_id", "dimension__slug", "discarded",
                             "best__index", "worst__index")
    result: dict[int, GoldAccuracy] = {}
    for annotator_id, task_id, slug, discarded, best, worst in rows.iterator(chunk_size=STREAM_CHUNK):
        expected = answers.get(task_id, {}).get(slug)
        if not _usable_answer(expected):
            continue
        if annotator_id not in result:
            result[annotator_id] = GoldAccuracy(annotator_id)
        result[annotator_id].score(expected, discarded, best, worst)
    return result


# --- pausing on poor gold accuracy -----------------------------------------------------------------


@dataclass
class Standing:
    accuracy: GoldAccuracy  # over the gold judgments that count toward pausing (see update_standing)
    paused: bool  # whether the annotator is paused after the call
    paused_now: bool  # whether this call paused them


def update_standing(user) -> Standing:
    """Pause `user` when their gold accuracy falls below the threshold; call it after each gold
    judgment is stored.

    Pausing applies once the annotator has at least `gold_min_judgments` scored gold picks
    (dimension-picks, not judgments). Unpausing is an admin's decision; after it, only gold
    judgments submitted since the status last changed count, so an unpaused annotator is not
    paused again at once by the very answers that paused them. An already paused annotator is left
    as is (their reason text stays).
    """
    settings = QualityControlSettings.current()
    status = AnnotatorStatus.objects.filter(user=user).first()
    since = status.changed_at if status is not None else None
    accuracy = gold_accuracy(since=since, annotator=user).get(user.pk) or GoldAccuracy(user.pk)
    if status is not None and status.paused:
        return Standing(accuracy, paused=True, paused_now=False)
    share = accuracy.share
    if accuracy.total < settings.gold_min_judgments or share is None or share >= settings.gold_accuracy_threshold:
        return Standing(accuracy, paused=False, paused_now=False)
    reason = (f"Paused automatically: gold accuracy {share:.0%} ({accuracy.correct} of {accuracy.total} "
              f"gold answers right) is below the threshold of {settings.gold_accuracy_threshold:.0%}. "
              "Ask an admin to review your answers and unpause you.")
    with transaction.atomic():
        # Only a row that is still unpaused is changed: two gold judgments racing pause once.
        changed = AnnotatorStatus.objects.filter(user=user, paused=False).update(
            paused=True, reason=reason, changed_at=timezone.now())
        if not changed:
            _, created = AnnotatorStatus.objects.get_or_create(user=user, defaults={"paused": True, "reason": reason})
            if not created:
                return Standing(accuracy, paused=True, paused_now=False)
    return Standing(accuracy, paused=True, paused_now=True)


# --- self-consistency ----------------------------------------------------------------------------


@dataclass
class SelfConsistency:
    """Repeat judgments against the same annotator's regular judgment of the same task: per
    dimension, they agree when both are discarded, or neither is and best and worst are the same
    candidates (whatever the screen positions were)."""

    annotator_id: int
    compared: int
    agreed: int

    @property
    def share(self) -> float | None:
        return _share(self.agreed, self.compared)


def self_consistency(since: datetime | None = None) -> dict[int, SelfConsistency]:
    """Per annotator id. One query (semi-joins); `since` applies to the repeat judgments."""
    first = DimensionPick.objects.order_by().filter(
        judgment__task=OuterRef("judgment__task"), judgment__annotator=OuterRef("judgment__annotator"),
        judgment__kind=SlotKind.REGULAR, dimension=OuterRef("dimension"),
    )
    # A non-discarded pick has a best, so "the same best and worst" only matches a non-discarded first pick.
    agree = ((Q(discarded=True) & Exists(first.filter(discarded=True)))
             | (Q(discarded=False) & Exists(first.filter(best_id=OuterRef("best_id"), worst_id=OuterRef("worst_id")))))
    rows = (
        _picks(since, SlotKind.REPEAT).filter(Exists(first))
        .values("judgment__annotator_id")
        .annotate(compared=Count("pk"), agreed=Count("pk", filter=agree))
    )
    return {
        row["judgment__annotator_id"]: SelfConsistency(row["judgment__annotator_id"], row["compared"], row["agreed"])
        for row in rows
    }


# --- screen-position bias ------------------------------------------------------------------------


def uniform_p_value(statistic: float, dof: int) -> float | None:
    """P(X >= statistic) for X ~ chi-square with `dof` degrees of freedom: how likely picks at least
    this uneven are from an annotator who ignores screen position. None when there is nothing to test."""
    return float(stats.chi2.sf(statistic, dof)) if dof else None


def chi_square_uniform(counts: Sequence[int]) -> tuple[float, int]:
    """Pearson's statistic of `counts` against a uniform spread over its cells, and its degrees of
    freedom (cells - 1). (0.0, 0) when there is nothing to test."""
    total = sum(counts)
    if total == 0 or len(counts) < 2:
        return 0.0, 0
    expected = total / len(counts)
    return sum((c - expected) ** 2 for c in counts) / expected, len(counts) - 1


@dataclass
class PositionCounts:
    """Picks by screen position for judgments that showed n candidates."""

    n: int
    best: list[int]
    worst: list[int]
    judgments: int = 0  # judgments that showed n candidates (discarded-only ones included)

    @property
    def total(self) -> int:
        return sum(self.best)

    @staticmethod
    def ratios(counts: list[int]) -> list[float] | None:
        """share x n per position: 1.0 everywhere is no bias, whatever n is."""
        total = sum(counts)
        return [c * len(counts) / total for c in counts] if total else None

    @property
    def best_ratios(self):
        return self.ratios(self.best)

    @property
    def worst_ratios(self):
        return self.ratios(self.worst)

    def chi2(self, counts: list[int]) -> tuple[float, int]:
        """Pearson's statistic against uniform, divided by the mean number of (non-discarded)
        picks per judgment when that exceeds 1.

        The dimensions of one judgment are not independent draws: a clearly better candidate wins
        several dimensions at the same position. Dividing by the picks per judgment (the design
        effect when a judgment's picks all coincide) keeps honest annotators from being flagged
        for it; with one dimension per judgment it is Pearson's statistic unchanged."""
        statistic, dof = chi_square_uniform(counts)
        total = sum(counts)
        if self.judgments and total > self.judgments:
            statistic *= self.judgments / total
        return statistic, dof


@dataclass
class PositionBias:
    """Where on screen an annotator's best and worst picks fall (discarded picks have none).

    Per n (candidates shown) the counts per position; the chi-square statistic against uniform
    (see PositionCounts.chi2) summed over the n groups (statistics and degrees of freedom add for
    independent groups), its p-value, and the largest |share x n - 1| over all positions (0 =
    uniform; 1 = a position picked twice as often as chance, or never)."""

    annotator_id: int
    by_n: dict[int, PositionCounts] = field(default_factory=dict)

    @property
    def picks(self) -> int:
        return sum(c.total for c in self.by_n.values())

    @property
    def main(self) -> PositionCounts | None:
        """The n with the most picks: what a one-line summary shows."""
        return max(self.by_n.values(), key=lambda c: (c.total, c.n), default=None)

    def _chi2(self, attribute: str) -> tuple[float, int]:
        statistic, dof = 0.0, 0
        for counts in self.by_n.values():
            s, d = counts.chi2(getattr(counts, attribute))
            statistic, dof = statistic + s, dof + d
        return statistic, dof

    def _deviation(self, attribute: str) -> float | None:
        ratios = [r for c in self.by_n.values() for r in (PositionCounts.ratios(getattr(c, attribute)) or [])]
        return max((abs(r - 1.0) for r in ratios), default=None)

    @property
    def best_chi2(self):
        return self._chi2("best")

    @property
    def worst_chi2(self):
        return self._chi2("worst")

    @property
    def best_p(self) -> float | None:
        return uniform_p_value(*self.best_chi2)

    @property
    def worst_p(self) -> float | None:
        return uniform_p_value(*self.worst_chi2)

    @property
    def best_max_deviation(self):
        return self._deviation("best")

    @property
    def worst_max_deviation(self):
        return self._deviation("worst")


class JSONArrayLength(Func):
    """Length of a JSON array column (PostgreSQL jsonb, SQLite JSON1)."""

    function = "JSON_ARRAY_LENGTH"
    output_field = IntegerField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, function="JSONB_ARRAY_LENGTH", **extra)


def position_bias(since: datetime | None = None) -> dict[int, PositionBias]:
    """Per annotator id, over every judgment kind; n is the length of the order the judgment was
    shown. Two grouped queries: picks by (annotator, n, best position, worst position), judgments
    by (annotator, n)."""
    rows = (
        _picks(since)
        .filter(discarded=False)
        .values_list(
            "judgment__annotator_id", JSONArrayLength("judgment__shown_order"), "best_position", "worst_position"
        )
        .annotate(c=Count("pk"))
    )
    result: dict[int, PositionBias] = {}
    for annotator_id, n, best, worst, count in rows:
        bias = result.setdefault(annotator_id, PositionBias(annotator_id))
        counts = bias.by_n.setdefault(n, PositionCounts(n, [0] * n, [0] * n))
        # A position outside the shown range cannot be stored by the judging code; skip rather than fail.
        if 0 <= best < n and 0 <= worst < n:
            counts.best[best] += count
            counts.worst[worst] += count
    judgments = _judgments(since).values_list("annotator_id", JSONArrayLength("shown_order")).annotate(c=Count("pk"))
    for annotator_id, n, count in judgments:
        if annotator_id in result and n in result[annotator_id].by_n:
            result[annotator_id].by_n[n].judgments = count
    return result


# --- speed and throughput ------------------------------------------------------------------------


class Median(Aggregate):
    """PostgreSQL's continuous median (the mean of the two middle values for an even count)."""

    function = "PERCENTILE_CONT"
    name = "Median"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


def _streamed_medians(judgments) -> dict[int, float]:
    """Median dwell per annotator from a stream sorted by the database (other databases)."""
    medians, current, values = {}, None, []
    rows = judgments.order_by("annotator_id", "dwell_ms").values_list("annotator_id", "dwell_ms")
    for annotator_id, dwell in rows.iterator(chunk_size=STREAM_CHUNK):
        if annotator_id != current:
            if values:
                medians[current] = float(statistics.median(values))
            current, values = annotator_id, []
        values.append(dwell)
    if values:
        medians[current] = float(statistics.median(values))
    return medians


def _over(inner, select: str, params_before: Sequence = ()) -> list[tuple]:
    """Run `select` with {inner} replaced by the ORM queryset `inner` as a derived table: the one
    shape the ORM cannot write, an aggregate over an aggregate. `params_before` are the values of
    placeholders that come before {inner} in `select`."""
    sql, params = inner.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(select.replace("{inner}", f"({sql})"), [*params_before, *params])
        return cursor.fetchall()


def _fast_judgments(since: datetime | None, fast_pick_ms: int) -> dict[int, int]:
    """Per annotator id: judgments with dwell_ms < fast_pick_ms x their number of picks."""
    per_judgment = _picks(since).values(qc_judgment=F("judgment_id")).annotate(qc_picks=Count("pk"))
    judgment = Judgment._meta.db_table
    rows = _over(per_judgment, f"""
        SELECT j.annotator_id, SUM(CASE WHEN j.dwell_ms < p.qc_picks * %s THEN 1 ELSE 0 END)
        FROM {{inner}} p INNER JOIN {connection.ops.quote_name(judgment)} j ON j.id = p.qc_judgment
        GROUP BY j.annotator_id""", [fast_pick_ms])
    return {annotator_id: int(fast or 0) for annotator_id, fast in rows}


@dataclass
class Activity:
    """How fast and how much an annotator works.

    A judgment is too fast when its dwell time per judged dimension is under `fast_pick_ms`
    (dwell_ms / picks < fast_pick_ms). Active time is the sum of dwell times as the browser
    measured them, so breaks between tasks do not count."""

    annotator_id: int
    judgments: int
    fast: int
    median_dwell_ms: float | None
    dwell_ms: int
    today: int
    active_days: int
    first: datetime | None
    last: datetime | None

    @property
    def fast_share(self) -> float | None:
        return _share(self.fast, self.judgments)

    @property
    def active_hours(self) -> float:
        return self.dwell_ms / 3_600_000

    @property
    def per_active_hour(self) -> float | None:
        return _share(self.judgments, self.active_hours)

    @property
    def per_active_day(self) -> float | None:
        return _share(self.judgments, self.active_days)


def activity(since: datetime | None = None, fast_pick_ms: int | None = None, now: datetime | None = None
             ) -> dict[int, Activity]:
    """Per annotator id, over every judgment kind: speed (fast share, median dwell) and throughput
    (per active hour, per active day, today = since local midnight). One query on PostgreSQL (two
    elsewhere, where the median is streamed)."""
    if fast_pick_ms is None:
        fast_pick_ms = QualityControlSettings.current().fast_pick_ms
    now = now or timezone.now()
    midnight = timezone.make_aware(datetime.combine(timezone.localdate(now), time.min))
    judgments = _judgments(since)
    aggregates = {
        "judgments": Count("pk"),
        "dwell": Sum("dwell_ms"),
        "today": Count("pk", filter=Q(submitted_at__gte=midnight)),
        "days": Count(TruncDate("submitted_at"), distinct=True),
        "first": Min("submitted_at"),
        "last": Max("submitted_at"),
    }
    postgres = connection.vendor == "postgresql"
    if postgres:
        aggregates["median"] = Median("dwell_ms")
    rows = judgments.values("annotator_id").annotate(**aggregates)
    medians = {} if postgres else _streamed_medians(judgments)
    fast = _fast_judgments(since, fast_pick_ms)
    return {
        row["annotator_id"]: Activity(
            annotator_id=row["annotator_id"], judgments=row["judgments"], fast=fast.get(row["annotator_id"], 0),
            median_dwell_ms=row["median"] if postgres else medians.get(row["annotator_id"]),
            dwell_ms=row["dwell"] or 0, today=row["today"], active_days=row["days"],
            first=row["first"], last=row["last"],
        )
        for row in rows
    }


# --- agreement across annotators -----------------------------------------------------------------


class NominalAgreement:
    """Krippendorff's alpha with the nominal metric, and pairwise percent agreement, from units
    (the values several coders gave one item).

    Coincidence-matrix formulation (Krippendorff 2011, "Computing Krippendorff's alpha-reliability"):
    a unit u with m_u >= 2 pairable values and n_uc values of category c adds
    n_uc (n_uc - 1) / (m_u - 1) to the diagonal o_cc and n_uc to the marginal n_c. With
    n = sum_c n_c,
        alpha = 1 - D_o / D_e = 1 - (n - 1) (n - sum_c o_cc) / (n^2 - sum_c n_c^2).
    Units with fewer than 2 values are not pairable and are ignored. alpha is None when there is
    no unit or every value is the same category (D_e = 0: no variation, alpha undefined).

    Percent agreement of a unit is the share of its coder pairs that agree,
    sum_c n_uc (n_uc - 1) / (m_u (m_u - 1)); `percent` is its mean over units (each unit counts once).

    Only sums are kept, so units can be added one by one (`add`) or as sums computed by the
    database (`add_sums`).
    """

    def __init__(self):
        self.units = 0
        self.values = 0
        self.marginals: Counter = Counter()
        self.diagonal = 0.0  # sum_c o_cc
        self.unit_agreement = 0.0  # sum over units of their percent agreement

    def add(self, counts: dict[Hashable, int]) -> None:
        """One unit, as {category: number of coders who gave it}."""
        m = sum(counts.values())
        if m < 2:
            return
        same_pairs = sum(c * (c - 1) for c in counts.values())
        self.add_sums(units=1, values=m, marginals=counts, diagonal=same_pairs / (m - 1),
                      unit_agreement=same_pairs / (m * (m - 1)))

    def add_sums(self, *, units: int, values: int, marginals: dict[Hashable, int], diagonal: float,
                 unit_agreement: float) -> None:
        self.units += units
        self.values += values
        self.marginals.update({c: n for c, n in marginals.items() if n})
        self.diagonal += diagonal
        self.unit_agreement += unit_agreement

    def add_values(self, values: Iterable[Hashable | None]) -> None:
        """One unit, as the coders' values (None = that coder gave none)."""
        self.add(Counter(v for v in values if v is not None))

    def merge(self, other: "NominalAgreement") -> None:
        self.add_sums(units=other.units, values=other.values, marginals=other.marginals, diagonal=other.diagonal,
                      unit_agreement=other.unit_agreement)

    @property
    def percent(self) -> float | None:
        return _share(self.unit_agreement, self.units)

    @property
    def alpha(self) -> float | None:
        n = self.values
        expected = n * n - sum(c * c for c in self.marginals.values())
        if n < 2 or expected == 0:
            return None
        return 1.0 - (n - 1) * (n - self.diagonal) / expected


def krippendorff_alpha_nominal(units: Iterable[Sequence[Hashable | None]]) -> float | None:
    """Krippendorff's alpha, nominal metric, of reliability data given unit by unit: each unit is
    the sequence of the coders' values, None where a coder gave none."""
    accumulator = NominalAgreement()
    for unit in units:
        accumulator.add_values(unit)
    return accumulator.alpha


@dataclass
class AgreementRow:
    """Agreement on one (task, dimension) of the taxonomy, or on everything (task and dimension
    None). A unit is one annotation task x dimension with at least two regular judgments; its
    values are the candidates picked as best (or as worst), with "discarded" a category of its own.
    """

    task_id: int | None
    dimension_id: int | None
    task_name: str = ""
    dimension_name: str = ""
    best: NominalAgreement = field(default_factory=NominalAgreement)
    worst: NominalAgreement = field(default_factory=NominalAgreement)
    discarded: int = 0

    @property
    def units(self) -> int:
        return self.best.units

    @property
    def judgments(self) -> int:
        return self.best.values

    @property
    def discarded_share(self) -> float | None:
        return _share(self.discarded, self.best.values)


def agreement(since: datetime | None = None) -> list[AgreementRow]:
    """Inter-annotator agreement per taxonomy task x dimension, then one overall row (all units
    pooled: one coincidence matrix). Regular judgments only; gold and repeat judgments are not
    independent coders. Discarded counts as its own category, in best and in worst alike, so a
    discard against a pick is a disagreement and two discards agree: leaving discards out would
    hide exactly the disagreement about whether a difference is visible at all. Categories are
    candidate indices (the same candidate whatever screen position each annotator saw it at).

    One pass over the picks: per unit the count of each category (best and worst), then the sums
    alpha and percent agreement need, per taxonomy task x dimension, in the database.
    """
    n_max = GenerationBatch.objects.aggregate(n=Max("candidates_per_input"))["n"] or 0
    categories = [(f"{prefix}{k}", Q(discarded=False, **{f"{side}__index": k}))
                  for prefix, side in (("b", "best"), ("w", "worst")) for k in range(n_max)]
    per_unit = (
        _picks(since, SlotKind.REGULAR).filter(judgment__task__judgments_done__gte=2)
        .values(qc_unit=F("judgment__task_id"), qc_dimension=F("dimension_id"))
        .annotate(qc_m=Count("pk"), qc_d=Count("pk", filter=Q(discarded=True)),
                  **{f"qc_{name}": Count("pk", filter=condition) for name, condition in categories})
        .filter(qc_m__gte=2)
    )
    best = [f"u.qc_b{k}" for k in range(n_max)] + ["u.qc_d"]
    worst = [f"u.qc_w{k}" for k in range(n_max)] + ["u.qc_d"]

    def same_pairs(columns):
        return " + ".join(f"{c} * ({c} - 1)" for c in columns)

    q = connection.ops.quote_name
    sums = ", ".join(f"SUM({c})" for c in [*best[:-1], *worst[:-1]])
    rows = _over(
        per_unit,
        f"""
        SELECT i.task_id, u.qc_dimension, COUNT(*), SUM(u.qc_m), SUM(u.qc_d),
               SUM(({same_pairs(best)}) * 1.0 / (u.qc_m - 1)),
               SUM(({same_pairs(best)}) * 1.0 / (u.qc_m * (u.qc_m - 1))),
               SUM(({same_pairs(worst)}) * 1.0 / (u.qc_m - 1)),
               SUM(({same_pairs(worst)}) * 1.0 / (u.qc_m * (u.qc_m - 1)))
               {", " + sums if sums else ""}
        FROM {{inner}} u
        INNER JOIN {q(AnnotationTask._meta.db_table)} t ON t.id = u.qc_unit
        INNER JOIN {q(CandidateSet._meta.db_table)} s ON s.id = t.candidate_set_id
        INNER JOIN {q(Input._meta.db_table)} i ON i.id = s.input_id
        GROUP BY i.task_id, u.qc_dimension""",
    )

    result: dict[tuple[int, int], AgreementRow] = {}
    for (
        task_id,
        dimension_id,
        units,
        values,
        discarded,
        best_diagonal,
        best_unit,
        worst_diagonal,
        worst_unit,
        *marginals,
    ) in rows:
        row = result[(task_id, dimension_id)] = AgreementRow(task_id, dimension_id, discarded=int(discarded))
        for side, diagonal, unit_agreement, counts in ((row.best, best_diagonal, best_unit, marginals[:n_max]),
                                                       (row.worst, worst_diagonal, worst_unit, marginals[n_max:])):
            side.add_sums(units=int(units), values=int(values), diagonal=float(diagonal),
                          unit_agreement=float(unit_agreement),
                          marginals={DISCARDED: int(discarded), **{k: int(c) for k, c in enumerate(counts)}})

    tasks = {pk: (name, order) for pk, name, order in
             Task.objects.filter(pk__in={k[0] for k in result}).values_list("pk", "name", "order")}
    dimensions = {pk: (name, order) for pk, name, order in
                  Dimension.objects.filter(pk__in={k[1] for k in result}).values_list("pk", "name", "order")}
    overall = AgreementRow(None, None, "All tasks", "All dimensions")
    for (task_id, dimension_id), row in result.items():
        row.task_name = tasks.get(task_id, ("", 0))[0]
        row.dimension_name = dimensions.get(dimension_id, ("", 0))[0]
        overall.best.merge(row.best)
        overall.worst.merge(row.worst)
        overall.discarded += row.discarded
    ordered = sorted(result.values(), key=lambda r: (tasks.get(r.task_id, ("", 0))[1], r.task_name,
                                                     dimensions.get(r.dimension_id, ("", 0))[1], r.dimension_name))
    return [*ordered, overall] if ordered else []


# --- batch annotation progress -------------------------------------------------------------------


@dataclass
class BatchProgress:
    """Annotation of one generation batch. Gold tasks leave the regular queue, so they are counted
    apart and not in the figures (they would never be "done")."""

    batch: object
    sets: int  # candidate sets of the batch (made or not)
    tasks: int  # annotation tasks (finished sets), gold excluded
    tasks_done: int  # tasks with judgments_done >= required_judgments
    judgments_done: int  # regular judgments, at most the required number per task
    judgments_required: int
    gold_tasks: int

    @property
    def tasks_share(self) -> float | None:
        return _share(self.tasks_done, self.tasks)

    @property
    def judgments_share(self) -> float | None:
        return _share(self.judgments_done, self.judgments_required)


def batch_progress(batches=None) -> list[BatchProgress]:
    """Per generation batch (a queryset, default all, newest first). One query."""
    batches = GenerationBatch.objects.select_related("generator") if batches is None else batches
    task = "candidate_sets__annotation_task"
    regular = Q(**{f"{task}__is_gold": False})
    annotated = batches.annotate(
        qc_sets=Count("candidate_sets"),
        qc_tasks=Count(task, filter=regular),
        qc_tasks_done=Count(
            task, filter=regular & Q(**{f"{task}__judgments_done__gte": F(f"{task}__required_judgments")})
        ),
        # Capped per task: a figure over 100 % would say nothing more.
        qc_judgments_done=Sum(
            Least(f"{task}__judgments_done", f"{task}__required_judgments", output_field=IntegerField()),
            filter=regular,
        ),
        qc_judgments_required=Sum(f"{task}__required_judgments", filter=regular),
        qc_gold=Count(task, filter=Q(**{f"{task}__is_gold": True})),
    )
    return [
        BatchProgress(
            b,
            b.qc_sets,
            b.qc_tasks,
            b.qc_tasks_done,
            b.qc_judgments_done or 0,
            b.qc_judgments_required or 0,
            b.qc_gold,
        )
        for b in annotated
    ]


# --- everything about each annotator -------------------------------------------------------------


@dataclass
class AnnotatorQuality:
    annotator_id: int
    username: str
    paused: bool
    reason: str
    gold: GoldAccuracy
    consistency: SelfConsistency | None
    position: PositionBias | None
    activity: Activity | None
    below_threshold: bool  # enough gold picks and accuracy under the threshold
    simulated: str = ""  # the oracle and noise of a simulated annotator; "" for a person


def annotator_report(since: datetime | None = None, settings: QualityControlSettings | None = None
                     ) -> list[AnnotatorQuality]:
    """One row per annotator who judged anything (in the period) or has a status, by username.
    A constant number of queries, whatever the number of annotators."""
    from django.contrib.auth import get_user_model

    settings = settings or QualityControlSettings.current()
    gold = gold_accuracy(since)
    consistency = self_consistency(since)
    position = position_bias(since)
    activities = activity(since, settings.fast_pick_ms)
    statuses = {user_id: (paused, reason) for user_id, paused, reason in
                AnnotatorStatus.objects.order_by().values_list("user_id", "paused", "reason")}
    ids = set(gold) | set(consistency) | set(position) | set(activities) | set(statuses)
    names = dict(get_user_model().objects.filter(pk__in=ids).values_list("pk", "username"))
    simulated = {user_id: f"{oracle}, noise {noise:g}" for user_id, oracle, noise in
                 SimulatedAnnotator.objects.filter(user_id__in=ids).values_list("user_id", "oracle", "noise")}
    report = []
    for annotator_id in ids:
        accuracy = gold.get(annotator_id) or GoldAccuracy(annotator_id)
        paused, reason = statuses.get(annotator_id, (False, ""))
        below = (accuracy.total >= settings.gold_min_judgments and accuracy.share is not None
                 and accuracy.share < settings.gold_accuracy_threshold)
        report.append(AnnotatorQuality(
            annotator_id=annotator_id, username=names.get(annotator_id, f"#{annotator_id}"), paused=paused,
            reason=reason, gold=accuracy, consistency=consistency.get(annotator_id),
            position=position.get(annotator_id), activity=activities.get(annotator_id), below_threshold=below,
            simulated=simulated.get(annotator_id, ""),
        ))
    # People first, then the simulated annotators: QC is about the people.
    return sorted(report, key=lambda row: (bool(row.simulated), row.username.lower()))
