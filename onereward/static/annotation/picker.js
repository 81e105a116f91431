/* What the annotation workspace (annotate.js) and the evaluation-study page (study.js) share: best
 * and worst per dimension on a set of numbered candidates, the keys and clicks that make those
 * picks (kept in sessionStorage until submitted, so a reload loses none), the frames' layout, the
 * mask drawn as a veil and an outline, and requests that outlast a flaky connection. Each page
 * loads this file first, then its own, which extends Candidates and JudgingPage: a key means the
 * same on both pages and a fix to the picker reaches both. Nothing runs here; it only defines
 * window.Picker. */
(() => {
  "use strict";

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function uuid4() {
    // crypto.randomUUID needs a secure context; getRandomValues works on plain http too.
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  const complete = (p) => Boolean(p && (p.discarded || (Number.isInteger(p.best) && Number.isInteger(p.worst))));

  // --- the mask as a shape: a veil on the source, an outline on any frame --------------------------

  const SVG = "http://www.w3.org/2000/svg";
  const MASK_SIDE = 1024;  // larger masks are traced at this size: the outline is a line on the screen
  const shapes = new Map();  // mask URL -> Promise of {width, height, d}, the last few

  // The boundary between the mask (luminance >= 50 %) and the rest, as closed loops along pixel
  // edges in an SVG path: each step keeps the mask on its right, so a loop around a hole runs the
  // other way and "evenodd" fills exactly the mask. Straight runs are one H or V command each.
  function outlinePath(inside, w, h) {
    const W = w + 1;
    const out = new Int32Array(W * (h + 1) * 2).fill(-1);  // the (up to two) steps leaving each corner
    const step = (from, to) => { if (out[2 * from] < 0) out[2 * from] = to; else out[2 * from + 1] = to; };
    for (let y = 0; y < h; y += 1) {
      for (let x = 0; x < w; x += 1) {
        const i = y * w + x;
        if (!inside[i]) continue;
        const tl = y * W + x;
        if (y === 0 || !inside[i - w]) step(tl, tl + 1);
        if (x === w - 1 || !inside[i + 1]) step(tl + 1, tl + 1 + W);
        if (y === h - 1 || !inside[i + w]) step(tl + 1 + W, tl + W);
        if (x === 0 || !inside[i - 1]) step(tl + W, tl);
      }
    }
    const parts = [];
    for (let k = 0; k < out.length; k += 1) {
      if (out[k] < 0) continue;
      const start = k >> 1;
      let at = start;
      let dx = 0;
      let dy = 0;
      parts.push(`M${start % W} ${Math.floor(start / W)}`);
      do {
        const slot = out[2 * at] >= 0 ? 2 * at : 2 * at + 1;
        const next = out[slot];
        out[slot] = -1;
        const ndx = (next % W) - (at % W);
        const ndy = Math.floor(next / W) - Math.floor(at / W);
        if ((ndx !== dx || ndy !== dy) && (dx || dy)) parts.push(dx ? `H${at % W}` : `V${Math.floor(at / W)}`);
        dx = ndx;
        dy = ndy;
        at = next;
      } while (at !== start);
      parts.push("Z");
    }
    return parts.join("");
  }

  async function traceMask(url) {
    const image = new Image();
    image.src = url;
    await image.decode();
    const scale = Math.min(1, MASK_SIDE / Math.max(image.naturalWidth, image.naturalHeight));
    const w = Math.max(1, Math.round(image.naturalWidth * scale));
    const h = Math.max(1, Math.round(image.naturalHeight * scale));
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(image, 0, 0, w, h);
    const rgba = context.getImageData(0, 0, w, h).data;
    const inside = new Uint8Array(w * h);
    for (let i = 0; i < inside.length; i += 1) {
      const o = 4 * i;
      inside[i] = (rgba[o] + rgba[o + 1] + rgba[o + 2]) * rgba[o + 3] >= 3 * 128 * 255 ? 1 : 0;
    }
    return { width: w, height: h, d: outlinePath(inside, w, h) };
  }

  function maskShape(url) {
    if (!shapes.has(url)) {
      shapes.set(url, traceMask(url).catch(() => null));
      if (shapes.size > 6) shapes.delete(shapes.keys().next().value);
    }
    return shapes.get(url);
  }

  function shapeLayer(shape, veil) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "ann-shape");
    svg.setAttribute("viewBox", `0 0 ${shape.width} ${shape.height}`);
    svg.setAttribute("preserveAspectRatio", "none");
    if (veil) {
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", "Mask: the area that was generated");
    } else {
      svg.setAttribute("aria-hidden", "true");
    }
    for (const name of veil ? ["ann-veil", "ann-line-dark", "ann-line-light"] : ["ann-line-dark", "ann-line-light"]) {
      const path = document.createElementNS(SVG, "path");
      path.setAttribute("class", name);
      path.setAttribute("d", shape.d);
      svg.append(path);
    }
    return svg;
  }

  // --- picks kept across a reload ------------------------------------------------------------------

  const stored = {
    get(key) {
      try { return JSON.parse(sessionStorage.getItem(key) || "null"); } catch (err) { return null; }
    },
    set(key, value) {
      try { sessionStorage.setItem(key, JSON.stringify(value)); } catch (err) { /* full or off: picks live in the page only */ }
    },
    remove(key) {
      try { sessionStorage.removeItem(key); } catch (err) { /* off */ }
    },
  };

  // --- one fragment: the candidates of a slot and the picks made on them ---------------------------

  class Candidates {
    // What a number key does while armed, as the line under the frames says it.
    static ARMED = { worst: " · worst: press its number" };
    // Appended to the reason a refused answer is shown with: what the page lets one do about it.
    static REFUSED_HINT = "";

    // `judgedState`: the data-state of a fragment with candidates; the others (empty, paused) poll.
    constructor(el, judgedState) {
      this.el = el;
      this.state = el.dataset.state;
      this.judging = this.state === judgedState;
      this.elapsed = 0;
      this.shownAt = null;
      this.armed = null;  // a key of ARMED: where the next number goes instead of "best"
      if (!this.judging) return;
      this.slot = Number(el.dataset.slot);
      this.n = Number(el.dataset.n);
      this.aspect = Number(el.dataset.width) / Number(el.dataset.height) || 1;
      this.judgmentUrl = el.dataset.judgmentUrl;
      this.dims = [...el.querySelectorAll(".ann-dim")].map((li) => ({ slug: li.dataset.slug, name: li.dataset.name, li }));
      this.picks = {};
      this.dim = 0;
      this.prepared = null;
      // One key per slot (a lease: the same task for the same annotator), per page kind.
      this.storageKey = `onereward:picks:${judgedState}:${this.slot}`;
      this.saved = stored.get(this.storageKey);  // restored when first shown, once a page's own fields exist
    }

    // What a reload brings back; a page adds its own answers.
    snapshot() {
      return { picks: this.picks, dim: this.dim, elapsed: this.elapsed + (this.shownAt === null ? 0 : performance.now() - this.shownAt) };
    }

    restore(saved) {
      const slugs = new Set(this.dims.map((d) => d.slug));
      for (const [slug, p] of Object.entries(saved.picks || {})) {
        if (!slugs.has(slug) || !p || typeof p !== "object") continue;
        const ok = (v) => Number.isInteger(v) && v >= 0 && v < this.n;
        this.picks[slug] = p.discarded ? { discarded: true }
          : Object.fromEntries(["best", "worst"].filter((k) => ok(p[k])).map((k) => [k, p[k]]));
      }
      if (Number.isInteger(saved.dim) && saved.dim >= 0 && saved.dim < this.dims.length) this.dim = saved.dim;
      if (Number.isFinite(saved.elapsed) && saved.elapsed > 0) this.elapsed = saved.elapsed;
    }

    restoreSaved() {
      if (this.saved) this.restore(this.saved);
      this.saved = null;
    }

    save() { if (this.judging) stored.set(this.storageKey, this.snapshot()); }

    forget() { if (this.judging) stored.remove(this.storageKey); }

    // Resolves once the frames can be painted at once: every image decoded, the mask traced and
    // drawn into every frame. Runs once; a prefetched task runs it before it is shown.
    prepare() {
      if (!this.prepared) {
        const images = [...this.el.querySelectorAll("img")].map((img) => img.decode().catch(() => null));
        this.prepared = Promise.all([...images, this.drawMask()]).then(() => this);
      }
      return this.prepared;
    }

    async drawMask() {
      const source = this.el.querySelector(".ann-source[data-mask]");
      if (!source) return;
      const shape = await maskShape(source.dataset.mask);
      if (!shape || !shape.d) return;
      for (const layer of this.el.querySelectorAll(".ann-layer")) {
        if (!layer.querySelector(".ann-shape")) layer.append(shapeLayer(shape, Boolean(layer.closest(".ann-source"))));
      }
    }

    missing() {
      return this.dims.filter((d) => !complete(this.picks[d.slug])).map((d) => {
        const p = this.picks[d.slug] || {};
        if (Number.isInteger(p.best)) return `${d.name} (worst)`;
        if (Number.isInteger(p.worst)) return `${d.name} (best)`;
        return d.name;
      });
    }

    firstMissing() {
      return this.dims.findIndex((d) => !complete(this.picks[d.slug]));
    }

    payload(submissionId) {
      const picks = {};
      for (const d of this.dims) {
        const p = this.picks[d.slug];
        picks[d.slug] = p.discarded ? { discarded: true } : { best: p.best, worst: p.worst };
      }
      return { submission_id: submissionId, dwell_ms: Math.round(this.elapsed), picks };
    }

    changed() { this.save(); }

    arm(mode) {
      this.armed = this.armed === mode ? null : mode;
      this.render();
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
      if (complete(p) && this.dim < this.dims.length - 1) this.dim += 1;
      this.changed();
      this.render();
    }

    discard() {
      const slug = this.dims[this.dim].slug;
      const was = this.picks[slug] && this.picks[slug].discarded;
      this.picks[slug] = was ? {} : { discarded: true };
      if (!was && this.dim < this.dims.length - 1) this.dim += 1;
      this.changed();
      this.render();
    }

    move(step) {
      this.dim = Math.max(0, Math.min(this.dims.length - 1, this.dim + step));
      this.save();
      this.render();
    }

    render() {
      const missing = this.missing();
      const show = (v) => (Number.isInteger(v) ? String(v + 1) : "?");
      this.dims.forEach((d, i) => {
        const p = this.picks[d.slug] || {};
        d.li.classList.toggle("is-current", i === this.dim);
        d.li.classList.toggle("is-done", complete(p));
        const state = d.li.querySelector(".ann-dimstate");
        if (p.discarded) state.textContent = "no clear difference";
        else if (Number.isInteger(p.best) || Number.isInteger(p.worst)) state.textContent = `best ${show(p.best)} · worst ${show(p.worst)}`;
        else state.textContent = "to do";
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
      const armedNotes = this.constructor.ARMED;
      if (this.armed) {
        now.append(Object.assign(document.createElement("span"), { className: "ann-armed", textContent: armedNotes[this.armed] }));
      } else if (missing.length === 0) {
        now.append(Object.assign(document.createElement("span"), { className: "ann-step", textContent: " · all answered: Enter submits" }));
      }
      const note = this.el.querySelector(".ann-missing");
      if (!note.hidden && missing.length === 0) note.hidden = true;
      for (const mode of Object.keys(armedNotes)) this.el.classList.toggle(`${mode}-armed`, this.armed === mode);
    }

    showMissing() {
      const note = this.el.querySelector(".ann-missing");
      note.textContent = `Not yet: ${this.missing().join(", ")}.`;
      note.hidden = false;
      const first = this.firstMissing();
      if (first >= 0) this.dim = first;
      this.render();
    }

    showError(message) {
      const box = this.el.querySelector(".ann-error");
      if (!box) return;
      box.textContent = message ? `Not saved: ${message}.${this.constructor.REFUSED_HINT}` : "";
      box.hidden = !message;
    }

    started() { this.shownAt = performance.now(); }

    stopped() {
      if (this.shownAt !== null) this.elapsed += performance.now() - this.shownAt;
      this.shownAt = null;
    }
  }

  // --- the page: its keys, clicks, frames and requests ---------------------------------------------

  function parseFragment(html, noun) {
    const holder = document.createElement("div");
    holder.innerHTML = html.trim();
    const el = holder.querySelector(".ann-task");
    if (!el) throw new Error(`the server sent no ${noun}`);
    return el;
  }

  // The frames' sizes (JudgingPage.layout), in CSS pixels: a caption under a frame, or beside it.
  const CAPTION_HEIGHT = 30;
  const CAPTION_WIDTH = 64;  // the caption column (58) and its gap (6)
  const STAGE_PADDING = 6;
  const NARROW = "(max-width: 700px)";  // the phone layout of annotate.css

  class JudgingPage {
    // `root` carries data-csrf; `workspace` holds the fragment on screen; `noun` names what the
    // fragments show ("task", "item") in the page's messages.
    constructor(root, workspace, flashLine, noun) {
      this.root = root;
      this.workspace = workspace;
      this.flashLine = flashLine;
      this.noun = noun;
      this.csrfToken = root.dataset.csrf;
      this.current = null;  // the Candidates on screen, or an empty or paused view; null while loading
      this.masksOn = true;
      this.outlinesOn = stored.get("onereward:outlines") === true;  // an annotator's habit: kept for the tab
      this.flashTimer = null;
    }

    // --- what a page fills in --------------------------------------------------------------------

    arrived(el) {}            // a fragment came with the page or through htmx polling
    submit() {}
    busy() { return false; }  // true: the keys and buttons wait
    pageKey(event) { return false; }        // before the rest, with or without candidates on screen
    escape() {}
    ownDigit(number, task) { return false; }
    ownKey(code, task) { return false; }    // a key none of the shared ones is
    ownClick(button, task) { return false; }
    get repeatable() { return ["ArrowUp", "ArrowDown", "KeyF"]; }

    // --- shared ----------------------------------------------------------------------------------

    judged() {
      return this.current && this.current.judging ? this.current : null;
    }

    flash(text, ms = 4000) {
      this.flashLine.textContent = text;
      clearTimeout(this.flashTimer);
      if (ms) this.flashTimer = setTimeout(() => { this.flashLine.textContent = ""; }, ms);
    }

    display(task) {
      if (this.current && this.current !== task) this.current.stopped();
      this.current = task;
      if (!task) {
        const loading = document.createElement("section");
        loading.className = "ann-task ann-none ann-loading";
        loading.innerHTML = `<h2>Loading the next ${this.noun}…</h2>`;
        this.workspace.replaceChildren(loading);
        return;
      }
      this.setFlick(false);
      task.armed = null;
      if (task.judging) {
        task.restoreSaved();
        this.showToggles(task);
        task.render();  // first: the line under the frames takes its height before the frames are sized
      }
      if (task.el.parentNode !== this.workspace) this.workspace.replaceChildren(task.el);
      if (task.judging) {
        task.started();
        this.layout();
        task.prepare();  // at once for a prefetched task (done already); the first one's mask is drawn when traced
      } else if (window.htmx) {
        htmx.process(task.el);  // its polling for new work starts
      }
    }

    async fetchFragment(url) {
      let delay = 500;
      for (;;) {
        try {
          const response = await fetch(url, { credentials: "same-origin", headers: { "HX-Request": "true" } });
          if (response.ok && !response.redirected) return parseFragment(await response.text(), this.noun);
          if (response.redirected || response.status === 401 || response.status === 403) {
            this.flash("You are signed out: reload the page to sign in again.", 0);
            return null;
          }
        } catch (err) { /* offline: try again */ }
        await sleep(delay);
        delay = Math.min(delay * 2, 10000);
      }
    }

    // Resolves to {ok, created} or {ok: false, error}; `onRetry` runs each time it waits to resend.
    async post(url, body, onRetry = () => {}) {
      let delay = 500;
      let serverErrors = 0;
      for (;;) {
        let response;
        try {
          response = await fetch(url, {
            method: "POST", credentials: "same-origin", redirect: "manual",
            headers: { "Content-Type": "application/json", "X-CSRFToken": this.csrfToken },
            body: JSON.stringify(body),
          });
        } catch (err) {
          onRetry();
          await sleep(delay);
          delay = Math.min(delay * 2, 10000);
          continue;
        }
        if (response.status >= 500 && serverErrors < 4) {
          serverErrors += 1;
          onRetry();
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
    }

    // The candidates only, as large as the stage allows: every column count is tried with the
    // caption under the frames and beside them, and the largest frame wins. The source is in the
    // side panel (and in every frame while F is held). A phone stacks the frames at full width.
    // The next task of the same shape in the same window reuses the sizes (no layout to read while
    // Enter swaps it in); they are measured again once it is on screen.
    layout(measure = false) {
      const task = this.judged();
      if (!task) return;
      const grid = task.el.querySelector(".ann-grid");
      task.el.style.setProperty("--aspect", task.aspect);
      if (window.matchMedia(NARROW).matches) {
        task.el.style.height = "";
        grid.classList.remove("is-captions-beside");
        this.sized = null;
        return;
      }
      const key = `${window.innerWidth}x${window.innerHeight} ${task.n} ${task.aspect}`;
      if (!measure && this.sized && this.sized.key === key) {
        this.applySizes(task, this.sized);
        clearTimeout(this.remeasure);
        this.remeasure = setTimeout(() => { if (this.judged() === task) this.layout(true); }, 50);
        return;
      }
      const stage = task.el.querySelector(".ann-stage");
      const top = task.el.getBoundingClientRect().top + window.scrollY;
      task.el.style.height = `${Math.max(240, window.innerHeight - top - 8)}px`;
      const gap = parseFloat(getComputedStyle(grid).columnGap) || 8;
      const width = stage.clientWidth - 2 * STAGE_PADDING;
      const height = stage.clientHeight - 2 * STAGE_PADDING;
      let best = { cols: 1, tile: 0, beside: false };
      for (const beside of [false, true]) {
        for (let cols = 1; cols <= task.n; cols += 1) {
          const rows = Math.ceil(task.n / cols);
          const byWidth = (width - gap * (cols - 1)) / cols - (beside ? CAPTION_WIDTH : 0);
          const byHeight = ((height - gap * (rows - 1)) / rows - (beside ? 0 : CAPTION_HEIGHT)) * task.aspect;
          const tile = Math.floor(Math.min(byWidth, byHeight));
          if (tile > best.tile) best = { cols, tile, beside };
        }
      }
      this.sized = { key, height: task.el.style.height, ...best };
      this.applySizes(task, this.sized);
    }

    applySizes(task, sized) {
      const grid = task.el.querySelector(".ann-grid");
      task.el.style.height = sized.height;
      grid.style.setProperty("--cols", sized.cols);
      grid.style.setProperty("--tile", `${Math.max(sized.tile, 60)}px`);
      grid.classList.toggle("is-captions-beside", sized.beside);
    }

    setFlick(on) {
      const task = this.judged();
      if (task) task.el.classList.toggle("is-flicking", on);
    }

    showToggles(task) {
      task.el.classList.toggle("masks-off", !this.masksOn);
      task.el.classList.toggle("outlines-on", this.outlinesOn);
      const pressed = { masks: this.masksOn, outlines: this.outlinesOn };
      task.el.querySelectorAll(".ann-toggles [data-action]").forEach((button) => {
        button.setAttribute("aria-pressed", String(pressed[button.dataset.action]));
      });
    }

    toggleMasks() {
      this.masksOn = !this.masksOn;
      const task = this.judged();
      if (task) this.showToggles(task);
      this.flash(this.masksOn ? "Mask on the source." : "Mask off.", 1200);
    }

    toggleOutlines() {
      this.outlinesOn = !this.outlinesOn;
      stored.set("onereward:outlines", this.outlinesOn);
      const task = this.judged();
      if (task) this.showToggles(task);
      this.flash(this.outlinesOn ? "Mask outline on every candidate." : "Mask outline on the source only.", 1200);
    }

    noSuchCandidate(task) {
      this.flash(`There are ${task.n} candidates.`, 1500);
      task.render();
    }

    keydown(event) {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      const target = event.target;
      if (target.closest && target.closest("input, textarea, select, [contenteditable]")) return;
      // Tab moves the focus (the browser's own); Enter and Space press the button or follow the
      // link in focus. Every other key is the page's, wherever the focus is.
      if (event.key === "Tab") return;
      if ((event.key === "Enter" || event.key === " ") && target.closest && target.closest("a[href], button")) return;
      if (this.pageKey(event)) return;
      if (event.key === "Escape") {
        this.escape();
        const shown = this.judged();
        if (shown) { shown.armed = null; shown.render(); }
        return;
      }
      const task = this.judged();
      if (!task || this.busy()) return;
      const { code } = event;
      const handled = () => event.preventDefault();
      // A held key repeats; only moving between dimensions (and what a page adds) mean it.
      if (event.repeat && !this.repeatable.includes(code)) { handled(); return; }
      const digit = /^(?:Digit|Numpad)(\d)$/.exec(code);
      if (digit) {
        handled();
        const number = Number(digit[1]);
        if (this.ownDigit(number, task)) return;
        if (number === 0) { task.armed = null; task.discard(); return; }
        const kind = event.shiftKey || task.armed === "worst" ? "worst" : "best";
        task.armed = null;
        if (number > task.n) { this.noSuchCandidate(task); return; }
        task.choose(kind, number - 1);
        return;
      }
      switch (code) {
        case "KeyN": handled(); task.discard(); break;
        case "KeyW": handled(); task.arm("worst"); break;
        case "ArrowDown": handled(); task.move(1); break;
        case "ArrowUp": handled(); task.move(-1); break;
        case "Enter": case "NumpadEnter": handled(); this.submit(); break;
        case "KeyM": handled(); this.toggleMasks(); break;
        case "KeyO": handled(); this.toggleOutlines(); break;
        case "KeyF": handled(); if (!event.repeat) this.setFlick(true); break;
        default: if (this.ownKey(code, task)) handled(); break;
      }
    }

    click(event) {
      const task = this.judged();
      const button = event.target.closest("button");
      if (!button) {
        const li = event.target.closest(".ann-dim");
        if (li && task && task.el.contains(li)) { task.dim = task.dims.findIndex((d) => d.li === li); task.save(); task.render(); }
        return;
      }
      if (!button.closest(".ann-page, .ann-bar")) return;  // the top bar's own buttons (Log out)
      // A click with the pointer leaves no focus behind, so that Enter stays "submit"; a button
      // pressed from the keyboard (detail 0) keeps it, so that Tab goes on from there.
      if (event.detail > 0) button.blur();
      if (button.dataset.action === "masks") { this.toggleMasks(); return; }
      if (button.dataset.action === "outlines") { this.toggleOutlines(); return; }
      if (this.ownClick(button, task)) return;
      if (!task || this.busy()) return;
      if (button.dataset.pick) task.choose(button.dataset.pick, Number(button.dataset.position));
      if (button.dataset.action === "submit") this.submit();
      if (button.dataset.action === "discard") task.discard();
    }

    start() {
      document.addEventListener("keydown", (event) => this.keydown(event));
      document.addEventListener("keyup", (event) => { if (event.code === "KeyF") this.setFlick(false); });
      window.addEventListener("blur", () => this.setFlick(false));
      window.addEventListener("resize", () => this.layout());
      document.addEventListener("click", (event) => this.click(event));
      // The empty and paused views poll with htmx; what they bring in is the page's to show.
      if (window.htmx) {
        htmx.onLoad((el) => {
          if (!(el instanceof Element) || !el.matches(".ann-task") || !this.workspace.contains(el)) return;
          if (this.current && this.current.el === el) return;
          this.arrived(el);
        });
      }
      const first = this.workspace.querySelector(".ann-task");
      if (first) this.arrived(first);
    }
  }

  window.Picker = { Candidates, JudgingPage, uuid4 };
})();
