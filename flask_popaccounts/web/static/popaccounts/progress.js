/* flask-popaccounts: live fetch progress on the account cards (R16).
   Progressive enhancement: without JS the card shows the progress as of page load.
   "Check now" is sent with fetch() so the bar can start at once; plain POST otherwise. */
(function () {
  "use strict";
  function poll(box, delay) {
    var url = box.getAttribute("data-progress-url");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        var card = box.closest(".pa-card");
        var bar = box.querySelector("progress");
        var text = box.querySelector("[data-role=progress-text]");
        var p = data.progress;
        if (data.running) {
          box.hidden = false;
          if (p && p.total) {
            bar.max = p.total; bar.value = p.done || 0;
            text.textContent = (p.done || 0) + " of " + p.total + " messages";
          } else {
            bar.removeAttribute("value"); text.textContent = "Connecting\u2026";
          }
          setTimeout(function () { poll(box, delay); }, delay);
        } else {
          box.hidden = true;
          if (card) {
            var label = card.querySelector("[data-role=status-label]");
            var expl = card.querySelector("[data-role=status-explanation]");
            var count = card.querySelector("[data-role=message-count]");
            if (label && data.status) { label.textContent = data.status.label; }
            if (expl && data.status) { expl.textContent = data.status.explanation || ""; }
            if (count) { count.textContent = data.message_count; }
          }
          if (box.getAttribute("data-watching") === "1") {
            box.removeAttribute("data-watching");
            var last = card && card.querySelector("[data-role=last-check]");
            if (last && data.last_success_at) { last.textContent = data.last_success_at.replace("T", " ").slice(0, 16) + " UTC"; }
          }
        }
      })
      .catch(function () { /* offline or signed out: leave the card as it is */ });
  }
  document.addEventListener("DOMContentLoaded", function () {
    // After a failed "Test and save", move focus to the explanation (screen readers too).
    var problem = document.getElementById("test-error") || document.getElementById("form-errors");
    if (problem) { problem.focus(); }
    document.querySelectorAll(".pa-progress").forEach(function (box) {
      if (!box.hidden) { poll(box, 1000); }
    });
    document.querySelectorAll(".pa-card form").forEach(function (form) {
      if (!form.querySelector(".pa-check-now")) { return; }
      form.addEventListener("submit", function (ev) {
        var card = form.closest(".pa-card");
        var box = card && card.querySelector(".pa-progress");
        if (!box || !window.fetch) { return; }
        ev.preventDefault();
        fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin",
                             headers: { "Accept": "application/json" } })
          .then(function (resp) { return resp.json(); })
          .then(function (data) {
            var text = box.querySelector("[data-role=progress-text]");
            box.hidden = false;
            if (data && data.waits_for_user) {  // nothing will run: say why, do not poll
              text.textContent = data.message;
              return;
            }
            box.setAttribute("data-watching", "1");
            text.textContent = "Checking\u2026";
            poll(box, 700);
          })
          .catch(function () { form.submit(); });
      });
    });
  });
})();
