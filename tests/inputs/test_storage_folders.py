"""An import leaves no empty folder in the media storage (the local filesystem here): not when it
is refused after writing files, not when the uploaded archive is discarded, not when an input is
deleted. Folders that still hold another input's files stay."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from inputs.archive_import import run_archive_import
from inputs.importing import ImportRejected, find_problems, import_inputs, store_inputs
from inputs.models import Input, InputImport
from tests.conftest import stored_files

from .import_helpers import (
    assert_nothing_stored,
    empty_folders,
    fill_spec,
    mask_png,
    source_png,
    stored_folders,
    zip_bytes,
)
from .test_import_entrypoints import run_command, write_files

pytestmark = pytest.mark.django_db


def queue_zip(files: dict[str, bytes]) -> InputImport:
    archive = SimpleUploadedFile("batch.zip", zip_bytes(files), content_type="application/zip")
    job = InputImport.queue(archive)
    assert [name.split("/")[0] for name in stored_files()] == ["imports"]
    return job


def test_a_successful_zip_import_leaves_only_the_inputs_folders():
    job = queue_zip({"a.png": source_png(0), "a_mask.png": mask_png(), "a.txt": b"a kite"})
    job.defaults = {"task": "image_fill"}
    job.save()
    run_archive_import(job)
    job.refresh_from_db()
    assert job.status == "done"
    row = Input.objects.get()
    folder = row.source.name.rsplit("/", 1)[0]
    assert stored_files() == sorted(f"{folder}/{name}" for name in ("mask.png", "source.png", "thumbnail.jpg"))
    assert stored_folders() == ["inputs", folder.rsplit("/", 1)[0], folder]
    assert empty_folders() == []


def test_a_refused_zip_import_leaves_no_folder():
    job = queue_zip({"a.png": source_png(0), "a_mask.png": b"not a png", "a.txt": b"a kite"})
    job.defaults = {"task": "image_fill"}
    job.save()
    run_archive_import(job)
    job.refresh_from_db()
    assert job.status == "failed"
    assert_nothing_stored()  # neither imports/<random>/ nor imports/


def test_an_import_refused_after_writing_its_files_removes_them_and_their_folders():
    # b.png is stored by another import between this import's checks and its rows: the unique
    # content hash refuses the rows, and the files already written for a.png and b.png go.
    first, second = fill_spec("a.png"), fill_spec("b.png", seed=1)
    prepared, problems = find_problems([first, second])
    assert problems == []
    (other,) = import_inputs([fill_spec("b.png", seed=1)])
    kept = stored_files()
    with pytest.raises(ImportRejected) as refused:
        store_inputs(prepared)
    assert [p.entry for p in refused.value.problems] == ["b.png"]
    assert list(Input.objects.all()) == [other]
    assert stored_files() == kept
    assert empty_folders() == []


def test_a_command_import_leaves_no_empty_folder(tmp_path):
    folder = write_files(tmp_path, {"a.png": source_png(0), "a_mask.png": mask_png(), "a.txt": "a kite"})
    assert "Imported 1 input(s)" in run_command(str(folder), task="image_fill")[0]
    assert len(stored_files()) == 3 and empty_folders() == []


def test_deleting_inputs_removes_their_folders(django_capture_on_commit_callbacks):
    rows = import_inputs([fill_spec("a.png"), fill_spec("b.png", seed=1)])
    with django_capture_on_commit_callbacks(execute=True):
        rows[0].delete()
    assert len(stored_files()) == 3 and empty_folders() == []
    with django_capture_on_commit_callbacks(execute=True):
        rows[1].delete()
    assert_nothing_stored()
