/* What the annotation workspace (annotate.js) and the evaluation-study page (study.js) share: best
 * and worst per dimension on a set of numbered candidates, the keys and clicks that make those
 * picks, the frames' layout, and requests that outlast a flaky connection. Each page loads this
 * file first, then its own, which extends Candidates and JudgingPage: a key means the same on both
 * pages and a fix to the picker reaches both. Nothing runs here; it only defines window.Picker. */
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

    changed() {}

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
    get repeatable() { return ["ArrowUp", "ArrowDown", "Tab", "KeyF"]; }

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
      if (task.el.parentNode !== this.workspace) this.workspace.replaceChildren(task.el);
      if (task.judging) {
        task.started();
        task.el.classList.toggle("masks-off", !this.masksOn);
        task.render();  // first: the line under the frames takes its height before the frames are sized
        this.layout();
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

    layout() {
      const task = this.judged();
      if (!task) return;
      const stage = task.el.querySelector(".ann-stage");
      const grid = task.el.querySelector(".ann-grid");
      const top = stage.getBoundingClientRect().top;
      task.el.style.height = `${Math.max(240, window.innerHeight - top - 12)}px`;
      const gap = parseFloat(getComputedStyle(grid).columnGap) || 8;
      const caption = 30;
      const width = stage.clientWidth - 16;
      const height = stage.clientHeight - 16;
      const count = task.n + 1;
      let best = { cols: 1, tile: 0 };
      for (let cols = 1; cols <= count; cols += 1) {
        const rows = Math.ceil(count / cols);
        const byWidth = (width - gap * (cols - 1)) / cols;
        const byHeight = ((height - gap * (rows - 1)) / rows - caption) * task.aspect;
        const tile = Math.floor(Math.min(byWidth, byHeight));
        if (tile > best.tile) best = { cols, tile };
      }
      grid.style.setProperty("--cols", best.cols);
      grid.style.setProperty("--tile", `${Math.max(best.tile, 60)}px`);
      grid.style.setProperty("--aspect", task.aspect);
    }

    setFlick(on) {
      const task = this.judged();
      if (task) task.el.classList.toggle("is-flicking", on);
    }

    toggleMasks() {
      this.masksOn = !this.masksOn;
      const task = this.judged();
      if (task) task.el.classList.toggle("masks-off", !this.masksOn);
    }

    noSuchCandidate(task) {
      this.flash(`There are ${task.n} candidates.`, 1500);
      task.render();
    }

    keydown(event) {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.target.closest && event.target.closest("input, textarea, select, [contenteditable]")) return;
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
        case "Tab": handled(); task.move(event.shiftKey ? -1 : 1); break;
        case "ArrowDown": handled(); task.move(1); break;
        case "ArrowUp": handled(); task.move(-1); break;
        case "Enter": case "NumpadEnter": handled(); this.submit(); break;
        case "KeyM": handled(); this.toggleMasks(); break;
        case "KeyF": handled(); if (!event.repeat) this.setFlick(true); break;
        default: if (this.ownKey(code, task)) handled(); break;
      }
    }

    click(event) {
      const task = this.judged();
      const button = event.target.closest("button");
      if (!button) {
        const li = event.target.closest(".ann-dim");
        if (li && task) { task.dim = task.dims.findIndex((d) => d.li === li); task.render(); }
        return;
      }
      button.blur();  // Enter and Space stay the page's keys
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
      this.root.addEventListener("click", (event) => this.click(event));
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
