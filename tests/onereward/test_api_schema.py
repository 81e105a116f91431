"""The API describes itself (OpenAPI) and hands out tokens for scripts."""
import pytest
import yaml
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_openapi_schema_lists_the_endpoints(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["info"]["title"] == "OneReward platform API"
    for path in ("/api/inputs/", "/api/inputs/{id}/", "/api/input-imports/", "/api/tasks/", "/api/dimensions/",
                 "/api/generators/", "/api/generation-batches/", "/api/generation-batches/{id}/cancel/"):
        assert path in schema["paths"], path
    create = schema["paths"]["/api/inputs/"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in create


def test_interactive_docs_are_served_without_a_cdn(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger-ui" in response.content and b"cdn.jsdelivr" not in response.content


def test_token_from_username_and_password(make_user):
    make_user("boss", "admin", password="pw-for-token-1")
    client = APIClient()
    refused = client.post("/api/auth/token/", {"username": "boss", "password": "wrong"})
    assert refused.status_code == 400
    token = client.post("/api/auth/token/", {"username": "boss", "password": "pw-for-token-1"}).json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/tasks/").status_code == 200
    assert [t["slug"] for t in client.get("/api/tasks/").json()["results"]][:1] == ["image_fill"]
