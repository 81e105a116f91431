"""No integer a client sends reaches the database out of range: every integer (and number) field
of every API endpoint that writes refuses 2**31, -1 and 10**20 with a 400 naming the field.

The fields are read from the API's own OpenAPI schema, so a field or an endpoint added later is
covered without touching this test. Each body holds only the field under test: the refusal must
come from the field itself, before any rule of the record or any query could see the value."""
import json

import pytest
from django.contrib.auth.models import User
from django.urls import resolve
from drf_spectacular.generators import SchemaGenerator
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

WRITES = ("post", "put", "patch")
BAD_INTEGERS = [2**31, -1, 10**20]
BAD_NUMBERS = ["1e400", "-1e400"]  # JSON that Python reads as an infinity


def _walk(schema, components, path):
    """(path, type) of every writable integer or number in a request body schema."""
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    if schema.get("readOnly"):
        return
    for key in ("allOf", "oneOf", "anyOf"):
        for part in schema.get(key, []):
            yield from _walk(part, components, path)
    kind = schema.get("type")
    if kind == "object":
        for name, field in schema.get("properties", {}).items():
            yield from _walk(field, components, [*path, name])
    elif kind == "array":
        yield from _walk(schema.get("items", {}), components, [*path, 0])
    elif kind in ("integer", "number"):
        yield tuple(path), kind


def writable_numbers():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    found = set()
    for url, operations in schema["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if method in WRITES and "application/json" in content:
                for path, kind in _walk(content["application/json"]["schema"], components, []):
                    found.add((method.upper(), url, path, kind))
    return sorted(found, key=str)


FIELDS = writable_numbers()
CASES = [
    pytest.param(method, url, path, value, id=f"{method} {url} {'.'.join(map(str, path))}={value}")
    for method, url, path, kind in FIELDS
    for value in (BAD_INTEGERS if kind == "integer" else BAD_NUMBERS)
]


def test_the_schema_shows_the_fields_this_test_is_about():
    # A guard against discovering nothing: some fields every version of the API has.
    keys = {(method, url, path) for method, url, path, _ in FIELDS}
    assert {
        ("POST", "/api/generation-batches/", ("candidates_per_input",)),
        ("POST", "/api/generation-batches/", ("inputs", 0)),
        ("POST", "/api/studies/", ("arms", 0, "batch")),
        ("POST", "/api/reward-model-runs/", ("batch_size",)),
        ("POST", "/api/rl-runs/", ("seed",)),
        ("POST", "/api/preference-datasets/", ("split_seed",)),
        ("POST", "/api/reward-models/{id}/send-back/", ("count",)),
        ("POST", "/api/policy-checkpoints/{id}/human-study/", ("judgments_per_item",)),
    } <= keys


@pytest.fixture
def records(tmp_path):
    """One row behind each detail route that takes a body."""
    from generation.models import Generator
    from preferences.models import PreferenceDataset
    from rewardmodel.models import RewardModelRun, RewardModelVersion
    from rl.models import CollectionSchedule, PolicyCheckpoint, RLRun

    base = Generator.objects.create(name="base", backend="cpu_baseline", settings={})
    dataset = PreferenceDataset.objects.create(name="d", version=1, status="done")
    judge = RewardModelVersion.objects.create(run=RewardModelRun.objects.create(dataset=dataset, status="done"),
                                              name="judge", model_path=str(tmp_path), base_model="tiny",
                                              template_version=1)
    run = RLRun.objects.create(base_generator=base, reward_model=judge, status="done")
    policy = Generator.objects.create(name="policy", backend="cpu_baseline", settings={})
    PolicyCheckpoint.objects.create(run=run, generator=policy, path=str(tmp_path))
    CollectionSchedule.objects.create(name="nightly", every_hours=24)


def concrete(url: str) -> str:
    if "{id}" not in url:
        return url
    model = resolve(url.replace("{id}", "1")).func.cls.queryset.model
    row = model.objects.order_by("pk").first()
    if row is None:
        pytest.fail(f"{url} needs a {model.__name__} row: add one to the `records` fixture")
    return url.replace("{id}", str(row.pk))


def body_with(path: tuple, value):
    if not path:
        return value
    head, rest = path[0], path[1:]
    return [body_with(rest, value)] if isinstance(head, int) else {head: body_with(rest, value)}


def error_at(errors, path: tuple):
    """The messages the response gives for the field at `path`, or None when it names none."""
    for step in path:
        if isinstance(step, int) and isinstance(errors, list):
            if all(isinstance(message, str) for message in errors):
                return errors or None  # a list of ids answers for the whole list
            errors = errors[step] if step < len(errors) else None
        elif isinstance(errors, dict):
            errors = errors.get(str(step))  # a list of values answers per index: {"0": [...]}
        else:
            return None
        if not errors:
            return None
    return errors


@pytest.fixture
def root_api():
    client = APIClient()
    superuser = User.objects.create(username="root", is_superuser=True, is_staff=True)  # token only: no password
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=superuser).key}")
    return client


@pytest.mark.parametrize("method, url, path, value", CASES)
def test_out_of_range_values_are_refused_by_their_field(records, root_api, method, url, path, value):
    body = json.dumps(body_with(path, "@")).replace('"@"', str(value))
    response = root_api.generic(method, concrete(url), body, content_type="application/json")
    assert response.status_code == 400, response.content[:500]
    assert response["Content-Type"] == "application/json"
    assert error_at(response.json(), path), f"no error for {'.'.join(map(str, path))} in {response.json()}"
