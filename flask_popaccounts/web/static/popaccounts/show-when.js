/* flask-popaccounts: a form part shown only for one choice of another field.
 *
 * <div data-pa-show-when="delete_policy" data-pa-show-value="after_days"> ... </div>
 * is hidden unless the form's radio buttons (or select) named delete_policy have
 * after_days chosen, and follows every change. Without JS it simply stays visible
 * (the server ignores it for the other choices). No text here: nothing to translate.
 */
(function () {
  "use strict";
  function chosen(form, name) {
    // radio buttons: a RadioNodeList, whose value is the checked one's; a select: its value
    var el = form.elements.namedItem(name);
    return el ? el.value : null;
  }
  function update(form) {
    form.querySelectorAll("[data-pa-show-when]").forEach(function (part) {
      var show = chosen(form, part.getAttribute("data-pa-show-when")) ===
        part.getAttribute("data-pa-show-value");
      part.hidden = !show;
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form").forEach(function (form) {
      if (!form.querySelector("[data-pa-show-when]")) { return; }
      update(form);
      form.addEventListener("change", function () { update(form); });
    });
  });
})();
