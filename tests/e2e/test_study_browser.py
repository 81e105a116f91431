"""An annotator judges one evaluation-study item with the keyboard only, in real headless Chromium:
usability per candidate, best/worst per dimension, the missing-answer check, Enter, and the next
item swapped in; the database holds exactly what was said, mapped through the order shown."""
import pytest

from evaluation.models import StudyCandidate, StudyJudgment, StudySlot
from tests.conftest import wait_for
from tests.e2e.test_annotate_keyboard import keep_artifact
from tests.e2e.test_inputs_gallery import log_in
from tests.evaluation.test_studies import ARM_LABELS, leaks, real_study

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "study-keyboard-pw-1"
ALL_IMAGES_LOADED = (
    "() => [...document.querySelectorAll('#st-workspace img')].every(i => i.complete && i.naturalWidth > 0)"
)


def current_dimension(page) -> str:
    return page.get_attribute(".ann-dim.is-current", "data-slug")


def test_one_study_item_with_the_keyboard_only(live_server, page, make_user, tmp_path):
    study = real_study(k=1, inputs=2)
    user = make_user("rater", "annotator", password=PASSWORD)
    log_in(page, live_server.url, "rater", PASSWORD)
    assert page.url.endswith("/annotate/")
    # The annotation page lists the study with work left.
    link = page.wait_for_selector(".st-study-link", timeout=10000)
    assert f"/studies/{study.pk}/" in link.get_attribute("href")
    page.goto(f"{live_server.url}/studies/{study.pk}/")
    page.wait_for_selector(".ann-task[data-state=item]")
    page.wait_for_function(ALL_IMAGES_LOADED)
    html = page.content().lower()
    for word in leaks():
        assert word.lower() not in html, word
    first = int(page.get_attribute(".ann-task", "data-slot"))
    assert page.locator(".ann-tile.ann-candidate").count() == 2
    page.evaluate("window.__noReload = 'still the same page'")

    keys = page.keyboard
    keys.press("u")
    keys.press("1")                    # candidate 1: usable
    keys.press("u")
    keys.press("2")
    keys.press("u")
    keys.press("2")                    # candidate 2: usable, then not usable
    states = page.eval_on_selector_all(".st-use-state", "items => items.map(i => i.textContent)")
    assert states == ["usable", "not usable"]

    assert current_dimension(page) == "text_alignment"
    keys.press("1")                    # best 1; with two candidates, worst is 2
    assert current_dimension(page) == "consistency"
    keys.press("Shift+1")              # worst 1, so best 2
    assert current_dimension(page) == "structure"
    keys.press("0")                    # no clear difference
    assert current_dimension(page) == "aesthetics"
    keys.press("Enter")                # refused: aesthetics is not answered
    assert page.locator(".ann-missing").is_visible() and "Aesthetics" in page.inner_text(".ann-missing")
    assert StudyJudgment.objects.count() == 0
    keys.press("2")
    dims = page.eval_on_selector_all(".ann-dimstate", "items => items.map(i => i.textContent)")
    assert dims == ["best 1 · worst 2", "best 2 · worst 1", "no clear difference", "best 2 · worst 1"]
    screenshot = tmp_path / "study-item.png"
    page.screenshot(path=str(screenshot))
    keep_artifact(screenshot)
    keys.press("Enter")

    page.wait_for_function(f"() => {{ const t = document.querySelector('.ann-task[data-state=item]');"
                           f" return t && t.dataset.slot !== '{first}'; }}", timeout=10000)
    assert page.evaluate("window.__noReload") == "still the same page"
    page.wait_for_function("() => document.getElementById('st-judged').textContent === '1'", timeout=5000)
    assert page.eval_on_selector_all(".st-use-state", "items => items.map(i => i.textContent)") == ["to do", "to do"]

    judgment = wait_for(lambda: StudyJudgment.objects.filter(slot_id=first).first(), timeout=10, what="the judgment")
    order = StudySlot.objects.get(pk=first).shown_order
    assert judgment.annotator == user and judgment.shown_order == order and judgment.dwell_ms > 0
    arm_of = dict(StudyCandidate.objects.values_list("pk", "arm__label"))
    on_screen = [arm_of[candidate_id] for candidate_id in order]  # arm labels, left to right
    votes = {
        vote.study_candidate.arm.label: vote.usable
        for vote in judgment.usability_votes.select_related("study_candidate__arm")
    }
    assert votes == {on_screen[0]: True, on_screen[1]: False}
    picks = {p.dimension.slug: None if p.discarded else (p.best.arm.label, p.worst.arm.label)
             for p in judgment.picks.select_related("dimension", "best__arm", "worst__arm")}
    left, right = on_screen
    assert picks == {"text_alignment": (left, right), "consistency": (right, left), "structure": None,
                     "aesthetics": (right, left)}
    assert set(on_screen) == set(ARM_LABELS)
    assert StudySlot.objects.get(pk=first).item.judgments_done == 1
