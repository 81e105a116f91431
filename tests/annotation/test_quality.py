"""Quality control: every statistic against answers worked out by hand, Krippendorff's alpha
against textbook values, pausing, and the admin pages (roles, gold marking, constant queries)."""
import itertools
import uuid
from datetime import timedelta
from fractions import Fraction

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from annotation import quality
from annotation.admin import unpause
from annotation.assignment import AnnotatorPaused, next_slot
from annotation.models import (
    AnnotationTask,
    AnnotatorStatus,
    DimensionPick,
    Judgment,
    QualityControlSettings,
    Slot,
    SlotKind,
    SlotState,
)
from generation.models import Candidate, CandidateSet, GenerationBatch, Generator, SetStatus
from inputs.models import Dimension, Input, Task
from onereward.jobs import JobStatus

pytestmark = pytest.mark.django_db

N = 4
FILL = ["text_alignment", "consistency", "structure", "aesthetics"]
D = "discarded"


# --- building judgments with known answers -------------------------------------------------------


class World:
    """Minimal rows for judgments: a generator, batches, inputs, candidate sets of N candidates,
    annotation tasks; judgments and picks written directly."""

    def __init__(self):
        self.generator = Generator.objects.create(name="cpu", backend="cpu_baseline", settings={})
        self.batch = self.new_batch("batch one", overlap=3)
        self._inputs = itertools.count()

    def new_batch(self, name, overlap=3):
        return GenerationBatch.objects.create(name=name, generator=self.generator, candidates_per_input=N,
                                              annotation_overlap=overlap, status=JobStatus.DONE)

    def input(self, task_slug):
        number = next(self._inputs)
        return Input.objects.create(
            task=Task.objects.get(slug=task_slug), prompt="a red bicycle" if task_slug == "image_fill" else "",
            source=f"inputs/{number}.png", mask=f"inputs/{number}-mask.png", width=64, height=48,
            mask_coverage=0.2, content_hash=f"{number:064d}")

    def task(self, task_slug="object_removal", batch=None, gold_answers=None, finished=True, required=None):
        batch = batch or self.batch
        candidate_set = CandidateSet.objects.create(batch=batch, input=self.input(task_slug),
                                                    status=SetStatus.DONE if finished else SetStatus.PENDING)
        if not finished:
            return None
        Candidate.objects.bulk_create([
            Candidate(candidate_set=candidate_set, index=i, image=f"c/{candidate_set.pk}-{i}.png",
                      thumbnail=f"c/{candidate_set.pk}-{i}.jpg", settings={}, seconds=0)
            for i in range(N)
        ])
        return AnnotationTask.objects.create(
            candidate_set=candidate_set, required_judgments=required or batch.annotation_overlap,
            is_gold=gold_answers is not None, gold_answers=gold_answers or {})

    def judge(self, user, task, picks, kind=SlotKind.REGULAR, order=(0, 1, 2, 3), dwell_ms=5000, submitted_at=None):
        """picks: {dimension slug: (best candidate index, worst candidate index) or "discarded"}."""
        order = list(order)
        slot = Slot.objects.create(task=task, kind=kind, state=SlotState.DONE, annotator=user, shown_order=order,
                                   assigned_at=timezone.now())
        judgment = Judgment.objects.create(slot=slot, task=task, annotator=user, kind=kind, shown_order=order,
                                           submission_id=uuid.uuid4(), dwell_ms=dwell_ms, assigned_at=timezone.now())
        candidates = {c.index: c for c in task.candidate_set.candidates.all()}
        rows = []
        for slug, pick in picks.items():
            dimension = Dimension.objects.get(slug=slug)
            if pick == D:
                rows.append(DimensionPick(judgment=judgment, dimension=dimension, discarded=True))
            else:
                best, worst = pick
                rows.append(DimensionPick(judgment=judgment, dimension=dimension, best=candidates[best],
                                          worst=candidates[worst], best_position=order.index(best),
                                          worst_position=order.index(worst)))
        DimensionPick.objects.bulk_create(rows)
        if kind == SlotKind.REGULAR:
            AnnotationTask.objects.filter(pk=task.pk).update(judgments_done=task.judgments.filter(kind=kind).count())
        if submitted_at is not None:
            Judgment.objects.filter(pk=judgment.pk).update(submitted_at=submitted_at)
        return judgment


@pytest.fixture
def world(db):
    return World()


