"""The ways in: the import_inputs command, the REST API (/api/inputs/, /api/input-imports/) and the
admin's add view. Each applies the same rules; each reports every problem and stores nothing on
refusal. (The zip imports run by a worker are tested with the worker, elsewhere.)"""
import html
import io
import json

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from inputs.models import Input, InputImport
from tests.conftest import box_mask, photo, stored_files

from .import_helpers import (
    H,
    W,
    assert_nothing_stored,
    gradient_mask,
    mask_png,
    random_bytes,
    solid_mask,
    source_png,
    stored_image,
    truncated_png,
    zip_bytes,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def write_files(root, files: dict):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data) if isinstance(data, str) else path.write_bytes(data)
    return root


def good_folder(root):
    return write_files(root, {
        "a.png": source_png(0), "a_mask.png": mask_png(), "a.txt": "a red kite",
        "b.png": source_png(1), "b_mask.png": mask_png(box=(0, 0, 30, 30)),
    })


def run_command(*args, **options) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_inputs", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def failing_command(*args, **options) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command("import_inputs", *args, stdout=out, stderr=err, **options)
    return str(info.value), err.getvalue()


# --- the command line -------------------------------------------------------------------------


def test_command_imports_a_folder(tmp_path, make_user):
    user = make_user("loader", "admin")
    out, err = run_command(str(good_folder(tmp_path)), task="image_fill", prompt="default prompt",
                           tag=["cli, batch-7", "night"], user="loader")
    assert err == ""
    assert "Imported 2 input(s)" in out
    rows = {row.original_name: row for row in Input.objects.all()}
    assert set(rows) == {"a.png", "b.png"}
    assert rows["a.png"].prompt == "a red kite"
    assert rows["b.png"].prompt == "default prompt"
    assert sorted(rows["b.png"].tags.values_list("name", flat=True)) == ["batch-7", "cli", "night"]
    assert {row.created_by for row in rows.values()} == {user}
    assert len(stored_files()) == 6


def test_command_imports_a_zip_with_manifest(tmp_path):
    archive = tmp_path / "batch.zip"
    archive.write_bytes(zip_bytes({
        "manifest.jsonl": json.dumps({"image": "a.png", "mask": "a_mask.png", "task": "image_fill", "prompt": "kite"})
        + "\n" + json.dumps({"image": "b.png", "task": "image_extend"}) + "\n",
        "a.png": source_png(0), "a_mask.png": mask_png(), "b.png": source_png(1),
    }))
    out, _ = run_command(str(archive), extend_ratio="2:1")
    assert "Imported 2 input(s)" in out
    extended = Input.objects.get(original_name="b.png")
    assert (extended.width, extended.height) == (96, 48)
    assert extended.metadata["extend"]["canvas"] == {"ratio": [2, 1]}


def test_command_extends_maskless_images_with_the_given_padding(tmp_path):
    write_files(tmp_path, {"a.png": source_png(0), "b.png": source_png(1)})
    out, _ = run_command(str(tmp_path), task="image_extend", extend_padding="0,0,64,0")
    assert "Imported 2 input(s)" in out
    for row in Input.objects.all():
        assert (row.width, row.height) == (128, 48)
        mask = np.asarray(stored_image(row.mask))
        assert (mask[:, :64] == 0).all() and (mask[:, 64:] == 255).all()


def test_command_refuses_a_folder_with_bad_entries_and_lists_them_all(tmp_path):
    good_folder(tmp_path)
    write_files(tmp_path, {
        "noise.png": random_bytes(), "noise_mask.png": mask_png(), "noise.txt": "x",
        "soft.png": source_png(2), "soft_mask.png": gradient_mask(), "soft.txt": "x",
        "lonely_mask.png": mask_png(),
        "copy.png": source_png(0), "copy_mask.png": mask_png(), "copy.txt": "a red kite",
    })
    message, err = failing_command(str(tmp_path), task="image_fill", prompt="p")
    assert message == "4 problem(s); nothing was imported."
    lines = err.strip().splitlines()
    assert len(lines) == 4, lines
    assert any(line.startswith("noise.png: not an image") for line in lines)
    assert any(line.startswith("soft_mask.png: mask is not binary") for line in lines)
    assert any(line.startswith("lonely_mask.png: has no image") for line in lines)
    assert "copy.png: duplicate of a.png in this import" in lines
    assert_nothing_stored()


