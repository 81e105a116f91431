"""Zip bombs: an entry is unpacked in chunks and refused, naming it and the limit, as soon as the
bytes it really gave (not the sizes its headers declare) break a cap: per entry, per archive, or the
compression ratio. The command, the admin and the API (through the archive job) alike."""
import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from inputs.archive_import import run_archive_import
from inputs.core.images import InputProblem
from inputs.core.sources import RATIO_FREE_BYTES, ZipLimits, ZipTree
from inputs.models import Input, InputImport
from tests.onereward.test_settings import run_python

from .import_helpers import (
    assert_nothing_stored,
    empty_folders,
    forge_declared_size,
    mask_png,
    problem_lines,
    source_png,
    zip_bytes,
)
from .test_import_entrypoints import failing_command, run_command

pytestmark = pytest.mark.django_db

ROOMY = ZipLimits(entry_bytes=10**9, total_bytes=10**10, ratio=100)
ZEROS = bytes(RATIO_FREE_BYTES * 2)  # 16 MiB that deflate to about 16 KB: a ratio near 1,000


def tree_of(files: dict[str, bytes], limits: ZipLimits = ROOMY, name: str = "in.zip") -> ZipTree:
    return ZipTree(io.BytesIO(zip_bytes(files)), name, limits)


def refusal(tree: ZipTree, entry: str) -> InputProblem:
    with pytest.raises(InputProblem) as refused:
        tree.read(entry)
    assert refused.value.entry == entry
    return refused.value


# --- the reader -------------------------------------------------------------------------------


def test_an_entry_within_the_limits_is_read_whole_and_counted():
    data = source_png(0, 400, 300)
    tree = tree_of({"a.png": data}, ZipLimits(entry_bytes=len(data), total_bytes=len(data), ratio=100))
    assert tree.read("a.png") == data
    assert tree.unpacked == len(data)


def test_an_entry_is_held_once_while_it_is_unpacked():
    # zipfile's own read() (what imports did) peaks at 2.7 times a deflated entry (the result and
    # the pieces it is grown from), a join of chunks at 2. Unpacked into one buffer: about its size.
    data = np.random.default_rng(0).integers(0, 4, 32 * 1024 * 1024, dtype=np.uint8).tobytes()
    archive = zip_bytes({"a.tif": data})  # deflated to about 9 MiB
    tree = ZipTree(io.BytesIO(archive), "in.zip", ROOMY)
    del data
    tracemalloc.start()
    try:
        read = tree.read("a.tif")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(read) == 32 * 1024 * 1024
    assert peak < 1.3 * len(read), f"peak {peak / 2**20:.0f} MiB for a 32 MiB entry"


def test_an_entry_declaring_more_than_the_entry_limit_is_refused_before_unpacking():
    data = source_png(0, 400, 300)
    tree = tree_of({"big.png": data}, ZipLimits(entry_bytes=10_000, total_bytes=10**9, ratio=100))
    problem = refusal(tree, "big.png")
    assert problem.problem == (f"entry declares it unpacks to {len(data):,} bytes, over the limit of 10,000 bytes "
                               "per entry (ONEREWARD_MAX_ZIP_ENTRY_BYTES)")
    assert tree.unpacked == 0


def test_an_entry_whose_headers_understate_its_size_gives_no_more_than_they_declare():
    # 16 MiB of zeros whose local header and central directory both claim 1,000 bytes: the declared
    # size passes every cap, so only what is really unpacked can bound the memory.
    data = forge_declared_size(zip_bytes({"a.png": ZEROS}), "a.png", 1000)
    tree = ZipTree(io.BytesIO(data), "forged.zip", ZipLimits(entry_bytes=4096, total_bytes=10**9, ratio=100))
    problem = refusal(tree, "a.png")
    assert problem.problem == ("cannot be unpacked: Bad CRC-32 for file 'a.png' "
                               "(the entry is damaged, or its header understates its size)")
    assert tree.unpacked <= 1000


def test_the_archive_limit_counts_every_read_not_the_declared_sizes():
    # A manifest may name one entry many times; each read is held in memory, so each one counts.
    image = source_png(0)
    tree = tree_of({"a.png": image}, ZipLimits(entry_bytes=10**9, total_bytes=3 * len(image), ratio=100))
    for _ in range(3):
        assert tree.read("a.png") == image
    problem = refusal(tree, "a.png")
    assert problem.problem == (f"unpacking this entry takes in.zip past {3 * len(image):,} bytes unpacked in all, "
                               "the limit per archive (ONEREWARD_MAX_ZIP_UNCOMPRESSED_BYTES)")
    assert tree.unpacked == 3 * len(image)