@pytest.fixture
def annotators(db):
    from django.contrib.auth.models import User

    from onereward.roles import assign_role

    users = [User.objects.create(username=f"annotator{i}") for i in range(1, 7)]  # no password: quicker
    for user in users:
        assign_role(user, "annotator")
    return users


def removal(pick):
    return {"removal_quality": pick}


# --- Krippendorff's alpha and percent agreement --------------------------------------------------


def columns(*coders):
    """Reliability data given coder by coder (rows of a textbook table) as units."""
    return list(zip(*coders))


def test_alpha_of_krippendorffs_binary_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", A: two observers, binary.
    units = columns([0, 1, 0, 0, 0, 0, 0, 0, 1, 0], [1, 1, 1, 0, 0, 1, 0, 0, 0, 0])
    # o_00 = 10, o_11 = 2, o_01 = o_10 = 4; n_0 = 14, n_1 = 6: alpha = 1 - 19 * 8 / (2 * 14 * 6)
    assert quality.krippendorff_alpha_nominal(units) == pytest.approx(
        float(1 - Fraction(19 * 8, 2 * 14 * 6)), abs=1e-12
    )
    assert round(quality.krippendorff_alpha_nominal(units), 3) == 0.095


def test_alpha_of_krippendorffs_example_with_four_observers_and_missing_values():
    # Krippendorff (2011), C: nominal data, four observers, twelve units, missing values; alpha = 0.743.
    x = None
    units = columns(
        [1, 2, 3, 3, 2, 1, 4, 1, 2, x, x, x],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, x, 3],
        [x, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, x],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, x],
    )
    assert round(quality.krippendorff_alpha_nominal(units), 3) == 0.743
    # By hand: n = 40 pairable values (unit 12 has one); sum_c o_cc = 32; n_c = 9, 13, 10, 5, 3 for 1..5.
    assert quality.krippendorff_alpha_nominal(units) == pytest.approx(
        float(1 - Fraction(39 * (40 - 32), 40 * 40 - (81 + 169 + 100 + 25 + 9))), abs=1e-12)


def test_alpha_of_the_three_coder_example_with_missing_values():
    # The worked example of the Wikipedia article on Krippendorff's alpha: nominal alpha = 0.691.
    x = None
    units = columns(
        [x, x, x, x, x, 3, 4, 1, 2, 1, 1, 3, 3, x, 3],
        [1, x, 2, 1, 3, 3, 4, 3, x, x, x, x, x, x, x],
        [x, x, 2, 1, 3, 4, 4, x, 2, 1, 1, 3, 3, x, 4],
    )
    assert round(quality.krippendorff_alpha_nominal(units), 3) == 0.691


def test_alpha_edge_cases_and_percent_agreement():
    assert quality.krippendorff_alpha_nominal([(1, 1), (2, 2), (3, 3, 3)]) == 1.0
    assert quality.krippendorff_alpha_nominal([(1, 1), (1, 1)]) is None  # no variation: undefined
    assert quality.krippendorff_alpha_nominal([(1,), (2, None)]) is None  # nothing pairable
    accumulator = quality.NominalAgreement()
    for unit in [(1, 1, 1), (1, 1, 2), (1, 2, 3), (4,)]:
        accumulator.add_values(unit)
    assert accumulator.units == 3 and accumulator.values == 9
    assert accumulator.percent == pytest.approx((1 + Fraction(1, 3) + 0) / 3)


def test_chi_square_against_table_values():
    # Critical values at the 5 % level from any chi-square table.
    for statistic, dof in [(3.841, 1), (5.991, 2), (7.815, 3), (9.488, 4), (11.070, 5), (18.307, 10)]:
        assert quality.uniform_p_value(statistic, dof) == pytest.approx(0.05, abs=2e-4)
    assert quality.uniform_p_value(6.635, 1) == pytest.approx(0.01, abs=1e-4)
    assert quality.uniform_p_value(0, 3) == 1.0
    assert quality.uniform_p_value(4.0, 0) is None
    assert quality.chi_square_uniform([6, 1, 1, 0]) == (11.0, 3)


# --- per-annotator statistics --------------------------------------------------------------------


