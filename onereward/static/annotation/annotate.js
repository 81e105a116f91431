/* The annotation workspace: the shared picker (picker.js) plus what only this page has: skipping,
 * synchronized zoom and pan, the help card, and a queue that keeps the next task ready so the
 * annotator never waits on the server: it is fetched while the current one is judged, its images
 * decoded and its mask traced before Enter, and Enter swaps it in at once. Judgments are posted in
 * the background with a client-made submission id (a retry stores nothing twice); a refused one
 * brings its task back with the picks kept. */
(() => {
  "use strict";

  const root = document.getElementById("annotate");
  if (!root) return;
  const { Candidates, JudgingPage, uuid4 } = window.Picker;
  const workspace = document.getElementById("ann-workspace");
  const help = document.getElementById("ann-help");
  const savingLine = document.getElementById("ann-saving");
  const taskUrl = root.dataset.taskUrl;

  const MAX_SCALE = 16;
  const ZOOM_STEP = 1.25;
  const Z_SCALE = 3;
  const EMPTY_FRESH_MS = 20000;   // an "empty" answer older than this is asked again
  const LEASE_MARGIN_MS = 90000;  // a task whose lease ends sooner than this is fetched again
  const SKIP_CONFIRM_MS = 2500;

  const queue = [];            // Tasks ready to show: prefetched, or displaced by a returned one
  let prefetching = null;      // Promise of the fetch in progress
  let lastSlot = null;         // the last slot shown: the server's `after`
  const inflight = new Set();  // posts not settled yet
  const retired = new Set();   // slots submitted or skipped from this page
  let skipArmedUntil = 0;
  const zoom = { scale: 1, x: 0, y: 0 };
  let pointer = null;          // last pointer position over a frame, in frame pixels

  function updateSaving(retrying) {
    const n = inflight.size;
    savingLine.textContent = n === 0 ? "" : retrying ? `${n} answer${n > 1 ? "s" : ""} not saved yet: retrying…` : "saving…";
    savingLine.classList.toggle("is-retrying", Boolean(retrying && n));
  }

  // --- a task on (or off) the screen -------------------------------------------------------------

  class Task extends Candidates {
    static REFUSED_HINT = " Fix it and press Enter again, or press S S to skip.";

    constructor(el) {
      super(el, "task");
      this.fetchedAt = performance.now();
      if (!this.judging) return;
      this.leaseMs = Number(el.dataset.leaseSeconds) * 1000;
      this.skipUrl = el.dataset.skipUrl;
    }

    fresh() {
      const age = performance.now() - this.fetchedAt;
      if (this.judging) return age < this.leaseMs - LEASE_MARGIN_MS;
      return age < EMPTY_FRESH_MS;
    }
  }

  class Workspace extends JudgingPage {
    get repeatable() { return [...super.repeatable, "Equal", "Minus", "NumpadAdd", "NumpadSubtract"]; }

    arrived(el) {
      const task = new Task(el);
      if (this.judged()) return;  // a task is on screen already
      show(task);
    }

    submit() { submit(); }

    layout(measure = false) {
      super.layout(measure);
      if (!this.judged()) return;
      clampZoom();
      applyZoom();
    }

    pageKey(event) {
      if (event.key !== "?" && event.code !== "KeyH") return false;
      event.preventDefault();
      if (!event.repeat) toggleHelp();
      return true;
    }

    escape() {
      toggleHelp(false);
      skipArmedUntil = 0;
    }

    ownKey(code) {
      switch (code) {
        case "KeyS": skip(); return true;
        case "KeyZ": toggleZoom(); return true;
        case "KeyR": resetZoom(); return true;
        case "Equal": case "NumpadAdd": zoomAt(ZOOM_STEP); return true;
        case "Minus": case "NumpadSubtract": zoomAt(1 / ZOOM_STEP); return true;
        default: return false;
      }
    }

    ownClick(button) {
      switch (button.dataset.action) {
        case "help": toggleHelp(); return true;
        case "skip": skipArmedUntil = performance.now() + SKIP_CONFIRM_MS; skip(); return true;
        default: return false;
      }
    }
  }

  const page = new Workspace(root, workspace, document.getElementById("ann-flash"), "task");

  // --- the queue ---------------------------------------------------------------------------------

  function show(task) {
    skipArmedUntil = 0;
    Object.assign(zoom, { scale: 1, x: 0, y: 0 });
    page.display(task);
    if (!task) {
      // Nothing ready (the queued task went stale): ask the server, or the page waits forever.
      ensurePrefetch();
      return;
    }
    if (task.judging) lastSlot = task.slot;
    if (task.el.dataset.pool !== undefined) document.getElementById("ann-pool").textContent = task.el.dataset.pool;
    ensurePrefetch();
  }

  async function fetchTask(after) {
    const el = await page.fetchFragment(after ? `${taskUrl}?after=${after}` : taskUrl);
    return el ? new Task(el) : null;
  }

  function settled() {
    return Promise.allSettled([...inflight]);
  }

  function ensurePrefetch() {
    const current = page.current;
    if (prefetching) return;
    if (current && !current.judging) return;   // the empty and paused views poll on their own
    if (current && queue.length) return;       // one task ahead is enough
    prefetching = (async () => {
      // The server resumes a lease it still holds for us before a new one, so ask only once the
      // answers in flight have closed their slots.
      await settled();
      const task = await fetchTask(lastSlot);
      // Queued only once it can be painted in the frame after Enter; with nothing on screen (the
      // annotator is waiting) it is shown at once and finishes on screen.
      if (task && task.judging && page.current !== null) await task.prepare();
      return task;
    })();
    prefetching.then((task) => {
      prefetching = null;
      if (task) deliver(task);
    });
  }

  function known(slot) {
    return (page.current && page.current.slot === slot) || queue.some((t) => t.slot === slot);
  }

  function deliver(task) {
    if (task.judging && retired.has(task.slot)) {
      setTimeout(ensurePrefetch, 1000);  // the server had not closed it yet: ask again
      return;
    }
    if (task.judging && known(task.slot)) return;
    if (page.current === null) show(task);
    else queue.push(task);
  }

  function advance() {
    while (queue.length && !queue[0].fresh()) queue.shift();
    const next = queue.shift();
    show(next || null);
  }

  // --- posting answers ---------------------------------------------------------------------------

  function post(url, body) {
    const attempt = page.post(url, body, () => updateSaving(true));
    inflight.add(attempt);
    updateSaving(false);
    attempt.then(() => { inflight.delete(attempt); updateSaving(false); });
    return attempt;
  }

  function submit() {
    const task = page.judged();
    if (!task) return;
    if (task.missing().length) { task.showMissing(); return; }
    task.stopped();
    const payload = task.payload(uuid4());
    task.showError("");
    retired.add(task.slot);
    const sending = post(task.judgmentUrl, payload);  // in flight before the next prefetch asks
    advance();
    sending.then((result) => {
      if (result.ok) {
        task.forget();
        if (result.created) {
          const done = document.getElementById("ann-done");
          done.textContent = String(Number(done.textContent) + 1);
        }
      } else {
        bringBack(task, result.error);
      }
    });
  }

  function bringBack(task, message) {
    retired.delete(task.slot);
    task.refused = true;
    const shown = page.judged();
    if (shown && shown !== task) {
      shown.stopped();
      queue.unshift(shown);
    }
    show(task);
    task.showError(message);
    page.flash("An answer was refused: its task is back.", 6000);
  }

  function skip() {
    const task = page.judged();
    if (!task) return;
    if (performance.now() > skipArmedUntil) {
      skipArmedUntil = performance.now() + SKIP_CONFIRM_MS;
      page.flash("Press S again to skip this task.", SKIP_CONFIRM_MS);
      return;
    }
    skipArmedUntil = 0;
    page.flash("Skipped.", 1500);
    task.stopped();
    task.forget();
    retired.add(task.slot);
    const sending = post(task.skipUrl, {});
    advance();
    sending.then((result) => {
      // A refused task has usually lost its lease already: moving on is all that was asked.
      if (!result.ok && !task.refused) page.flash(`Skip: ${result.error}`, 6000);
    });
  }

  // --- frames: zoom and pan, every frame together --------------------------------------------------

  function frameSize() {
    const view = page.current && page.current.el.querySelector(".ann-candidate .ann-view");
    return view ? { w: view.clientWidth, h: view.clientHeight } : { w: 1, h: 1 };
  }

  function clampZoom() {
    if (zoom.scale <= 1) { Object.assign(zoom, { scale: 1, x: 0, y: 0 }); return; }  // nothing to read
    const { w, h } = frameSize();
    zoom.scale = Math.max(1, Math.min(MAX_SCALE, zoom.scale));
    zoom.x = Math.min(0, Math.max(w - w * zoom.scale, zoom.x));
    zoom.y = Math.min(0, Math.max(h - h * zoom.scale, zoom.y));
  }

  function applyZoom() {
    const task = page.judged();
    if (!task) return;
    // In shares of the frame (a translate percentage is of the layer, which is the frame): the
    // source in the side panel is smaller than the candidates and follows them all the same.
    const { w, h } = zoom.x || zoom.y ? frameSize() : { w: 1, h: 1 };
    const transform = `translate(${(100 * zoom.x) / w}%, ${(100 * zoom.y) / h}%) scale(${zoom.scale})`;
    task.el.querySelectorAll(".ann-layer").forEach((layer) => { layer.style.transform = transform; });
    task.el.classList.toggle("is-zoomed", zoom.scale > 1);
    task.el.classList.toggle("is-pixelated", zoom.scale >= 4);
  }

  function zoomAt(factor, at) {
    const { w, h } = frameSize();
    const point = at || pointer || { x: w / 2, y: h / 2 };
    const next = Math.max(1, Math.min(MAX_SCALE, zoom.scale * factor));
    const u = (point.x - zoom.x) / zoom.scale;
    const v = (point.y - zoom.y) / zoom.scale;
    zoom.x = point.x - next * u;
    zoom.y = point.y - next * v;
    zoom.scale = next;
    clampZoom();
    applyZoom();
  }

  function resetZoom() {
    zoom.scale = 1; zoom.x = 0; zoom.y = 0;
    applyZoom();
  }

  function toggleZoom() {
    if (zoom.scale > 1) resetZoom();
    else zoomAt(Z_SCALE);
  }

  // The pointer in a candidate frame's pixels, whichever frame it is over (the source's is smaller).
  function framePoint(event) {
    const view = event.target.closest && event.target.closest(".ann-view");
    if (!view) return null;
    const rect = view.getBoundingClientRect();
    const { w, h } = frameSize();
    return { x: ((event.clientX - rect.left) * w) / rect.width, y: ((event.clientY - rect.top) * h) / rect.height };
  }

  let drag = null;
  workspace.addEventListener("wheel", (event) => {
    const point = framePoint(event);
    if (!point) return;
    event.preventDefault();
    zoomAt(Math.exp(-event.deltaY * 0.0015), point);
  }, { passive: false });
  workspace.addEventListener("pointermove", (event) => {
    const point = framePoint(event);
    if (point) pointer = point;
    if (!drag) return;
    zoom.x = drag.x + (event.clientX - drag.startX);
    zoom.y = drag.y + (event.clientY - drag.startY);
    clampZoom();
    applyZoom();
  });
  workspace.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || !event.target.closest(".ann-view")) return;
    drag = { startX: event.clientX, startY: event.clientY, x: zoom.x, y: zoom.y };
    event.target.setPointerCapture(event.pointerId);
    workspace.classList.add("is-dragging");
  });
  const endDrag = () => { drag = null; workspace.classList.remove("is-dragging"); };
  workspace.addEventListener("pointerup", endDrag);
  workspace.addEventListener("pointercancel", endDrag);
  workspace.addEventListener("dblclick", (event) => {
    const point = framePoint(event);
    if (!point) return;
    if (zoom.scale > 1) resetZoom();
    else zoomAt(Z_SCALE, point);
  });
  workspace.addEventListener("pointerleave", () => { pointer = null; });

  function toggleHelp(open) {
    help.hidden = open === undefined ? !help.hidden : !open;
  }

  window.addEventListener("beforeunload", (event) => {
    if (inflight.size) { event.preventDefault(); event.returnValue = ""; }
  });

  page.start();
})();
