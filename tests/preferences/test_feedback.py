"""Production feedback: events imported through a file, the API, the command and the admin, checked
like every import (bad rows named, nothing half-stored, a second import harmless), and turned into
weighted weak pairs when a dataset version asks for them."""
import base64
import io
import json

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from preferences.models import FeedbackEvent
from rewardmodel.models import RewardModelRun
from tests.annotation.world import make_inputs, make_tasks
from tests.conftest import photo, png_bytes, stored_files
from tests.preferences.test_preference_export import built, rows_of

pytest_plugins = ["tests.s3_server"]  # the s3_settings fixture

pytestmark = pytest.mark.django_db
FILL_DIMS = {"text_alignment", "consistency", "structure", "aesthetics"}


@pytest.fixture
def candidates():
    task = make_tasks(1, n=4)[0]
    return task.candidate_set.input, {c.index: c for c in task.candidate_set.candidates.all()}


def jsonl(rows) -> bytes:
    return "\n".join(json.dumps(row) for row in rows).encode()


def event(number, kind, candidate=None, **fields):
    row = {"source": "editor", "external_id": f"e{number}", "event": kind, **fields}
    if candidate is not None:
        row["candidate"] = str(candidate.public_id)
    return row


def api_for(make_user, role="ml_engineer"):
    api = APIClient()
    api.force_authenticate(make_user("eve", role))
    return api


def outside_image() -> str:
    return base64.b64encode(png_bytes(photo(32, 32, seed=99))).decode()


def test_events_are_imported_once_and_bad_rows_are_named(make_user, candidates):
    item, by_index = candidates
    api = api_for(make_user)
    rows = [event(1, "accepted", by_index[0]), event(2, "discarded", by_index[1]),
            event(3, "published", input=item.pk, image=outside_image())]
    response = api.post("/api/feedback-events/", {"events": rows}, format="json")
    assert response.status_code == 201, response.content
    assert response.json() == {"created": 3, "already_stored": 0}
    outside = FeedbackEvent.objects.get(external_id="e3")
    assert outside.input == item and outside.candidate is None and default_storage.exists(outside.image)
    assert FeedbackEvent.objects.get(external_id="e1").input == item  # the candidate's input
    # The same file again stores nothing new.
    assert api.post("/api/feedback-events/", {"events": rows}, format="json").json() == {
        "created": 0, "already_stored": 3}

    files_before = set(default_storage.listdir("feedback")[0])
    bad = [event(4, "accepted", by_index[2]), event(5, "liked", by_index[3]),
           {"source": "editor", "external_id": "e6", "event": "accepted", "candidate": "not-a-candidate"},
           event(7, "accepted", input=999999, image=outside_image()),
           event(8, "accepted", input=item.pk, image=base64.b64encode(b"not an image").decode()),
           event(4, "discarded", by_index[3])]
    response = api.post("/api/feedback-events/", {"events": bad}, format="json")
    assert response.status_code == 400
    problems = {p["line"]: p["problem"] for p in response.json()["problems"]}
    assert "liked" in problems[2] and "no candidate" in problems[3] and "no input 999999" in problems[4]
    assert "outside image" in problems[5] and "also on line 1" in problems[6]
    assert FeedbackEvent.objects.count() == 3  # nothing of the bad import, not even its good row
    assert set(default_storage.listdir("feedback")[0]) == files_before


def test_the_command_reads_csv_and_refuses_a_bad_file(make_user, candidates, tmp_path):
    _, by_index = candidates
    path = tmp_path / "events.csv"
    path.write_text("external_id,event,candidate,occurred_at\n"
                    f"c1,accepted,{by_index[0].public_id},2026-11-30T10:00:00Z\n"
                    f"c2,re-edited,{by_index[1].public_id},\n")
    out = io.StringIO()
    call_command("import_feedback", str(path), "--source", "mobile", stdout=out)
    assert "2 event(s) imported" in out.getvalue()
    assert sorted(FeedbackEvent.objects.values_list("source", "event")) == [("mobile", "accepted"),
                                                                            ("mobile", "re_edited")]
    path.write_text("external_id,event,rating\nc3,accepted,5\n")
    with pytest.raises(CommandError, match="unknown column"):
        call_command("import_feedback", str(path))


def test_the_admin_imports_a_file_and_lists_the_problems(client, make_user, candidates):
    _, by_index = candidates
    client.force_login(make_user("boss", "admin"))
    page = client.get("/admin/preferences/feedbackevent/").content.decode()
    assert "/admin/preferences/feedbackevent/import/" in page
    upload = io.BytesIO(jsonl([event(1, "accepted", by_index[0]), event(2, "nope", by_index[1])]))
    upload.name = "events.jsonl"
    response = client.post("/admin/preferences/feedbackevent/import/", {"file": upload, "source": ""})
    assert response.status_code == 200 and "line 2" in response.content.decode() and not FeedbackEvent.objects.exists()
    upload = io.BytesIO(jsonl([event(1, "accepted", by_index[0])]))
    upload.name = "events.jsonl"
    response = client.post("/admin/preferences/feedbackevent/import/", {"file": upload, "source": ""})
    assert response.status_code == 302 and FeedbackEvent.objects.count() == 1