def test_gold_accuracy_per_dimension_best_and_worst(world, annotators):
    ann, other = annotators[:2]
    answers = {"text_alignment": {"best": 0, "worst": 3}, "consistency": {"best": 1, "worst": 2},
               "structure": {"discarded": True}, "aesthetics": {"best": 2, "worst": 0}}
    gold = world.task("image_fill", gold_answers=answers)
    world.judge(ann, gold, {"text_alignment": (0, 3),      # right
                            "consistency": (1, 0),         # best right, worst wrong
                            "structure": D,                # right
                            "aesthetics": D},              # wrong on both sides
                kind=SlotKind.GOLD, order=(3, 1, 0, 2))
    world.judge(
        other,
        gold,
        {"text_alignment": (0, 3), "consistency": (1, 2), "structure": (1, 2), "aesthetics": (2, 0)},
        kind=SlotKind.GOLD,
    )
    # A gold task without an answer for a dimension scores nothing there.
    partial = world.task("object_removal", gold_answers={})
    world.judge(ann, partial, removal((0, 1)), kind=SlotKind.GOLD)
    # Regular judgments never count, nor gold judgments of a task that is no longer gold.
    world.judge(ann, world.task("image_fill"), {"text_alignment": (1, 2)})
    unmarked = world.task("object_removal", gold_answers={"removal_quality": {"best": 0, "worst": 1}})
    world.judge(ann, unmarked, removal((3, 2)), kind=SlotKind.GOLD)
    AnnotationTask.objects.filter(pk=unmarked.pk).update(is_gold=False)

    result = quality.gold_accuracy()
    mine = result[ann.pk]
    assert (mine.total, mine.correct, mine.share) == (4, 2, 0.5)
    assert (mine.ranked_total, mine.best_correct, mine.worst_correct) == (3, 2, 1)
    assert mine.best_share == pytest.approx(2 / 3) and mine.worst_share == pytest.approx(1 / 3)
    theirs = result[other.pk]
    assert (theirs.total, theirs.correct, theirs.best_correct, theirs.worst_correct) == (4, 3, 3, 3)
    assert set(result) == {ann.pk, other.pk}


def test_self_consistency_by_candidate_not_position(world, annotators):
    ann, other = annotators[:2]
    task = world.task("image_fill")
    world.judge(ann, task, {"text_alignment": (0, 3), "consistency": (1, 2), "structure": D, "aesthetics": D},
                order=(0, 1, 2, 3))
    world.judge(other, task, {"text_alignment": (2, 1), "consistency": (1, 2), "structure": D, "aesthetics": D})
    # The repeat shows another order: same candidates at other positions still agree.
    world.judge(ann, task, {"text_alignment": (0, 3),   # agrees
                            "consistency": (1, 3),      # worst differs
                            "structure": D,             # both discarded: agrees
                            "aesthetics": (2, 1)},      # discarded before: differs
                kind=SlotKind.REPEAT, order=(3, 2, 1, 0))
    # A repeat of a task the annotator has no regular judgment of compares nothing.
    world.judge(other, world.task("object_removal"), removal((0, 1)), kind=SlotKind.REPEAT)

    result = quality.self_consistency()
    assert set(result) == {ann.pk}
    assert (result[ann.pk].compared, result[ann.pk].agreed, result[ann.pk].share) == (4, 2, 0.5)


def test_position_bias_counts_chi_square_and_deviation(world, annotators):
    ann = annotators[0]
    best_positions = [0, 0, 0, 0, 0, 0, 1, 2]
    worst_positions = [3, 3, 2, 1, 1, 2, 3, 0]
    order = (2, 0, 3, 1)  # position p shows candidate order[p]
    for best, worst in zip(best_positions, worst_positions):
        world.judge(ann, world.task(), removal((order[best], order[worst])), order=order)
    world.judge(ann, world.task(), removal(D))  # discarded: no position

    bias = quality.position_bias()[ann.pk]
    counts = bias.by_n[N]
    assert counts.best == [6, 1, 1, 0] and counts.worst == [1, 2, 2, 3] and bias.picks == 8
    assert counts.best_ratios == [3.0, 0.5, 0.5, 0.0]
    # Expected 2 per position: best (16 + 1 + 1 + 4) / 2 = 11, worst (1 + 0 + 0 + 1) / 2 = 1.
    assert bias.best_chi2 == (11.0, 3) and bias.worst_chi2 == (1.0, 3)
    assert bias.best_p == pytest.approx(0.011725875578421, rel=1e-9)
    assert bias.worst_p == pytest.approx(0.801251989, rel=1e-6)
    assert bias.best_max_deviation == 2.0 and bias.worst_max_deviation == 0.5
    assert counts.judgments == 9  # the all-discarded judgment included


