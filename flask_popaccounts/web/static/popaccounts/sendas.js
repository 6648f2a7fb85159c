// "Send mail as": the Verify button opens its <dialog> as a modal. Without JS the
// button is a link to a page where the dialog is rendered open, so nothing depends on this.
(function () {
  "use strict";
  function open(dialog) {
    if (!dialog || typeof dialog.showModal !== "function") return false;
    if (dialog.open) dialog.close();
    dialog.showModal();
    var input = dialog.querySelector("input[name=code]");
    if (input) input.focus();
    return true;
  }
  document.addEventListener("click", function (ev) {
    var link = ev.target.closest && ev.target.closest("a[data-pa-verify]");
    if (!link) return;
    if (open(document.getElementById(link.getAttribute("data-pa-verify")))) ev.preventDefault();
  });
  document.addEventListener("DOMContentLoaded", function () {
    // A dialog the server rendered open (wrong code...): make it a real modal.
    open(document.querySelector("dialog[data-pa-autoopen]"));
  });
})();
