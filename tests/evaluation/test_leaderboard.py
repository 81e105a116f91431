"""The generator leaderboard over study picks in the database: the outcomes a pick gives, the
ordering per task and dimension and pooled, and the admin page and API with their permissions."""
import itertools
import uuid

import numpy as np
import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from evaluation import leaderboard as board
from evaluation.models import (
    Study,
    StudyArm,
    StudyCandidate,
    StudyItem,
    StudyJudgment,
    StudyPick,
    StudySlot,
    StudySlotState,
)
from evaluation.studies import study_outcomes
from generation.models import Candidate, CandidateSet, GenerationBatch, Generator, SetStatus
from inputs.models import Dimension, Input, Task
from onereward.jobs import JobStatus

pytestmark = pytest.mark.django_db

PAGE = "/admin/evaluation/study/leaderboard/"
API = "/api/leaderboard/"


class StudyWorld:
    """A study built straight in the database: generators, one evaluation batch per generator (an
    arm each), items over held-out inputs with one candidate per arm, judgments with picks."""

    def __init__(self, generators, task="image_fill", name="study"):
        self._numbers = itertools.count()
        self.task = Task.objects.get(slug=task)
        self.study = Study.objects.create(name=name)
        self.generators = {g: Generator.objects.get_or_create(name=g, defaults={"backend": "cpu_baseline"})[0]
                           for g in generators}
        self.arms = {}
        for order, (label, generator) in enumerate(self.generators.items()):
            batch = GenerationBatch.objects.create(name=f"{name} {label}", generator=generator, candidates_per_input=1,
                                                   status=JobStatus.DONE, for_annotation=False)
            self.arms[label] = StudyArm.objects.create(study=self.study, batch=batch, label=label, order=order)

    def item(self):
        number = next(self._numbers)
        item_input = Input.objects.create(
            task=self.task, prompt="a red bicycle", source=f"inputs/{self.study.pk}-{number}.png",
            mask=f"inputs/{self.study.pk}-{number}-mask.png", width=64, height=48, mask_coverage=0.2,
            content_hash=f"{self.study.pk:032d}{number:032d}")
        item = StudyItem.objects.create(study=self.study, input=item_input)
        shown = {}
        for label, arm in self.arms.items():
            candidate_set = CandidateSet.objects.create(batch=arm.batch, input=item_input, status=SetStatus.DONE)
            candidate = Candidate.objects.create(
                candidate_set=candidate_set,
                index=0,
                image=f"c/{candidate_set.pk}.png",
                thumbnail=f"c/{candidate_set.pk}.jpg",
                settings={},
                seconds=0,
            )
            shown[label] = StudyCandidate.objects.create(item=item, arm=arm, candidate=candidate)
        item.shown = shown
        return item

    def judge(self, item, annotator, picks):
        """picks: {dimension slug: (best arm label, worst arm label) or None for no clear difference}."""
        order = [c.pk for c in item.shown.values()]
        slot = StudySlot.objects.create(item=item, annotator=annotator, state=StudySlotState.DONE, shown_order=order)
        judgment = StudyJudgment.objects.create(slot=slot, item=item, annotator=annotator, shown_order=order,
                                                submission_id=uuid.uuid4(), dwell_ms=4000)
        StudyPick.objects.bulk_create([
            StudyPick(judgment=judgment, dimension=Dimension.objects.get(slug=slug), discarded=True) if pick is None
            else StudyPick(judgment=judgment, dimension=Dimension.objects.get(slug=slug), best=item.shown[pick[0]],
                           worst=item.shown[pick[1]])
            for slug, pick in picks.items()
        ])
        return judgment


@pytest.fixture
def annotators(make_user):
    return [make_user(f"rater{i}", "annotator") for i in range(3)]


def outcome_names(rows):
    names = dict(Generator.objects.values_list("pk", "name"))
    return sorted((task, dimension, names[winner], names[loser]) for task, dimension, _, winner, loser in rows)


def test_a_pick_beats_everything_from_the_best_and_everything_beats_the_worst(annotators):
    world = StudyWorld(["a", "b", "c", "d"])
    item = world.item()
    world.judge(item, annotators[0], {"aesthetics": ("b", "d"), "structure": None})
    rows = list(study_outcomes())
    assert {row[2] for row in rows} == {item.pk}
    # Best over the three others, the two in the middle over the worst: 2n - 3 outcomes, nothing
    # between the middle two, nothing from "no clear difference".
    assert outcome_names(rows) == [
        ("image_fill", "aesthetics", "a", "d"),
        ("image_fill", "aesthetics", "b", "a"),
        ("image_fill", "aesthetics", "b", "c"),
        ("image_fill", "aesthetics", "b", "d"),
        ("image_fill", "aesthetics", "c", "d"),
    ]
    two_arms = StudyWorld(["x", "y"], task="object_removal", name="removal")
    item = two_arms.item()
    two_arms.judge(item, annotators[0], {"removal_quality": ("y", "x")})
    assert outcome_names(study_outcomes("object_removal")) == [("object_removal", "removal_quality", "y", "x")]
    assert len(list(study_outcomes("image_fill"))) == 5


