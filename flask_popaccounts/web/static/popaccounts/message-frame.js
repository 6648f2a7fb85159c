/* flask-popaccounts: size a message body's sandboxed frame to its content.
   The frame (iframe[data-pa-message-frame]) is a separate document with its own CSP and
   no script; the frame is same-origin (sandbox allow-same-origin, never allow-scripts),
   so this page can measure it. Without JS the frame keeps its CSS height and a resizer. */
(function () {
  "use strict";
  function fit(frame) {
    var doc;
    try { doc = frame.contentDocument; } catch (e) { return; }
    if (!doc || !doc.documentElement) { return; }
    var height = Math.max(doc.documentElement.scrollHeight, doc.body ? doc.body.scrollHeight : 0);
    if (height > 0) { frame.style.blockSize = (height + 4) + "px"; }
  }
  function watch(frame) {
    frame.addEventListener("load", function () { fit(frame); });
    if (frame.contentDocument && frame.contentDocument.readyState === "complete") { fit(frame); }
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("iframe[data-pa-message-frame]").forEach(watch);
  });
})();
