"""Every failure under /api/ answers JSON, with the status that says what went wrong; pages keep
their HTML answers."""
import json

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024


def detail(response) -> str:
    assert response["Content-Type"] == "application/json", (response.status_code, response.content[:200])
    return json.loads(response.content)["detail"]


@pytest.fixture
def admin_api(make_user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=make_user('boss', 'admin')).key}")
    return client


def test_the_limit_is_the_setting():
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == 10 * MIB


def test_a_form_field_over_the_limit_is_413_naming_it():
    response = Client().post("/api/auth/token/", {"username": "boss", "password": "x" * (11 * MIB)})
    assert response.status_code == 413
    text = detail(response)
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in text and "10.0 MiB" in text
    assert response.json()["setting"] == "DATA_UPLOAD_MAX_MEMORY_SIZE" and response.json()["limit"] == 10 * MIB


@pytest.mark.parametrize("content_type, body", [
    ("application/json", json.dumps({"name": "x" * (11 * MIB)})),
    ("application/x-www-form-urlencoded", "name=" + "x" * (11 * MIB)),
])
def test_a_body_over_the_limit_is_413_before_it_is_read(admin_api, content_type, body):
    response = admin_api.generic("POST", "/api/generation-batches/", body, content_type=content_type)
    assert response.status_code == 413
    assert "The request body is 11.0 MiB" in detail(response) and "DATA_UPLOAD_MAX_MEMORY_SIZE" in detail(response)


def test_an_upload_over_the_limit_of_files_or_fields_is_413(admin_api):
    fields = {f"f{i}": "v" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}
    response = admin_api.post("/api/inputs/", fields, format="multipart")
    assert response.status_code == 413 and "DATA_UPLOAD_MAX_NUMBER_FIELDS" in detail(response)
    assert response.json()["limit"] == settings.DATA_UPLOAD_MAX_NUMBER_FIELDS

    files = {f"f{i}": SimpleUploadedFile(f"{i}.png", b"x") for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1)}
    response = admin_api.post("/api/inputs/", files, format="multipart")
    assert response.status_code == 413 and "DATA_UPLOAD_MAX_NUMBER_FILES" in detail(response)


def test_a_large_file_is_not_refused_by_the_field_limit():
    # Files stream to disk: only the other fields count against DATA_UPLOAD_MAX_MEMORY_SIZE.
    big = SimpleUploadedFile("big.bin", b"\0" * (11 * MIB))
    response = Client().post("/api/auth/token/", {"username": "nobody", "password": "x", "attachment": big})
    assert response.status_code == 400 and "Unable to log in" in response.json()["non_field_errors"][0]


@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_an_unknown_api_url_is_404_json(admin_api, method):
    response = getattr(admin_api, method)("/api/no-such-endpoint/")
    assert response.status_code == 404
    assert "No API endpoint at /api/no-such-endpoint/" in detail(response)


def test_an_unknown_page_keeps_the_html_404(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_a_missing_object_and_a_refused_permission_are_json(admin_api, make_user):
    assert admin_api.get("/api/generation-batches/999999/").status_code == 404
    annotator = APIClient()
    annotator.force_authenticate(make_user("ann", "annotator"))
    response = annotator.get("/api/generation-batches/")
    assert response.status_code == 403 and detail(response)
    assert APIClient().get("/api/generation-batches/").status_code == 401


def test_a_method_not_allowed_is_405_json(admin_api):
    response = admin_api.put("/api/generation-batches/", {}, format="json")
    assert response.status_code == 405 and 'Method "PUT" not allowed' in detail(response)
    response = Client().get("/api/auth/token/")
    assert response.status_code == 405 and detail(response)


def test_a_csrf_failure_is_403_json(make_user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(make_user("boss", "admin"))
    response = client.post("/api/generators/", {"name": "g", "backend": "cpu_baseline"}, format="json")
    assert response.status_code == 403 and "CSRF" in detail(response)


@pytest.mark.urls("tests.onereward.api_error_urls")
def test_a_server_error_is_500_json_without_the_traceback():
    response = Client(raise_request_exception=False).get("/api/test-errors/explode/")
    assert response.status_code == 500
    text = detail(response)
    assert "Internal server error" in text
    assert b"Traceback" not in response.content and b"hunter2" not in response.content
    assert b"Explosion" not in response.content
    page = Client(raise_request_exception=False).get("/test-errors/explode/")
    assert page.status_code == 500 and page["Content-Type"].startswith("text/html")


@pytest.mark.urls("tests.onereward.api_error_urls")
def test_errors_of_views_outside_drf_are_json_too():
    client = Client(enforce_csrf_checks=True)
    response = client.get("/api/test-errors/forbidden/")
    assert response.status_code == 403 and detail(response) == "Only the owner may do this."
    response = client.get("/api/test-errors/bad/")
    assert response.status_code == 400 and "the 'when' parameter is not a date" in detail(response)
    response = client.get("/api/test-errors/form/")
    assert response.status_code == 405 and response["Allow"] == "POST" and "use POST" in detail(response)
    response = client.post("/api/test-errors/form/", {"a": "b"})
    assert response.status_code == 403 and "CSRF check failed" in detail(response)
    # With a CSRF cookie, the check reads the form before the view does: the exception goes to
    # Django's 400 handler, which answers the 413 in JSON.
    client.cookies["csrftoken"] = "a" * 32
    response = client.post("/api/test-errors/form/", {"a": "x" * (11 * MIB)})
    assert response.status_code == 413 and "DATA_UPLOAD_MAX_MEMORY_SIZE" in detail(response)
    # Pages are untouched.
    page = client.post("/test-errors/form/", {"a": "b"})
    assert page.status_code == 403 and page["Content-Type"].startswith("text/html")
