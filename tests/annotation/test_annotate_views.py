"""The annotator's workspace over HTTP: the task fragment, images by screen position, judgments and
skips; nothing about candidates, generators or other annotators reaches the page; query counts stay
flat whatever the number of candidates or tasks. Candidates are made in-process (no worker)."""
import json
import uuid

import pytest
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from annotation.models import (
    AnnotationTask,
    AnnotatorStatus,
    DimensionPick,
    Judgment,
    QualityControlSettings,
    Skip,
    Slot,
)
from generation.execution import generate_set
from generation.models import Candidate, CandidateSet, GenerationBatch, Generator
from inputs.importing import InputSpec, import_inputs
from onereward.jobs import JobStatus
from tests.conftest import box_mask, photo, png_bytes

GENERATOR_NAME = "Zephyr-Inpaint-7"
BATCH_NAME = "Batch Quokka"
OTHER = "marguerite_other"

# --- a small world: inputs, a generator, a batch generated in-process ---------------------------------


def synthetic_specs(count: int, first_seed: int = 0) -> list[InputSpec]:
    return [
        InputSpec(entry=f"synthetic {seed}", task="image_fill", source=png_bytes(photo(96, 64, seed=seed)),
                  source_name=f"photo{seed}.png", mask=png_bytes(box_mask(96, 64, (24, 16, 64, 44))),
                  mask_name=f"photo{seed}_mask.png", prompt="a red apple on the table")
        for seed in range(first_seed, first_seed + count)
    ]


def no_gold_or_repeats():
    """Hand-outs without the random gold/repeat mix-in, so every test sees the same queue."""
    settings = QualityControlSettings.current()
    settings.gold_rate = settings.repeat_share = 0.0
    settings.save()


def build_batch(items, n: int, overlap: int = 1, name: str = BATCH_NAME) -> GenerationBatch:
    """A batch of n candidates per input, generated synchronously; each finished set becomes an
    annotation task (generate_set does that)."""
    generator, _ = Generator.objects.get_or_create(
        name=GENERATOR_NAME, defaults={"backend": "cpu_baseline", "settings": {}}
    )
    batch = GenerationBatch.objects.create(
        name=name,
        generator=generator,
        candidates_per_input=n,
        seed=4242,
        annotation_overlap=overlap,
        progress_total=len(items),
        status=JobStatus.RUNNING,
    )
    sets = [CandidateSet.objects.create(batch=batch, input=item) for item in items]
    for candidate_set in sets:
        generate_set(candidate_set.pk, worker="test")
    assert AnnotationTask.objects.filter(candidate_set__batch=batch).count() == len(items)
    return batch


def build_world(n: int = 4, inputs: int = 2, overlap: int = 1, specs=None) -> GenerationBatch:
    no_gold_or_repeats()
    return build_batch(import_inputs(specs or synthetic_specs(inputs)), n, overlap)


def forbidden_strings(batch_names=(BATCH_NAME,), others=(OTHER,)) -> list[str]:
    """What the annotator's pages and responses must never contain."""
    words = [GENERATOR_NAME, "seed", *batch_names, *others]
    for public_id in Candidate.objects.values_list("public_id", flat=True):
        words += [str(public_id), public_id.hex]
    return words


def assert_no_leak(text: str, words):
    lowered = text.lower()
    for word in words:
        assert word.lower() not in lowered, f"{word!r} reached the annotator"


def response_text(response) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in response.items())
    body = b"" if response.streaming else response.content
    content_type = response.get("Content-Type", "")
    return headers + ("\n" + body.decode() if content_type.startswith(("text/", "application/json")) else "")


def judgment_body(slot: Slot, **override) -> dict:
    """A valid judgment for every judged dimension: best = leftmost, worst = rightmost."""
    dimensions = slot.task.candidate_set.input.judged_dimensions()
    last = len(slot.shown_order) - 1
    body = {"submission_id": str(uuid.uuid4()), "dwell_ms": 5200,
            "picks": {d.slug: {"best": 0, "worst": last} for d in dimensions}}
    body.update(override)
    return body


def post_json(client, url, body):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json")


def leased(user) -> Slot:
    return Slot.objects.select_related("task__candidate_set__input__task").get(annotator=user, state="leased")


@pytest.fixture
def annotator(client, make_user):
    user = make_user("ann", "annotator")
    client.force_login(user)
    return user


