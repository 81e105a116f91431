"""Settings come from the environment: defaults need no server, variables switch services on."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

PRODUCTION_ENV = {
    "ONEREWARD_PRODUCTION": "1",
    "DJANGO_SECRET_KEY": "x7Qp2-very-long-random-secret-for-the-deploy-check-4f9a1c8e2b7d6a5c3e1f0",
    "DJANGO_ALLOWED_HOSTS": "onereward.example.org",
}


def run_python(code: str, env: dict, unset=("DATABASE_URL", "CELERY_BROKER_URL", "ONEREWARD_S3_BUCKET")):
    clean = {k: v for k, v in os.environ.items() if k not in unset}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=clean, capture_output=True, text=True, timeout=120
    )


SHOW = (
    "import json, django; django.setup(); from django.conf import settings as s;"
    "from django.core.files.storage import storages;"
    "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], 'name': str(s.DATABASES['default']['NAME']),"
    "'host': s.DATABASES['default'].get('HOST'), 'broker': s.CELERY_BROKER_URL, 'debug': s.DEBUG,"
    "'storage': type(storages['default']).__name__,"
    "'queues': [q.name for q in s.CELERY_TASK_QUEUES]}))"
)


def settings_for(env: dict, tmp_path) -> dict:
    result = run_python(
        SHOW, {"DJANGO_SETTINGS_MODULE": "onereward.settings", "ONEREWARD_DATA_DIR": str(tmp_path), **env}
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_defaults_need_no_server(tmp_path):
    shown = settings_for({}, tmp_path)
    assert shown["engine"] == "django.db.backends.sqlite3"
    assert shown["name"] == str(tmp_path / "onereward.sqlite3")
    assert shown["broker"] == "filesystem://"
    assert shown["storage"] == "FileSystemStorage"
    assert shown["debug"] is True
    assert {"default", "gpu"} <= set(shown["queues"])


def test_database_url_switches_to_postgresql(tmp_path):
    shown = settings_for({"DATABASE_URL": "postgres://someone:pw@db.internal:5433/onereward"}, tmp_path)
    assert shown["engine"] == "django.db.backends.postgresql"
    assert (shown["name"], shown["host"]) == ("onereward", "db.internal")


def test_broker_and_storage_variables(tmp_path):
    shown = settings_for(
        {"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//", "ONEREWARD_S3_BUCKET": "media"}, tmp_path
    )
    assert shown["broker"].startswith("amqp://")
    assert shown["storage"] == "S3Storage"


def test_production_mode_passes_the_deploy_check(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **{k: v for k, v in os.environ.items() if k != "DJANGO_DEBUG"},
            **PRODUCTION_ENV,
            "ONEREWARD_DATA_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize(
    "env, message",
    [
        ({"DJANGO_SECRET_KEY": ""}, "needs DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "short"}, "needs DJANGO_SECRET_KEY"),
        ({"DJANGO_DEBUG": "1"}, "cannot run with DJANGO_DEBUG=1"),
        ({"DJANGO_DEBUG": "maybe"}, "is not a boolean"),
    ],
)
def test_production_mode_refuses_unsafe_settings(tmp_path, env, message):
    result = run_python(
        "import django; django.setup()", {**PRODUCTION_ENV, "ONEREWARD_DATA_DIR": str(tmp_path), **env}
    )
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize("command", [["check", "--fail-level", "WARNING"], ["makemigrations", "--check", "--dry-run"]])
def test_project_checks_are_clean(tmp_path, command):
    result = subprocess.run([sys.executable, "manage.py", *command], cwd=REPO, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "ONEREWARD_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_serves_the_api_schema_to_logged_in_users_only(tmp_path):
    code = (
        "import django; django.setup();"
        "from django.test import Client;"
        "print(Client().get('/api/schema/', secure=True, HTTP_HOST='onereward.example.org').status_code)"
    )
    env = {**PRODUCTION_ENV, "DJANGO_SETTINGS_MODULE": "onereward.settings", "ONEREWARD_DATA_DIR": str(tmp_path)}
    refused = run_python(code, env)
    assert refused.returncode == 0, refused.stderr
    assert refused.stdout.strip().splitlines()[-1] in ("401", "403")
    opened = run_python(code, {**env, "ONEREWARD_PUBLIC_API_SCHEMA": "1"})
    assert opened.stdout.strip().splitlines()[-1] == "200", opened.stderr
