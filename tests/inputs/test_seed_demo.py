"""`seed_demo` makes one user per role and demo inputs for every task from real photographs."""
import numpy as np
import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.test import RequestFactory
from PIL import Image

from inputs.models import Input, Task
from onereward.roles import roles_of

pytestmark = pytest.mark.django_db


def seed(tmp_path, *args) -> str:
    out = tmp_path / "out.txt"
    with open(out, "w") as stream:
        call_command("seed_demo", "--skip-models", *args, stdout=stream)
    return out.read_text()


def test_users_with_printed_passwords_and_inputs_for_every_task(tmp_path, settings):
    settings.DATA_DIR = tmp_path
    output = seed(tmp_path)
    logins = {line.split()[0]: line.split() for line in output.splitlines() if line.startswith("  ")}
    assert set(logins) == {"admin", "mlengineer", "annotator1", "annotator2"}
    for username, (_, password, role) in logins.items():
        # As the login page asks (the login lockout needs the request).
        user = authenticate(RequestFactory().post("/accounts/login/"), username=username, password=password)
        assert user is not None, username
        assert [r.slug for r in roles_of(user)] == [role]
    assert (tmp_path / "demo-logins.txt").read_text().count("\n") == 4

    assert Input.objects.count() == 10
    for task in Task.objects.all():
        assert Input.objects.filter(task=task).count() >= 2, task.slug
    for item in Input.objects.all():
        mask = np.asarray(Image.open(item.mask))
        assert set(np.unique(mask)) == {0, 255}
        assert 0.02 < item.mask_coverage < 0.6, (item, item.mask_coverage)
        assert item.tags.filter(name="demo").exists()
    for item in Input.objects.filter(task__slug="image_extend"):
        assert item.width % 16 == 0 and item.height % 16 == 0


def test_running_it_again_changes_nothing(tmp_path, settings):
    settings.DATA_DIR = tmp_path
    seed(tmp_path)
    again = seed(tmp_path)
    assert "0 new" in again and again.count("(unchanged)") == 4
    assert Input.objects.count() == 10