def test_position_bias_counts_each_judgment_once_in_the_statistic(world, annotators):
    # The same positions as above, but every judgment picks them on all four dimensions: four times
    # the picks, the same evidence. The statistic is divided by the 4 picks per judgment.
    ann = annotators[0]
    order = (2, 0, 3, 1)
    for best, worst in zip([0, 0, 0, 0, 0, 0, 1, 2], [3, 3, 2, 1, 1, 2, 3, 0]):
        world.judge(ann, world.task("image_fill"), {slug: (order[best], order[worst]) for slug in FILL}, order=order)
    bias = quality.position_bias()[ann.pk]
    counts = bias.by_n[N]
    assert counts.best == [24, 4, 4, 0] and (counts.total, counts.judgments) == (32, 8)
    assert quality.chi_square_uniform(counts.best) == (44.0, 3)
    assert bias.best_chi2 == (11.0, 3) and bias.worst_chi2 == (1.0, 3)
    assert bias.best_p == pytest.approx(0.011725875578421, rel=1e-9)


def test_speed_and_throughput(world, annotators):
    ann, other = annotators[:2]
    settings = QualityControlSettings.current()
    assert settings.fast_pick_ms == 1500
    fill_picks = {slug: (0, 1) for slug in FILL}
    world.judge(ann, world.task("image_fill"), fill_picks, dwell_ms=4000)   # 1000 ms per dimension: fast
    world.judge(ann, world.task("image_fill"), fill_picks, dwell_ms=8000)   # 2000: not fast
    world.judge(ann, world.task(), removal((0, 1)), dwell_ms=1000)          # fast
    world.judge(ann, world.task(), removal((0, 1)), dwell_ms=1500,          # not under the limit
                submitted_at=timezone.now() - timedelta(days=3))
    world.judge(other, world.task(), removal((0, 1)), dwell_ms=700)

    result = quality.activity()
    mine = result[ann.pk]
    assert (mine.judgments, mine.fast, mine.fast_share) == (4, 2, 0.5)
    assert mine.median_dwell_ms == 2750.0  # (1500 + 4000) / 2
    assert (mine.dwell_ms, mine.today, mine.active_days) == (14500, 3, 2)
    assert mine.per_active_hour == pytest.approx(4 / (14500 / 3_600_000))
    assert mine.per_active_day == 2.0
    assert (result[other.pk].fast, result[other.pk].median_dwell_ms) == (1, 700.0)
    # The stream other databases use gives the same medians.
    assert quality._streamed_medians(Judgment.objects.all()) == {ann.pk: 2750.0, other.pk: 700.0}
    # A period keeps only the judgments submitted in it.
    recent = quality.activity(since=timezone.now() - timedelta(days=1))[ann.pk]
    assert (recent.judgments, recent.median_dwell_ms) == (3, 4000.0)