# --- the page and the fragment ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_page_shows_counts_keys_and_the_current_task(client, annotator):
    build_world(n=4, inputs=3)
    response = client.get("/annotate/")
    assert response.status_code == 200
    html = response.content.decode()
    slot = leased(annotator)
    assert 'id="ann-done">0<' in html
    assert 'id="ann-pool">2<' in html  # three tasks, one leased to us now
    for key in ("Shift", "Enter", "Tab", "flick", "no clear difference", "zoom"):
        assert key in html
    assert f'data-slot="{slot.pk}"' in html
    assert "annotation/annotate.js" in html and "annotation/annotate.css" in html
    # A reload resumes the same lease instead of taking another task.
    assert f'data-slot="{slot.pk}"' in client.get("/annotate/").content.decode()
    assert Slot.objects.filter(annotator=annotator).count() == 1


@pytest.mark.django_db
def test_the_fragment_shows_the_candidates_by_position_and_the_dimensions(client, annotator):
    build_world(n=5, inputs=1)
    response = client.get("/annotate/task/")
    assert response.status_code == 200
    html = response.content.decode()
    slot = leased(annotator)
    item = slot.task.candidate_set.input
    assert html.count('class="ann-tile ann-candidate"') == 5
    for position in range(5):
        assert f'src="/annotate/slots/{slot.pk}/candidates/{position}.img"' in html
        assert f'<kbd class="ann-number">{position + 1}</kbd>' in html
    assert f"/annotate/slots/{slot.pk}/candidates/5.img" not in html
    assert f'src="/annotate/slots/{slot.pk}/source.img"' in html and f"/annotate/slots/{slot.pk}/mask.img" in html
    assert item.task.name in html and item.effective_prompt in html
    for dimension in item.judged_dimensions():
        assert f'data-slug="{dimension.slug}"' in html and dimension.name in html and dimension.definition in html
    assert "<html" not in html  # a fragment, not a page


@pytest.mark.django_db
def test_the_page_names_its_images_links_a_favicon_and_is_sent_with_a_content_security_policy(client, annotator):
    build_world(n=3, inputs=1)
    response = client.get("/annotate/")
    html = response.content.decode()
    slot = leased(annotator)
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "unsafe-eval" not in policy
    assert "unsafe-inline" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    assert '<link rel="icon" href="/static/favicon.svg"' in html
    assert 'name="htmx-config" content=\'{"includeIndicatorStyles": false, "allowEval": false}\'' in html
    # What each image is; the mask reaches the page as an address the page traces, not as a style.
    assert 'alt="Source image"' in html
    for number in (1, 2, 3):
        assert f'alt="Candidate {number}"' in html
    assert f'data-mask="/annotate/slots/{slot.pk}/mask.img"' in html
    assert " style=" not in html and "<script>" not in html and " onclick=" not in html
    assert 'data-action="outlines"' in html and "<kbd>O</kbd>" in html
    fragment = client.get(f"/annotate/task/?after={slot.pk}")
    assert fragment.status_code == 200 and "Content-Security-Policy" in fragment


@pytest.mark.django_db
def test_the_fragment_after_the_current_task_is_the_next_one(client, annotator):
    build_world(n=3, inputs=2)
    client.get("/annotate/")
    first = leased(annotator)
    html = client.get(f"/annotate/task/?after={first.pk}").content.decode()
    second = Slot.objects.get(annotator=annotator, state="leased", assigned_at__gt=first.assigned_at)
    assert f'data-slot="{second.pk}"' in html and second.task_id != first.task_id
    # Both leases are ours; a reload shows the older one first, the prefetch the other.
    assert f'data-slot="{first.pk}"' in client.get("/annotate/task/").content.decode()
    assert f'data-slot="{second.pk}"' in client.get(f"/annotate/task/?after={first.pk}").content.decode()
    assert f'data-slot="{first.pk}"' in client.get(f"/annotate/task/?after={second.pk}").content.decode()
    # A mangled `after` is no slot: the page answers as without one, never a server error.
    for mangled in ("²", "-1", "9" * 30, "1e3"):
        response = client.get("/annotate/task/", {"after": mangled})
        assert response.status_code == 200 and f'data-slot="{first.pk}"' in response.content.decode()


