"""An admin launches a batch in the browser and watches its progress bar fill in place; when the
batch ends the whole page reloads once, so every field of the record shows the end."""
import pytest

from generation.models import GenerationBatch, Generator
from inputs.demo_inputs import demo_specs
from inputs.importing import import_inputs
from tests.e2e.test_inputs_gallery import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_progress_bar_updates_in_place(live_server, page, celery_worker_process, make_user):
    import_inputs(demo_specs())
    generator = Generator(name="CPU baseline", backend="cpu_baseline", settings={})
    generator.full_clean()
    generator.save()
    make_user("boss", "admin", password="browser-test-pw-3")

    log_in(page, live_server.url, "boss", "browser-test-pw-3")
    page.goto(live_server.url + "/admin/generation/generationbatch/add/")
    page.select_option("select[name=generator]", label="CPU baseline")
    page.select_option("select[name=tag]", "demo")
    page.fill("input[name=candidates_per_input]", "4")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/generation/generationbatch/*/change/")
    batch = GenerationBatch.objects.get()

    # The page arrived before the worker finished. The bar is polled in place (a marker on the
    # window survives the polls); the poll that sees the end reloads the page (the marker goes).
    polls = []
    page.on("request", lambda request: polls.append(request.url) if "/progress/" in request.url else None)
    assert page.get_attribute("#batch-progress-inner", "data-status") in ("queued", "running")
    page.evaluate("window.__stillHere = true")
    page.wait_for_function("() => window.__stillHere === undefined", timeout=120_000)
    page.wait_for_load_state("load")
    assert polls, "the bar was never polled"
    assert page.get_attribute("#batch-progress-inner", "data-status") == "done"
    assert "10 done, 0 failed, 10 inputs" in page.inner_text("#batch-progress")
    assert "Done" in page.inner_text("#content")  # the record's own status field, not only the bar
    assert page.get_attribute(".progress", "aria-valuenow") == "10"
    batch.refresh_from_db()
    assert batch.status == "done"

    page.click("text=Browse the candidates")
    page.wait_for_load_state("networkidle")
    assert page.locator("figure.candidate").count() == 40
    widths = page.eval_on_selector_all("figure.candidate img", "imgs => imgs.map(i => i.naturalWidth)")
    assert all(w > 0 for w in widths)