def test_an_entry_compressed_like_a_bomb_is_refused_before_unpacking():
    tree = tree_of({"zeros.png": ZEROS})
    problem = refusal(tree, "zeros.png")
    compressed = tree.infos["zeros.png"].compress_size
    assert problem.problem == (f"entry declares it unpacks to 16.0 MiB from {compressed:,} bytes compressed "
                               f"({len(ZEROS) / compressed:,.0f} times as much), over the limit of 100 times "
                               "(ONEREWARD_MAX_ZIP_RATIO): the mark of a zip bomb")
    assert tree.unpacked == 0
    # The same bytes pass under a higher ratio, and small entries pass whatever their ratio.
    assert tree_of({"zeros.png": ZEROS}, ZipLimits(10**9, 10**10, ratio=5000)).read("zeros.png") == ZEROS
    small = bytes(RATIO_FREE_BYTES)
    assert tree_of({"zeros.png": small}).read("zeros.png") == small


def test_an_archive_declaring_more_than_the_archive_limit_is_refused_whole():
    with pytest.raises(InputProblem) as refused:
        tree_of({"a.png": source_png(0), "b.png": source_png(1)}, ZipLimits(10**9, total_bytes=5000, ratio=100))
    assert refused.value.entry == "in.zip"
    assert "over the limit of 5,000 bytes per archive (ONEREWARD_MAX_ZIP_UNCOMPRESSED_BYTES)" in refused.value.problem


@pytest.mark.parametrize("method, words", [(zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "LZMA")])
def test_entries_compressed_with_methods_that_unpack_unbounded_are_refused(method, words):
    tree = ZipTree(io.BytesIO(zip_bytes({"a.png": source_png(0)}, method=method)), "in.zip", ROOMY)
    problem = refusal(tree, "a.png")
    assert problem.problem == (f"entry is compressed with {words}; give a zip whose entries are deflated "
                               "(what zip tools do by default) or stored")
    assert tree.unpacked == 0


# --- the ways in ------------------------------------------------------------------------------


def test_command_refuses_a_zip_over_the_entry_limit_naming_the_entry(tmp_path, settings):
    settings.ONEREWARD_MAX_ZIP_ENTRY_BYTES = 10_000
    archive = tmp_path / "batch.zip"
    archive.write_bytes(zip_bytes({
        "big.png": source_png(0, 400, 300), "big_mask.png": mask_png(400, 300), "big.txt": b"a kite",
        "ok.png": source_png(1), "ok_mask.png": mask_png(), "ok.txt": b"a boat",
    }))
    message, err = failing_command(str(archive), task="image_fill")
    assert message == "1 problem(s); nothing was imported."
    assert err.startswith("big.png: entry declares it unpacks to ")
    assert "over the limit of 10,000 bytes per entry (ONEREWARD_MAX_ZIP_ENTRY_BYTES)" in err
    assert_nothing_stored()
    settings.ONEREWARD_MAX_ZIP_ENTRY_BYTES = 10**6
    assert "Imported 2 input(s)" in run_command(str(archive), task="image_fill")[0]


def test_command_refuses_a_manifest_that_unpacks_one_entry_past_the_archive_limit(tmp_path, settings):
    image, mask = source_png(0), mask_png()
    lines = [{"image": "a.png", "mask": "a_mask.png", "prompt": f"kite {i}"} for i in range(20)]
    archive = tmp_path / "repeat.zip"
    archive.write_bytes(zip_bytes({"manifest.jsonl": "".join(json.dumps(line) + "\n" for line in lines).encode(),
                                   "a.png": image, "a_mask.png": mask}))
    settings.ONEREWARD_MAX_ZIP_UNCOMPRESSED_BYTES = 10 * (len(image) + len(mask))  # half the lines' reads
    _, err = failing_command(str(archive), task="image_fill")
    assert "ONEREWARD_MAX_ZIP_UNCOMPRESSED_BYTES" in err and "unpacking this entry takes repeat.zip past" in err
    assert_nothing_stored()


def test_command_refuses_a_forged_entry_and_stores_nothing(tmp_path):
    data = zip_bytes({"a.png": ZEROS, "a_mask.png": mask_png(), "a.txt": b"a kite"})
    archive = tmp_path / "forged.zip"
    archive.write_bytes(forge_declared_size(data, "a.png", 1000))
    message, err = failing_command(str(archive), task="image_fill")
    assert message == "1 problem(s); nothing was imported."
    assert err.startswith("a.png: cannot be unpacked: Bad CRC-32")
    assert_nothing_stored()


