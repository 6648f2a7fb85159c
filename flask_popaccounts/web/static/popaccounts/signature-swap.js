/* Compose: switching the From account swaps the signature block in the message body.
 *
 * The page marks the From <select data-pa-signature-from>, the body
 * <textarea data-pa-signature-body>, a hidden <input data-pa-sig-for> naming the account
 * whose signature the body holds, an optional hidden <input data-pa-quote-line> (the
 * first line of the quoted text) and a JSON <script id="pa-signatures">:
 * {"<account id>": {"block": "-- \nText", "placement": "below" | "above"}}.
 * The same rules as services/settings.py (insert_block / remove_block), so the server's
 * no-JS swap on send and this one agree, and sig_for tells the server not to redo it.
 */
(function () {
  "use strict";
  function removeBlock(body, block) {
    if (!block) return body;
    var i = body.lastIndexOf(block);
    if (i < 0) return body;
    var head = body.slice(0, i).replace(/\n+$/, "");
    var rest = body.slice(i + block.length).replace(/^\n+/, "");
    if (rest) return head + "\n\n" + rest;
    return head ? head + "\n" : "";
  }
  function insertBlock(body, block, placement, quoteLine) {
    if (!block || body.indexOf(block) >= 0) return body;
    var q = quoteLine ? body.indexOf(quoteLine) : -1;
    if (placement === "above" && q >= 0) {
      return body.slice(0, q).replace(/\n+$/, "") + "\n\n" + block + "\n\n" +
        body.slice(q).replace(/^\n+/, "");
    }
    return body.replace(/\n+$/, "") + "\n\n" + block + "\n";
  }
  function init() {
    var from = document.querySelector("[data-pa-signature-from]");
    var body = document.querySelector("[data-pa-signature-body]");
    var sigFor = document.querySelector("[data-pa-sig-for]");
    var data = document.getElementById("pa-signatures");
    if (!from || !body || !sigFor || !data) return;
    var sigs = JSON.parse(data.textContent || "{}");
    var quote = document.querySelector("[data-pa-quote-line]");
    from.addEventListener("change", function () {
      var old = sigs[sigFor.value] || {block: ""};
      var next = sigs[from.value] || {block: "", placement: "below"};
      var text = body.value.replace(/\r\n/g, "\n");
      text = removeBlock(text, old.block);
      body.value = insertBlock(text, next.block, next.placement, quote ? quote.value : "");
      sigFor.value = from.value;
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
