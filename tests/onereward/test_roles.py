"""Each role reaches what it should, in the admin, the API and the pages, and nothing more."""
import pytest
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from onereward.roles import ROLES, assign_role

pytestmark = pytest.mark.django_db


def logged_in(client, user):
    client.force_login(user)
    return client


def api_for(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_role_groups_exist_with_their_permissions():
    groups = {
        g.name: {f"{p.content_type.app_label}.{p.codename}" for p in g.permissions.select_related("content_type")}
        for g in Group.objects.all()
    }
    assert groups["Annotators"] == {"annotation.annotate"}
    assert {"inputs.add_input", "inputs.change_task", "inputs.view_inputimport"} <= groups["Platform admins"]
    assert "annotation.annotate" in groups["Platform admins"]  # admins may try the annotation page
    assert "inputs.view_input" in groups["ML engineers"]
    assert "inputs.add_input" not in groups["ML engineers"]


@pytest.mark.parametrize("role, staff", [("annotator", False), ("admin", True), ("ml_engineer", True)])
def test_staff_flag_follows_the_role(make_user, role, staff):
    assert make_user("u", role).is_staff is staff


def test_annotator_made_staff_by_hand_still_cannot_open_the_admin(client, make_user):
    annotator = make_user("ann", "annotator")
    type(annotator).objects.filter(pk=annotator.pk).update(is_staff=True)
    response = logged_in(client, annotator).get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_changing_role_updates_staff(make_user):
    user = make_user("u", "admin")
    assign_role(user, "annotator")
    user.refresh_from_db()
    assert user.is_staff is False
    assert [g.name for g in user.groups.all()] == [ROLES["annotator"].group_name]


def test_staff_follows_group_edits_from_either_side(make_user):
    user = make_user("u")
    Group.objects.get(name="ML engineers").user_set.add(user)
    user.refresh_from_db()
    assert user.is_staff is True
    user.groups.clear()
    user.refresh_from_db()
    assert user.is_staff is False


def test_unknown_role_is_refused(make_user):
    with pytest.raises(ValueError, match="unknown role 'boss'"):
        assign_role(make_user("u"), "boss")


@pytest.mark.parametrize(
    "role, url, status",
    [
        ("annotator", "/admin/", 302),
        ("annotator", "/admin/inputs/input/", 302),
        ("admin", "/admin/", 200),
        ("admin", "/admin/inputs/input/", 200),
        ("admin", "/admin/inputs/input/add/", 200),
        ("admin", "/admin/inputs/input/import/", 200),
        ("admin", "/admin/inputs/task/", 200),
        ("ml_engineer", "/admin/", 200),
        ("ml_engineer", "/admin/inputs/input/", 200),
        ("ml_engineer", "/admin/inputs/input/add/", 403),
        ("ml_engineer", "/admin/inputs/input/import/", 403),
        ("ml_engineer", "/admin/inputs/task/1/change/", 200),  # read-only view
    ],
)
def test_admin_access(client, make_user, role, url, status):
    response = logged_in(client, make_user("u", role)).get(url)
    assert response.status_code == status


def test_ml_engineer_cannot_edit_the_taxonomy(client, make_user):
    from inputs.models import Task

    task = Task.objects.get(slug="image_fill")
    response = logged_in(client, make_user("u", "ml_engineer")).post(
        f"/admin/inputs/task/{task.pk}/change/", {"name": "Hacked"}
    )
    assert response.status_code == 403
    task.refresh_from_db()
    assert task.name == "Image fill"


@pytest.mark.parametrize(
    "role, method, url, status",
    [
        ("annotator", "get", "/api/inputs/", 403),
        ("annotator", "get", "/api/tasks/", 403),
        ("annotator", "get", "/api/input-imports/", 403),
        ("annotator", "post", "/api/inputs/", 403),
        ("admin", "get", "/api/inputs/", 200),
        ("admin", "get", "/api/tasks/", 200),
        ("admin", "get", "/api/input-imports/", 200),
        ("ml_engineer", "get", "/api/inputs/", 200),
        ("ml_engineer", "post", "/api/inputs/", 403),
        ("ml_engineer", "post", "/api/input-imports/", 403),
        (None, "get", "/api/inputs/", 401),
    ],
)
def test_api_access(make_user, role, method, url, status):
    client = api_for(make_user("u", role)) if role else APIClient()
    assert getattr(client, method)(url).status_code == status


@pytest.mark.parametrize(
    "role, url, status",
    [
        ("annotator", "/inputs/", 403),
        ("annotator", "/annotate/", 200),
        ("admin", "/inputs/", 200),
        ("admin", "/annotate/", 200),
        ("ml_engineer", "/inputs/", 200),
        ("ml_engineer", "/annotate/", 403),
        (None, "/inputs/", 403),
    ],
)
def test_page_access(client, make_user, role, url, status):
    user = make_user("u", role)
    assert logged_in(client, user).get(url).status_code == status


def test_home_sends_each_role_to_its_page(client, make_user):
    assert logged_in(client, make_user("a", "annotator")).get("/")["Location"] == "/annotate/"
    assert logged_in(client, make_user("b", "admin")).get("/")["Location"] == "/inputs/"
    assert client.logout() is None
    assert client.get("/")["Location"].startswith("/accounts/login/")
