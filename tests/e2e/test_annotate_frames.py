"""The annotation workspace's frames and controls in real headless Chromium: the mask outline on any
colour (and on the candidates, with O or its button), the layout at common screen sizes and on a
phone, Tab reaching every control with a visible focus ring, picks kept across a reload, the
contrast of every control's text, the images' alt texts and the favicon."""
import io

import numpy as np
import pytest
from PIL import Image

from annotation.models import Judgment, Slot
from inputs.importing import InputSpec
from tests.annotation.test_annotate_views import build_world
from tests.conftest import box_mask, png_bytes, wait_for
from tests.e2e.test_annotate_keyboard import ALL_IMAGES_LOADED, keep_artifact
from tests.e2e.test_inputs_gallery import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "frames-test-pw-1"
SIZE = 512
BOX = (128, 160, 384, 416)  # the mask: left, top, right, bottom (exclusive), in image pixels
RED, ORANGE = (255, 0, 0), (255, 165, 0)
ALL_MASKS_DRAWN = ("() => { const layers = [...document.querySelectorAll('#ann-workspace .ann-layer')];"
                   " return layers.length > 0 && layers.every(l => l.querySelector('.ann-shape')); }")


def solid(colour, size: int, mark: int) -> Image.Image:
    """One colour all over but for `mark` pixels in the bottom-right corner (the import refuses duplicates)."""
    image = Image.new("RGB", (size, size), colour)
    for i in range(mark):
        image.putpixel((size - 1 - i, size - 1), (0, 0, 0))
    return image


def solid_specs(colours, size=SIZE, box=BOX) -> list[InputSpec]:
    return [
        InputSpec(entry=f"solid {i}", task="image_fill", source=png_bytes(solid(colour, size, i)),
                  source_name=f"solid{i}.png", mask=png_bytes(box_mask(size, size, box)),
                  mask_name=f"solid{i}_mask.png", prompt="a blue ball on the table")
        for i, colour in enumerate(colours)
    ]


def open_workspace(live_server, page, make_user, specs, n=4, viewport=None):
    if viewport:
        page.set_viewport_size(viewport)
    build_world(n=n, specs=specs)
    user = make_user("ann", "annotator", password=PASSWORD)
    log_in(page, live_server.url, "ann", PASSWORD)
    assert page.url.endswith("/annotate/")
    page.wait_for_selector(".ann-task[data-state=task]")
    page.wait_for_function(ALL_IMAGES_LOADED)
    return user


def screenshot(page, tmp_path, name) -> np.ndarray:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path))
    keep_artifact(path)
    return np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGB")).astype(int)


def view_box(page, selector) -> dict:
    return page.locator(selector).first.bounding_box()