def simulated_study(annotators, strengths, items=60, seed=0, dimensions=("aesthetics", "structure"), task="image_fill",
                    name="study"):
    """Per item and annotator and dimension: a best and a worst drawn from the generators' strengths
    (Plackett-Luce: best with probability proportional to strength, then worst likewise inverted).
    strengths: {dimension: {generator: log-strength}}."""
    rng = np.random.default_rng(seed)
    labels = list(next(iter(strengths.values())))
    world = StudyWorld(labels, task=task, name=name)
    for _ in range(items):
        item = world.item()
        for annotator in annotators:
            picks = {}
            for dimension in dimensions:
                weights = np.exp([strengths[dimension][label] for label in labels])
                best = rng.choice(len(labels), p=weights / weights.sum())
                rest = [i for i in range(len(labels)) if i != best]
                inverse = 1 / weights[rest]
                worst = rest[rng.choice(len(rest), p=inverse / inverse.sum())]
                picks[dimension] = (labels[best], labels[worst])
            world.judge(item, annotator, picks)
    return world


STRENGTHS = {
    "aesthetics": {"base": -0.8, "rl-step-4k": 0.0, "rl-step-8k": 0.8},
    "structure": {"base": 0.6, "rl-step-4k": 0.0, "rl-step-8k": -0.6},
}


def test_leaderboard_orders_generators_per_dimension_and_pooled(annotators):
    simulated_study(annotators, STRENGTHS, items=60)
    tables = board.leaderboard(n_resamples=200, seed=3)
    assert [(t.task_slug, t.dimension_slug) for t in tables] == [
        ("image_fill", "all"), ("image_fill", "structure"), ("image_fill", "aesthetics")]  # the task's own order
    pooled, structure, aesthetics = tables
    assert pooled.pooled and pooled.dimension_name == "All dimensions"
    assert [r.generator for r in aesthetics.rows] == ["rl-step-8k", "rl-step-4k", "base"]
    assert [r.generator for r in structure.rows] == ["base", "rl-step-4k", "rl-step-8k"]
    for table in tables:
        assert [r.rank for r in table.rows] == [1, 2, 3]
        assert table.items == 60 and table.n_resamples == 200
        scores = [r.score for r in table.rows]
        assert scores == sorted(scores, reverse=True) and abs(sum(scores)) < 1e-9
        for r in table.rows:
            assert r.ci_low <= r.score <= r.ci_high
            assert r.comparisons == r.wins + r.losses
    # Three generators: 3 outcomes per pick; 60 items x 3 annotators per dimension.
    assert aesthetics.outcomes == structure.outcomes == 3 * 60 * 3 and pooled.outcomes == 2 * 3 * 60 * 3
    assert sum(r.wins for r in aesthetics.rows) == aesthetics.outcomes
    # The clear winner on aesthetics is clearly ahead: intervals apart.
    assert aesthetics.rows[0].ci_low > aesthetics.rows[2].ci_high
    # Same seed, same intervals; filters pick tables.
    assert board.leaderboard(n_resamples=200, seed=3) == tables
    only = board.leaderboard(task="image_fill", dimension="aesthetics", n_resamples=50)
    assert [(t.dimension_slug, [r.generator for r in t.rows]) for t in only] == [
        ("aesthetics", ["rl-step-8k", "rl-step-4k", "base"])]
    assert [t.dimension_slug for t in board.leaderboard(dimension=board.ALL_DIMENSIONS, n_resamples=20)] == ["all"]
    assert board.leaderboard(task="object_removal") == []


def test_generators_meet_across_studies_and_tasks(annotators):
    """A policy checkpoint compared with the base in one study and with a later checkpoint in
    another: one table places all three; another task gets a table of its own."""
    simulated_study(annotators, {"aesthetics": {"base": -0.7, "ckpt-1": 0.7}}, items=40, dimensions=["aesthetics"],
                    name="first")
    simulated_study(annotators, {"aesthetics": {"ckpt-1": -0.7, "ckpt-2": 0.7}}, items=40, dimensions=["aesthetics"],
                    seed=1, name="second")
    simulated_study(annotators[:1], {"removal_quality": {"base": 0.5, "ckpt-2": -0.5}}, items=20,
                    dimensions=["removal_quality"], task="object_removal", name="removal")
    tables = {(t.task_slug, t.dimension_slug): t for t in board.leaderboard(n_resamples=100)}
    assert set(tables) == {("image_fill", "all"), ("image_fill", "aesthetics"), ("object_removal", "all"),
                           ("object_removal", "removal_quality")}
    assert [r.generator for r in tables["image_fill", "aesthetics"].rows] == ["ckpt-2", "ckpt-1", "base"]
    assert tables["image_fill", "aesthetics"].items == 80
    assert [r.generator for r in tables["object_removal", "removal_quality"].rows] == ["base", "ckpt-2"]