def test_a_dataset_includes_weak_pairs_only_when_asked_weighted_and_marked(make_user, candidates):
    item, by_index = candidates
    api = api_for(make_user)
    rows = [event(1, "accepted", by_index[0]), event(2, "re_edited", by_index[1]),
            event(3, "discarded", by_index[2]),
            # The latest event of an image decides: candidate 3 was discarded, then published.
            event(4, "discarded", by_index[3], occurred_at="2026-11-01T00:00:00Z"),
            event(5, "published", by_index[3], occurred_at="2026-11-02T00:00:00Z"),
            event(6, "discarded", input=item.pk, image=outside_image(), source="web")]
    assert api.post("/api/feedback-events/", {"events": rows}, format="json").status_code == 201
    splits = {"train_fraction": 1.0, "validation_fraction": 0.0, "test_fraction": 0.0}

    assert rows_of(built("plain", **splits)) == []  # no judgments, no feedback asked: nothing
    version = built("weak", implicit_feedback=True, implicit_weight=0.3, **splits)
    weak = rows_of(version, "train")
    index = {str(c.public_id): i for i, c in by_index.items()}

    def side(value):
        return index.get(value, "outside")

    pairs = {(side(r["winner_candidate"]), side(r["loser_candidate"])) for r in weak}
    # Ranks: published/accepted 2 (0 and 3), re-edited 1 (1), discarded 0 (2 and the outside image).
    assert pairs == {(0, 1), (3, 1), (0, 2), (3, 2), (1, 2), (0, "outside"), (3, "outside"), (1, "outside")}
    assert {r["dimension"] for r in weak} == FILL_DIMS and len(weak) == 8 * len(FILL_DIMS)
    assert {r["weight"] for r in weak} == {0.3} and {r["votes_for"] for r in weak} == {0}
    assert {r["origin"] for r in weak} == {"implicit:editor", "implicit:editor+web"}
    assert version.manifest["weak_pairs"] == len(weak) and version.pair_count == len(weak)
    only_web = rows_of(built("web", implicit_feedback=True, implicit_sources=["web"], **splits))
    assert only_web == []  # the web source alone has one image: no pair

    run = RewardModelRun.objects.create(dataset=version, status="queued")
    assert run.training_config()["weighted_loss"] is True
    run.extra = {"weighted_loss": False}
    assert run.training_config()["weighted_loss"] is False
    response = api.get(f"/api/preference-datasets/{version.pk}/").json()
    assert response["weak_pairs"] == len(weak) and response["implicit_weight"] == 0.3


# --- on S3 ----------------------------------------------------------------------------------------


def test_outside_images_go_to_s3_are_read_back_from_it_and_a_refused_import_leaves_none(s3_settings, make_user):
    item = make_inputs(1)[0]
    api = api_for(make_user)
    kept, dropped = png_bytes(photo(32, 32, seed=7)), png_bytes(photo(32, 32, seed=8))
    rows = [event(1, "published", input=item.pk, image=base64.b64encode(kept).decode()),
            event(2, "discarded", input=item.pk, image=base64.b64encode(dropped).decode())]
    response = api.post("/api/feedback-events/", {"events": rows}, format="json")
    assert response.status_code == 201, response.content
    names = {e.external_id: e.image for e in FeedbackEvent.objects.all()}
    assert s3_settings.keys("feedback/") == sorted(names.values())
    assert s3_settings.read(names["e1"]) == kept and s3_settings.read(names["e2"]) == dropped
    assert stored_files() == []  # nothing on the local disk

    # A refused import removes the outside images it had written before the rows failed.
    before = s3_settings.keys()
    bad = [event(3, "accepted", input=item.pk, image=base64.b64encode(png_bytes(photo(32, 32, seed=9))).decode()),
           event(3, "discarded", input=item.pk, image=base64.b64encode(png_bytes(photo(32, 32, seed=10))).decode())]
    assert api.post("/api/feedback-events/", {"events": bad}, format="json").status_code == 400
    assert s3_settings.keys() == before

    # A dataset version embeds them, read back from the bucket: the published one beats the discarded.
    version = built("weak", implicit_feedback=True, embed_images=True, train_fraction=1.0, validation_fraction=0.0,
                    test_fraction=0.0)
    weak = rows_of(version, "train")
    assert len(weak) == len(FILL_DIMS)
    assert {(r["winner_image"]["bytes"], r["loser_image"]["bytes"]) for r in weak} == {(kept, dropped)}
    assert any(key.startswith(f"{version.storage_prefix}/") for key in s3_settings.keys())
    assert stored_files() == []


# --- progress of a large import -------------------------------------------------------------------