def test_agreement_per_task_and_dimension(world, annotators):
    a, b, c, d = annotators[:4]
    u1, u2, u3 = world.task(), world.task(), world.task()
    # best values per unit: {0,0,0}, {1,1,2}, {D,D,3}; worst values: {3,3,2}, {0,0,0}, {D,D,0}
    for user, pick in zip((a, b, c), [(0, 3), (0, 3), (0, 2)]):
        world.judge(user, u1, removal(pick), order=(3, 2, 1, 0))
    for user, pick in zip((a, b, c), [(1, 0), (1, 0), (2, 0)]):
        world.judge(user, u2, removal(pick))
    for user, pick in zip((a, b, c), [D, D, (3, 0)]):
        world.judge(user, u3, removal(pick))
    world.judge(d, u1, removal((1, 2)), kind=SlotKind.REPEAT)   # repeats and gold are not coders
    world.judge(a, world.task(), removal((0, 1)))              # one judgment: not a unit
    # A second group: image fill, consistency, two units of two coders.
    f1, f2 = world.task("image_fill"), world.task("image_fill")
    world.judge(a, f1, {"consistency": (0, 1)})
    world.judge(b, f1, {"consistency": (0, 1)})
    world.judge(a, f2, {"consistency": (2, 3)})
    world.judge(b, f2, {"consistency": (3, 2)})

    rows = quality.agreement()
    assert [(r.task_name, r.dimension_name) for r in rows] == [
        ("Image fill", "Consistency"), ("Object removal", "Removal quality"), ("All tasks", "All dimensions")]
    fill, removal_row, overall = rows
    assert (removal_row.units, removal_row.judgments, removal_row.discarded) == (3, 9, 2)
    # best: n = 9, sum o_cc = 3 + 1 + 1, n_c = 3, 2, 1, 2, 1 -> alpha = 1 - 8 * 4 / (81 - 19)
    assert removal_row.best.alpha == pytest.approx(float(1 - Fraction(32, 62)), abs=1e-12)
    assert removal_row.best.percent == pytest.approx(5 / 9)
    # worst: sum o_cc = 1 + 3 + 1, n_c = 2, 1, 4, 2 -> alpha = 1 - 8 * 4 / (81 - 25)
    assert removal_row.worst.alpha == pytest.approx(float(1 - Fraction(32, 56)), abs=1e-12)
    assert removal_row.worst.percent == pytest.approx(5 / 9)
    assert removal_row.discarded_share == pytest.approx(2 / 9)
    # image fill: best {0,0}, {2,3}: n = 4, sum o_cc = 2, n_c = 2, 1, 1 -> 1 - 3 * 2 / (16 - 6)
    assert fill.best.alpha == pytest.approx(0.4) and fill.best.percent == 0.5
    assert fill.worst.alpha == pytest.approx(0.4)
    # Overall: one coincidence matrix over all five units (categories are candidate indices).
    assert overall.units == 5 and overall.judgments == 13 and overall.discarded == 2
    assert overall.best.alpha == pytest.approx(
        quality.krippendorff_alpha_nominal([(0, 0, 0), (1, 1, 2), (D, D, 3), (0, 0), (2, 3)]), abs=1e-12)
    assert overall.best.percent == pytest.approx((1 + 1 / 3 + 1 / 3 + 1 + 0) / 5)


def test_batch_progress(world):
    batch = world.batch  # overlap 3
    done, half = world.task(), world.task()
    world.task()  # not judged yet
    AnnotationTask.objects.filter(pk=done.pk).update(judgments_done=4)  # counted as 3: capped per task
    AnnotationTask.objects.filter(pk=half.pk).update(judgments_done=1)
    world.task(gold_answers={"removal_quality": {"discarded": True}})
    world.task(finished=False)
    other = world.new_batch("batch two", overlap=1)

    progress = {p.batch.pk: p for p in quality.batch_progress()}
    mine = progress[batch.pk]
    assert (mine.sets, mine.tasks, mine.tasks_done, mine.gold_tasks) == (5, 3, 1, 1)
    assert (mine.judgments_done, mine.judgments_required) == (4, 9)
    assert mine.tasks_share == pytest.approx(1 / 3) and mine.judgments_share == pytest.approx(4 / 9)
    empty = progress[other.pk]
    assert (empty.tasks, empty.judgments_required, empty.tasks_share) == (0, 0, None)


# --- pausing ----------------------------------------------------------------------------------


def test_pausing_below_the_threshold_only_after_enough_gold_picks(world, annotators):
    ann, good = annotators[:2]
    QualityControlSettings.objects.update_or_create(
        pk=1, defaults={"gold_min_judgments": 3, "gold_accuracy_threshold": 0.6}
    )
    golds = [world.task(gold_answers={"removal_quality": {"best": 0, "worst": 1}}) for _ in range(8)]

    world.judge(ann, golds[0], removal((0, 1)), kind=SlotKind.GOLD)   # right
    world.judge(ann, golds[1], removal((2, 1)), kind=SlotKind.GOLD)   # wrong
    standing = quality.update_standing(ann)
    assert not standing.paused and standing.accuracy.total == 2       # 50 %, but only 2 gold picks
    world.judge(ann, golds[2], removal((0, 1)), kind=SlotKind.GOLD)   # right: 67 %
    assert not quality.update_standing(ann).paused
    world.judge(ann, golds[3], removal(D), kind=SlotKind.GOLD)        # wrong: 2 of 4 = 50 %
    standing = quality.update_standing(ann)
    assert standing.paused and standing.paused_now
    status = AnnotatorStatus.objects.get(user=ann)
    assert status.paused and "50%" in status.reason and "60%" in status.reason and "2 of 4" in status.reason
    with pytest.raises(AnnotatorPaused, match="50%"):
        next_slot(ann)
    again = quality.update_standing(ann)
    assert again.paused and not again.paused_now and AnnotatorStatus.objects.get(user=ann).reason == status.reason

    # An admin unpauses: only gold judgments after that count toward pausing again.
    assert unpause(status, annotators[5])
    assert not quality.update_standing(ann).paused
    world.judge(ann, golds[4], removal((1, 0)), kind=SlotKind.GOLD)
    world.judge(ann, golds[5], removal((1, 0)), kind=SlotKind.GOLD)
    assert not quality.update_standing(ann).paused
    world.judge(ann, golds[6], removal((1, 0)), kind=SlotKind.GOLD)
    standing = quality.update_standing(ann)
    assert standing.paused and standing.accuracy.total == 3 and standing.accuracy.correct == 0

    for gold in golds[:5]:
        world.judge(good, gold, removal((0, 1)), kind=SlotKind.GOLD)
    assert not quality.update_standing(good).paused
    assert not AnnotatorStatus.objects.filter(user=good).exists()