# --- the admin page and the API ------------------------------------------------------------------


def test_ml_engineer_sees_the_leaderboard_page(client, make_user, annotators):
    simulated_study(annotators, STRENGTHS, items=20)
    client.force_login(make_user("engineer", "ml_engineer"))
    response = client.get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('<table class="lb-table">') == 3 and html.count('<svg class="lb-chart"') == 3
    for name in ("base", "rl-step-4k", "rl-step-8k"):
        assert f'data-generator="{name}"' in html
    assert 'id="image_fill-aesthetics"' in html and "95% interval" in html
    response = client.get(PAGE, {"task": "image_fill", "dimension": "structure"})
    html = response.content.decode()
    assert html.count('<table class="lb-table">') == 1 and 'id="image_fill-structure"' in html
    assert "No study picks yet" in client.get(PAGE, {"task": "object_removal"}).content.decode()
    # The annotation tasks' change list links to it, next to the quality-control page.
    assert PAGE in client.get("/admin/annotation/annotationtask/").content.decode()


def test_platform_admin_sees_the_page_and_annotators_never_reach_it(client, make_user, annotators):
    client.force_login(make_user("boss", "admin"))
    assert client.get(PAGE).status_code == 200
    client.force_login(annotators[0])
    response = client.get(PAGE)
    assert response.status_code == 302 and "/login/" in response["Location"]
    client.logout()
    assert client.get(PAGE).status_code == 302


def api_for(user):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return api


def test_api_returns_the_tables_to_ml_engineers_and_admins(make_user, annotators):
    simulated_study(annotators, STRENGTHS, items=20)
    engineer = api_for(make_user("engineer", "ml_engineer"))
    response = engineer.get(API, {"task": "image_fill", "dimension": "aesthetics", "resamples": 100})
    assert response.status_code == 200
    tables = response.json()["tables"]
    assert len(tables) == 1
    table = tables[0]
    assert (table["task"], table["dimension"], table["n_resamples"], table["level"]) == (
        "image_fill",
        "aesthetics",
        100,
        0.95,
    )
    assert [row["generator"] for row in table["rows"]] == ["rl-step-8k", "rl-step-4k", "base"]
    assert set(table["rows"][0]) == {"rank", "generator_id", "generator", "score", "ci_low", "ci_high", "rating",
                                     "rating_low", "rating_high", "wins", "losses", "comparisons"}
    everything = engineer.get(API).json()["tables"]
    assert [(t["task"], t["dimension"]) for t in everything] == [
        ("image_fill", "all"), ("image_fill", "structure"), ("image_fill", "aesthetics")]
    point_only = engineer.get(API, {"dimension": "all", "resamples": 0}).json()["tables"][0]["rows"][0]
    assert point_only["ci_low"] is None and point_only["score"] is not None
    assert api_for(make_user("boss", "admin")).get(API).status_code == 200
    refused = engineer.get(API, {"task": "no_such_task", "dimension": "sparkle"})
    assert refused.status_code == 400 and set(refused.json()) == {"task", "dimension"}


def test_api_refuses_annotators_and_anonymous_callers(annotators):
    assert api_for(annotators[0]).get(API).status_code == 403
    assert APIClient().get(API).status_code in (401, 403)


def test_api_schema_lists_the_leaderboard(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200 and b"/api/leaderboard/" in response.content


@pytest.mark.parametrize("picks", [
    # Every pick "no clear difference"; two generators exactly tied; one generator winning every time.
    [{"aesthetics": None, "structure": None}] * 3,
    [{"aesthetics": ("a", "b"), "structure": None}, {"aesthetics": ("b", "a"), "structure": None}],
    [{"aesthetics": ("a", "b"), "structure": ("a", "b")}] * 4,
])
def test_the_leaderboard_page_renders_ties_and_one_sided_studies(client, make_user, annotators, picks):
    world = StudyWorld(["a", "b"])
    for number, pick in enumerate(picks):
        world.judge(world.item(), annotators[number % len(annotators)], pick)
    client.force_login(make_user("engineer", "ml_engineer"))
    response = client.get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-generator="a"' in html or "No study picks yet" in html
    assert api_for(make_user("engineer2", "ml_engineer")).get(API, {"resamples": 50}).status_code == 200
