"""Preference datasets from where people work: the admin, the REST API, the command line, a real worker."""
import io
import json

import pyarrow.parquet as pq
import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from preferences.export import build
from preferences.models import PreferenceDataset
from tests.annotation.world import make_tasks
from tests.conftest import stored_files, wait_for
from tests.preferences.preference_world import judge

FILL_DIMS = ("text_alignment", "consistency", "structure", "aesthetics")


def judged_world(make_user, count=4):
    tasks = make_tasks(count, n=4, k=1)
    alice = make_user("alice", "annotator")
    for i, task in enumerate(tasks):
        judge(task, alice, {slug: (i % 4, (i + 1) % 4) for slug in FILL_DIMS})
    return tasks


@pytest.mark.django_db
def test_command_builds_here_and_copies_the_files(make_user, tmp_path):
    judged_world(make_user)
    out = io.StringIO()
    call_command("export_preferences", "--name", "fill-prefs", "--here", "--split", "1,0,0", "--format", "jsonl",
                 "--out", str(tmp_path / "export"), stdout=out)
    version = PreferenceDataset.objects.get(name="fill-prefs")
    assert version.status == "done" and version.version == 1 and version.pair_count == 16
    text = out.getvalue()
    assert "16 pairs from 4 judgments" in text and version.content_hash in text
    assert "image_fill / aesthetics: train 4, validation 0, test 0" in text
    table = pq.read_table(tmp_path / "export/data/train-00000.parquet")
    assert table.num_rows == 16
    assert len((tmp_path / "export/jsonl/train-00000.jsonl").read_text().splitlines()) == 16
    manifest = json.loads((tmp_path / "export/manifest.json").read_text())
    assert manifest["content_hash"] == version.content_hash
    call_command("export_preferences", "--name", "fill-prefs", "--here", "--split", "1,0,0", "--format", "jsonl",
                 stdout=io.StringIO())
    second = PreferenceDataset.objects.get(name="fill-prefs", version=2)
    assert second.content_hash == version.content_hash


@pytest.mark.django_db
def test_command_refuses_bad_options_by_name(make_user):
    judged_world(make_user, 1)
    with pytest.raises(CommandError, match="add up to 1.2"):
        call_command("export_preferences", "--name", "x", "--here", "--split", "0.9,0.2,0.1")
    with pytest.raises(CommandError, match="no task painting"):
        call_command("export_preferences", "--name", "x", "--here", "--task", "painting")
    with pytest.raises(CommandError, match="not an ISO date"):
        call_command("export_preferences", "--name", "x", "--here", "--from", "yesterday")
    with pytest.raises(CommandError, match="three fractions"):
        call_command("export_preferences", "--name", "x", "--here", "--split", "0.9")
    assert not PreferenceDataset.objects.exists()


