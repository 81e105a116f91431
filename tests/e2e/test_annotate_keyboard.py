"""An annotator judges a whole task with the keyboard only, in real headless Chromium: picks, the
missing-answer check, submit with Enter, the next task swapped in without a reload; synchronized
zoom and pan; flicking to the source."""
import os
import shutil
from pathlib import Path

import pytest

from annotation.models import Judgment, Slot
from inputs.demo_inputs import demo_specs
from tests.annotation.test_annotate_views import build_world
from tests.conftest import wait_for
from tests.e2e.test_inputs_gallery import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "keyboard-test-pw-1"
ALL_IMAGES_LOADED = (
    "() => [...document.querySelectorAll('#ann-workspace img')].every(i => i.complete && i.naturalWidth > 0)"
)


def keep_artifact(path: Path) -> None:
    """Screenshots go to the test's tmp_path and, when asked, to a folder that outlives the run."""
    folder = os.environ.get("ONEREWARD_TEST_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / path.name)


def open_workspace(live_server, page, make_user, n=4):
    build_world(n=n, specs=demo_specs()[:2])
    user = make_user("ann", "annotator", password=PASSWORD)
    log_in(page, live_server.url, "ann", PASSWORD)
    assert page.url.endswith("/annotate/")
    page.wait_for_selector(".ann-task[data-state=task]")
    page.wait_for_function(ALL_IMAGES_LOADED)
    return user


def current_dimension(page) -> str:
    return page.get_attribute(".ann-dim.is-current", "data-slug")


def transforms(page, frames=".ann-candidate") -> list[str]:
    return page.eval_on_selector_all(
        f".ann-task {frames} .ann-layer", "layers => layers.map(l => getComputedStyle(l).transform)"
    )


def matrix(transform: str) -> list[float]:
    return [float(v) for v in transform[len("matrix("):-1].split(",")]


def assert_source_follows(page, candidate_transform: str) -> None:
    """The source (smaller, in the side panel) shows the same part of the image: the same scale, and
    the candidates' translation scaled to its size."""
    source = matrix(transforms(page, ".ann-source")[0])
    candidate = matrix(candidate_transform)
    ratio = page.evaluate("document.querySelector('.ann-source .ann-view').clientWidth"
                          " / document.querySelector('.ann-candidate .ann-view').clientWidth")
    assert 0.2 < ratio < 1
    assert source[0] == candidate[0] and source[3] == candidate[3]
    assert abs(source[4] - candidate[4] * ratio) < 1 and abs(source[5] - candidate[5] * ratio) < 1


def test_a_whole_task_is_judged_with_the_keyboard_and_the_next_one_follows_without_a_reload(
        live_server, page, make_user, tmp_path):
    user = open_workspace(live_server, page, make_user)
    page.evaluate("window.__noReload = 'still the same page'")
    first = int(page.get_attribute(".ann-task", "data-slot"))
    # While the annotator works, the page has already leased (prefetched) the next task.
    wait_for(lambda: Slot.objects.filter(annotator=user, state="leased").count() == 2, timeout=20, what="the prefetch")
    second = Slot.objects.get(
        annotator=user, state="leased", assigned_at__gt=Slot.objects.get(pk=first).assigned_at
    ).pk

    slugs = page.eval_on_selector_all(".ann-dim", "items => items.map(i => i.dataset.slug)")
    assert slugs == ["text_alignment", "consistency", "structure", "aesthetics"]
    assert page.locator(".ann-tile.ann-candidate").count() == 4
    assert current_dimension(page) == "text_alignment"

    keys = page.keyboard
    keys.press("2")          # best: candidate 2 ...
    keys.press("Shift+4")    # ... worst: candidate 4; the dimension is done and the cursor moves on
    assert current_dimension(page) == "consistency"
    keys.press("0")          # no clear difference
    assert current_dimension(page) == "structure"
    keys.press("Shift+1")    # worst first, then best
    keys.press("3")
    assert current_dimension(page) == "aesthetics"
    assert page.locator(".ann-candidate[data-position='2'].is-best").count() == 0  # aesthetics has no picks yet

    keys.press("Enter")      # refused: aesthetics is not answered
    assert page.locator(".ann-missing").is_visible()
    assert "Aesthetics" in page.inner_text(".ann-missing")
    assert int(page.get_attribute(".ann-task", "data-slot")) == first
    keys.press("1")
    keys.press("w")          # the second way to say worst: W, then the number
    keys.press("2")
    assert page.locator(".ann-candidate[data-position='0'].is-best").count() == 1
    assert page.locator(".ann-candidate[data-position='1'].is-worst").count() == 1

    keys.press("ArrowUp")    # back to structure, then consistency: change "no clear difference"
    keys.press("ArrowUp")
    assert current_dimension(page) == "consistency"
    keys.press("4")
    keys.press("Shift+3")
    assert current_dimension(page) == "structure"
    keys.press("ArrowDown")
    assert current_dimension(page) == "aesthetics"
    states = page.eval_on_selector_all(".ann-dimstate", "items => items.map(i => i.textContent)")
    assert states == ["best 2 · worst 4", "best 4 · worst 3", "best 3 · worst 1", "best 1 · worst 2"]

    screenshot = tmp_path / "annotate-page.png"
    page.screenshot(path=str(screenshot))
    keep_artifact(screenshot)

    keys.press("Enter")
    page.wait_for_selector(f".ann-task[data-slot='{second}']", timeout=5000)
    assert page.evaluate("window.__noReload") == "still the same page"
    assert current_dimension(page) == "text_alignment"
    assert page.locator(".ann-candidate.is-best, .ann-candidate.is-worst").count() == 0
    page.wait_for_function("() => document.getElementById('ann-done').textContent === '1'", timeout=10000)

    judgment = wait_for(lambda: Judgment.objects.filter(slot_id=first).first(), timeout=10, what="the judgment")
    assert Judgment.objects.count() == 1
    order = Slot.objects.get(pk=first).shown_order
    assert judgment.shown_order == order and judgment.dwell_ms > 0
    picks = {p.dimension.slug: p for p in judgment.picks.select_related("dimension", "best", "worst")}
    expected = {"text_alignment": (1, 3), "consistency": (3, 2), "structure": (2, 0), "aesthetics": (0, 1)}
    for slug, (best, worst) in expected.items():
        pick = picks[slug]
        assert not pick.discarded
        assert (pick.best_position, pick.worst_position) == (best, worst)
        assert (pick.best.index, pick.worst.index) == (order[best], order[worst]), slug

    screenshot = tmp_path / "annotate-next-task.png"
    page.wait_for_function(ALL_IMAGES_LOADED)
    page.screenshot(path=str(screenshot))
    keep_artifact(screenshot)


def test_zoom_and_pan_move_every_frame_together(live_server, page, make_user, tmp_path):
    open_workspace(live_server, page, make_user)
    assert set(transforms(page, "")) == {"matrix(1, 0, 0, 1, 0, 0)"}

    page.keyboard.press("z")
    zoomed = transforms(page)
    assert len(zoomed) == 4 and len(set(zoomed)) == 1 and zoomed[0].startswith("matrix(3, 0, 0, 3,")
    assert_source_follows(page, zoomed[0])

    # Dragging one candidate pans them all.
    box = page.locator(".ann-candidate .ann-view").nth(2).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 40, box["y"] + box["height"] / 2 + 25, steps=5)
    page.mouse.up()
    panned = transforms(page)
    assert len(set(panned)) == 1 and panned[0] != zoomed[0]
    assert_source_follows(page, panned[0])

    # The wheel zooms at the pointer, in every frame alike.
    page.keyboard.press("r")
    assert set(transforms(page, "")) == {"matrix(1, 0, 0, 1, 0, 0)"}
    box = page.locator(".ann-candidate .ann-view").nth(1).bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.25)
    page.mouse.wheel(0, -400)
    page.wait_for_function(
        "() => getComputedStyle(document.querySelector('.ann-layer')).transform !== 'matrix(1, 0, 0, 1, 0, 0)'"
    )
    wheeled = transforms(page)
    assert len(set(wheeled)) == 1
    scale, _, _, _, x, y = (float(v) for v in wheeled[0][len("matrix("):-1].split(","))
    assert scale > 1 and x < 0 and y < 0
    # The point under the pointer stays put: (pointer - translate) / scale is the same point before and after.
    assert abs((box["width"] * 0.25 - x) / scale - box["width"] * 0.25) < 1.5
    page.keyboard.press("Equal")
    page.keyboard.press("Minus")
    assert len(set(transforms(page))) == 1

    screenshot = tmp_path / "annotate-zoomed.png"
    page.screenshot(path=str(screenshot))
    keep_artifact(screenshot)


