"""The Content-Security-Policy, in real headless Chromium: every page a signed-in admin opens (the
annotation page, a study, the gallery, the admin's lists, forms and run page, the API docs) and the
login page carry the header, and none of them breaks it: no inline script, handler or style
attribute is refused, no script error. A refused element would fire `securitypolicyviolation`
(recorded from before the page's own scripts run) and log a console error; both are checked."""
import re
from pathlib import Path

import pytest

from annotation.models import AnnotationTask
from inputs.models import Input
from preferences.models import PreferenceDataset
from rewardmodel.models import RewardModelRun
from tests.annotation.test_annotate_views import build_world, synthetic_specs
from tests.e2e.test_inputs_gallery import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "csp-admin-pw-1"
RECORDER = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective} refused ${event.blockedURI || "inline"}`
                           + ` (${event.sourceFile || ""}:${event.lineNumber || ""}) ${event.sample || ""}`);
});
"""


class Watch:
    """What went wrong on the pages of one browser context."""

    def __init__(self, page):
        self.page = page
        self.console = []
        self.errors = []
        page.on("console", lambda m: self.console.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def visit(self, url: str, ready: str = "body", linger_ms: int = 300):
        response = self.page.goto(url)
        assert response.status == 200, (url, response.status)
        self.page.wait_for_selector(ready, state="attached")
        self.page.wait_for_load_state("networkidle")
        self.page.wait_for_timeout(linger_ms)
        return response

    def violations(self) -> list[str]:
        return self.page.evaluate("window.__violations")

    def assert_clean(self, url: str):
        refused = [line for line in self.console if "Content Security Policy" in line]
        assert self.violations() == [] and refused == [] and self.errors == [], (url, self.violations(), refused,
                                                                                   self.errors)


TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
TAG = re.compile(r"<(?!!--)[a-zA-Z][^>]*>", re.S)


def test_no_template_has_an_inline_script_or_handler():
    """The pages the browser test does not open (every admin view, every state) keep to the policy:
    a script comes from a file or carries the nonce, a style element carries the nonce, no on...=
    handler. Style attributes, which the policy lets through for the admin, are kept out of the
    site's own pages too."""
    problems = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        relative = path.relative_to(TEMPLATES)
        for tag in TAG.findall(path.read_text()):
            name = tag[1:].split(None, 1)[0].rstrip(">").lower()
            where = f"{relative}: {tag[:80]}"
            if name in ("script", "style") and "src=" not in tag and "nonce=" not in tag:
                problems.append(where)
            if re.search(r"\son[a-z]+\s*=", tag):
                problems.append(where)
            if relative.parts[0] != "admin" and re.search(r"\sstyle\s*=", tag):
                problems.append(where)
    assert problems == []


def assert_policy(response, url: str):
    policy = response.headers.get("content-security-policy", "")
    directives = dict((part.strip().split(" ", 1) + [""])[:2] for part in policy.split(";") if part.strip())
    assert directives.get("default-src") == "'self'", (url, policy)
    for name in ("script-src", "style-src"):
        assert directives[name].startswith("'self'") and "unsafe-inline" not in directives[name], (url, policy)
    assert "script-src-attr" not in directives and "script-src-elem" not in directives, (url, policy)
    assert "unsafe-eval" not in policy and directives.get("object-src") == "'none'", (url, policy)


def test_no_page_breaks_the_content_security_policy(live_server, browser, make_user):
    from tests.evaluation.test_studies import real_study

    study = real_study(k=1, inputs=2)
    batch = build_world(n=4, specs=synthetic_specs(2, first_seed=50))
    make_user("boss", "admin", password=PASSWORD)
    task = AnnotationTask.objects.filter(candidate_set__batch=batch).first()
    item = Input.objects.first()
    run = RewardModelRun.objects.create(dataset=PreferenceDataset.objects.create(name="d", version=1, status="done"),
                                        status="running", step=3, total_steps=10)

    context = browser.new_context(viewport={"width": 1366, "height": 768})
    context.add_init_script(RECORDER)
    page = context.new_page()
    watch = Watch(page)
    try:
        url = f"{live_server.url}/accounts/login/"
        assert_policy(watch.visit(url, "input[name=username]"), url)
        watch.assert_clean(url)

        # The recorder works: an inline handler and a style element without the nonce, put in by
        # hand, are refused and seen.
        page.evaluate("""() => document.body.insertAdjacentHTML('beforeend',
            '<img src="data:," onload="document.title = 1" alt=""><style>body { color: red }</style>')""")
        page.wait_for_function("() => window.__violations.length >= 2")
        refused = " ".join(watch.violations())
        assert "script-src" in refused and "style-src" in refused, refused
        assert any("Content Security Policy" in line for line in watch.console)
        watch.console.clear()

        log_in(page, live_server.url, "boss", PASSWORD)
        pages = [
            ("/annotate/", ".ann-task[data-state=task] .ann-source .ann-shape"),
            (f"/studies/{study.pk}/", ".ann-task[data-state=item] .ann-source .ann-shape"),
            ("/inputs/", ".card"),
            (f"/inputs/{item.pk}/", "figure"),
            ("/admin/", "#content"),
            ("/admin/inputs/input/", "#result_list"),
            (f"/admin/inputs/input/{item.pk}/change/", "#input_form"),
            (f"/admin/generation/generationbatch/{batch.pk}/change/", "#batch-progress"),
            ("/admin/annotation/annotationtask/quality/", "#content"),
            (f"/admin/annotation/annotationtask/{task.pk}/gold/", "#gold-form"),
            (f"/admin/rewardmodel/rewardmodelrun/{run.pk}/change/", "#run-progress svg rect"),
            ("/api/docs/", "#swagger-ui .information-container"),
        ]
        for path, ready in pages:
            url = live_server.url + path
            response = watch.visit(url, ready)
            assert_policy(response, url)
            watch.assert_clean(url)

        # Content htmx swaps in keeps to the policy: the run's progress polls every 3 s.
        page.goto(f"{live_server.url}/admin/rewardmodel/rewardmodelrun/{run.pk}/change/")
        page.evaluate("() => { window.__swaps = 0;"
                      " document.body.addEventListener('htmx:afterSwap', () => { window.__swaps += 1; }); }")
        page.wait_for_function("() => window.__swaps > 0", timeout=10000)
        assert page.eval_on_selector("#run-progress rect.done", "r => r.getAttribute('width')") == "30"
        watch.assert_clean("the run page, polled")
        # The gallery's mask toggle (a static script now, no inline handler) still works.
        watch.visit(f"{live_server.url}/inputs/", ".card")
        page.check("#show-masks")
        assert "masks-on" in page.eval_on_selector("body", "b => b.className")
        # pages.js sets each veil's --mask; cards swapped in get theirs on htmx:load, so the value
        # is read when it is there (within 10 s) rather than at one instant.
        mask = page.wait_for_function(
            "() => { const m = document.querySelector('.card .mask');"
            " const v = m && getComputedStyle(m).getPropertyValue('--mask');"
            " return v && v.startsWith('url(') ? v : false; }",
            timeout=10000).json_value()
        assert mask.startswith("url(") and "/mask.img" in mask
        watch.assert_clean("the gallery, masks on")
    finally:
        context.close()
