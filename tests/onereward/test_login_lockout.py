"""Repeated wrong passwords lock a username at one address on every way in (the login page, the admin's
login page, the API token), until the cool-off ends or an admin unlocks it; a success starts the
count again."""
import io

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client

from tests.onereward.test_settings import run_python

pytestmark = pytest.mark.django_db

PASSWORD = "right-pass-for-tests-1"
ENDPOINTS = ["login page", "admin login", "api token"]


def attempt(client, endpoint: str, password: str, username: str = "boss", **extra):
    if endpoint == "login page":
        return client.post("/accounts/login/", {"username": username, "password": password}, **extra)
    if endpoint == "admin login":
        return client.post("/admin/login/?next=/admin/", {"username": username, "password": password,
                                                          "next": "/admin/"}, **extra)
    return client.post("/api/auth/token/", {"username": username, "password": password}, **extra)


def logged_in(endpoint: str, response) -> bool:
    if endpoint == "api token":
        return response.status_code == 200 and "token" in response.json()
    return response.status_code == 302 and "/login/" not in response["Location"]


def refused_as_wrong(endpoint: str, response) -> bool:
    # The form shown again with its error, or DRF's 400: a plain wrong password, not the lockout.
    return response.status_code == (400 if endpoint == "api token" else 200)


def assert_locked(endpoint: str, response):
    minutes = settings.ONEREWARD_LOGIN_COOLOFF_MINUTES
    assert response.status_code == 429, response.content[:300]
    assert response["Retry-After"] == str(minutes * 60)
    if endpoint == "api token":
        body = response.json()
        assert body["retry_after_seconds"] == minutes * 60
        text = body["detail"]
    else:
        assert response["Content-Type"].startswith("text/html")
        text = response.content.decode()
    assert f"Try again in {minutes} minutes" in text and "admin" in text


def lock_out(client, endpoint: str, **extra):
    limit = settings.AXES_FAILURE_LIMIT
    for _ in range(limit - 1):
        assert refused_as_wrong(endpoint, attempt(client, endpoint, "wrong-guess", **extra))
    # The attempt that reaches the limit is already answered with the lockout.
    assert_locked(endpoint, attempt(client, endpoint, "wrong-guess", **extra))


@pytest.fixture(autouse=True)
def quick_password_hashing(settings):
    # Dozens of password checks per test: the lockout does not depend on how slow the hash is.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def boss(make_user):
    return make_user("boss", "admin", password=PASSWORD)


def test_the_limit_and_cool_off_come_from_the_environment(tmp_path):
    show = ("import django; django.setup(); from django.conf import settings as s;"
            "print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME)")
    env = {"DJANGO_SETTINGS_MODULE": "onereward.settings", "ONEREWARD_DATA_DIR": str(tmp_path)}
    assert run_python(show, env).stdout.split() == ["5", "0:15:00"]
    configured = run_python(show, {**env, "ONEREWARD_LOGIN_FAILURE_LIMIT": "8",
                                   "ONEREWARD_LOGIN_COOLOFF_MINUTES": "0"})
    assert configured.stdout.split() == ["8", "None"]
    refused = run_python(show, {**env, "ONEREWARD_LOGIN_FAILURE_LIMIT": "0"})
    assert refused.returncode != 0 and "ONEREWARD_LOGIN_FAILURE_LIMIT=0: give 1 or more" in refused.stderr


def test_without_a_cool_off_the_lock_lasts_until_an_admin_unlocks(boss, settings):
    settings.AXES_COOLOFF_TIME = None
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = attempt(client, "api token", "wrong-guess")
    response = attempt(client, "api token", PASSWORD)
    assert response.status_code == 429 and "Retry-After" not in response
    assert response.json()["retry_after_seconds"] is None
    assert "stays locked until a platform admin unlocks it" in response.json()["detail"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_wrong_passwords_lock_out_even_the_right_one(boss, endpoint):
    client = Client()
    lock_out(client, endpoint)
    assert_locked(endpoint, attempt(client, endpoint, PASSWORD))
    assert AccessAttempt.objects.get(username="boss", ip_address="127.0.0.1").failures_since_start == (
        settings.AXES_FAILURE_LIMIT + 1)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_the_lock_holds_one_username_at_one_address(boss, make_user, endpoint):
    make_user("colleague", "admin", password=PASSWORD)
    client = Client()
    lock_out(client, endpoint)
    # The same user from another address, and another user from the attacker's address, still get in.
    assert logged_in(endpoint, attempt(Client(), endpoint, PASSWORD, REMOTE_ADDR="10.0.0.7"))
    assert logged_in(endpoint, attempt(Client(), endpoint, PASSWORD, username="colleague"))


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_success_starts_the_count_again(boss, endpoint):
    for _ in range(2):
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            assert refused_as_wrong(endpoint, attempt(Client(), endpoint, "wrong-guess"))
        assert logged_in(endpoint, attempt(Client(), endpoint, PASSWORD))
    assert not AccessAttempt.objects.filter(username="boss").exists()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_platform_admin_unlocks_from_the_admin(boss, make_user, endpoint):
    lock_out(Client(), endpoint)
    row = AccessAttempt.objects.get(username="boss")

    admin = Client()
    admin.force_login(make_user("unlocker", "admin"))
    listing = admin.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and b"boss" in listing.content and b"Locked Out" in listing.content
    confirm = admin.get(f"/admin/axes/accessattempt/{row.pk}/delete/")
    assert confirm.status_code == 200
    deleted = admin.post(f"/admin/axes/accessattempt/{row.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert not AccessAttempt.objects.filter(pk=row.pk).exists()

    assert logged_in(endpoint, attempt(Client(), endpoint, PASSWORD))


def test_only_platform_admins_reach_the_lockout_records(make_user):
    perms = {f"{p.content_type.app_label}.{p.codename}"
             for p in Group.objects.get(name="Platform admins").permissions.select_related("content_type")}
    assert {"axes.view_accessattempt", "axes.delete_accessattempt", "axes.view_accesslog"} <= perms
    assert "axes.add_accessattempt" not in perms and "axes.delete_accesslog" not in perms
    engineer = Client()
    engineer.force_login(make_user("eve", "ml_engineer"))
    assert engineer.get("/admin/axes/accessattempt/").status_code == 403


@pytest.mark.parametrize("command, args", [("axes_reset_username", ["boss"]), ("axes_reset", [])])
def test_the_reset_commands_unlock(boss, command, args):
    lock_out(Client(), "api token")
    call_command(command, *args, stdout=io.StringIO())
    assert logged_in("api token", attempt(Client(), "api token", PASSWORD))


def test_behind_trusted_proxies_the_lock_follows_the_forwarded_address(boss, settings):
    settings.ONEREWARD_TRUSTED_PROXY_COUNT = 1
    proxy = {"REMOTE_ADDR": "172.18.0.2"}
    # What the client writes into the header itself comes before what the proxy appended.
    lock_out(Client(), "api token", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.5", **proxy)
    assert AccessAttempt.objects.get(username="boss").ip_address == "203.0.113.5"
    # A new forged entry does not get the attacker out of the lock...
    assert_locked("api token", attempt(Client(), "api token", PASSWORD,
                                       HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.5", **proxy))
    # ...and another client behind the same proxy is not locked with them.
    assert logged_in("api token", attempt(Client(), "api token", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.7",
                                          **proxy))


def test_without_trusted_proxies_the_forwarded_header_is_ignored(boss):
    lock_out(Client(), "api token", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert_locked("api token", attempt(Client(), "api token", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.7"))