def test_holding_f_shows_the_source_in_every_candidate_frame(live_server, page, make_user, tmp_path):
    open_workspace(live_server, page, make_user)
    source = page.get_attribute(".ann-source img", "src")
    flicks = ".ann-candidate .ann-flick"
    assert page.eval_on_selector_all(flicks, "imgs => imgs.map(i => i.getAttribute('src'))") == [source] * 4
    assert page.eval_on_selector_all(flicks, "imgs => imgs.map(i => getComputedStyle(i).opacity)") == ["0"] * 4

    page.keyboard.down("f")
    assert page.eval_on_selector_all(flicks, "imgs => imgs.map(i => getComputedStyle(i).opacity)") == ["1"] * 4
    screenshot = tmp_path / "annotate-flick.png"
    page.screenshot(path=str(screenshot))
    keep_artifact(screenshot)
    page.keyboard.up("f")
    assert page.eval_on_selector_all(flicks, "imgs => imgs.map(i => getComputedStyle(i).opacity)") == ["0"] * 4

    # The mask on the source (a red veil and its outline, traced from the mask image) toggles with M.
    veil = ".ann-source .ann-shape .ann-veil"
    page.wait_for_selector(veil, state="attached")
    assert page.eval_on_selector(veil, "m => getComputedStyle(m).display") != "none"
    assert page.eval_on_selector(".ann-source .ann-shape", "m => m.getAttribute('aria-label')").startswith("Mask")
    page.keyboard.press("m")
    assert page.eval_on_selector(".ann-source .ann-shape", "m => getComputedStyle(m).display") == "none"
    page.keyboard.press("?")
    assert page.locator("#ann-help").is_visible()
    page.keyboard.press("Escape")
    assert not page.locator("#ann-help").is_visible()


