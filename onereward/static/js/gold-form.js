/* The admin's gold-answer form: ticking "no clear difference" clears that dimension's best and
 * worst; picking one unticks it. */
(() => {
  "use strict";
  document.querySelectorAll("#gold-form input[type=checkbox]").forEach((box) => {
    const slug = box.name.replace(/-discarded$/, "");
    const radios = document.querySelectorAll(`#gold-form input[name="${slug}-best"], #gold-form input[name="${slug}-worst"]`);
    box.addEventListener("change", () => { if (box.checked) radios.forEach((r) => { r.checked = false; }); });
    radios.forEach((r) => r.addEventListener("change", () => { if (r.checked) box.checked = false; }));
  });
})();