@pytest.mark.django_db
def test_no_more_tasks_and_paused_fragments(client, annotator):
    html = client.get("/annotate/task/").content.decode()
    assert 'data-state="empty"' in html and "No task for you right now" in html and 'hx-trigger="every 30s"' in html
    AnnotatorStatus.objects.create(user=annotator, paused=True, reason="gold accuracy 40 % is under 60 %")
    html = client.get("/annotate/task/").content.decode()
    assert 'data-state="paused"' in html and "gold accuracy 40 % is under 60 %" in html
    assert "gold accuracy" in client.get("/annotate/").content.decode()


@pytest.mark.django_db
def test_who_may_use_the_workspace(client, make_user):
    build_world(n=2, inputs=1)
    assert client.get("/annotate/task/").status_code == 302  # to the login page
    response = post_json(client, "/annotate/slots/1/judgment", {})
    assert response.status_code == 401 and "signed out" in response.json()["error"]
    client.force_login(make_user("eng", "ml_engineer"))
    assert client.get("/annotate/").status_code == 403
    assert client.get("/annotate/task/").status_code == 403
    assert post_json(client, "/annotate/slots/1/skip", {}).status_code == 403
    assert not Slot.objects.filter(annotator__isnull=False).exists()


# --- images ---------------------------------------------------------------------------------------