def answer_every_dimension(page, best: int, worst: int) -> None:
    for _ in range(page.locator(".ann-dim").count()):
        page.keyboard.press(str(best))
        page.keyboard.press(f"Shift+{worst}")


def test_a_lost_connection_is_retried_and_a_refused_answer_brings_its_task_back(live_server, page, make_user):
    user = open_workspace(live_server, page, make_user)
    first = int(page.get_attribute(".ann-task", "data-slot"))
    wait_for(lambda: Slot.objects.filter(annotator=user, state="leased").count() == 2, timeout=20, what="the prefetch")
    second = Slot.objects.exclude(pk=first).get(annotator=user).pk

    # The first post is lost on the way; the page sends it again with the same submission id.
    bodies = []

    def flaky(route):
        bodies.append(route.request.post_data_json)
        if len(bodies) == 1:
            route.abort("internetdisconnected")
        else:
            route.continue_()

    page.route("**/judgment", flaky)
    answer_every_dimension(page, 1, 2)
    page.keyboard.press("Enter")
    page.wait_for_selector(f".ann-task[data-slot='{second}']", timeout=5000)
    # Route handlers run while Playwright has the thread: wait inside it.
    wait_for(lambda: page.wait_for_timeout(200) or Judgment.objects.filter(slot_id=first).exists(), timeout=15,
             what="the retried judgment")
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    assert Judgment.objects.count() == 1
    page.unroute("**/judgment")

    # The second task's lease ran out and went to someone else: the answer is refused, the task
    # comes back with the picks and the reason, and S S moves on.
    Slot.objects.filter(pk=second).update(annotator=make_user("someone_else", "annotator"))
    answer_every_dimension(page, 3, 4)
    page.keyboard.press("Enter")
    error = page.locator(f".ann-task[data-slot='{second}'] .ann-error")
    error.wait_for(state="visible", timeout=10000)
    assert "not assigned to you" in error.inner_text()
    states = page.eval_on_selector_all(".ann-dimstate", "items => items.map(i => i.textContent)")
    assert states == ["best 3 · worst 4"] * 4
    assert Judgment.objects.count() == 1
    page.keyboard.press("s")
    page.keyboard.press("s")
    page.wait_for_selector(".ann-task[data-state=empty]", timeout=10000)
    assert "No task for you right now" in page.inner_text("#ann-workspace")
