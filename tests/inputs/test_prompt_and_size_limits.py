"""Two rules every way in applies: a prompt of at most ONEREWARD_MAX_PROMPT_CHARS characters, and
images of at least ONEREWARD_MIN_IMAGE_SIDE pixels a side. Folder and zip files, manifests, the
admin forms, the API serializers and the defaults given for an import."""
import html
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from inputs.core.sources import ImportDefaults, specs_from_path
from inputs.importing import find_problems, import_inputs, zip_limits
from inputs.models import Input, InputImport

from .import_helpers import assert_nothing_stored, fill_spec, mask_png, problem_lines, source_png, zip_bytes
from .test_import_entrypoints import failing_command, run_command, write_files

pytestmark = pytest.mark.django_db

LIMIT = 2000  # the default
TOO_LONG = "a" * (LIMIT + 1)
TOO_LONG_WORDS = f"prompt is {LIMIT + 1:,} characters long, over the limit of {LIMIT:,} (ONEREWARD_MAX_PROMPT_CHARS)"


@pytest.fixture
def admin_api(make_user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=make_user('api', 'admin')).key}")
    return client


@pytest.fixture
def admin_browser(make_user):
    client = Client()
    client.force_login(make_user("site-admin", "admin"))
    return client


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="image/png")


def post_input(client, prompt="a red kite", source=None, mask=None):
    return client.post("/api/inputs/", {
        "task": "image_fill", "prompt": prompt,
        "source": upload("kite.png", source or source_png()), "mask": upload("kite_mask.png", mask or mask_png()),
    }, format="multipart")


def post_form(client, prompt="a red kite", source=None, mask=None):
    return client.post("/admin/inputs/input/add/", {
        "task": "image_fill", "prompt": prompt, "tags": "", "metadata": "", "canvas_padding": "",
        "canvas_size": "", "canvas_ratio": "",
        "source": upload("kite.png", source or source_png()), "mask": upload("kite_mask.png", mask or mask_png()),
    })


# --- the prompt -------------------------------------------------------------------------------


def test_a_prompt_at_the_limit_is_kept_and_one_over_it_is_refused():
    (row,) = import_inputs([fill_spec("a.png", prompt="a" * LIMIT)])
    assert row.prompt == "a" * LIMIT
    _, problems = find_problems([fill_spec("b.png", seed=1, prompt=TOO_LONG)])
    assert problem_lines(problems) == [f"b.png: {TOO_LONG_WORDS}"]


def test_the_prompt_limit_is_the_setting(settings):
    settings.ONEREWARD_MAX_PROMPT_CHARS = 10
    _, problems = find_problems([fill_spec("a.png", prompt="eleven char")])
    assert problem_lines(problems) == [
        "a.png: prompt is 11 characters long, over the limit of 10 (ONEREWARD_MAX_PROMPT_CHARS)"
    ]
    assert find_problems([fill_spec("a.png", prompt="ten chars!")])[1] == []


def test_api_refuses_a_five_megabyte_prompt(admin_api):
    response = post_input(admin_api, prompt="x" * 5_000_000)
    assert response.status_code == 400
    assert response.json()["prompt"] == [
        "prompt is 5,000,000 characters long, over the limit of 2,000 (ONEREWARD_MAX_PROMPT_CHARS)"
    ]
    assert_nothing_stored()


def test_api_archive_import_refuses_a_default_prompt_over_the_limit(admin_api):
    archive = SimpleUploadedFile("batch.zip", zip_bytes({"a.png": source_png(), "a_mask.png": mask_png()}))
    response = admin_api.post("/api/input-imports/", {"archive": archive, "task": "image_fill", "prompt": TOO_LONG},
                              format="multipart")
    assert response.status_code == 400
    assert response.json()["prompt"] == [TOO_LONG_WORDS]
    assert InputImport.objects.count() == 0
    assert_nothing_stored()


def test_admin_forms_refuse_a_prompt_over_the_limit(admin_browser):
    response = post_form(admin_browser, prompt=TOO_LONG)
    assert response.status_code == 200
    assert TOO_LONG_WORDS in html.unescape(response.content.decode())
    archive = SimpleUploadedFile("batch.zip", zip_bytes({"a.png": source_png(), "a_mask.png": mask_png()}))
    response = admin_browser.post("/admin/inputs/input/import/", {"archive": archive, "task": "image_fill",
                                                                  "prompt": TOO_LONG, "tags": ""})
    assert response.status_code == 200
    assert TOO_LONG_WORDS in html.unescape(response.content.decode())
    assert InputImport.objects.count() == 0
    assert_nothing_stored()


def test_command_refuses_a_default_prompt_over_the_limit(tmp_path):
    write_files(tmp_path, {"a.png": source_png(), "a_mask.png": mask_png()})
    message, _ = failing_command(str(tmp_path), task="image_fill", prompt=TOO_LONG)
    assert message == f"--prompt: {TOO_LONG_WORDS}"
    assert_nothing_stored()