def test_command_refuses_a_zip_with_bad_entries_and_lists_them_all(tmp_path):
    archive = tmp_path / "mixed.zip"
    archive.write_bytes(zip_bytes({
        "a.png": source_png(0), "a_mask.png": mask_png(), "a.txt": "kite",
        "../evil.png": source_png(1),
        "/abs.png": source_png(2),
        "cut.png": truncated_png(3), "cut_mask.png": mask_png(), "cut.txt": "x",
        "dark.png": source_png(4), "dark_mask.png": solid_mask(0), "dark.txt": "x",
    }))
    message, err = failing_command(str(archive), task="image_fill")
    assert message.startswith("4 problem(s)")
    for entry, words in [("../evil.png", "path outside its folder"), ("/abs.png", "path outside its folder"),
                         ("cut.png", "truncated or corrupt"), ("dark_mask.png", "mask is empty")]:
        assert any(line.startswith(f"{entry}: ") and words in line for line in err.splitlines()), (entry, err)
    assert_nothing_stored()


def test_command_refuses_what_is_already_imported(tmp_path):
    good_folder(tmp_path)
    run_command(str(tmp_path), task="image_fill", prompt="p")
    before = stored_files()
    message, err = failing_command(str(tmp_path), task="image_fill", prompt="p")
    assert message.startswith("2 problem(s)")
    assert "a.png: already imported as input #" in err and "b.png: already imported as input #" in err
    assert Input.objects.count() == 2 and stored_files() == before


def test_command_skip_existing_imports_only_what_is_new(tmp_path):
    good_folder(tmp_path)
    run_command(str(tmp_path), task="image_fill", prompt="p")
    out, err = run_command(str(tmp_path), task="image_fill", prompt="p", skip_existing=True)
    assert "Nothing to import." in out and err == ""
    write_files(tmp_path, {"c.png": source_png(2), "c_mask.png": mask_png()})
    out, _ = run_command(str(tmp_path), task="image_fill", prompt="p", skip_existing=True)
    assert "Imported 1 input(s)" in out
    assert Input.objects.count() == 3 and len(stored_files()) == 9


def test_command_dry_run_checks_and_stores_nothing(tmp_path):
    out, err = run_command(str(good_folder(tmp_path)), task="image_fill", prompt="p", dry_run=True)
    assert "2 input(s) checked" in out and "nothing stored" in out
    assert err == ""
    assert_nothing_stored()


def test_command_dry_run_lists_every_problem(tmp_path):
    good_folder(tmp_path)
    write_files(tmp_path, {"noise.png": random_bytes(), "noise_mask.png": mask_png(), "noise.txt": "x"})
    message, err = failing_command(str(tmp_path), task="image_fill", dry_run=True)
    assert message.startswith("2 problem(s)")
    assert "noise.png: not an image" in err
    assert "b.png: task 'image_fill' needs a prompt" in err
    assert_nothing_stored()


def test_command_dry_run_of_an_empty_folder_fails_like_the_real_run(tmp_path):
    """A dry run must report what the real run would: an empty folder imports nothing."""
    _, real_err = failing_command(str(tmp_path), task="image_fill")
    assert "no inputs found" in real_err
    message, err = failing_command(str(tmp_path), task="image_fill", dry_run=True)
    assert "no inputs found" in err
    assert_nothing_stored()


@pytest.mark.parametrize(
    "options, words",
    [
        ({"extend_padding": "-1,0,0,0"}, "padding cannot be negative"),
        ({"extend_size": "big"}, "expected 2 numbers"),
        ({"user": "nobody"}, "no user named 'nobody'"),
    ],
)
def test_command_refuses_bad_options(tmp_path, options, words):
    message, _ = failing_command(str(good_folder(tmp_path)), task="image_fill", prompt="p", **options)
    assert words in message
    assert_nothing_stored()


