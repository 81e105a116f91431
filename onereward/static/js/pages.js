/* What the server-rendered pages do in the browser, kept out of the markup so that they run under
 * the Content-Security-Policy (no inline scripts, handlers or style attributes):
 *   data-mask-image="URL"          sets the element's --mask to that image (the gallery's mask veils);
 *   data-toggles-body-class="NAME" on a checkbox: the body has class NAME while it is ticked.
 * Content htmx swaps in gets the same treatment. */
(() => {
  "use strict";

  function apply(root) {
    const within = (selector) => [...(root.matches && root.matches(selector) ? [root] : []), ...root.querySelectorAll(selector)];
    within("[data-mask-image]").forEach((el) => el.style.setProperty("--mask", `url("${el.dataset.maskImage}")`));
    within("[data-toggles-body-class]").forEach((box) => document.body.classList.toggle(box.dataset.togglesBodyClass, box.checked));
  }

  document.addEventListener("change", (event) => {
    const box = event.target;
    if (box.matches && box.matches("[data-toggles-body-class]")) document.body.classList.toggle(box.dataset.togglesBodyClass, box.checked);
  });
  document.addEventListener("htmx:load", (event) => { if (event.target instanceof Element) apply(event.target); });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => apply(document));
  else apply(document);
})();
