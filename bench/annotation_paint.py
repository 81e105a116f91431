"""From Enter to the next task on screen: the annotation page in headless Chromium, timed in the page.

    .venv/bin/python bench/annotation_paint.py                      # 50 tasks of 512 px images, N=4
    .venv/bin/python bench/annotation_paint.py --tasks 100 --think-ms 0 --size 1024

Creates the PostgreSQL database onereward_bench_paint on BENCH_PG (dropped and made again each run),
migrates it, imports `--tasks` + 3 inputs of `--size` px (noisy gradients, a box mask; stored under
var/bench/paint-media), generates N candidates for each in-process (the cpu_baseline backend) so
that each becomes an annotation task, and makes one annotator. Then serves the platform with
`manage.py runserver --noreload --insecure` (DJANGO_DEBUG=0, static files included) on a free port,
signs in with Chromium (Playwright, the browser tests' flags) at 1366x768 and, for every task:
waits `--think-ms` (the annotator looking at it; the page prefetches the next task meanwhile),
answers every dimension with the keys (1, then Shift+2) and presses Enter.

Measured in the page, per task, from the Enter keydown (performance.now() in a capture listener
registered before the page's own scripts); a MutationObserver sees the next task arrive:
  swap  the next task in the workspace (and whether the keydown itself put it there, with no
        server round trip: it had been prefetched);
  (a)   every image of it loaded (one still loading is waited for), then the next frame painted:
        requestAnimationFrame, then a message posted from it, which runs once that frame is painted;
  (b)   every image's decode() resolved, then the next frame painted; decode() answers once the
        frame it was asked in is committed, so (b) counts about one frame (16.7 ms) more than (a);
  (c)   Element Timing: the time the browser presented the frame with every visible image of it.
Prints median and p95 (nearest rank) of each; figures, never a verdict. The goal for (a): within one
frame (16 ms) at the median, under 50 ms at p95. Machine load shows in every figure: the load
average is printed before and after.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotation_common import REPO, bench_environment, create_database, percentile  # noqa: E402

DATABASE = "onereward_bench_paint"
MEDIA = REPO / "var" / "bench" / "paint-media"
USERNAME = "paint-annotator"
PASSWORD = "paint-annotator-password-1"
BROWSER_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]

# Runs in the page before its own scripts (Playwright's init script). Enter's keydown is timed in
# the capture phase, before the page's listener; a bubble listener on window, which runs after
# it, says whether the page swapped the next task in during the keydown.
PROBE = """
(() => {
  window.__paint = [];
  let armed = null;   // the Enter being timed, until the next task shows
  let pressed = null; // the same, for the bubble listener (the observer may have disarmed it)
  const current = () => document.querySelector('#ann-workspace > .ann-task');
  addEventListener('keydown', (event) => {
    if (event.key !== 'Enter') return;
    const shown = current();
    if (!shown || shown.dataset.state !== 'task') return;
    armed = pressed = { t0: performance.now(), slot: shown.dataset.slot, swapMs: null, sync: false };
  }, true);
  addEventListener('keydown', (event) => {
    if (event.key !== 'Enter' || !pressed) return;
    const shown = current();
    pressed.sync = Boolean(shown && shown.dataset.state === 'task' && shown.dataset.slot !== pressed.slot);
    pressed = null;
  });
  // Element Timing: the browser reports when each marked image is first painted (renderTime).
  const painted = new Map();  // identifier -> renderTime
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) painted.set(entry.identifier, entry.renderTime || entry.loadTime);
  }).observe({ type: 'element', buffered: true });
  function whenPainted(ids, t0, timeout = 2000) {
    return new Promise((resolve) => {
      const started = performance.now();
      const check = () => {
        if (ids.every((id) => painted.has(id))) resolve(Math.max(...ids.map((id) => painted.get(id))) - t0);
        else if (performance.now() - started > timeout) resolve(null);
        else setTimeout(check, 5);
      };
      check();
    });
  }
  // The frame after `ready` resolves: requestAnimationFrame runs before that frame is painted, a
  // message posted from it runs once it has been.
  const frameAfter = (ready, t0) => ready.then(() => new Promise((resolve) => {
    requestAnimationFrame(() => {
      const channel = new MessageChannel();
      channel.port1.onmessage = () => resolve(performance.now() - t0);
      channel.port2.postMessage(0);
    });
  }));
  function measure(task, probe) {
    probe.swapMs = performance.now() - probe.t0;
    const images = [...task.querySelectorAll('img')];
    // (a) every image loaded (an image still loading is waited for), then the next frame painted.
    const loading = (img) => new Promise((resolve) => {
      img.addEventListener('load', resolve);
      img.addEventListener('error', resolve);
    });
    const loaded = Promise.all(images.map((img) => (img.complete ? null : loading(img))));
    // (b) every image's decode() resolved, then the next frame: decode() answers once the frame it
    // was asked in has been committed, so this counts about one frame more than (a).
    const decoded = Promise.all(images.map((img) => img.decode().catch(() => null)));
    // (c) Element Timing: when the browser presented the frame with each visible image in it.
    const ids = [...task.querySelectorAll('img:not(.ann-flick)')].map((img, i) => {
      const id = `${task.dataset.slot}:${i}`;
      img.setAttribute('elementtiming', id);
      return id;
    });
    Promise.all([frameAfter(loaded, probe.t0), frameAfter(decoded, probe.t0), whenPainted(ids, probe.t0)])
      .then(([ms, decodedMs, renderMs]) => {
        window.__paint.push({ ms, decodedMs, renderMs, swapMs: probe.swapMs, sync: probe.sync,
                              from: probe.slot, to: task.dataset.slot });
      });
  }
  new MutationObserver(() => {
    if (!armed) return;
    const shown = current();
    if (!shown || shown.dataset.state !== 'task' || shown.dataset.slot === armed.slot) return;
    const probe = armed;
    armed = null;
    measure(shown, probe);
  }).observe(document, { childList: true, subtree: true });
})();
"""


def say(text: str) -> None:
    print(text, flush=True)


def photo_png(size: int, seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([x * 255 / (size - 1), y * 255 / (size - 1), np.full_like(x, 37.0 * seed % 255)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 24, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def mask_png(size: int) -> bytes:
    from PIL import Image

    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 4, size // 3, 3 * size // 4, 5 * size // 6))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


def fill(tasks: int, size: int, n: int) -> None:
    """The bench world, made with the platform's own import and generation code."""
    from django.core.management import call_command

    from annotation.models import AnnotationTask, QualityControlSettings
    from generation.execution import generate_set
    from generation.models import CandidateSet, GenerationBatch, Generator
    from inputs.importing import InputSpec, import_inputs
    from onereward.jobs import JobStatus
    from onereward.roles import assign_role

    call_command("migrate", verbosity=0)
    settings = QualityControlSettings.current()
    settings.gold_rate = settings.repeat_share = 0.0  # the plain queue: every hand-out is a regular slot
    settings.save()
    mask = mask_png(size)
    specs = [
        InputSpec(entry=f"paint {i}", task="image_fill", source=photo_png(size, i), source_name=f"paint{i}.png",
                  mask=mask, mask_name=f"paint{i}_mask.png", prompt="a bowl of oranges on a wooden table")
        for i in range(tasks)
    ]
    items = import_inputs(specs)
    generator = Generator.objects.create(name="paint bench generator", backend="cpu_baseline", settings={})
    batch = GenerationBatch.objects.create(name="paint bench", generator=generator, candidates_per_input=n,
                                           seed=7, annotation_overlap=1, progress_total=len(items),
                                           status=JobStatus.RUNNING)
    # Every set first: the batch is finished as soon as the sets it has are done.
    sets = [CandidateSet.objects.create(batch=batch, input=item) for item in items]
    for candidate_set in sets:
        generate_set(candidate_set.pk, worker="bench")
    made = AnnotationTask.objects.filter(candidate_set__batch=batch).count()
    if made != tasks:
        sys.exit(f"{made} annotation tasks were made, {tasks} wanted")
    from django.contrib.auth.models import User

    user = User.objects.create_user(USERNAME, password=PASSWORD)
    assign_role(user, "annotator")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict, port: int, log_path: Path) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", "--insecure", f"127.0.0.1:{port}"],
        cwd=REPO, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited at start:\n{log_path.read_text()}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=2).close()
            return server
        except OSError:
            time.sleep(0.3)
    stop_server(server)
    sys.exit(f"the server did not answer in 60 s:\n{log_path.read_text()}")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        sys.exit("Chromium is needed: apt-get install chromium (or set CHROMIUM=/path)")
    return path