@pytest.mark.django_db
def test_api_lists_builds_downloads_and_deletes(make_user):
    judged_world(make_user)
    engineer, annotator = make_user("eve", "ml_engineer"), make_user("ann", "annotator")
    api = APIClient()
    api.force_authenticate(annotator)
    assert api.get("/api/preference-datasets/").status_code == 403
    api.force_authenticate(engineer)
    response = api.post("/api/preference-datasets/", {
        "name": "api-prefs", "tasks": ["image_fill"], "dimensions": ["structure", "aesthetics"],
        "pairing": "best_worst_all", "train_fraction": 0.5, "validation_fraction": 0.5, "test_fraction": 0,
        "formats": ["trl"]}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert (
        body["version"] == 1
        and body["status"] == "queued"
        and sorted(body["dimensions"]) == ["aesthetics", "structure"]
    )
    version = PreferenceDataset.objects.get(pk=body["id"])
    build(version)
    detail = api.get(f"/api/preference-datasets/{version.pk}/").json()
    assert detail["status"] == "done" and detail["pair_count"] == 4 * 2 * 5
    names = {f["name"]: f for f in detail["files"]}
    assert "manifest.json" in names and any(name.startswith("trl/") for name in names)
    data_name = next(name for name in names if name.startswith("data/"))
    download = api.get(names[data_name]["url"])
    assert download.status_code == 200
    table = pq.read_table(io.BytesIO(b"".join(download.streaming_content)))
    assert table.num_rows == names[data_name]["rows"]
    assert api.get(f"/api/preference-datasets/{version.pk}/files/data/../../secret/").status_code == 404
    assert api.get(f"/api/preference-datasets/{version.pk}/files/data/nothing.parquet/").status_code == 404
    listing = api.get("/api/preference-datasets/?name=api-prefs").json()
    listing = listing["results"] if isinstance(listing, dict) else listing
    assert [d["id"] for d in listing] == [version.pk]
    assert api.get("/api/preference-datasets/?name=other").json() in (
        [],
        {"count": 0, "next": None, "previous": None, "results": []},
    )
    bad = api.post("/api/preference-datasets/", {"name": "api-prefs", "train_fraction": 2}, format="json")
    assert bad.status_code == 400 and "train_fraction" in bad.json()
    bad = api.post("/api/preference-datasets/", {"name": "api-prefs", "tasks": ["painting"]}, format="json")
    assert bad.status_code == 400 and "tasks" in bad.json()
    assert any(name.startswith("datasets/api-prefs/v1/") for name in stored_files())
    assert api.delete(f"/api/preference-datasets/{version.pk}/").status_code == 204
    assert not PreferenceDataset.objects.filter(pk=version.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_api_delete_removes_the_files(make_user):
    judged_world(make_user, 2)
    engineer = make_user("eve", "ml_engineer")
    version = PreferenceDataset.objects.create(name="gone", version=1)
    build(version)
    assert any(name.startswith("datasets/gone/v1/") for name in stored_files())
    api = APIClient()
    api.force_authenticate(engineer)
    assert api.delete(f"/api/preference-datasets/{version.pk}/").status_code == 204
    assert not [name for name in stored_files() if name.startswith("datasets/")]


@pytest.mark.django_db
def test_admin_builds_a_version_and_shows_counts_and_files(client, make_user):
    from inputs.models import Task

    judged_world(make_user)
    client.force_login(make_user("eve", "ml_engineer"))
    page = client.get("/admin/preferences/preferencedataset/add/")
    assert page.status_code == 200 and "Build a preference dataset version" in page.content.decode()
    response = client.post("/admin/preferences/preferencedataset/add/", {
        "name": "admin-prefs", "tasks": [Task.objects.get(slug="image_fill").pk], "good_standing_only": "on",
        "pairing": "best_worst", "aggregation": "majority", "tie_rule": "drop", "min_votes": 1,
        "train_fraction": 1, "validation_fraction": 0, "test_fraction": 0, "split_seed": 0, "formats": ["jsonl"]})
    assert response.status_code == 302, response.content.decode()[:3000]
    version = PreferenceDataset.objects.get(name="admin-prefs")
    assert response["Location"] == f"/admin/preferences/preferencedataset/{version.pk}/change/"
    assert version.status == "queued" and version.formats == ["jsonl"]
    poll = client.get(f"/admin/preferences/preferencedataset/{version.pk}/progress/", HTTP_HX_REQUEST="true")
    progress = poll.content.decode()
    assert 'data-status="queued"' in progress and "hx-get" in progress and "HX-Refresh" not in poll
    build(version)
    # The poll that sees the end reloads the whole page, so the fields below the bar show it too.
    poll = client.get(f"/admin/preferences/preferencedataset/{version.pk}/progress/", HTTP_HX_REQUEST="true")
    assert poll["HX-Refresh"] == "true" and "hx-get" not in poll.content.decode()
    change = client.get(f"/admin/preferences/preferencedataset/{version.pk}/change/").content.decode()
    assert (
        "data/train-00000.parquet" in change and "jsonl/train-00000.jsonl" in change and version.content_hash in change
    )
    assert "<td>aesthetics</td><td>4</td>" in change
    download = client.get(f"/admin/preferences/preferencedataset/{version.pk}/files/data/train-00000.parquet")
    assert download.status_code == 200 and "admin-prefs-v1-data-train-00000.parquet" in download["Content-Disposition"]
    refused = client.post("/admin/preferences/preferencedataset/add/", {
        "name": "admin-prefs", "pairing": "best_worst", "aggregation": "majority", "tie_rule": "drop",
        "min_votes": 1, "train_fraction": 0.5, "validation_fraction": 0, "test_fraction": 0, "split_seed": 0})
    assert refused.status_code == 200 and "add up to 0.5" in refused.content.decode()
    again = client.get(f"/admin/preferences/preferencedataset/add/?from={version.pk}").content.decode()
    assert 'value="admin-prefs"' in again


@pytest.mark.django_db
def test_annotators_never_reach_the_dataset_admin(client, make_user):
    client.force_login(make_user("ann", "annotator"))
    response = client.get("/admin/preferences/preferencedataset/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_builds_a_version_queued_from_the_api(celery_worker_process, make_user):
    judged_world(make_user)
    api = APIClient()
    api.force_authenticate(make_user("eve", "ml_engineer"))
    response = api.post("/api/preference-datasets/", {"name": "worker-prefs"}, format="json")
    assert response.status_code == 202
    version = wait_for(
        lambda: PreferenceDataset.objects.filter(pk=response.json()["id"], status__in=["done", "failed"]).first(),
        what="the dataset build",
    )
    assert version.status == "done", (version.error, celery_worker_process.log()[-3000:])
    assert version.pair_count == 16 and version.progress_done == version.progress_total == 4
    assert default_storage.exists(f"{version.storage_prefix}/manifest.json")
