/* OAuth sign-in in a pop-up window (R12, R13).
 *
 * Forms marked data-pa-oauth are submitted into a new pop-up window, so the provider's
 * sign-in opens there; if the browser blocks the pop-up the form is submitted in this
 * page as usual (the server then answers with plain redirects). The callback's page in
 * the pop-up (data-pa-oauth-result) posts the result to its opener, same origin only,
 * and closes itself; the page that opened it shows the result and moves on.
 */
(function () {
  "use strict";
  var ORIGIN = window.location.origin;

  function statusBox() { return document.querySelector("[data-pa-oauth-status]"); }

  function show(text, tone) {
    var box = statusBox();
    if (!box) { return; }
    box.textContent = text;
    box.className = "pa-notice pa-tone-" + tone;
    box.hidden = false;
    box.focus();
  }

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form || !form.hasAttribute || !form.hasAttribute("data-pa-oauth")) { return; }
    var name = "pa-oauth-" + Date.now();
    var w = 520, h = 680;
    var left = Math.max(0, window.screenX + (window.outerWidth - w) / 2);
    var top = Math.max(0, window.screenY + (window.outerHeight - h) / 2);
    var popup = null;
    try {
      popup = window.open("", name, "popup=yes,width=" + w + ",height=" + h +
                          ",left=" + left + ",top=" + top);
    } catch (e) { popup = null; }
    if (!popup) { return; }  /* blocked: submit here, redirects take over */
    var flag = form.querySelector("input[name=popup]");
    if (flag) { flag.value = "1"; }
    form.target = name;
    /* the text comes translated from the page (data-pa-oauth-waiting on the status box) */
    var box = statusBox();
    show(box ? box.getAttribute("data-pa-oauth-waiting") || "" : "", "info");
    window.setTimeout(function () {
      form.removeAttribute("target");
      if (flag) { flag.value = ""; }
    }, 0);
  }, true);

  window.addEventListener("message", function (ev) {
    if (ev.origin !== ORIGIN) { return; }
    var data = ev.data;
    if (!data || data.type !== "popaccounts-oauth") { return; }
    show(String(data.message || ""), data.ok ? "ok" : "error");
    if (data.ok && typeof data.redirect === "string" && data.redirect.charAt(0) === "/" &&
        data.redirect.charAt(1) !== "/") {
      window.setTimeout(function () { window.location.assign(data.redirect); }, 1200);
    }
  });

  function reportToOpener() {
    var el = document.querySelector("[data-pa-oauth-result]");
    if (!el) { return; }
    var opener = window.opener;
    if (!opener || opener.closed) { return; }  /* no opener: the page itself explains */
    var result;
    try { result = JSON.parse(el.getAttribute("data-pa-oauth-result")); } catch (e) { return; }
    if (typeof result.redirect === "string" && result.redirect.charAt(0) !== "/") {
      result.redirect = null;
    }
    try {
      opener.postMessage(result, ORIGIN);
    } catch (e) { return; }
    window.close();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", reportToOpener);
  } else {
    reportToOpener();
  }
})();