# --- the admin pages ------------------------------------------------------------------------------


QC_URL = "/admin/annotation/annotationtask/quality/"


def busy_world(world, users):
    """Every kind of judgment for every user: gold, repeat, regular on shared tasks."""
    gold = world.task("image_fill", gold_answers={slug: {"best": 0, "worst": 1} for slug in FILL})
    shared = [world.task("image_fill") for _ in range(2)]
    for i, user in enumerate(users):
        picks = {slug: ((i + j) % N, (i + j + 1) % N) for j, slug in enumerate(FILL)}
        world.judge(user, gold, picks, kind=SlotKind.GOLD, dwell_ms=3000 + i)
        for task in shared:
            world.judge(user, task, picks, dwell_ms=9000)
        world.judge(user, shared[0], {**picks, "structure": D}, kind=SlotKind.REPEAT, order=(1, 2, 3, 0))
    AnnotatorStatus.objects.create(user=users[0], paused=True, reason="Paused automatically: gold accuracy 10%")


def test_quality_page_for_an_admin(client, make_user, world, annotators):
    busy_world(world, annotators[:3])
    client.force_login(make_user("boss", "admin"))
    response = client.get(QC_URL)
    assert response.status_code == 200
    html = response.content.decode()
    for name in ("annotator1", "annotator2", "annotator3"):
        assert f'data-annotator="{name}"' in html
    assert "<svg" in html and "threshold 60%" in html and "Screen position of picks" in html
    assert 'class="qc-unpause"' in html and "Edit the settings" in html
    assert "Image fill" in html and f'data-batch="{world.batch.pk}"' in html
    assert client.get(QC_URL + "?period=7").status_code == 200
    # The change list links to it.
    assert QC_URL in client.get("/admin/annotation/annotationtask/").content.decode()

    # Unpausing from the page.
    paused = annotators[0]
    response = client.post(f"{QC_URL}unpause/{paused.pk}/", {"period": "all"})
    assert response.status_code == 302
    status = AnnotatorStatus.objects.get(user=paused)
    assert not status.paused and status.reason.startswith("Unpaused by boss")


