/* The annotation workspace: keyboard-first best/worst picks per dimension, synchronized zoom and
 * pan, flicking to the source, and a queue that keeps the next task ready so the annotator never
 * waits on the server. Judgments are posted in the background with a client-made submission id
 * (a retry stores nothing twice); a refused one brings its task back with the picks kept. */
(() => {
  "use strict";

  const page = document.getElementById("annotate");
  if (!page) return;
  const workspace = document.getElementById("ann-workspace");
  const help = document.getElementById("ann-help");
  const savingLine = document.getElementById("ann-saving");
  const flashLine = document.getElementById("ann-flash");
  const taskUrl = page.dataset.taskUrl;
  const csrfToken = page.dataset.csrf;

  const MAX_SCALE = 16;
  const ZOOM_STEP = 1.25;
  const Z_SCALE = 3;
  const EMPTY_FRESH_MS = 20000;   // an "empty" answer older than this is asked again
  const LEASE_MARGIN_MS = 90000;  // a task whose lease ends sooner than this is fetched again
  const SKIP_CONFIRM_MS = 2500;

  let current = null;          // the Task on screen (null while loading)
  const queue = [];            // Tasks ready to show: prefetched, or displaced by a returned one
  let prefetching = null;      // Promise of the fetch in progress
  let lastSlot = null;         // the last slot shown: the server's `after`
  const inflight = new Set();  // posts not settled yet
  const retired = new Set();   // slots submitted or skipped from this page
  let masksOn = true;
  let worstArmed = false;
  let skipArmedUntil = 0;
  const zoom = { scale: 1, x: 0, y: 0 };
  let pointer = null;          // last pointer position over a frame, in frame pixels

  // --- small helpers ----------------------------------------------------------------------------

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function uuid4() {
    // crypto.randomUUID needs a secure context; getRandomValues works on plain http too.
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  let flashTimer = null;
  function flash(text, ms = 4000) {
    flashLine.textContent = text;
    clearTimeout(flashTimer);
    if (ms) flashTimer = setTimeout(() => { flashLine.textContent = ""; }, ms);
  }

  function updateSaving(retrying) {
    const n = inflight.size;
    savingLine.textContent = n === 0 ? "" : retrying ? `${n} answer${n > 1 ? "s" : ""} not saved yet: retrying…` : "saving…";
    savingLine.classList.toggle("is-retrying", Boolean(retrying && n));
  }

  function parseFragment(html) {
    const holder = document.createElement("div");
    holder.innerHTML = html.trim();
    const el = holder.querySelector(".ann-task");
    if (!el) throw new Error("the server sent no task");
    return el;
  }

  // --- a task on (or off) the screen -------------------------------------------------------------

  class Task {
    constructor(el) {
      this.el = el;
      this.state = el.dataset.state;
      this.fetchedAt = performance.now();
      this.elapsed = 0;
      this.shownAt = null;
      if (this.state !== "task") return;
      this.slot = Number(el.dataset.slot);
      this.n = Number(el.dataset.n);
      this.aspect = Number(el.dataset.width) / Number(el.dataset.height) || 1;
      this.leaseMs = Number(el.dataset.leaseSeconds) * 1000;
      this.judgmentUrl = el.dataset.judgmentUrl;
      this.skipUrl = el.dataset.skipUrl;
      this.dims = [...el.querySelectorAll(".ann-dim")].map((li) => ({ slug: li.dataset.slug, name: li.dataset.name, li }));
      this.picks = {};
      this.dim = 0;
      this.images = [];
    }

    preload() {
      // Warm the cache: the frames and the mask (a CSS mask image) show at once when swapped in.
      const urls = new Set([...this.el.querySelectorAll("img")].map((img) => img.getAttribute("src")));
      const mask = this.el.querySelector(".ann-mask");
      const match = mask && /url\('([^']+)'\)/.exec(mask.getAttribute("style") || "");
      if (match) urls.add(match[1]);
      this.images = [...urls].map((url) => { const img = new Image(); img.src = url; return img; });
    }

    fresh() {
      const age = performance.now() - this.fetchedAt;
      if (this.state === "task") return age < this.leaseMs - LEASE_MARGIN_MS;
      return age < EMPTY_FRESH_MS;
    }

    static complete(p) {
      return Boolean(p && (p.discarded || (Number.isInteger(p.best) && Number.isInteger(p.worst))));
    }

    missing() {
      return this.dims.filter((d) => !Task.complete(this.picks[d.slug])).map((d) => {
        const p = this.picks[d.slug] || {};
        if (Number.isInteger(p.best)) return `${d.name} (worst)`;
        if (Number.isInteger(p.worst)) return `${d.name} (best)`;
        return d.name;
      });
    }

    payloadPicks() {
      const out = {};
      for (const d of this.dims) {
        const p = this.picks[d.slug];
        out[d.slug] = p.discarded ? { discarded: true } : { best: p.best, worst: p.worst };
      }
      return out;
    }

    choose(kind, position) {
      if (!(position >= 0 && position < this.n)) return;
      const slug = this.dims[this.dim].slug;
      const p = { ...(this.picks[slug] || {}) };
      delete p.discarded;
      const other = kind === "best" ? "worst" : "best";
      if (p[kind] === position) {
        delete p[kind];
      } else {
        p[kind] = position;
        if (p[other] === position) delete p[other];
        // With two candidates the one not named is the other extreme.
        if (this.n === 2 && !Number.isInteger(p[other])) p[other] = 1 - position;
      }
      this.picks[slug] = p;
      if (Task.complete(p) && this.dim < this.dims.length - 1) this.dim += 1;
      this.render();
    }

    discard() {
      const slug = this.dims[this.dim].slug;
      const was = this.picks[slug] && this.picks[slug].discarded;
      this.picks[slug] = was ? {} : { discarded: true };
      if (!was && this.dim < this.dims.length - 1) this.dim += 1;
      this.render();
    }

    move(step) {
      this.dim = Math.max(0, Math.min(this.dims.length - 1, this.dim + step));
      this.render();
    }

    render() {
      const missing = this.missing();
      this.dims.forEach((d, i) => {
        const p = this.picks[d.slug] || {};
        d.li.classList.toggle("is-current", i === this.dim);
        d.li.classList.toggle("is-done", Task.complete(p));
        const state = d.li.querySelector(".ann-dimstate");
        if (p.discarded) state.textContent = "no clear difference";
        else if (Number.isInteger(p.best) || Number.isInteger(p.worst)) {
          const show = (v) => (Number.isInteger(v) ? String(v + 1) : "?");
          state.textContent = `best ${show(p.best)} · worst ${show(p.worst)}`;
        } else state.textContent = "to do";
      });
      const p = this.picks[this.dims[this.dim].slug] || {};
      this.el.classList.toggle("is-discarded", Boolean(p.discarded));
      this.el.querySelectorAll(".ann-candidate").forEach((tile) => {
        const position = Number(tile.dataset.position);
        const best = p.best === position;
        const worst = p.worst === position;
        tile.classList.toggle("is-best", best);
        tile.classList.toggle("is-worst", worst);
        tile.querySelector(".ann-verdict").textContent = best ? "best" : worst ? "worst" : "";
      });
      this.el.querySelector(".ann-submit").classList.toggle("is-ready", missing.length === 0);
      const now = this.el.querySelector(".ann-now");
      const name = document.createElement("strong");
      name.textContent = this.dims[this.dim].name;
      const step = document.createElement("span");
      step.className = "ann-step";
      step.textContent = ` ${this.dim + 1}/${this.dims.length}`;
      now.replaceChildren(name, step);
      if (worstArmed) {
        const armed = document.createElement("span");
        armed.className = "ann-armed";
        armed.textContent = " · worst: press its number";
        now.append(armed);
      } else if (missing.length === 0) {
        const ready = document.createElement("span");
        ready.className = "ann-step";
        ready.textContent = " · all answered: Enter submits";
        now.append(ready);
      }
      const note = this.el.querySelector(".ann-missing");
      if (!note.hidden && missing.length === 0) note.hidden = true;
      this.el.classList.toggle("worst-armed", worstArmed);
    }

    showMissing() {
      const missing = this.missing();
      const note = this.el.querySelector(".ann-missing");
      note.textContent = `Not yet: ${missing.join(", ")}.`;
      note.hidden = false;
      const first = this.dims.findIndex((d) => !Task.complete(this.picks[d.slug]));
      if (first >= 0) this.dim = first;
      this.render();
    }

    showError(message) {
      const box = this.el.querySelector(".ann-error");
      if (!box) return;
      box.textContent = message ? `Not saved: ${message}. Fix it and press Enter again, or press S S to skip.` : "";
      box.hidden = !message;
    }

    started() { this.shownAt = performance.now(); }

    stopped() {
      if (this.shownAt !== null) this.elapsed += performance.now() - this.shownAt;
      this.shownAt = null;
    }
  }

  // --- the queue ---------------------------------------------------------------------------------

  function loadingView() {
    const el = document.createElement("section");
    el.className = "ann-task ann-none ann-loading";
    el.innerHTML = "<h2>Loading the next task…</h2>";
    return el;
  }

  function show(task) {
    if (current && current !== task) current.stopped();
    current = task;
    worstArmed = false;
    skipArmedUntil = 0;
    setFlick(false);
    if (!task) {
      workspace.replaceChildren(loadingView());
      return;
    }
    if (task.el.parentNode !== workspace) workspace.replaceChildren(task.el);
    if (task.state === "task") {
      lastSlot = task.slot;
      task.started();
      task.el.classList.toggle("masks-off", !masksOn);
      resetZoom();
      task.render();  // first: the line under the frames takes its height before the frames are sized
      layout();
    } else if (window.htmx) {
      htmx.process(task.el);  // its polling for new tasks starts
    }
    if (task.el.dataset.pool !== undefined) document.getElementById("ann-pool").textContent = task.el.dataset.pool;
    ensurePrefetch();
  }

  async function fetchTask(after) {
    const url = after ? `${taskUrl}?after=${after}` : taskUrl;
    let delay = 500;
    for (;;) {
      try {
        const response = await fetch(url, { credentials: "same-origin", headers: { "HX-Request": "true" } });
        if (response.ok && !response.redirected) {
          const task = new Task(parseFragment(await response.text()));
          if (task.state === "task") task.preload();
          return task;
        }
        if (response.redirected || response.status === 401 || response.status === 403) {
          flash("You are signed out: reload the page to sign in again.", 0);
          return null;
        }
      } catch (err) { /* offline: try again */ }
      await sleep(delay);
      delay = Math.min(delay * 2, 10000);
    }
  }

  function settled() {
    return Promise.allSettled([...inflight]);
  }

  function ensurePrefetch() {
    if (prefetching) return;
    if (current && current.state !== "task") return;   // the empty and paused views poll on their own
    if (current && queue.length) return;               // one task ahead is enough
    prefetching = (async () => {
      // The server resumes a lease it still holds for us before a new one, so ask only once the
      // answers in flight have closed their slots.
      await settled();
      return fetchTask(lastSlot);
    })();
    prefetching.then((task) => {
      prefetching = null;
      if (task) deliver(task);
    });
  }

  function known(slot) {
    return (current && current.slot === slot) || queue.some((t) => t.slot === slot);
  }

  function deliver(task) {
    if (task.state === "task" && retired.has(task.slot)) {
      setTimeout(ensurePrefetch, 1000);  // the server had not closed it yet: ask again
      return;
    }
    if (task.state === "task" && known(task.slot)) return;
    if (current === null) show(task);
    else queue.push(task);
  }

  function advance() {
    while (queue.length && !queue[0].fresh()) queue.shift();
    const next = queue.shift();
    show(next || null);
  }

  // --- posting answers ---------------------------------------------------------------------------

  function post(url, body) {
    const attempt = (async () => {
      let delay = 500;
      let serverErrors = 0;
      for (;;) {
        let response;
        try {
          response = await fetch(url, {
            method: "POST", credentials: "same-origin", redirect: "manual",
            headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
            body: JSON.stringify(body),
          });
        } catch (err) {
          updateSaving(true);
          await sleep(delay);
          delay = Math.min(delay * 2, 10000);
          continue;
        }
        if (response.status >= 500 && serverErrors < 4) {
          serverErrors += 1;
          updateSaving(true);
          await sleep(delay);
          delay = Math.min(delay * 2, 10000);
          continue;
        }
        if (response.type === "opaqueredirect") return { ok: false, error: "you are signed out; sign in again (in another tab) and resubmit" };
        let data = null;
        try { data = await response.json(); } catch (err) { /* an HTML error page */ }
        if (response.ok && data && data.ok) return { ok: true, created: response.status === 201 };
        const reason = (data && data.error) || (response.status === 403
          ? "the page's security token was refused; reload the page" : `the server answered ${response.status}`);
        return { ok: false, error: reason };
      }
    })();
    inflight.add(attempt);
    updateSaving(false);
    attempt.then(() => { inflight.delete(attempt); updateSaving(false); });
    return attempt;
  }

  function submit() {
    const task = current;
    if (!task || task.state !== "task") return;
    if (task.missing().length) { task.showMissing(); return; }
    task.stopped();
    const payload = { submission_id: uuid4(), dwell_ms: Math.round(task.elapsed), picks: task.payloadPicks() };
    task.showError("");
    retired.add(task.slot);
    const sending = post(task.judgmentUrl, payload);  // in flight before the next prefetch asks
    advance();
    sending.then((result) => {
      if (result.ok) {
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
    if (current && current !== task && current.state === "task") {
      current.stopped();
      queue.unshift(current);
    }
    show(task);
    task.showError(message);
    flash("An answer was refused: its task is back.", 6000);
  }

  function skip() {
    const task = current;
    if (!task || task.state !== "task") return;
    if (performance.now() > skipArmedUntil) {
      skipArmedUntil = performance.now() + SKIP_CONFIRM_MS;
      flash("Press S again to skip this task.", SKIP_CONFIRM_MS);
      return;
    }
    skipArmedUntil = 0;
    flash("Skipped.", 1500);
    task.stopped();
    retired.add(task.slot);
    const sending = post(task.skipUrl, {});
    advance();
    sending.then((result) => {
      // A refused task has usually lost its lease already: moving on is all that was asked.
      if (!result.ok && !task.refused) flash(`Skip: ${result.error}`, 6000);
    });
  }

  // --- frames: layout, zoom, pan, flick, mask ----------------------------------------------------

  function layout() {
    if (!current || current.state !== "task") return;
    const stage = current.el.querySelector(".ann-stage");
    const grid = current.el.querySelector(".ann-grid");
    const top = stage.getBoundingClientRect().top;
    const height = Math.max(240, window.innerHeight - top - 12);
    current.el.style.height = `${height}px`;
    const style = getComputedStyle(grid);
    const gap = parseFloat(style.columnGap) || 8;
    const caption = 30;
    const pad = 16;
    const width = stage.clientWidth - pad;
    const h = stage.clientHeight - pad;
    const count = current.n + 1;
    let best = { cols: 1, tile: 0 };
    for (let cols = 1; cols <= count; cols += 1) {
      const rows = Math.ceil(count / cols);
      const byWidth = (width - gap * (cols - 1)) / cols;
      const byHeight = ((h - gap * (rows - 1)) / rows - caption) * current.aspect;
      const tile = Math.floor(Math.min(byWidth, byHeight));
      if (tile > best.tile) best = { cols, tile };
    }
    grid.style.setProperty("--cols", best.cols);
    grid.style.setProperty("--tile", `${Math.max(best.tile, 60)}px`);
    grid.style.setProperty("--aspect", current.aspect);
    clampZoom();
    applyZoom();
  }

  function frameSize() {
    const view = current && current.el.querySelector(".ann-view");
    return view ? { w: view.clientWidth, h: view.clientHeight } : { w: 1, h: 1 };
  }

  function clampZoom() {
    const { w, h } = frameSize();
    zoom.scale = Math.max(1, Math.min(MAX_SCALE, zoom.scale));
    zoom.x = Math.min(0, Math.max(w - w * zoom.scale, zoom.x));
    zoom.y = Math.min(0, Math.max(h - h * zoom.scale, zoom.y));
  }

  function applyZoom() {
    if (!current || current.state !== "task") return;
    const transform = `translate(${zoom.x}px, ${zoom.y}px) scale(${zoom.scale})`;
    current.el.querySelectorAll(".ann-layer").forEach((layer) => { layer.style.transform = transform; });
    current.el.classList.toggle("is-zoomed", zoom.scale > 1);
    current.el.classList.toggle("is-pixelated", zoom.scale >= 4);
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

  function framePoint(event) {
    const view = event.target.closest && event.target.closest(".ann-view");
    if (!view) return null;
    const rect = view.getBoundingClientRect();
    return { x: event.clientX - rect.left, y: event.clientY - rect.top };
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

  function setFlick(on) {
    if (current && current.state === "task") current.el.classList.toggle("is-flicking", on);
  }

  function toggleMasks() {
    masksOn = !masksOn;
    if (current && current.state === "task") current.el.classList.toggle("masks-off", !masksOn);
    flash(masksOn ? "Mask overlay on." : "Mask overlay off.", 1200);
  }

  function toggleHelp(open) {
    help.hidden = open === undefined ? !help.hidden : !open;
  }

  // --- keys and clicks ---------------------------------------------------------------------------

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest && event.target.closest("input, textarea, select, [contenteditable]")) return;
    const { code, key } = event;
    const handled = () => event.preventDefault();
    if (key === "?" || code === "KeyH") { handled(); if (!event.repeat) toggleHelp(); return; }
    if (key === "Escape") {
      toggleHelp(false);
      worstArmed = false;
      skipArmedUntil = 0;
      if (current && current.state === "task") current.render();
      return;
    }
    if (!current || current.state !== "task") return;
    // A held key repeats; only zooming and moving between dimensions mean it.
    if (event.repeat && !["ArrowUp", "ArrowDown", "Tab", "Equal", "Minus", "NumpadAdd", "NumpadSubtract", "KeyF"].includes(code)) {
      event.preventDefault();
      return;
    }
    const task = current;
    const digit = /^(?:Digit|Numpad)(\d)$/.exec(code);
    if (digit) {
      handled();
      const number = Number(digit[1]);
      if (number === 0) { worstArmed = false; task.discard(); return; }
      const kind = event.shiftKey || worstArmed ? "worst" : "best";
      worstArmed = false;
      if (number > task.n) { flash(`There are ${task.n} candidates.`, 1500); task.render(); return; }
      task.choose(kind, number - 1);
      return;
    }
    switch (code) {
      case "KeyN": handled(); task.discard(); break;
      case "KeyW": handled(); worstArmed = !worstArmed; task.render(); break;
      case "Tab": handled(); task.move(event.shiftKey ? -1 : 1); break;
      case "ArrowDown": handled(); task.move(1); break;
      case "ArrowUp": handled(); task.move(-1); break;
      case "Enter": case "NumpadEnter": handled(); submit(); break;
      case "KeyS": handled(); skip(); break;
      case "KeyM": handled(); toggleMasks(); break;
      case "KeyZ": handled(); toggleZoom(); break;
      case "KeyR": handled(); resetZoom(); break;
      case "KeyF": handled(); if (!event.repeat) setFlick(true); break;
      case "Equal": case "NumpadAdd": handled(); zoomAt(ZOOM_STEP); break;
      case "Minus": case "NumpadSubtract": handled(); zoomAt(1 / ZOOM_STEP); break;
      default: break;
    }
  });
  document.addEventListener("keyup", (event) => { if (event.code === "KeyF") setFlick(false); });
  window.addEventListener("blur", () => setFlick(false));
  window.addEventListener("resize", () => layout());
  window.addEventListener("beforeunload", (event) => {
    if (inflight.size) { event.preventDefault(); event.returnValue = ""; }
  });

  page.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) {
      const li = event.target.closest(".ann-dim");
      if (li && current && current.state === "task") {
        current.dim = current.dims.findIndex((d) => d.li === li);
        current.render();
      }
      return;
    }
    button.blur();  // Enter and Space stay the page's keys
    const task = current && current.state === "task" ? current : null;
    if (button.dataset.pick && task) task.choose(button.dataset.pick, Number(button.dataset.position));
    switch (button.dataset.action) {
      case "submit": submit(); break;
      case "discard": if (task) task.discard(); break;
      case "skip": skipArmedUntil = performance.now() + SKIP_CONFIRM_MS; skip(); break;
      case "help": toggleHelp(); break;
      default: break;
    }
  });

  // The empty and paused views poll with htmx; a task they bring in becomes the current one.
  if (window.htmx) {
    htmx.onLoad((el) => {
      if (!(el instanceof Element) || !el.matches(".ann-task") || !workspace.contains(el)) return;
      if (current && current.el === el) return;
      const task = new Task(el);
      if (current && current.state === "task") return;  // a task is on screen already
      show(task);
    });
  }

  const first = workspace.querySelector(".ann-task");
  if (first) show(new Task(first));
})();