def test_command_refuses_a_missing_path(tmp_path):
    message, err = failing_command(str(tmp_path / "nowhere"), task="image_fill")
    assert "no such file or folder" in err and message.startswith("1 problem(s)")


# --- the REST API -----------------------------------------------------------------------------


def upload(name: str, data: bytes, content_type: str = "image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


@pytest.fixture
def admin_api(make_user):
    user = make_user("api-admin", "admin")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    client.user = user
    return client


def post_input(client, **fields):
    data = {
        "task": "image_fill",
        "source": upload("kite.png", source_png()),
        "mask": upload("kite_mask.png", mask_png()),
        "prompt": "a red kite",
    }
    data.update({k: v for k, v in fields.items() if v is not None})
    for key in [k for k, v in fields.items() if v is None]:
        data.pop(key)
    return client.post("/api/inputs/", data, format="multipart")


def test_api_creates_an_input(admin_api):
    response = post_input(admin_api, tags=["api", "sky"], metadata=json.dumps({"camera": "x100"}))
    assert response.status_code == 201, response.content
    body = response.json()
    row = Input.objects.get()
    assert body["id"] == row.pk
    assert body["task"] == "image_fill" and body["prompt"] == "a red kite"
    assert (body["width"], body["height"]) == (W, H)
    assert body["original_name"] == "kite.png"
    assert sorted(body["tags"]) == ["api", "sky"]
    assert body["metadata"] == {"camera": "x100"}
    assert body["content_hash"] == row.content_hash
    assert set(body["files"]) == {"source", "mask", "thumbnail"}
    assert row.created_by == admin_api.user
    assert len(stored_files()) == 3
    np.testing.assert_array_equal(np.asarray(stored_image(row.source)), np.asarray(photo()))
    np.testing.assert_array_equal(np.asarray(stored_image(row.mask)), np.asarray(box_mask()))


def test_api_extends_with_a_canvas(admin_api):
    response = post_input(admin_api, task="image_extend", mask=None, prompt="",
                          canvas=json.dumps({"size": [100, 60]}))
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["width"], body["height"]) == (112, 64)
    assert body["metadata"]["extend"]["source_box"] == {"left": 24, "top": 8, "width": W, "height": H}
    assert body["effective_prompt"] == "high-definition, perfect composition"


@pytest.mark.parametrize(
    "fields, entry, words",
    [
        pytest.param({"source": upload("kite.png", random_bytes())}, "kite.png", "not an image", id="random-bytes"),
        pytest.param({"source": upload("kite.png", truncated_png())}, "kite.png", "truncated", id="truncated"),
        pytest.param(
            {"mask": upload("kite_mask.png", mask_png(32, 24, (1, 1, 5, 5)))},
            "kite_mask.png",
            "same size",
            id="mask-size",
        ),
        pytest.param(
            {"mask": upload("kite_mask.png", solid_mask(0))}, "kite_mask.png", "mask is empty", id="empty-mask"
        ),
        pytest.param(
            {"mask": upload("kite_mask.png", solid_mask(255))},
            "kite_mask.png",
            "covers the whole image",
            id="full-mask",
        ),
        pytest.param({"mask": upload("kite_mask.png", gradient_mask())}, "kite_mask.png", "not binary", id="gradient"),
        pytest.param({"prompt": ""}, "kite.png", "needs a prompt", id="no-prompt"),
        pytest.param({"mask": None}, "kite.png", "no mask given", id="no-mask"),
        pytest.param(
            {"canvas": json.dumps({"padding": [0, 0, 16, 0]}), "mask": None},
            "kite.png",
            "takes a mask, not a canvas",
            id="canvas-on-fill",
        ),
        pytest.param(
            {"task": "image_extend", "canvas": json.dumps({"padding": [0, 0, 16, 0]})},
            "kite.png",
            "either a mask or a canvas",
            id="mask-and-canvas",
        ),
        pytest.param(
            {"task": "image_extend", "mask": None, "canvas": json.dumps({"size": [32, 32]})},
            "kite.png",
            "smaller than the source",
            id="canvas-too-small",
        ),
        pytest.param(
            {"task": "image_extend", "mask": None, "canvas": json.dumps({"padding": [0, 0, 0, 0]})},
            "kite.png",
            "adds no border",
            id="no-border",
        ),
        pytest.param(
            {"metadata": json.dumps([1, 2])}, "kite.png", "metadata must be a JSON object", id="metadata-list"
        ),
        pytest.param(
            {"metadata": json.dumps([["a", 1]])}, "kite.png", "metadata must be a JSON object", id="metadata-pairs"
        ),
        pytest.param(
            {"metadata": json.dumps("text")}, "kite.png", "metadata must be a JSON object", id="metadata-text"
        ),
    ],
)
def test_api_refuses_bad_input_with_the_problem(admin_api, fields, entry, words):
    response = post_input(admin_api, **fields)
    assert response.status_code == 400, response.content
    problems = response.json()["problems"]
    assert len(problems) == 1, problems
    assert problems[0]["entry"] == entry
    assert words in problems[0]["problem"]
    assert_nothing_stored()


