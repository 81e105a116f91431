/* The evaluation-study page: per item, usable / not usable for every candidate and the best and
 * worst per dimension, keyboard first. U then a number toggles that candidate's usability (first
 * press: usable, again: not usable); a number picks the best, Shift+number (or W, number) the
 * worst, 0 or N says no clear difference, Enter submits. The answer is posted with a client-made
 * submission id (a retry stores nothing twice); on success the next item is swapped in. */
(() => {
  "use strict";

  const page = document.getElementById("study");
  if (!page) return;
  const workspace = document.getElementById("st-workspace");
  const savingLine = document.getElementById("st-saving");
  const flashLine = document.getElementById("st-flash");
  const itemUrl = page.dataset.itemUrl;
  const csrfToken = page.dataset.csrf;

  let current = null;
  let usableArmed = false;
  let worstArmed = false;
  let busy = false;
  let masksOn = true;

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function uuid4() {
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

  const USABLE_TEXT = { yes: "usable", no: "not usable", "": "usable?" };

  class Item {
    constructor(el) {
      this.el = el;
      this.state = el.dataset.state;
      if (this.state !== "item") return;
      this.slot = Number(el.dataset.slot);
      this.n = Number(el.dataset.n);
      this.aspect = Number(el.dataset.width) / Number(el.dataset.height) || 1;
      this.judgmentUrl = el.dataset.judgmentUrl;
      this.dims = [...el.querySelectorAll(".ann-dim")].map((li) => ({ slug: li.dataset.slug, name: li.dataset.name, li }));
      this.picks = {};
      this.usable = new Array(this.n).fill(null);
      this.dim = 0;
      this.elapsed = 0;
      this.shownAt = performance.now();
      this.submissionId = null;
    }

    static complete(p) {
      return Boolean(p && (p.discarded || (Number.isInteger(p.best) && Number.isInteger(p.worst))));
    }

    missing() {
      const out = [];
      this.usable.forEach((v, i) => { if (v === null) out.push(`usable? ${i + 1}`); });
      for (const d of this.dims) {
        const p = this.picks[d.slug] || {};
        if (Item.complete(p)) continue;
        if (Number.isInteger(p.best)) out.push(`${d.name} (worst)`);
        else if (Number.isInteger(p.worst)) out.push(`${d.name} (best)`);
        else out.push(d.name);
      }
      return out;
    }

    payload() {
      const picks = {};
      for (const d of this.dims) {
        const p = this.picks[d.slug];
        picks[d.slug] = p.discarded ? { discarded: true } : { best: p.best, worst: p.worst };
      }
      return { submission_id: this.submissionId, dwell_ms: Math.round(this.elapsed), usable: [...this.usable], picks };
    }

    changed() { this.submissionId = null; }  // a new answer gets a new id; a retry keeps the old one

    toggleUsable(position, value) {
      if (!(position >= 0 && position < this.n)) return;
      if (value === undefined) value = this.usable[position] !== true;
      this.usable[position] = value;
      this.changed();
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
      if (Item.complete(p) && this.dim < this.dims.length - 1) this.dim += 1;
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
      const show = (v) => (Number.isInteger(v) ? String(v + 1) : "?");
      this.dims.forEach((d, i) => {
        const p = this.picks[d.slug] || {};
        d.li.classList.toggle("is-current", i === this.dim);
        d.li.classList.toggle("is-done", Item.complete(p));
        const state = d.li.querySelector(".ann-dimstate");
        if (p.discarded) state.textContent = "no clear difference";
        else if (Number.isInteger(p.best) || Number.isInteger(p.worst)) state.textContent = `best ${show(p.best)} · worst ${show(p.worst)}`;
        else state.textContent = "to do";
      });
      this.el.querySelectorAll(".st-use").forEach((li) => {
        const v = this.usable[Number(li.dataset.position)];
        const key = v === true ? "yes" : v === false ? "no" : "";
        li.classList.toggle("is-yes", key === "yes");
        li.classList.toggle("is-no", key === "no");
        li.querySelector(".st-use-state").textContent = key ? USABLE_TEXT[key] : "to do";
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
        const v = this.usable[position];
        const badge = tile.querySelector(".st-badge");
        badge.dataset.usable = v === true ? "yes" : v === false ? "no" : "";
        badge.textContent = USABLE_TEXT[badge.dataset.usable];
      });
      const missing = this.missing();
      this.el.querySelector(".ann-submit").classList.toggle("is-ready", missing.length === 0);
      const now = this.el.querySelector(".ann-now");
      const name = document.createElement("strong");
      name.textContent = this.dims[this.dim].name;
      const step = document.createElement("span");
      step.className = "ann-step";
      step.textContent = ` ${this.dim + 1}/${this.dims.length}`;
      now.replaceChildren(name, step);
      const note = document.createElement("span");
      if (usableArmed) { note.className = "ann-armed"; note.textContent = " · usable: press its number"; }
      else if (worstArmed) { note.className = "ann-armed"; note.textContent = " · worst: press its number"; }
      else if (missing.length === 0) { note.className = "ann-step"; note.textContent = " · all answered: Enter submits"; }
      now.append(note);
      const box = this.el.querySelector(".ann-missing");
      if (!box.hidden && missing.length === 0) box.hidden = true;
      this.el.classList.toggle("worst-armed", worstArmed);
      this.el.classList.toggle("usable-armed", usableArmed);
    }

    showMissing() {
      const box = this.el.querySelector(".ann-missing");
      box.textContent = `Not yet: ${this.missing().join(", ")}.`;
      box.hidden = false;
      const first = this.dims.findIndex((d) => !Item.complete(this.picks[d.slug]));
      if (first >= 0 && this.usable.every((v) => v !== null)) this.dim = first;
      this.render();
    }

    showError(message) {
      const box = this.el.querySelector(".ann-error");
      box.textContent = message ? `Not saved: ${message}.` : "";
      box.hidden = !message;
    }
  }

  // --- showing items -----------------------------------------------------------------------------

  function show(el) {
    if (el.parentNode !== workspace) workspace.replaceChildren(el);
    current = new Item(el);
    usableArmed = false;
    worstArmed = false;
    if (current.state === "item") {
      current.el.classList.toggle("masks-off", !masksOn);
      document.getElementById("st-left").textContent = current.el.dataset.left;
      current.render();
      layout();
    } else if (window.htmx) {
      htmx.process(current.el);  // the empty and paused views poll for new items
    }
  }

  function parseFragment(html) {
    const holder = document.createElement("div");
    holder.innerHTML = html.trim();
    const el = holder.querySelector(".ann-task");
    if (!el) throw new Error("the server sent no item");
    return el;
  }

  async function fetchNext(after) {
    let delay = 500;
    for (;;) {
      try {
        const response = await fetch(`${itemUrl}?after=${after}`, { credentials: "same-origin", headers: { "HX-Request": "true" } });
        if (response.ok && !response.redirected) return parseFragment(await response.text());
        if (response.redirected || response.status === 401 || response.status === 403) {
          flash("You are signed out: reload the page to sign in again.", 0);
          return null;
        }
      } catch (err) { /* offline: try again */ }
      await sleep(delay);
      delay = Math.min(delay * 2, 10000);
    }
  }

  async function post(url, body) {
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
        savingLine.textContent = "not saved yet: retrying…";
        await sleep(delay);
        delay = Math.min(delay * 2, 10000);
        continue;
      }
      if (response.status >= 500 && serverErrors < 4) {
        serverErrors += 1;
        await sleep(delay);
        delay = Math.min(delay * 2, 10000);
        continue;
      }
      if (response.type === "opaqueredirect") return { ok: false, error: "you are signed out; sign in again (in another tab) and resubmit" };
      let data = null;
      try { data = await response.json(); } catch (err) { /* an HTML error page */ }
      if (response.ok && data && data.ok) return { ok: true, created: response.status === 201 };
      return { ok: false, error: (data && data.error) || `the server answered ${response.status}` };
    }
  }

  async function submit() {
    const item = current;
    if (!item || item.state !== "item" || busy) return;
    if (item.missing().length) { item.showMissing(); return; }
    busy = true;
    item.elapsed += performance.now() - item.shownAt;
    item.shownAt = performance.now();
    if (!item.submissionId) item.submissionId = uuid4();
    item.showError("");
    savingLine.textContent = "saving…";
    const result = await post(item.judgmentUrl, item.payload());
    savingLine.textContent = "";
    if (!result.ok) {
      busy = false;
      item.showError(result.error);
      flash("The answer was refused: see the reason on the right.", 6000);
      return;
    }
    if (result.created) {
      const judged = document.getElementById("st-judged");
      judged.textContent = String(Number(judged.textContent) + 1);
    }
    workspace.replaceChildren(Object.assign(document.createElement("section"), {
      className: "ann-task ann-none ann-loading", innerHTML: "<h2>Loading the next item…</h2>" }));
    const next = await fetchNext(item.slot);
    busy = false;
    if (next) show(next);
  }

  // --- frames ------------------------------------------------------------------------------------

  function layout() {
    if (!current || current.state !== "item") return;
    const stage = current.el.querySelector(".ann-stage");
    const grid = current.el.querySelector(".ann-grid");
    const top = stage.getBoundingClientRect().top;
    current.el.style.height = `${Math.max(240, window.innerHeight - top - 12)}px`;
    const gap = parseFloat(getComputedStyle(grid).columnGap) || 8;
    const caption = 30;
    const width = stage.clientWidth - 16;
    const height = stage.clientHeight - 16;
    const count = current.n + 1;
    let best = { cols: 1, tile: 0 };
    for (let cols = 1; cols <= count; cols += 1) {
      const rows = Math.ceil(count / cols);
      const byWidth = (width - gap * (cols - 1)) / cols;
      const byHeight = ((height - gap * (rows - 1)) / rows - caption) * current.aspect;
      const tile = Math.floor(Math.min(byWidth, byHeight));
      if (tile > best.tile) best = { cols, tile };
    }
    grid.style.setProperty("--cols", best.cols);
    grid.style.setProperty("--tile", `${Math.max(best.tile, 60)}px`);
    grid.style.setProperty("--aspect", current.aspect);
  }

  function setFlick(on) {
    if (current && current.state === "item") current.el.classList.toggle("is-flicking", on);
  }

  // --- keys and clicks ---------------------------------------------------------------------------

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest && event.target.closest("input, textarea, select, [contenteditable]")) return;
    const item = current;
    if (!item || item.state !== "item" || busy) return;
    const { code } = event;
    const handled = () => event.preventDefault();
    if (event.repeat && !["ArrowUp", "ArrowDown", "Tab", "KeyF"].includes(code)) { handled(); return; }
    if (code === "Escape") { usableArmed = false; worstArmed = false; item.render(); return; }
    const digit = /^(?:Digit|Numpad)(\d)$/.exec(code);
    if (digit) {
      handled();
      const number = Number(digit[1]);
      if (usableArmed) {
        usableArmed = false;
        if (number < 1 || number > item.n) { flash(`There are ${item.n} candidates.`, 1500); item.render(); return; }
        item.toggleUsable(number - 1);
        return;
      }
      if (number === 0) { worstArmed = false; item.discard(); return; }
      const kind = event.shiftKey || worstArmed ? "worst" : "best";
      worstArmed = false;
      if (number > item.n) { flash(`There are ${item.n} candidates.`, 1500); item.render(); return; }
      item.choose(kind, number - 1);
      return;
    }
    switch (code) {
      case "KeyU": handled(); usableArmed = !usableArmed; worstArmed = false; item.render(); break;
      case "KeyW": handled(); worstArmed = !worstArmed; usableArmed = false; item.render(); break;
      case "KeyN": handled(); item.discard(); break;
      case "Tab": handled(); item.move(event.shiftKey ? -1 : 1); break;
      case "ArrowDown": handled(); item.move(1); break;
      case "ArrowUp": handled(); item.move(-1); break;
      case "Enter": case "NumpadEnter": handled(); submit(); break;
      case "KeyM":
        handled();
        masksOn = !masksOn;
        item.el.classList.toggle("masks-off", !masksOn);
        break;
      case "KeyF": handled(); if (!event.repeat) setFlick(true); break;
      default: break;
    }
  });
  document.addEventListener("keyup", (event) => { if (event.code === "KeyF") setFlick(false); });
  window.addEventListener("blur", () => setFlick(false));
  window.addEventListener("resize", () => layout());

  page.addEventListener("click", (event) => {
    const item = current && current.state === "item" ? current : null;
    const button = event.target.closest("button");
    if (!button) {
      const li = event.target.closest(".ann-dim");
      if (li && item) { item.dim = item.dims.findIndex((d) => d.li === li); item.render(); }
      return;
    }
    button.blur();  // Enter stays the page's key
    if (!item || busy) return;
    if (button.dataset.usable) item.toggleUsable(Number(button.dataset.position), button.dataset.usable === "yes");
    if (button.dataset.pick) item.choose(button.dataset.pick, Number(button.dataset.position));
    if (button.dataset.action === "submit") submit();
    if (button.dataset.action === "discard") item.discard();
  });

  // The empty and paused views poll with htmx; an item they bring in becomes the current one.
  if (window.htmx) {
    htmx.onLoad((el) => {
      if (!(el instanceof Element) || !el.matches(".ann-task") || !workspace.contains(el)) return;
      if (current && current.el === el) return;
      show(el);
    });
  }

  const first = workspace.querySelector(".ann-task");
  if (first) show(first);
})();