def stored_bytes(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()


def streamed(response) -> bytes:
    return b"".join(response.streaming_content)


@pytest.mark.django_db
def test_images_by_screen_position_for_the_own_slot_only(client, annotator, make_user):
    build_world(n=4, inputs=2)
    client.get("/annotate/")
    slot = leased(annotator)
    candidates = {c.index: c for c in slot.task.candidate_set.candidates.all()}
    for position, index in enumerate(slot.shown_order):
        response = client.get(f"/annotate/slots/{slot.pk}/candidates/{position}.img")
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
        assert streamed(response) == stored_bytes(candidates[index].image.name)
        assert response["Content-Disposition"] == f'inline; filename="candidate-{position + 1}.png"'
    item = slot.task.candidate_set.input
    assert streamed(client.get(f"/annotate/slots/{slot.pk}/source.img")) == stored_bytes(item.source.name)
    assert streamed(client.get(f"/annotate/slots/{slot.pk}/mask.img")) == stored_bytes(item.mask.name)
    assert client.get(f"/annotate/slots/{slot.pk}/candidates/4.img").status_code == 404
    assert client.get(f"/annotate/slots/{slot.pk}/thumbnail.img").status_code == 404

    # Another annotator's slot, and a slot nobody holds, are not there for us.
    other = make_user(OTHER, "annotator")
    other_client = Client()
    other_client.force_login(other)
    other_client.get("/annotate/")
    theirs = leased(other)
    free = Slot.objects.create(task=theirs.task, kind="gold")
    for slot_id in (theirs.pk, free.pk, 999999):
        assert client.get(f"/annotate/slots/{slot_id}/source.img").status_code == 404
        assert client.get(f"/annotate/slots/{slot_id}/candidates/0.img").status_code == 404
    # A judged slot stays viewable by the one who judged it.
    assert post_json(client, f"/annotate/slots/{slot.pk}/judgment", judgment_body(slot)).status_code == 201
    assert client.get(f"/annotate/slots/{slot.pk}/candidates/0.img").status_code == 200


# --- judgments ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_judgment_is_stored_once_and_mapped_through_the_shown_order(client, annotator):
    build_world(n=4, inputs=2)
    client.get("/annotate/")
    slot = leased(annotator)
    dimensions = slot.task.candidate_set.input.judged_dimensions()
    picks = {d.slug: {"best": 2, "worst": 0} for d in dimensions}
    picks[dimensions[1].slug] = {"discarded": True}
    body = {"submission_id": str(uuid.uuid4()), "dwell_ms": 8100, "picks": picks}
    url = f"/annotate/slots/{slot.pk}/judgment"

    first = post_json(client, url, body)
    assert (first.status_code, first.json()) == (201, {"ok": True})
    retry = post_json(client, url, body)
    assert (retry.status_code, retry.json()) == (200, {"ok": True})

    judgment = Judgment.objects.get()
    assert (judgment.slot_id, judgment.annotator, judgment.dwell_ms) == (slot.pk, annotator, 8100)
    assert judgment.shown_order == slot.shown_order
    by_slug = {p.dimension.slug: p for p in judgment.picks.select_related("dimension", "best", "worst")}
    assert by_slug[dimensions[1].slug].discarded and by_slug[dimensions[1].slug].best is None
    pick = by_slug[dimensions[0].slug]
    assert (pick.best.index, pick.worst.index) == (slot.shown_order[2], slot.shown_order[0])
    assert (pick.best_position, pick.worst_position) == (2, 0)
    slot.refresh_from_db()
    assert slot.state == "done"
    assert 'id="ann-done">1<' in client.get("/annotate/").content.decode()


def _missing_dimension(slot):
    body = judgment_body(slot)
    body["picks"].pop(next(iter(body["picks"])))
    return body


def _same_best_and_worst(slot):
    body = judgment_body(slot)
    body["picks"][next(iter(body["picks"]))] = {"best": 1, "worst": 1}
    return body


def _out_of_range(slot):
    body = judgment_body(slot)
    body["picks"][next(iter(body["picks"]))] = {"best": 0, "worst": len(slot.shown_order)}
    return body


def _unknown_dimension(slot):
    body = judgment_body(slot)
    body["picks"]["removal_quality"] = {"best": 0, "worst": 1}
    return body


def _discarded_with_best(slot):
    body = judgment_body(slot)
    body["picks"][next(iter(body["picks"]))] = {"discarded": True, "best": 0}
    return body


INVALID = [
    ("missing dimension", _missing_dimension, "missing: "),
    ("best equals worst", _same_best_and_worst, "must be different"),
    ("position out of range", _out_of_range, "must be one of this task's candidates (1-4)"),
    ("unknown dimension", _unknown_dimension, "removal_quality is not judged for this task"),
    ("discarded with a best", _discarded_with_best, "cannot also name"),
    ("malformed JSON", lambda slot: '{"submission_id": ', "must be a JSON object"),
    ("not an object", lambda slot: "[1, 2]", "must be a JSON object"),
    ("no submission id", lambda slot: judgment_body(slot, submission_id="nope"), "not a UUID"),
    ("negative dwell", lambda slot: judgment_body(slot, dwell_ms=-5), "dwell_ms"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("make_body,message", [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_an_invalid_judgment_is_refused_with_its_reason_and_nothing_is_stored(client, annotator, make_body, message):
    build_world(n=4, inputs=1)
    client.get("/annotate/")
    slot = leased(annotator)
    response = post_json(client, f"/annotate/slots/{slot.pk}/judgment", make_body(slot))
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert not Judgment.objects.exists() and not DimensionPick.objects.exists()
    slot.refresh_from_db()
    assert slot.state == "leased"


@pytest.mark.django_db
def test_a_judgment_for_a_slot_not_ours_or_already_judged_is_refused(client, annotator, make_user):
    build_world(n=3, inputs=2, overlap=2)
    client.get("/annotate/")
    mine = leased(annotator)
    other = make_user(OTHER, "annotator")
    other_client = Client()
    other_client.force_login(other)
    other_client.get("/annotate/")
    theirs = leased(other)

    response = post_json(client, f"/annotate/slots/{theirs.pk}/judgment", judgment_body(theirs))
    assert response.status_code == 400 and "not assigned to you" in response.json()["error"]
    response = post_json(client, "/annotate/slots/999999/judgment", judgment_body(mine))
    assert response.status_code == 400 and "no such task" in response.json()["error"]
    assert not Judgment.objects.exists()

    assert post_json(client, f"/annotate/slots/{mine.pk}/judgment", judgment_body(mine)).status_code == 201
    again = post_json(client, f"/annotate/slots/{mine.pk}/judgment", judgment_body(mine))  # a new submission id
    assert again.status_code == 400 and "already judged" in again.json()["error"]
    assert Judgment.objects.count() == 1 and DimensionPick.objects.count() == len(
        mine.task.candidate_set.input.judged_dimensions()
    )


@pytest.mark.django_db
def test_posts_need_the_csrf_token(make_user):
    build_world(n=2, inputs=1)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_user("ann", "annotator"))
    html = browser.get("/annotate/").content.decode()
    slot = Slot.objects.get(state="leased")
    url = f"/annotate/slots/{slot.pk}/judgment"
    body = json.dumps(judgment_body(slot))
    assert browser.post(url, body, content_type="application/json").status_code == 403
    token = html.split('data-csrf="', 1)[1].split('"', 1)[0]
    response = browser.post(url, body, content_type="application/json", headers={"X-CSRFToken": token})
    assert response.status_code == 201


# --- skips ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_skipped_task_goes_back_to_the_pool_and_is_not_offered_again(client, annotator):
    build_world(n=3, inputs=2)
    client.get("/annotate/")
    slot = leased(annotator)
    response = post_json(client, f"/annotate/slots/{slot.pk}/skip", {})
    assert (response.status_code, response.json()) == (200, {"ok": True})
    slot.refresh_from_db()
    assert (slot.state, slot.annotator) == ("open", None)
    assert Skip.objects.filter(annotator=annotator, task=slot.task).exists()
    assert client.get(f"/annotate/slots/{slot.pk}/source.img").status_code == 404
    again = post_json(client, f"/annotate/slots/{slot.pk}/skip", {})
    assert again.status_code == 400 and "not leased to you" in again.json()["error"]

    client.get(f"/annotate/task/?after={slot.pk}")
    assert leased(annotator).task_id != slot.task_id
    html = client.get("/annotate/task/?after=" + str(leased(annotator).pk)).content.decode()
    assert 'data-state="empty"' in html  # the skipped task is not offered again


# --- nothing leaks --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_nothing_about_candidates_generators_batches_or_other_annotators_reaches_the_page(
    client, annotator, make_user
):
    build_world(n=4, inputs=2, overlap=2)
    # Another annotator judges the same tasks first.
    other = make_user(OTHER, "annotator")
    other_client = Client()
    other_client.force_login(other)
    for _ in range(2):
        other_client.get("/annotate/")
        theirs = leased(other)
        assert (
            post_json(other_client, f"/annotate/slots/{theirs.pk}/judgment", judgment_body(theirs)).status_code == 201
        )

    texts = []
    page = client.get("/annotate/")
    slot = leased(annotator)
    fragment = client.get(f"/annotate/task/?after={slot.pk}")
    second = Slot.objects.get(annotator=annotator, state="leased", assigned_at__gt=slot.assigned_at)
    texts += [response_text(page), response_text(fragment)]
    for s in (slot, second):
        for url in [f"/annotate/slots/{s.pk}/source.img", f"/annotate/slots/{s.pk}/mask.img",
                    *[f"/annotate/slots/{s.pk}/candidates/{p}.img" for p in range(4)]]:
            response = client.get(url)
            assert response.status_code == 200
            texts.append(url + "\n" + response_text(response))
    texts.append(response_text(post_json(client, f"/annotate/slots/{slot.pk}/judgment", judgment_body(slot))))
    texts.append(response_text(post_json(client, f"/annotate/slots/{second.pk}/skip", {})))
    texts.append(response_text(client.get("/annotate/task/")))
    bad = judgment_body(slot)
    bad["picks"]["consistency"] = {"best": 3, "worst": 3}
    texts.append(response_text(post_json(client, f"/annotate/slots/{slot.pk}/judgment", bad)))

    words = forbidden_strings() + ["regular", "gold"]  # nor the slot's kind
    for text in texts:
        assert_no_leak(text, words)
    # The other annotator's picks are not in the page: only our own slot's positions are.
    assert "data-slot" in texts[0] and "is-best" not in texts[0]


# --- query counts ---------------------------------------------------------------------------------


def count_queries(call) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = call()
    assert response.status_code in (200, 201), response.content[:500]
    return len(queries)


@pytest.mark.django_db
def test_query_counts_do_not_grow_with_the_candidates_or_the_tasks(make_user):
    no_gold_or_repeats()
    two = build_batch(import_inputs(synthetic_specs(1, first_seed=10)), n=2, name="two")
    six = build_batch(import_inputs(synthetic_specs(1, first_seed=20)), n=6, name="six")

    def measure(username):
        user = make_user(username, "annotator")
        browser = Client()
        browser.force_login(user)
        browser.get("/")  # the session and the user are cached alike in every measurement
        cache.clear()  # and the pool count is recounted in every measurement
        fragment = count_queries(lambda: browser.get("/annotate/task/"))
        slot = leased(user)
        judged = count_queries(lambda: post_json(browser, f"/annotate/slots/{slot.pk}/judgment", judgment_body(slot)))
        return slot.task.candidate_set.batch_id, fragment, judged

    batch_a, fragment_2, judgment_2 = measure("first")   # takes the two-candidate task
    batch_b, fragment_6, judgment_6 = measure("second")  # the six-candidate one
    assert (batch_a, batch_b) == (two.pk, six.pk)
    assert fragment_2 == fragment_6
    assert judgment_2 == judgment_6

    # Twelve more tasks in the database change nothing.
    build_batch(import_inputs(synthetic_specs(12, first_seed=30)), n=6, name="many")
    _, fragment_many, judgment_many = measure("third")
    assert (fragment_many, judgment_many) == (fragment_6, judgment_6)


# The statements each annotator request runs, with the sessions in the shared cache (ONEREWARD_CACHE_URL,
# as production runs) and without it (sessions in the database). A new query fails here.
# Before: 16, 14, 6 and 12 with sessions in the database (the session, the user, two permission
# queries, the roles on every fragment, the slot read again after its lease, a lookup of the
# submission before the slot's lock).
CACHED_SESSIONS = {"page": 13, "fragment": 10, "image": 4, "judgment": 9}
DATABASE_SESSIONS = {name: count + 1 for name, count in CACHED_SESSIONS.items()}


def request_counts(username, make_user) -> dict:
    no_gold_or_repeats()
    build_batch(import_inputs(synthetic_specs(3, first_seed=60)), n=4, name=f"counted {username}")
    make_user(username, "annotator")
    browser = Client()
    # Through the login page, as a person signs in (django-axes checks the attempt).
    signed_in = browser.post("/accounts/login/", {"username": username, "password": "pass-for-tests-1"})
    assert signed_in.status_code == 302, signed_in.content[:300]
    browser.get("/")  # the same state before every count: signed in, session stored
    cache.delete("annotation:open-in-pool")
    user = browser.session["_auth_user_id"]
    counts = {"page": count_queries(lambda: browser.get("/annotate/"))}
    first = Slot.objects.get(annotator_id=user, state="leased")
    counts["fragment"] = count_queries(lambda: browser.get(f"/annotate/task/?after={first.pk}"))
    counts["image"] = count_queries(lambda: browser.get(f"/annotate/slots/{first.pk}/candidates/0.img"))
    slot = Slot.objects.select_related("task__candidate_set__input__task").get(pk=first.pk)
    body = judgment_body(slot)
    counts["judgment"] = count_queries(lambda: post_json(browser, f"/annotate/slots/{slot.pk}/judgment", body))
    return counts


def savepoints_free(counts: dict) -> dict:
    """Tests run inside a transaction: every atomic block adds a SAVEPOINT and its RELEASE, which
    outside tests are a BEGIN/COMMIT that Django does not log. Two blocks hand out a slot (page,
    fragment), two store a judgment."""
    blocks = {"page": 1, "fragment": 1, "image": 0, "judgment": 2}
    return {name: count - 2 * blocks[name] for name, count in counts.items()}


@pytest.mark.django_db
def test_queries_per_annotator_request_with_sessions_in_the_shared_cache(make_user, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": settings.CELERY_BROKER_URL, "KEY_PREFIX": "query-count-test"}}
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    try:
        assert savepoints_free(request_counts("counted_cached", make_user)) == CACHED_SESSIONS
    finally:
        cache.clear()


@pytest.mark.django_db
def test_queries_per_annotator_request_with_sessions_in_the_database(make_user, settings):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    assert savepoints_free(request_counts("counted_db", make_user)) == DATABASE_SESSIONS


@pytest.mark.django_db
def test_with_cached_sessions_a_logout_ends_the_session_everywhere_and_a_revoked_role_counts_at_once(
        make_user, settings):
    from django.contrib.auth.models import Group

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": settings.CELERY_BROKER_URL, "KEY_PREFIX": "logout-test"}}
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    try:
        build_world(inputs=1)
        user = make_user("leaving", "annotator")
        browser = Client()
        browser.post("/accounts/login/", {"username": "leaving", "password": "pass-for-tests-1"})
        copy = Client()  # the same session key in a cookie jar of its own, as a stolen cookie would be
        copy.cookies["sessionid"] = browser.cookies["sessionid"].value
        assert copy.get("/annotate/").status_code == 200
        user.groups.remove(Group.objects.get(name="Annotators"))
        assert copy.get("/annotate/").status_code == 403  # the permission is read on every request
        browser.post("/accounts/logout/")
        assert copy.cookies["sessionid"].value  # still sent
        assert copy.get("/annotate/").status_code == 302  # signed out: the cached session is gone too
    finally:
        cache.clear()