def test_prompts_from_files_manifests_and_defaults_are_held_to_the_limit(tmp_path):
    folder = write_files(tmp_path / "folder", {
        "txt.png": source_png(0), "txt_mask.png": mask_png(), "txt.txt": TOO_LONG,
        "json.png": source_png(1), "json_mask.png": mask_png(), "json.json": json.dumps({"prompt": TOO_LONG}),
        "default.png": source_png(2), "default_mask.png": mask_png(),
    })
    specs, problems = specs_from_path(folder, ImportDefaults(task="image_fill", prompt=TOO_LONG), zip_limits())
    assert problems == []
    assert sorted(problem_lines(find_problems(specs)[1])) == [
        f"default.png: {TOO_LONG_WORDS}", f"json.png: {TOO_LONG_WORDS}", f"txt.png: {TOO_LONG_WORDS}",
    ]
    archive = tmp_path / "batch.zip"
    archive.write_bytes(zip_bytes({
        "manifest.jsonl": (json.dumps({"image": "a.png", "mask": "a_mask.png", "prompt": TOO_LONG}) + "\n").encode(),
        "a.png": source_png(0), "a_mask.png": mask_png(),
    }))
    _, err = failing_command(str(archive), task="image_fill")
    assert err.strip() == f"manifest.jsonl line 1: {TOO_LONG_WORDS}"
    assert_nothing_stored()


# --- the smallest image -----------------------------------------------------------------------


def small_words(width: int, height: int, side: int = 32) -> str:
    return f"image is {width}x{height}, under the minimum of {side} pixels a side (ONEREWARD_MIN_IMAGE_SIDE)"


def test_an_eight_pixel_image_is_refused_through_the_api(admin_api):
    response = post_input(admin_api, source=source_png(0, 8, 8), mask=mask_png(8, 8, (2, 2, 6, 6)))
    assert response.status_code == 400
    assert response.json()["problems"] == [{"entry": "kite.png", "problem": small_words(8, 8)}]
    assert_nothing_stored()


def test_an_eight_pixel_image_is_refused_by_the_admin_form(admin_browser):
    response = post_form(admin_browser, source=source_png(0, 8, 8), mask=mask_png(8, 8, (2, 2, 6, 6)))
    assert response.status_code == 200
    assert f"kite.png: {small_words(8, 8)}" in html.unescape(response.content.decode())
    assert_nothing_stored()


def test_an_eight_pixel_mask_is_refused_beside_a_large_enough_image(admin_api):
    response = post_input(admin_api, mask=mask_png(8, 8, (2, 2, 6, 6)))
    assert response.status_code == 400
    (problem,) = response.json()["problems"]
    assert problem["entry"] == "kite_mask.png" and problem["problem"].startswith("mask is 8x8 but its image")
    assert_nothing_stored()


def test_small_images_in_folders_and_zips_are_refused_naming_the_entry(tmp_path):
    files = {
        "thin.png": source_png(0, 200, 16), "thin_mask.png": mask_png(200, 16, (0, 0, 50, 8)), "thin.txt": "x",
        "edge.png": source_png(1, 32, 32), "edge_mask.png": mask_png(32, 32, (0, 0, 8, 8)), "edge.txt": "y",
    }
    _, err = failing_command(str(write_files(tmp_path / "folder", files)), task="image_fill")
    assert err.strip() == f"thin.png: {small_words(200, 16)}"
    archive = tmp_path / "batch.zip"
    archive.write_bytes(zip_bytes({"extend.png": source_png(0, 16, 16)}))
    _, err = failing_command(str(archive), task="image_extend", extend_padding="0,0,64,0")
    assert err.strip() == f"extend.png: {small_words(16, 16)}"
    assert_nothing_stored()
    # 32x32 is the default minimum itself, and is imported.
    del files["thin.png"], files["thin_mask.png"], files["thin.txt"]
    assert "Imported 1 input(s)" in run_command(str(write_files(tmp_path / "ok", files)), task="image_fill")[0]


def test_the_minimum_side_is_the_setting(settings):
    settings.ONEREWARD_MIN_IMAGE_SIDE = 64
    _, problems = find_problems([fill_spec("a.png")])  # 64x48
    assert problem_lines(problems) == [f"a.png: {small_words(64, 48, side=64)}"]
    square = fill_spec("b.png", source=source_png(0, 64, 64), mask=mask_png(64, 64))
    assert [row.original_name for row in import_inputs([square])] == ["b.png"]
    assert Input.objects.count() == 1


def test_the_demo_inputs_pass_a_minimum_of_64_pixels(settings):
    from inputs.demo_inputs import demo_specs

    settings.ONEREWARD_MIN_IMAGE_SIDE = 64
    prepared, problems = find_problems(demo_specs())
    assert problems == [] and len(prepared) == len(demo_specs())