def test_api_refuses_over_the_pixel_limit(admin_api, settings):
    settings.ONEREWARD_MAX_IMAGE_PIXELS = 1000
    response = post_input(admin_api)
    assert response.status_code == 400
    (problem,) = response.json()["problems"]
    assert problem["entry"] == "kite.png" and "over the limit" in problem["problem"]
    assert_nothing_stored()


def test_api_refuses_a_duplicate(admin_api):
    assert post_input(admin_api).status_code == 201
    before = stored_files()
    response = post_input(admin_api, source=upload("again.png", source_png()))
    assert response.status_code == 400
    (problem,) = response.json()["problems"]
    assert problem["entry"] == "again.png"
    assert problem["problem"] == f"already imported as input #{Input.objects.get().pk}"
    assert Input.objects.count() == 1 and stored_files() == before


@pytest.mark.parametrize(
    "fields, field, words",
    [
        pytest.param({"task": "image_paint"}, "task", "image_paint", id="unknown-task"),
        pytest.param({"source": upload("kite.png", b"")}, "source", "empty", id="empty-file"),
        pytest.param({"canvas": json.dumps({"padding": [-4, 0, 0, 0]}), "mask": None, "task": "image_extend"},
                     "canvas", "padding cannot be negative", id="negative-padding"),
        pytest.param({"canvas": "{not json"}, "canvas", "JSON", id="canvas-not-json"),
    ],
)
def test_api_refuses_bad_fields(admin_api, fields, field, words):
    response = post_input(admin_api, **fields)
    assert response.status_code == 400, response.content
    assert words in " ".join(response.json()[field])
    assert_nothing_stored()


def test_api_refuses_users_without_the_right(make_user):
    client = APIClient()
    assert post_input(client).status_code == 401
    engineer = make_user("engineer", "ml_engineer")
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=engineer).key}")
    assert post_input(client).status_code == 403
    assert_nothing_stored()


def test_api_archive_import_refuses_a_file_that_is_not_a_zip(admin_api):
    response = admin_api.post(
        "/api/input-imports/",
        {"archive": upload("inputs.tar", b"not a zip", "application/x-tar"), "task": "image_fill"},
        format="multipart",
    )
    assert response.status_code == 400
    assert "inputs.tar: give a .zip archive" in response.json()["archive"]
    assert InputImport.objects.count() == 0
    assert_nothing_stored()


# --- the admin --------------------------------------------------------------------------------

ADD_URL = "/admin/inputs/input/add/"


@pytest.fixture
def admin_browser(make_user):
    client = Client()
    client.force_login(make_user("site-admin", "admin"))
    return client


def post_form(client, url=ADD_URL, **fields):
    data = {
        "task": "image_fill",
        "source": upload("kite.png", source_png()),
        "mask": upload("kite_mask.png", mask_png()),
        "prompt": "a red kite",
        "tags": "",
        "metadata": "",
        "canvas_padding": "",
        "canvas_size": "",
        "canvas_ratio": "",
    }
    data.update({k: v for k, v in fields.items() if v is not None})
    for key in [k for k, v in fields.items() if v is None]:
        data.pop(key)
    return client.post(url, data)


