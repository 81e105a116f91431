/* The evaluation-study page: the shared picker (picker.js) plus a usable / not usable vote for
 * every candidate, keyboard first. U then a number toggles that candidate's usability (first
 * press: usable, again: not usable); a number picks the best, Shift+number (or W, number) the
 * worst, 0 or N says no clear difference, Enter submits. The answer is posted with a client-made
 * submission id (a retry stores nothing twice); on success the next item is swapped in. */
(() => {
  "use strict";

  const { Candidates, JudgingPage, uuid4 } = window.Picker;
  const USABLE_TEXT = { yes: "usable", no: "not usable", "": "usable?" };
  const usableKey = (v) => (v === true ? "yes" : v === false ? "no" : "");

  const root = document.getElementById("study");
  if (!root) return;
  const savingLine = document.getElementById("st-saving");
  const itemUrl = root.dataset.itemUrl;

  let sending = false;  // the answer is on its way, or the next item is: keys and buttons wait

  class Item extends Candidates {
    static ARMED = { ...Candidates.ARMED, usable: " · usable: press its number" };

    constructor(el) {
      super(el, "item");
      if (!this.judging) return;
      this.usable = new Array(this.n).fill(null);
      this.submissionId = null;
    }

    missing() {
      const unvoted = [];
      this.usable.forEach((v, i) => { if (v === null) unvoted.push(`usable? ${i + 1}`); });
      return [...unvoted, ...super.missing()];
    }

    // Usability comes first in the list, so the cursor stays put until it is given.
    firstMissing() {
      return this.usable.every((v) => v !== null) ? super.firstMissing() : -1;
    }

    payload() {
      return { ...super.payload(this.submissionId), usable: [...this.usable] };
    }

    changed() {
      this.submissionId = null;  // a new answer gets a new id; a retry keeps the old one
      super.changed();
    }

    snapshot() { return { ...super.snapshot(), usable: this.usable }; }

    restore(saved) {
      super.restore(saved);
      if (Array.isArray(saved.usable) && saved.usable.length === this.n) {
        this.usable = saved.usable.map((v) => (v === true || v === false ? v : null));
      }
    }

    toggleUsable(position, value) {
      if (!(position >= 0 && position < this.n)) return;
      if (value === undefined) value = this.usable[position] !== true;
      this.usable[position] = value;
      this.changed();
      this.render();
    }

    render() {
      super.render();
      this.el.querySelectorAll(".st-use").forEach((li) => {
        const key = usableKey(this.usable[Number(li.dataset.position)]);
        li.classList.toggle("is-yes", key === "yes");
        li.classList.toggle("is-no", key === "no");
        li.querySelector(".st-use-state").textContent = key ? USABLE_TEXT[key] : "to do";
      });
      this.el.querySelectorAll(".ann-candidate").forEach((tile) => {
        const badge = tile.querySelector(".st-badge");
        badge.dataset.usable = usableKey(this.usable[Number(tile.dataset.position)]);
        badge.textContent = USABLE_TEXT[badge.dataset.usable];
      });
    }
  }

  class StudyPage extends JudgingPage {
    arrived(el) { show(el); }

    submit() { submit(); }

    busy() { return sending; }

    ownDigit(number, item) {
      if (item.armed !== "usable") return false;
      item.armed = null;
      if (number < 1 || number > item.n) this.noSuchCandidate(item);
      else item.toggleUsable(number - 1);
      return true;
    }

    ownKey(code, item) {
      if (code !== "KeyU") return false;
      item.arm("usable");
      return true;
    }

    ownClick(button, item) {
      if (!button.dataset.usable) return false;
      if (item && !sending) item.toggleUsable(Number(button.dataset.position), button.dataset.usable === "yes");
      return true;
    }
  }

  const page = new StudyPage(root, document.getElementById("st-workspace"), document.getElementById("st-flash"), "item");

  function show(el) {
    const item = new Item(el);
    page.display(item);
    if (item.judging) document.getElementById("st-left").textContent = el.dataset.left;
  }

  async function submit() {
    const item = page.judged();
    if (!item || sending) return;
    if (item.missing().length) { item.showMissing(); return; }
    sending = true;
    item.stopped();
    item.started();  // the clock runs on: a refused answer is corrected and sent again
    if (!item.submissionId) item.submissionId = uuid4();
    item.showError("");
    savingLine.textContent = "saving…";
    const result = await page.post(item.judgmentUrl, item.payload(), () => {
      savingLine.textContent = "not saved yet: retrying…";
    });
    savingLine.textContent = "";
    if (!result.ok) {
      sending = false;
      item.showError(result.error);
      page.flash("The answer was refused: see the reason on the right.", 6000);
      return;
    }
    item.forget();
    if (result.created) {
      const judged = document.getElementById("st-judged");
      judged.textContent = String(Number(judged.textContent) + 1);
    }
    page.display(null);
    const next = await page.fetchFragment(`${itemUrl}?after=${item.slot}`);
    sending = false;
    if (next) show(next);
  }

  page.start();
})();