def boundary_samples(box: dict, image_box=BOX, size=SIZE, count=48):
    """Points on the mask's edge, in screen pixels, spread over its four sides (corners left out)."""
    left, top, right, bottom = (v * box["width"] / size for v in image_box)
    points = []
    for t in np.linspace(0.1, 0.9, count // 4):
        points += [(left + t * (right - left), top), (left + t * (right - left), bottom),
                   (left, top + t * (bottom - top)), (right, top + t * (bottom - top))]
    return [(round(box["x"] + x), round(box["y"] + y)) for x, y in points]


def darkest_near(pixels, x, y, colour, reach=2) -> float:
    """How far, at most, the pixels within `reach` of (x, y) are from `colour` (Euclidean, 0-441)."""
    patch = pixels[y - reach:y + reach + 1, x - reach:x + reach + 1]
    return float(np.sqrt(((patch - np.array(colour)) ** 2).sum(axis=-1)).max())


def inside_colour(pixels, box: dict) -> np.ndarray:
    x, y = round(box["x"] + 0.5 * box["width"]), round(box["y"] + 0.2 * box["height"])
    return pixels[y, x]


@pytest.mark.parametrize("colour", [RED, ORANGE], ids=["red", "orange"])
def test_the_mask_outline_shows_on_a_red_or_orange_image(live_server, page, make_user, tmp_path, colour):
    open_workspace(live_server, page, make_user, solid_specs([colour, colour]))
    page.wait_for_function(ALL_MASKS_DRAWN)
    pixels = screenshot(page, tmp_path, f"outline-source-{colour}")
    source = view_box(page, ".ann-source .ann-view")
    # Outside the mask the source shows its own colour: the screenshot is what the eye sees.
    assert darkest_near(pixels, round(source["x"] + 6), round(source["y"] + 6), colour, reach=1) < 30
    # Along the mask's edge every sample is far from the image's colour (the dark line, or the light dash on it).
    distances = [darkest_near(pixels, x, y, colour) for x, y in boundary_samples(source)]
    assert min(distances) > 150, distances

    # The candidates: no outline until O, then on every one, then gone again with the button.
    candidates = page.locator(".ann-candidate .ann-view")
    assert candidates.count() == 4
    shapes = ".ann-candidate .ann-shape"
    assert page.eval_on_selector_all(shapes, "s => s.map(e => getComputedStyle(e).display)") == ["none"] * 4
    page.keyboard.press("o")
    assert page.eval_on_selector_all(shapes, "s => s.map(e => getComputedStyle(e).display)") == ["block"] * 4
    assert page.get_attribute("[data-action=outlines]", "aria-pressed") == "true"
    page.keyboard.down("f")  # flick: the source in every frame, with the outline over it
    pixels = screenshot(page, tmp_path, f"outline-candidates-{colour}")
    for i in range(4):
        box = candidates.nth(i).bounding_box()
        distances = [darkest_near(pixels, x, y, colour) for x, y in boundary_samples(box)]
        assert min(distances) > 150, (i, distances)
    page.keyboard.up("f")
    page.click("[data-action=outlines]")
    assert page.eval_on_selector_all(shapes, "s => s.map(e => getComputedStyle(e).display)") == ["none"] * 4
    assert page.get_attribute("[data-action=outlines]", "aria-pressed") == "false"
    page.keyboard.down("f")
    pixels = screenshot(page, tmp_path, f"outline-off-{colour}")
    box = candidates.nth(0).bounding_box()
    assert max(darkest_near(pixels, x, y, colour, reach=0) for x, y in boundary_samples(box)) < 30
    page.keyboard.up("f")
    # M takes the mask off the source, and puts it back.
    page.keyboard.press("m")
    assert page.eval_on_selector(".ann-source .ann-shape", "s => getComputedStyle(s).display") == "none"
    page.keyboard.press("m")
    assert page.eval_on_selector(".ann-source .ann-shape", "s => getComputedStyle(s).display") == "block"


@pytest.mark.parametrize("viewport", [(1366, 768), (1920, 1080)], ids=["1366x768", "1920x1080"])
def test_four_candidates_fill_the_screen_in_two_rows_of_two(live_server, page, make_user, tmp_path, viewport):
    width, height = viewport
    open_workspace(live_server, page, make_user, solid_specs([(90, 140, 200), (200, 140, 90)]),
                   viewport={"width": width, "height": height})
    screenshot(page, tmp_path, f"layout-{width}x{height}")
    boxes = [page.locator(".ann-candidate .ann-view").nth(i).bounding_box() for i in range(4)]
    xs = sorted({round(b["x"]) for b in boxes})
    ys = sorted({round(b["y"]) for b in boxes})
    assert len(xs) == 2 and len(ys) == 2, boxes  # 2 x 2: four frames, no empty cell
    for b in boxes:
        assert b["height"] >= 0.4 * height, (b, height)
        assert abs(b["width"] - b["height"]) <= 1  # square images stay square
        assert b["x"] >= 0 and b["y"] >= 0 and b["x"] + b["width"] <= width and b["y"] + b["height"] <= height
    # Nothing scrolls: the whole task, the side panel's buttons included, is on the screen.
    assert page.evaluate("document.documentElement.scrollHeight") <= height
    submit = page.locator(".ann-submit").bounding_box()
    assert submit["y"] + submit["height"] <= height
    # The source is on the screen too, beside the candidates.
    source = view_box(page, ".ann-source .ann-view")
    assert source["width"] > 100 and source["x"] > max(b["x"] + b["width"] for b in boxes)


def test_on_a_phone_the_frames_stack_at_full_width_and_every_button_can_be_tapped(
        live_server, page, make_user, tmp_path):
    width, height = 390, 844
    user = open_workspace(live_server, page, make_user, solid_specs([(90, 140, 200), (200, 140, 90)]),
                          viewport={"width": width, "height": height})
    first = int(page.get_attribute(".ann-task", "data-slot"))
    screenshot(page, tmp_path, "phone-top")
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scrolling
    views = page.locator(".ann-candidate .ann-view")
    boxes = [views.nth(i).bounding_box() for i in range(4)]
    assert all(b["width"] >= 0.9 * width for b in boxes), boxes
    assert sorted(b["y"] for b in boxes) == [b["y"] for b in boxes] and len({round(b["x"]) for b in boxes}) == 1
    # The actions stay on the screen, at its bottom edge.
    bar = page.locator(".ann-actions").bounding_box()
    assert bar["y"] + bar["height"] <= height + 1 and bar["y"] > height - 120
    assert page.locator(".ann-keys").is_hidden()  # no keyboard: no key hints

    def tap(selector):
        """Scrolled into view, the button is the element under its centre (nothing covers it), then tapped."""
        button = page.locator(selector)
        button.scroll_into_view_if_needed()
        box = button.bounding_box()
        covered = page.evaluate(
            "([x, y, selector]) => document.elementFromPoint(x, y) !== document.querySelector(selector)",
            [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, selector])
        assert not covered, selector
        button.click()

    for _ in range(4):
        tap(".ann-candidate[data-position='2'] [data-pick=best]")
        tap(".ann-candidate[data-position='0'] [data-pick=worst]")
    # The current dimension's name stays in view while scrolling through the frames.
    page.locator(".ann-candidate[data-position='3']").scroll_into_view_if_needed()
    now = page.locator(".ann-now").bounding_box()
    assert 0 <= now["y"] < 100 and "all answered" in page.inner_text(".ann-now")
    screenshot(page, tmp_path, "phone-scrolled")
    tap(".ann-submit")
    page.wait_for_function(f"() => document.querySelector('.ann-task').dataset.slot !== '{first}'", timeout=10000)
    judgment = wait_for(lambda: Judgment.objects.filter(slot_id=first).first(), timeout=10, what="the judgment")
    assert judgment.annotator == user
    assert {(p.best_position, p.worst_position) for p in judgment.picks.all()} == {(2, 0)}


def test_tab_reaches_log_out_and_submit_with_a_visible_focus_ring(live_server, page, make_user, tmp_path):
    open_workspace(live_server, page, make_user, solid_specs([(90, 140, 200), (200, 140, 90)]),
                   viewport={"width": 1366, "height": 768})
    describe = """() => { const e = document.activeElement; const s = getComputedStyle(e);
        return {text: e.textContent.trim(), action: e.dataset.action || e.dataset.pick || '', tag: e.tagName,
                outline: s.outlineStyle, width: parseFloat(s.outlineWidth), position: e.dataset.position || ''}; }"""
    seen = []
    for _ in range(60):  # once round every control on the page
        page.keyboard.press("Tab")
        stop = page.evaluate(describe)
        if stop["tag"] == "BODY":
            continue
        if seen and stop == seen[0]:
            break
        seen.append(stop)
    assert len(seen) >= 15, seen  # the top bar's links and buttons, every Best and Worst, the toggles, the actions
    texts = [s["text"] for s in seen]
    assert "Log out" in texts and any(s["action"] == "submit" for s in seen), texts
    assert page.get_attribute(".ann-dim.is-current", "data-slug") == "text_alignment"  # Tab left the dimension alone
    for s in seen:
        assert s["outline"] != "none" and s["width"] >= 2, s  # every stop shows where the focus is

    # Enter and Space press the button in focus: Best of candidate 3, then Submit (not answered yet).
    page.locator(".ann-candidate[data-position='2'] [data-pick=best]").focus()
    page.keyboard.press("Space")
    assert page.locator(".ann-candidate[data-position='2'].is-best").count() == 1
    page.locator(".ann-submit").focus()
    screenshot(page, tmp_path, "focus-submit")
    page.keyboard.press("Enter")
    assert page.locator(".ann-missing").is_visible()
    assert page.evaluate("document.activeElement.dataset.action") == "submit"  # the focus stays where it was
    # The arrows still move between dimensions, whatever has the focus.
    page.keyboard.press("ArrowDown")
    assert page.get_attribute(".ann-dim.is-current", "data-slug") == "consistency"
    # And Log out is a real button: Enter on it signs out.
    page.locator("form.logout button").focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/accounts/login/**")


def test_a_reload_keeps_the_picks_made_and_submitting_clears_them(live_server, page, make_user):
    user = open_workspace(live_server, page, make_user, solid_specs([(90, 140, 200), (200, 140, 90)]))
    first = int(page.get_attribute(".ann-task", "data-slot"))
    keys = page.keyboard
    keys.press("2")
    keys.press("Shift+4")
    keys.press("0")
    keys.press("Shift+1")    # structure: worst only, for now
    assert page.get_attribute(".ann-dim.is-current", "data-slug") == "structure"
    before = page.eval_on_selector_all(".ann-dimstate", "items => items.map(i => i.textContent)")
    assert before == ["best 2 · worst 4", "no clear difference", "best ? · worst 1", "to do"]

    page.reload()
    page.wait_for_selector(".ann-task[data-state=task]")
    page.wait_for_function(ALL_IMAGES_LOADED)
    assert int(page.get_attribute(".ann-task", "data-slot")) == first  # the same lease, resumed
    assert page.eval_on_selector_all(".ann-dimstate", "items => items.map(i => i.textContent)") == before
    assert page.get_attribute(".ann-dim.is-current", "data-slug") == "structure"
    assert page.locator(".ann-candidate[data-position='0'].is-worst").count() == 1

    keys.press("3")
    keys.press("1")
    keys.press("Shift+2")
    keys.press("Enter")
    page.wait_for_function(f"() => document.querySelector('.ann-task').dataset.slot !== '{first}'", timeout=10000)
    judgment = wait_for(lambda: Judgment.objects.filter(slot_id=first).first(), timeout=10, what="the judgment")
    picks = {p.dimension.slug: (p.discarded, p.best_position, p.worst_position)
             for p in judgment.picks.select_related("dimension")}
    assert picks == {"text_alignment": (False, 1, 3), "consistency": (True, None, None),
                     "structure": (False, 2, 0), "aesthetics": (False, 0, 1)}
    page.wait_for_function(f"() => sessionStorage.getItem('onereward:picks:task:{first}') === null", timeout=10000)
    # The next task starts blank, and a reload now shows it blank too.
    second = int(page.get_attribute(".ann-task", "data-slot"))
    page.reload()
    page.wait_for_selector(".ann-task[data-state=task]")
    assert int(page.get_attribute(".ann-task", "data-slot")) == second
    assert set(page.eval_on_selector_all(".ann-dimstate", "items => items.map(i => i.textContent)")) == {"to do"}
    assert Slot.objects.get(pk=first).state == "done" and Judgment.objects.filter(annotator=user).count() == 1


# Every visible control (links, buttons) and every element with text inside one (kbd): the WCAG
# contrast of its text colour on the background it is drawn on (the backgrounds behind it composed,
# the page's white at the bottom). A control drawn faded (opacity below 1) counts as a failure:
# its colours are not what the eye gets.
CONTRASTS = """() => {
  const parse = (c) => {
    const m = /rgba?\\(([^)]+)\\)/.exec(c);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const over = (top, under) => ({ r: top.r * top.a + under.r * (1 - top.a), g: top.g * top.a + under.g * (1 - top.a),
                                  b: top.b * top.a + under.b * (1 - top.a), a: 1 });
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
    }
    return layers.reverse().reduce((under, top) => over(top, under), { r: 255, g: 255, b: 255, a: 1 });
  };
  const luminance = (c) => {
    const [r, g, b] = [c.r, c.g, c.b].map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const opacity = (el) => {
    let o = 1;
    for (let e = el; e; e = e.parentElement) o *= Number(getComputedStyle(e).opacity);
    return o;
  };
  const ownText = (el) => [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
  const shown = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";
  const results = [];
  const controls = document.querySelectorAll("a[href], button, [role=button], input[type=submit], input[type=button]");
  for (const control of controls) {
    if (!shown(control)) continue;
    const faded = opacity(control);
    if (faded === 0) continue;  // not drawn at all
    for (const el of [control, ...control.querySelectorAll("*")]) {
      if (!shown(el) || !ownText(el)) continue;
      const bg = background(el);
      const fg = over(parse(getComputedStyle(el).color), bg);
      const [hi, lo] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
      results.push({ what: `${control.tagName.toLowerCase()} "${control.textContent.trim().slice(0, 40)}"`
                           + (el === control ? "" : ` (${el.tagName.toLowerCase()} "${el.textContent.trim()}")`),
                     ratio: Math.round(((hi + 0.05) / (lo + 0.05)) * 100) / 100, opacity: faded });
    }
  }
  return results;
}"""


def assert_contrast(page, where: str, minimum: int = 3):
    results = page.evaluate(CONTRASTS)
    assert len(results) >= minimum, (where, results)
    poor = [r for r in results if r["ratio"] < 4.5 or r["opacity"] < 1]
    assert not poor, (where, poor)
    return results


def test_controls_have_contrast_images_say_what_they_are_and_there_is_a_favicon(
        live_server, page, make_user, browser):
    from tests.evaluation.test_studies import real_study

    study = real_study(k=1, inputs=2)
    open_workspace(live_server, page, make_user, solid_specs([(90, 140, 200), (200, 140, 90)]),
                   viewport={"width": 1366, "height": 768})
    page.wait_for_function(ALL_MASKS_DRAWN)
    results = assert_contrast(page, "annotation page")
    names = " ".join(r["what"] for r in results)
    for control in ("Log out", "Keys", "Best", "Worst", "Submit", "Outlines", "Skip"):
        assert control in names, control
    # With picks made, a toggle pressed and the submit button ready, the colours still hold.
    for _ in range(4):
        page.keyboard.press("1")
        page.keyboard.press("Shift+2")
    page.keyboard.press("o")
    page.keyboard.press("w")
    assert_contrast(page, "annotation page, answered")

    # What each image is, for a screen reader.
    assert page.get_attribute(".ann-source img", "alt") == "Source image"
    assert page.eval_on_selector_all(".ann-candidate img.ann-image", "imgs => imgs.map(i => i.alt)") == [
        f"Candidate {i}" for i in range(1, 5)]
    flicks = page.eval_on_selector_all(".ann-flick", "imgs => imgs.map(i => [i.alt, i.getAttribute('aria-hidden')])")
    assert flicks == [["", "true"]] * 4  # a copy of the source, shown only while F is held
    assert page.get_attribute(".ann-source .ann-shape", "role") == "img"
    assert page.get_attribute(".ann-source .ann-shape", "aria-label").startswith("Mask")
    assert page.eval_on_selector_all("img", "imgs => imgs.filter(i => !i.hasAttribute('alt')).length") == 0

    # The favicon: linked from every page of the site, and served.
    href = page.get_attribute("link[rel=icon]", "href")
    icon = page.request.get(live_server.url + href)
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in icon.body()

    page.goto(f"{live_server.url}/studies/{study.pk}/")
    page.wait_for_selector(".ann-task[data-state=item]")
    results = assert_contrast(page, "study page")
    assert any("Not usable" in r["what"] for r in results) and any("Back to annotation" in r["what"] for r in results)
    assert page.eval_on_selector_all(".ann-candidate img.ann-image", "imgs => imgs.map(i => i.alt)") == [
        "Candidate 1", "Candidate 2"]

    signed_out = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        login = signed_out.new_page()
        login.goto(f"{live_server.url}/accounts/login/")
        assert_contrast(login, "login page", minimum=1)
        assert login.get_attribute("link[rel=icon]", "href") == href
    finally:
        signed_out.close()