def test_quality_page_for_an_ml_engineer_has_no_edit_controls(client, make_user, world, annotators):
    busy_world(world, annotators[:2])
    client.force_login(make_user("engineer", "ml_engineer"))
    response = client.get(QC_URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-annotator="annotator1"' in html and "<svg" in html
    assert 'class="qc-unpause"' not in html and "Edit the settings" not in html and "View the settings" in html
    assert client.post(f"{QC_URL}unpause/{annotators[0].pk}/").status_code == 403
    assert AnnotatorStatus.objects.get(user=annotators[0]).paused
    task = AnnotationTask.objects.filter(is_gold=False).first()
    assert client.get(f"/admin/annotation/annotationtask/{task.pk}/gold/").status_code == 403
    change = client.get(f"/admin/annotation/annotationtask/{task.pk}/change/").content.decode()
    assert "Mark as gold" not in change
    settings_page = client.get("/admin/annotation/qualitycontrolsettings/1/change/")
    assert settings_page.status_code == 200 and 'name="gold_rate"' not in settings_page.content.decode()


def test_annotators_never_reach_the_quality_page(client, annotators):
    client.force_login(annotators[0])
    response = client.get(QC_URL)
    assert response.status_code == 302 and "/login/" in response["Location"]


def gold_post(**answers):
    data = {}
    for slug, answer in answers.items():
        if answer == D:
            data[f"{slug}-discarded"] = "on"
        elif answer is not None:
            for side, value in zip(("best", "worst"), answer):
                if value is not None:
                    data[f"{slug}-{side}"] = value
    return data


def test_marking_a_task_gold(client, make_user, world):
    client.force_login(make_user("boss", "admin"))
    task = world.task("image_fill")
    url = f"/admin/annotation/annotationtask/{task.pk}/gold/"
    page = client.get(url)
    assert page.status_code == 200
    for candidate in task.candidate_set.candidates.all():
        assert f"/candidates/{candidate.public_id}/thumbnail.img" in page.content.decode()

    response = client.post(url, gold_post(text_alignment=(0, 3), consistency=(1, 2), structure=D, aesthetics=(2, 2)),
                           follow=True)
    assert response.status_code == 200
    assert "Aesthetics: the best and the worst must be different candidates." in [
        str(m) for m in response.context["messages"]
    ]
    task.refresh_from_db()
    assert not task.is_gold and task.gold_answers == {}

    response = client.post(url, gold_post(text_alignment=(0, 3), consistency=(1, None), structure=D))
    text = response.content.decode()
    assert "Consistency: pick both the best and the worst" in text and "Aesthetics: pick both" in text
    response = client.post(url, {**gold_post(text_alignment=(0, 3), consistency=(1, 2), aesthetics=(2, 0)),
                                 "structure-discarded": "on", "structure-best": "1"})
    assert "no clear difference cannot also name a best or a worst" in response.content.decode()
    task.refresh_from_db()
    assert not task.is_gold

    response = client.post(url, gold_post(text_alignment=(0, 3), consistency=(1, 2), structure=D, aesthetics=(2, 0)))
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.is_gold
    assert task.gold_answers == {"text_alignment": {"best": 0, "worst": 3}, "consistency": {"best": 1, "worst": 2},
                                 "structure": {"discarded": True}, "aesthetics": {"best": 2, "worst": 0}}
    change = client.get(f"/admin/annotation/annotationtask/{task.pk}/change/").content.decode()
    assert "best #0, worst #3" in change and "no clear difference" in change and "Edit the gold answers" in change

    client.post(f"/admin/annotation/annotationtask/{task.pk}/gold/remove/")
    task.refresh_from_db()
    assert not task.is_gold and task.gold_answers["structure"] == {"discarded": True}


def test_annotator_status_action_and_single_settings_row(client, make_user, annotators):
    client.force_login(make_user("boss", "admin"))
    statuses = [
        AnnotatorStatus.objects.create(user=user, paused=True, reason="low gold accuracy") for user in annotators[:2]
    ]
    response = client.post("/admin/annotation/annotatorstatus/", {
        "action": "unpause_selected", "_selected_action": [s.pk for s in statuses]})
    assert response.status_code == 302
    assert not AnnotatorStatus.objects.filter(paused=True).exists()
    assert (
        client.get("/admin/annotation/qualitycontrolsettings/").url
        == "/admin/annotation/qualitycontrolsettings/1/change/"
    )
    assert client.get("/admin/annotation/qualitycontrolsettings/add/").status_code == 403
    response = client.post("/admin/annotation/qualitycontrolsettings/1/change/", {
        "gold_rate": "1.5", "repeat_share": "0.05", "lease_minutes": "20", "fast_pick_ms": "1500",
        "gold_accuracy_threshold": "0.7", "gold_min_judgments": "5"})
    assert response.status_code == 200 and "a share lies between 0 and 1" in response.content.decode()


def test_quality_page_queries_do_not_grow_with_annotators(client, make_user, world, annotators):
    client.force_login(make_user("boss", "admin"))
    busy_world(world, annotators[:2])
    client.get(QC_URL)  # first request of the test: session and permission caches fill
    with CaptureQueriesContext(connection) as two:
        assert client.get(QC_URL).status_code == 200
    busy_world(world, annotators[2:6])
    with CaptureQueriesContext(connection) as six:
        response = client.get(QC_URL)
    assert response.status_code == 200 and 'data-annotator="annotator6"' in response.content.decode()
    assert len(six) == len(two), [q["sql"][:120] for q in six.captured_queries]