def drive(base_url: str, tasks: int, think_ms: int, width: int, height: int) -> list[dict]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=BROWSER_FLAGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            context.add_init_script(PROBE)
            page = context.new_page()
            page.goto(f"{base_url}/accounts/login/?next=/annotate/")
            page.fill("input[name=username]", USERNAME)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("#ann-workspace > .ann-task[data-state=task]", timeout=30000)
            dimensions = page.locator(".ann-dim").count()
            for i in range(tasks):
                page.wait_for_function(
                    "() => [...document.querySelectorAll('#ann-workspace > .ann-task img')]"
                    ".every((img) => img.complete && img.naturalWidth > 0)", timeout=30000)
                page.wait_for_timeout(think_ms)
                for _ in range(dimensions):
                    page.keyboard.press("1")
                    page.keyboard.press("Shift+2")
                page.keyboard.press("Enter")
                page.wait_for_function(f"() => window.__paint.length > {i}", timeout=30000)
                if (i + 1) % 10 == 0:
                    say(f"  {i + 1} tasks")
            page.wait_for_function("() => document.getElementById('ann-saving').textContent === ''", timeout=30000)
            return page.evaluate("window.__paint")
        finally:
            browser.close()


def figures(values: list[float]) -> str:
    return (f"median {percentile(values, 0.5):.1f} ms, p95 {percentile(values, 0.95):.1f} ms, "
            f"max {max(values):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=50, help="tasks judged (and timed)")
    parser.add_argument("--think-ms", type=int, default=1500, help="time spent looking at each task before answering")
    parser.add_argument("--size", type=int, default=512, help="image width and height in pixels")
    parser.add_argument("--n", type=int, default=4, help="candidates per task")
    parser.add_argument("--viewport", default="1366x768")
    parser.add_argument("--json", help="also write every measurement to this file")
    args = parser.parse_args()
    width, height = (int(v) for v in args.viewport.lower().split("x"))

    create_database(DATABASE, drop_first=True)
    shutil.rmtree(MEDIA, ignore_errors=True)
    MEDIA.mkdir(parents=True)
    env = {**bench_environment(DATABASE), "ONEREWARD_MEDIA_ROOT": str(MEDIA), "DJANGO_ALLOW_ASYNC_UNSAFE": "true"}
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "ONEREWARD_MEDIA_ROOT", "DJANGO_SETTINGS_MODULE",
                                          "DJANGO_DEBUG", "LOG_LEVEL", "DJANGO_ALLOW_ASYNC_UNSAFE")})
    import django

    django.setup()
    # The prefetch of the last task's successor needs one more task; two spare for safety.
    start = time.perf_counter()
    fill(args.tasks + 3, args.size, args.n)
    say(f"annotation paint: {args.tasks + 3} tasks of {args.n} candidates, {args.size} px, made in "
        f"{time.perf_counter() - start:.0f} s; viewport {width}x{height}, think time {args.think_ms} ms, "
        f"{os.cpu_count()} CPU cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    port = free_port()
    log_path = REPO / "var" / "bench" / "paint-server.log"
    server = start_server(env, port, log_path)
    try:
        measured = drive(f"http://127.0.0.1:{port}", args.tasks, args.think_ms, width, height)
    finally:
        stop_server(server)

    from annotation.models import Judgment

    stored = Judgment.objects.count()
    slots = [m["to"] for m in measured]
    paint = [m["ms"] for m in measured]
    swap = [m["swapMs"] for m in measured]
    ready = sum(1 for m in measured if m["sync"])
    say(f"Enter -> next task in the page:                       {figures(swap)}")
    say(f"Enter -> (a) images loaded, the next frame painted:   {figures(paint)} (n={len(paint)})")
    say(f"Enter -> (b) images' decode() resolved, next frame:   {figures([m['decodedMs'] for m in measured])}")
    rendered = [m["renderMs"] for m in measured if m["renderMs"] is not None]
    if rendered:
        say(f"Enter -> (c) every image on screen (Element Timing):  {figures(rendered)} (n={len(rendered)})")
    say(f"next task already in the page at Enter (no server wait): {ready} of {len(measured)}")
    say(f"judgments stored: {stored} (expected {args.tasks}); distinct tasks shown: {len(set(slots))}; "
        f"load average after {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        Path(args.json).write_text(json.dumps(measured, indent=1))


if __name__ == "__main__":
    main()