def test_a_large_import_tells_its_progress_phase_by_phase(candidates, tmp_path):
    from preferences.feedback import EVENTS_PER_WRITE, PHASES, import_file

    item, by_index = candidates
    rows = [event(n, "accepted", by_index[n % 4]) for n in range(12_000)]
    rows += [event(f"x{n}", "discarded", input=item.pk,
                   image=base64.b64encode(png_bytes(photo(32, 32, seed=n))).decode()) for n in range(3)]
    reports = []
    assert import_file(jsonl(rows), "big.jsonl", on_progress=lambda *report: reports.append(report)).created == 12_003
    assert [phase for phase, done, _ in reports if done == 0] == list(PHASES)  # each phase starts at 0, in order
    totals = {"checking the rows": 12_003, "checking the outside images": 3, "storing the outside images": 3,
              "storing the events": 12_003}
    for phase in PHASES:
        done = [d for p, d, t in reports if p == phase]
        assert {t for p, _, t in reports if p == phase} == {totals[phase]}
        assert done == sorted(done) and done[-1] == totals[phase]
    assert [d for p, d, _ in reports if p == "storing the events"] == [0, EVENTS_PER_WRITE, 2 * EVENTS_PER_WRITE,
                                                                      12_003]
    # Every 1 % (120 rows of 12 003) and the last.
    assert [d for p, d, _ in reports if p == "checking the rows"] == [0, *range(120, 12_001, 120), 12_003]

    # The command prints a line per tenth of each phase.
    FeedbackEvent.objects.all().delete()
    path = tmp_path / "big.jsonl"
    path.write_bytes(jsonl(rows))
    out, err = io.StringIO(), io.StringIO()
    call_command("import_feedback", str(path), stdout=out, stderr=err)
    lines = err.getvalue().splitlines()
    checking = [line for line in lines if line.startswith("checking the rows: ")]
    assert checking[0] == "checking the rows: 0/12003" and checking[-1] == "checking the rows: 12003/12003"
    assert len(checking) == 11 and lines[-1] == "storing the events: 12003/12003"
    assert "12003 event(s) imported" in out.getvalue()


def test_a_large_file_is_imported_on_a_worker_and_followed_on_its_page_and_in_the_api(
        make_user, candidates, client, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from preferences.feedback_imports import BACKGROUND_BYTES
    from preferences.models import FeedbackImport
    from preferences.tasks import import_feedback

    item, by_index = candidates
    rows = [event(n, "accepted", by_index[n % 4]) for n in range(12_000)]
    rows.append(event("outside", "discarded", input=item.pk, image=outside_image()))
    data = jsonl(rows)
    assert len(data) > BACKGROUND_BYTES
    api = api_for(make_user)
    with django_capture_on_commit_callbacks() as queued:
        response = api.post("/api/feedback-events/", {"file": SimpleUploadedFile("big.jsonl", data)},
                            format="multipart")
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["status"], body["name"], body["progress"]) == ("queued", "big.jsonl", 0.0) and len(queued) == 1
    job = FeedbackImport.objects.get(pk=body["id"])
    assert not FeedbackEvent.objects.exists() and default_storage.exists(job.file.name)

    import_feedback(job.pk)  # the Celery task, as a worker runs it
    body = api.get(f"/api/feedback-imports/{job.pk}/").json()
    assert (body["status"], body["created"], body["already_stored"], body["progress"]) == ("done", 12_001, 0, 1.0)
    assert body["progress_done"] == body["progress_total"] == 12_001  # the last phase: the events stored
    assert FeedbackEvent.objects.count() == 12_001 and not default_storage.exists(job.file.name)

    # The admin: the same file again goes to a worker too; its page follows it, then tells the counts.
    client.force_login(make_user("boss", "admin"))
    response = client.post("/admin/preferences/feedbackevent/import/",
                           {"file": SimpleUploadedFile("big.jsonl", data), "source": ""})
    again = FeedbackImport.objects.exclude(pk=job.pk).get()
    assert response.status_code == 302 and response["Location"].endswith(
        f"/admin/preferences/feedbackimport/{again.pk}/change/")
    page = client.get(response["Location"]).content.decode()
    assert "Queued" in page and f"/admin/preferences/feedbackimport/{again.pk}/progress/" in page
    import_feedback(again.pk)
    fragment = client.get(f"/admin/preferences/feedbackimport/{again.pk}/progress/").content.decode()
    assert "0 event(s) imported, 12001 already stored" in fragment and "hx-get" not in fragment

    # A large file with a bad row: refused whole, its bad rows on the page and in the API.
    bad = jsonl([*rows[:-1], event("liked", "liked", by_index[0])])
    with django_capture_on_commit_callbacks():
        response = api.post("/api/feedback-events/", {"file": SimpleUploadedFile("bad.jsonl", bad)},
                            format="multipart")
    import_feedback(response.json()["id"])
    body = api.get(f"/api/feedback-imports/{response.json()['id']}/").json()
    assert body["status"] == "failed" and body["problems"] == [
        {"line": 12_001, "problem": "event 'liked' is not one of published, accepted, re_edited, discarded"}]
    assert "nothing was imported" in body["error"] and FeedbackEvent.objects.count() == 12_001
    page = client.get(f"/admin/preferences/feedbackimport/{body['id']}/change/").content.decode()
    assert "line 12001: event &#x27;liked&#x27; is not one of" in page