def page_text(response) -> str:
    return html.unescape(response.content.decode())


def test_admin_add_view_imports_and_redirects(admin_browser):
    assert admin_browser.get(ADD_URL).status_code == 200
    response = post_form(admin_browser, tags="admin, sky", metadata='{"from": "admin"}')
    row = Input.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/inputs/input/{row.pk}/change/"
    assert row.prompt == "a red kite" and row.metadata == {"from": "admin"}
    assert sorted(row.tags.values_list("name", flat=True)) == ["admin", "sky"]
    assert row.created_by.username == "site-admin"
    assert len(stored_files()) == 3
    assert admin_browser.get(response["Location"]).status_code == 200


def test_admin_add_view_extends_with_padding(admin_browser):
    response = post_form(admin_browser, task="image_extend", mask=None, prompt="", canvas_padding="0,0,64,0")
    assert response.status_code == 302
    row = Input.objects.get()
    assert (row.width, row.height) == (128, 48)


@pytest.mark.parametrize(
    "fields, words",
    [
        pytest.param({"source": upload("kite.png", random_bytes())}, "kite.png: not an image", id="random-bytes"),
        pytest.param({"mask": upload("kite_mask.png", mask_png(32, 24, (1, 1, 5, 5)))},
                     "kite_mask.png: mask is 32x24 but its image kite.png is 64x48", id="mask-size"),
        pytest.param({"mask": upload("kite_mask.png", gradient_mask())}, "kite_mask.png: mask is not binary",
                     id="gradient"),
        pytest.param({"prompt": ""}, "kite.png: task 'image_fill' needs a prompt", id="no-prompt"),
        pytest.param({"canvas_padding": "0,0,16,0", "mask": None},
                     "kite.png: task 'image_fill' takes a mask, not a canvas", id="canvas-on-fill"),
        pytest.param({"canvas_padding": "0,0,-16,0", "mask": None, "task": "image_extend"},
                     "padding cannot be negative", id="negative-padding"),
        pytest.param({"canvas_size": "10x10", "mask": None, "task": "image_extend"},
                     "kite.png: canvas size 10x10 is smaller than the source 64x48", id="canvas-too-small"),
        pytest.param({"source": upload("kite.png", b"")}, "The submitted file is empty", id="empty-file"),
        pytest.param({"task": "image_paint"}, "Select a valid choice", id="unknown-task"),
        pytest.param({"metadata": "[1, 2]"}, "kite.png: metadata must be a JSON object", id="metadata-list"),
        pytest.param({"metadata": '[["a", 1]]'}, "kite.png: metadata must be a JSON object", id="metadata-pairs"),
    ],
)
def test_admin_add_view_rerenders_with_the_problem(admin_browser, fields, words):
    response = post_form(admin_browser, **fields)
    assert response.status_code == 200
    assert words in page_text(response)
    assert_nothing_stored()


def test_admin_add_view_reports_a_duplicate(admin_browser):
    assert post_form(admin_browser).status_code == 302
    before = stored_files()
    response = post_form(admin_browser, source=upload("again.png", source_png()))
    assert response.status_code == 200
    assert f"again.png: already imported as input #{Input.objects.get().pk}" in page_text(response)
    assert Input.objects.count() == 1 and stored_files() == before


def test_admin_add_view_is_closed_to_annotators(make_user):
    client = Client()
    client.force_login(make_user("judge", "annotator"))
    response = post_form(client)
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert_nothing_stored()


def test_admin_zip_import_view_refuses_a_file_that_is_not_a_zip(admin_browser):
    url = "/admin/inputs/input/import/"
    assert admin_browser.get(url).status_code == 200
    response = admin_browser.post(
        url, {"archive": upload("inputs.rar", b"rar!"), "task": "", "prompt": "", "tags": ""}
    )
    assert response.status_code == 200
    assert "inputs.rar: give a .zip archive" in page_text(response)
    assert InputImport.objects.count() == 0
    assert_nothing_stored()