@pytest.fixture
def admin_api(make_user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=make_user('api', 'admin')).key}")
    return client


def queued_through_the_api(admin_api, files: dict[str, bytes]) -> InputImport:
    """POST the zip as a script would; the worker's code then runs here (on_commit does not fire in a
    test transaction, so no message is sent)."""
    upload = SimpleUploadedFile("batch.zip", zip_bytes(files), content_type="application/zip")
    response = admin_api.post("/api/input-imports/", {"archive": upload, "task": "image_fill"}, format="multipart")
    assert response.status_code == 202, response.content
    job = InputImport.objects.get(pk=response.json()["id"])
    run_archive_import(job)
    job.refresh_from_db()
    return job


def test_api_import_of_a_zip_bomb_is_refused_naming_the_entry_and_the_limit(admin_api):
    job = queued_through_the_api(admin_api, {"bomb.png": ZEROS, "bomb_mask.png": mask_png(), "bomb.txt": b"x"})
    assert job.status == "failed" and job.error == "1 bad entry; nothing was imported."
    (problem,) = job.problems
    assert problem["entry"] == "bomb.png" and "ONEREWARD_MAX_ZIP_RATIO" in problem["problem"]
    assert not job.archive.name
    assert_nothing_stored()  # the uploaded zip is gone, and its folder


def test_admin_import_refuses_an_entry_over_the_limit(make_user, client, settings):
    settings.ONEREWARD_MAX_ZIP_ENTRY_BYTES = 10_000
    client.force_login(make_user("boss", "admin"))
    upload = SimpleUploadedFile("batch.zip", zip_bytes({
        "big.png": source_png(0, 400, 300), "big_mask.png": mask_png(400, 300), "big.txt": b"a kite",
    }))
    response = client.post("/admin/inputs/input/import/", {"archive": upload, "task": "image_fill"})
    assert response.status_code == 302
    job = InputImport.objects.get()
    run_archive_import(job)
    job.refresh_from_db()
    assert job.status == "failed"
    assert problem_lines([InputProblem(**p) for p in job.problems]) == [
        "big.png: entry declares it unpacks to "
        f"{len(source_png(0, 400, 300)):,} bytes, over the limit of 10,000 bytes per entry "
        "(ONEREWARD_MAX_ZIP_ENTRY_BYTES)"
    ]
    assert Input.objects.count() == 0 and empty_folders() == []
    assert_nothing_stored()


# --- the settings -----------------------------------------------------------------------------

LIMIT_NAMES = ["ONEREWARD_MAX_ZIP_ENTRY_BYTES", "ONEREWARD_MAX_ZIP_UNCOMPRESSED_BYTES", "ONEREWARD_MAX_ZIP_RATIO",
               "ONEREWARD_MIN_IMAGE_SIDE", "ONEREWARD_MAX_PROMPT_CHARS"]
SHOW_LIMITS = f"from django.conf import settings as s; print(*(getattr(s, n) for n in {LIMIT_NAMES!r}))"


def settings_from(tmp_path, **env) -> list[int]:
    result = run_python(SHOW_LIMITS, {"DJANGO_SETTINGS_MODULE": "onereward.settings",
                                      "ONEREWARD_DATA_DIR": str(tmp_path), **env},
                        unset=("DATABASE_URL", "CELERY_BROKER_URL", "ONEREWARD_S3_BUCKET", *LIMIT_NAMES,
                               "ONEREWARD_MAX_ZIP_BYTES", "ONEREWARD_MAX_IMAGE_PIXELS"))
    assert result.returncode == 0, result.stderr
    return [int(value) for value in result.stdout.split()]


def test_the_limits_come_from_the_environment_with_defaults_drawn_from_the_pixel_limit(tmp_path):
    assert settings_from(tmp_path) == [160_000_000, 4 * 1024**3, 100, 32, 2000]
    assert settings_from(tmp_path, ONEREWARD_MAX_IMAGE_PIXELS="1000000", ONEREWARD_MAX_ZIP_BYTES="123456")[:2] == [
        4_000_000, 123456]  # the archive limit's former name is still read
    assert settings_from(tmp_path, ONEREWARD_MAX_ZIP_ENTRY_BYTES="7", ONEREWARD_MAX_ZIP_UNCOMPRESSED_BYTES="8",
                         ONEREWARD_MAX_ZIP_BYTES="9", ONEREWARD_MAX_ZIP_RATIO="10", ONEREWARD_MIN_IMAGE_SIDE="64",
                         ONEREWARD_MAX_PROMPT_CHARS="500") == [7, 8, 10, 64, 500]
