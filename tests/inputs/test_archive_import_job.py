"""A zip imported from the admin is run by a real Celery worker (Redis broker, PostgreSQL)."""
import io
import zipfile

import pytest

from inputs.models import Input, InputImport
from tests.conftest import box_mask, photo, png_bytes, stored_files, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def zip_of(entries: dict[str, bytes], name="inputs.zip") -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for entry, data in entries.items():
            archive.writestr(entry, data)
    buffer.seek(0)
    buffer.name = name
    return buffer


def finished(job_id):
    job = InputImport.objects.get(pk=job_id)
    return job if job.is_finished else None


def upload(client, admin_user, archive, **fields):
    client.force_login(admin_user)
    response = client.post("/admin/inputs/input/import/", {"archive": archive, "task": "image_fill", **fields})
    assert response.status_code == 302, response.content.decode()[:2000]
    job = InputImport.objects.get()
    assert response["Location"] == f"/admin/inputs/inputimport/{job.pk}/change/"
    return job


def test_worker_imports_a_zip_started_from_the_admin(celery_worker_process, client, make_user):
    admin_user = make_user("boss", "admin")
    archive = zip_of({
        "cat.png": png_bytes(photo(seed=1)), "cat_mask.png": png_bytes(box_mask()), "cat.txt": b"a cat",
        "dog.png": png_bytes(photo(seed=2)), "dog_mask.png": png_bytes(box_mask()), "dog.txt": b"a dog",
    })
    job = upload(client, admin_user, archive, tags="zoo")
    job = wait_for(lambda: finished(job.pk), what="the import job", timeout=90)
    assert job.status == "done", (job.error, job.problems, celery_worker_process.log()[-3000:])
    assert job.progress == 1.0 and job.progress_done == 2
    assert sorted(Input.objects.values_list("prompt", flat=True)) == ["a cat", "a dog"]
    assert set(job.created_inputs.all()) == set(Input.objects.all())
    assert all(i.tags.filter(name="zoo").exists() for i in Input.objects.all())
    assert not job.archive.name and not any(f.startswith("imports/") for f in stored_files())
    page = client.get(f"/admin/inputs/inputimport/{job.pk}/change/").content.decode()
    assert "Done" in page and f"#{Input.objects.first().pk}" in page


def test_worker_refuses_a_zip_with_bad_entries_and_stores_nothing(celery_worker_process, client, make_user):
    admin_user = make_user("boss", "admin")
    archive = zip_of({
        "good.png": png_bytes(photo(seed=3)), "good_mask.png": png_bytes(box_mask()), "good.txt": b"fine",
        "broken.png": b"not a png at all", "broken_mask.png": png_bytes(box_mask()), "broken.txt": b"x",
        "../escape.png": png_bytes(photo(seed=4)),
    })
    job = upload(client, admin_user, archive)
    job = wait_for(lambda: finished(job.pk), what="the import job", timeout=90)
    assert job.status == "failed"
    entries = {p["entry"]: p["problem"] for p in job.problems}
    assert "not an image" in entries["broken.png"]
    assert "path outside" in entries["../escape.png"]
    assert "2 bad entries; nothing was imported." == job.error
    assert Input.objects.count() == 0
    assert stored_files() == []
    page = client.get(f"/admin/inputs/inputimport/{job.pk}/change/").content.decode()
    assert "broken.png" in page and "../escape.png" in page and "Failed" in page
