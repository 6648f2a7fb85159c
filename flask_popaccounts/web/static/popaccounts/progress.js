/* flask-popaccounts: live fetch progress on the account cards (R16).
 *
 * The Mail Accounts page (ul[data-pa-progress-url]) asks one small JSON endpoint for all
 * its cards, only while the page is visible: every few seconds, faster while a fetch
 * runs or is due to start (the server says when to ask again: poll_ms). A card's bar
 * appears by itself when its account's fetch runs, whoever started it (the wizard's new
 * account, the scheduler, "Check now" here or in another tab), and the card ends with
 * the fetch's result and its fields updated. Every word comes from the server, already
 * translated: this file holds no text.
 * Progressive enhancement: without JS the card shows the progress as of page load, and
 * "Check now" is a plain POST (with JS it is sent with fetch(), so the bar starts at once).
 */
(function () {
  "use strict";
  var list = null, timer = null, inFlight = false, again = false, delay = 5000;
  var watched = {};  // account id -> this page saw its fetch run (or due to start)

  function role(card, name) { return card.querySelector("[data-role=" + name + "]"); }

  function setText(el, text) {  // (an unchanged live region is not announced again)
    if (el && el.textContent !== text) { el.textContent = text; }
  }

  function showBar(card, a) {
    var box = role(card, "progress");
    if (!box) { return; }
    var bar = box.querySelector("progress");
    box.hidden = false;
    if (a.total) { bar.max = a.total; bar.value = a.done; } else { bar.removeAttribute("value"); }
    setText(role(card, "progress-text"), a.text);
    var result = role(card, "fetch-result");
    if (result) { result.hidden = true; }
  }

  function showFields(card, a) {
    card.className = card.className.replace(/\bpa-tone-\S+/, "pa-tone-" + a.status.tone);
    setText(role(card, "status-label"), a.status.label);
    var expl = role(card, "status-explanation");
    if (expl) { setText(expl, a.status.explanation || ""); expl.hidden = !a.status.explanation; }
    setText(role(card, "message-count"), a.message_count_text);
    setText(role(card, "storage-used"), a.storage_text);
    var last = role(card, "last-check");
    if (last && last.textContent !== a.last_checked) {
      last.textContent = "";
      var bdi = document.createElement("bdi");
      var time = document.createElement("time");
      if (a.last_checked_at) { time.setAttribute("datetime", a.last_checked_at); }
      time.textContent = a.last_checked;
      bdi.appendChild(time);
      last.appendChild(bdi);
    }
  }

  function update(a) {
    var card = document.getElementById("account-" + a.id);
    if (!card) { return; }  // (added in another tab since: shown after a reload)
    if (a.running) {
      watched[a.id] = true;
      showBar(card, a);
      return;
    }
    // (compared only once it stopped: the row may say "ended" a moment before the bar)
    var ended = card.getAttribute("data-pa-attempt") !== a.attempt;
    card.setAttribute("data-pa-attempt", a.attempt);
    var box = role(card, "progress");
    if (box) { box.hidden = true; }
    showFields(card, a);
    // The result of a fetch this page watched, or of any that brought new mail.
    if (ended && a.result && (watched[a.id] || a.stored > 0)) {
      var result = role(card, "fetch-result");
      if (result) { setText(result, a.result); result.hidden = false; }
    }
    if (ended) { watched[a.id] = false; }
    if (a.watch) { watched[a.id] = true; }
  }

  function stop() {
    clearTimeout(timer);
    timer = null;
  }

  function schedule(ms) {
    stop();
    if (document.visibilityState === "visible") { timer = setTimeout(poll, ms); }
  }

  function done(ms) {
    inFlight = false;
    if (again) { again = false; ms = 0; }
    schedule(ms);
  }

  function poll() {
    if (inFlight) { again = true; return; }  // (asked again while one is on its way)
    stop();
    inFlight = true;
    fetch(list.getAttribute("data-pa-progress-url"),
          { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { done(delay * 2); return; }  // signed out, or an error: slow down
        data.accounts.forEach(update);
        delay = data.poll_ms || delay;
        done(delay);
      })
      .catch(function () { done(delay * 2); });  // offline
  }

  function checkNow(form, ev) {
    var card = form.closest(".pa-card");
    if (!card || !list || !window.fetch) { return; }
    ev.preventDefault();
    fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin",
                         headers: { "Accept": "application/json" } })
      .then(function (resp) { return resp.json(); })
      .then(function (data) {
        var result = role(card, "fetch-result");
        if (data && data.waits_for_user) {  // nothing will run: say why
          if (result) { setText(result, data.message); result.hidden = false; }
          return;
        }
        watched[card.getAttribute("data-pa-account")] = true;
        if (result) { result.hidden = true; }
        poll();
      })
      .catch(function () { form.submit(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    // After a failed "Test and save", move focus to the explanation (screen readers too).
    var problem = document.getElementById("test-error") || document.getElementById("form-errors");
    if (problem) { problem.focus(); }
    list = document.querySelector("[data-pa-progress-url]");
    if (!list || !window.fetch) { return; }
    var soon = false;
    list.querySelectorAll(".pa-card").forEach(function (card) {
      if (card.getAttribute("data-pa-watch") === "1") {
        watched[card.getAttribute("data-pa-account")] = true;
        soon = true;
      }
      var button = card.querySelector(".pa-check-now");
      var form = button && button.closest("form");
      if (form) { form.addEventListener("submit", function (ev) { checkNow(form, ev); }); }
    });
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") { poll(); } else { stop(); }
    });
    schedule(soon ? 300 : delay);
  });
})();
