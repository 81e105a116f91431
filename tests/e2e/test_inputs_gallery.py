"""A person logs in with a demo account and sees the demo inputs (real headless Chromium)."""
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from inputs.models import Input

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def seed_demo_with_password(tmp_path, username, password):
    """The demo, with a known password for one of its users."""
    call_command("seed_demo", "--skip-models", stdout=open(tmp_path / "seed.txt", "w"))
    user = User.objects.get(username=username)
    user.set_password(password)
    user.save()


def log_in(page, base_url, username, password):
    page.goto(base_url + "/")
    assert "/accounts/login/" in page.url
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


def test_admin_sees_the_demo_inputs_after_login(live_server, page, tmp_path):
    seed_demo_with_password(tmp_path, "admin", "browser-test-pw-1")

    log_in(page, live_server.url, "admin", "browser-test-pw-1")
    assert page.url.endswith("/inputs/")
    cards = page.locator(".card")
    assert cards.count() == Input.objects.count() == 10
    assert page.locator(".count").inner_text() == "10 inputs"
    # Thumbnails really load through the protected file view.
    widths = page.eval_on_selector_all(".card img:not(.mask)", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
    assert all(w and w > 0 for w in widths), widths
    for task in ("Image fill", "Image extend", "Object removal", "Text rendering"):
        assert page.locator(".card .task", has_text=task).count() >= 1

    # Filtering by task swaps the grid in place (htmx) and keeps the URL shareable.
    page.select_option("select[name=task]", "object_removal")
    page.wait_for_function("() => document.querySelectorAll('.card').length === 2")
    assert "task=object_removal" in page.url
    page.check("#show-masks")
    assert "masks-on" in page.eval_on_selector("body", "b => b.className")
    page.screenshot(path=str(tmp_path / "gallery.png"))

    page.locator(".card a").first.click()
    page.wait_for_load_state("networkidle")
    assert "Removal quality" in page.content()


def test_annotator_lands_on_the_annotation_page_and_not_the_admin(live_server, page, tmp_path):
    seed_demo_with_password(tmp_path, "annotator1", "browser-test-pw-2")

    log_in(page, live_server.url, "annotator1", "browser-test-pw-2")
    assert page.url.endswith("/annotate/")
    assert page.locator("nav a", has_text="Admin").count() == 0
    page.goto(live_server.url + "/admin/")
    assert "/admin/login/" in page.url
    assert page.goto(live_server.url + "/inputs/").status == 403
